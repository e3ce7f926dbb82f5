"""A sampled model on the real Kafka and Redis: the worker keeps the same events as replay
(docs/scaling.md "Sampling a hot model"), so it raises the same alerts with the same ids."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.adapters.replay import replay_file
from stream_monitor.config import load_config
from stream_monitor.contracts import validate_record
from stream_monitor.synth import Drift, StreamSpec, generate

from .conftest import TEST_CONFIG, wait_committed

pytestmark = pytest.mark.integration

SPEC = StreamSpec(models=("credit-risk",), events_per_model=4000, seed=21,
                  drifts=(Drift(2000, "amount", 1.5), Drift(2000, "prediction", 1.0)))


def test_worker_and_replay_keep_the_same_sample(kafka_bootstrap, unique, start_worker,
                                                tmp_path: Path) -> None:
    cfg: dict[str, Any] = {**TEST_CONFIG,
                           "models": [{**TEST_CONFIG["models"][0], "sample_rate": 0.5}]}
    config = tmp_path / "sampled.yaml"
    config.write_text(yaml.safe_dump(cfg))
    lines = list(generate(SPEC))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = io.BytesIO()
    replay_file(load_config(config), events, out, batch=333)
    replayed = [orjson.loads(x) for x in out.getvalue().splitlines()]
    alerts = [r for r in replayed if r["type"] == "drift_alert"]
    assert len(alerts) >= 2 and all(a["sample_rate"] == 0.5 for a in alerts)

    worker = start_worker(config, unique)
    asyncio.run(produce(kafka_bootstrap, unique.topics["inference"],
                        ((b"credit-risk", v) for v in lines)))
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], len(lines), worker)
    topics = [unique.topics["alerts"], unique.topics["retrain"]]
    msgs = asyncio.run(consume(kafka_bootstrap, topics,
                               until=lambda m: len(m) >= len(replayed), timeout=30))
    from_kafka = [orjson.loads(m.value) for m in msgs]
    for r in from_kafka:
        validate_record(r)

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["type"], r.get("alert_id") or r.get("request_id"), r.get("signal"),
                r["sample_rate"])

    assert sorted(map(key, from_kafka)) == sorted(map(key, replayed))
    assert worker.stop() == 0, worker.tail()
