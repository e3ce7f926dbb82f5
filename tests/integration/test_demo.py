"""The README's first command works: `stream-monitor demo` (what scripts/demo.sh runs once the
services are up) against the real Kafka and Redis ends with "demo ok" and its outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end(kafka_bootstrap, redis_url, tmp_path: Path) -> None:
    """Outside the repository (cwd is a temp dir) and without --config: the demo uses the
    example config shipped in the package."""
    env = {k: v for k, v in os.environ.items() if k != "SM_CONFIG"}
    env.update(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, REDIS_URL=redis_url, SM_METRICS_PORT="0",
               COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "stream_monitor", "demo"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "demo ok" in out
    records = [orjson.loads(x) for x in (tmp_path / "out" / "demo-outputs.jsonl").read_bytes()
               .splitlines()]
    kinds = {(r["type"], r.get("model_id")) for r in records}
    assert {("drift_alert", "credit-risk"), ("retrain_request", "credit-risk"),
            ("drift_alert", "churn-model"), ("retrain_request", "churn-model"),
            ("deployment_check", "churn-model")} <= kinds
    assert (tmp_path / "out" / "demo-signals.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "demo-labels.png").stat().st_size > 10_000
