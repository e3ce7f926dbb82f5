"""Windowed performance metrics on the real Kafka and Redis (issue 21 item 3): a calibrated
classifier with inline labels and concept drift, a model rule watching the Brier score's
per-event contributions. The worker, stopped and restarted part-way (the metrics window goes
through Redis with the model), publishes the alerts of one replay, each performance alert with
the same windowed metrics in its evidence."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import validate_record
from stream_monitor.synth import classifier_stream

from ..helpers import replay_records
from .conftest import wait_committed

pytestmark = pytest.mark.integration

CONFIG = {
    "windows": {"reference_size": 400, "reference_min_size": 200, "recent_size": 300},
    "false_alarm_budget": {"per_events": 100000},
    "detectors": {"adwin": {"type": "adwin"}},
    "models": [{"match": "clf-*", "signals": [
        {"match": "performance:error", "detectors": ["adwin"]},
        {"match": "feature:*", "detectors": ["adwin"]}],
        "probabilities": None,
        "performance": {"window": 200, "watch": ["brier"]}}],
}


@pytest.mark.parametrize("cut", [150, 1900])
def test_worker_with_a_restart_equals_replay_on_metrics(kafka_bootstrap, unique, start_worker,
                                                        tmp_path: Path, cut: int) -> None:
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    lines = [orjson.dumps(ev) for ev in classifier_stream(3000, 23, concept_at=1800)]
    replayed = replay_records(config_path, lines, tmp_path)
    expected = [a for a in replayed if a["type"] == "drift_alert"]
    perf = [a for a in expected if a["signal"].startswith("performance:")]
    assert {a["signal"] for a in perf} >= {"performance:brier"}, {a["signal"] for a in expected}
    for a in expected:
        validate_record(a)
    for a in perf:
        assert a["evidence"]["performance"]["window"] == 200

    topic = unique.topics["inference"]
    first = start_worker(config_path, unique)
    asyncio.run(produce(kafka_bootstrap, topic, ((b"clf-1", v) for v in lines[:cut])))
    wait_committed(kafka_bootstrap, unique.app_id, topic, cut, first)
    assert first.stop(signal.SIGTERM) == 0, first.tail()
    second = start_worker(config_path, unique)
    asyncio.run(produce(kafka_bootstrap, topic, ((b"clf-1", v) for v in lines[cut:])))
    wait_committed(kafka_bootstrap, unique.app_id, topic, len(lines), second)

    def of(msgs: list[Any]) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in msgs if m.topic == unique.topics["alerts"]]

    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["alerts"]],
                               until=lambda m: len(of(m)) >= len(expected), timeout=60))
    got = of(msgs)
    assert sorted((a["alert_id"], a["signal"], a["detected_at"]["offset"]) for a in got) == \
        sorted((a["alert_id"], a["signal"], a["detected_at"]["offset"]) for a in expected)

    def performance(a: dict[str, Any]) -> bytes:
        return orjson.dumps([a["alert_id"], a["evidence"].get("performance")],
                            option=orjson.OPT_SORT_KEYS)

    assert sorted(map(performance, got)) == sorted(map(performance, expected))
