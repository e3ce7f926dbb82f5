"""Alert lifecycle on the real Kafka and Redis: a drift that goes back gives one drift alert and
one drift_resolved record on the alerts topic, with the headers the notifier relies on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import yaml

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import validate_record
from stream_monitor.notify.notification import notification_from_record

from .conftest import wait_committed

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0

CONFIG = {
    "windows": {"reference_size": 50, "recent_size": 50, "evidence_size": 20},
    "models": [{"match": "life-*",
                "signals": [{"match": "feature:*", "detectors": ["page_hinkley"]}],
                "retrain": {"min_drifted_signals": 5},
                "alerts": {"resolve_values": 50, "resolve_max_shift": 0.5, "hold_seconds": 100}}],
}


def test_drift_alert_then_drift_resolved_on_the_alerts_topic(
        kafka_bootstrap, redis_url, unique, start_worker, tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    # x: a zero-mean cycle, +10 from 300 to 500 (a drift that goes back).
    xs = [float((i * 2) % 5 - 2 + (10 if 300 <= i < 500 else 0)) for i in range(1000)]
    lines = [orjson.dumps({"event_id": f"e{i}", "model_id": "life-a", "model_version": "3",
                           "timestamp": T0 + i, "prediction": 0.0, "features": {"x": x}})
             for i, x in enumerate(xs)]
    worker = start_worker(config, unique)
    asyncio.run(produce(kafka_bootstrap, unique.topics["inference"],
                        [(b"life-a", v) for v in lines]))
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], len(lines), worker)
    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["alerts"]], timeout=30, idle=5))
    recs = [orjson.loads(m.value) for m in msgs]
    assert [r["type"] for r in recs] == ["drift_alert", "drift_resolved"]
    alert, res = recs
    for r in recs:
        validate_record(r)
    # Same offsets as the pure core on this stream (tests/unit/test_lifecycle.py).
    assert alert["detected_at"]["offset"] == 304 and res["resolved_at"]["offset"] == 654
    headers = dict(msgs[1].headers)
    assert headers["schema"] == b"drift-resolved/v1"
    assert headers["alert-id"] == alert["alert_id"].encode()
    assert headers["fingerprint"] == res["fingerprint"].encode()
    assert msgs[1].key == b"life-a"
    assert (notification_from_record(alert).fingerprint
            == notification_from_record(res).fingerprint)
