"""Categorical signals on the real Kafka and Redis (issue 18): a string feature and class-label
predictions, watched by the multinomial CUSUM, give the worker (stopped and restarted part-way,
so code tables and detector checkpoints go through Redis) the alerts of one replay, ids
included."""

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
from stream_monitor.synth import category_stream

from ..helpers import replay_records
from .conftest import wait_committed

pytestmark = pytest.mark.integration

CONFIG = {
    "windows": {"reference_size": 600, "reference_min_size": 200, "recent_size": 300},
    "detectors": {"cusum": {"type": "cusum"}, "adwin": {"type": "adwin"}},
    "models": [{"match": "cat-*", "signals": [{"match": "*", "detectors": ["cusum"]}],
                "quality": {"categorical": True, "indicators": ["unseen_category"]}}],
}


def _lines(n: int = 2400, at: int = 1500) -> list[bytes]:
    seg = category_stream([0.4, 0.3, 0.2, 0.1], n, 7, at, [0.1, 0.2, 0.3, 0.4],
                          labels=["a", "b", "c", "d"])
    cls = category_stream([0.6, 0.3, 0.1], n, 8, at, [0.3, 0.3, 0.4],
                          labels=["no", "yes", "maybe"])
    return [orjson.dumps({"event_id": f"e{i}", "model_id": "cat-1",
                          "timestamp": 1_767_225_600.0 + i, "features": {"seg": s},
                          "prediction": c}) for i, (s, c) in enumerate(zip(seg, cls, strict=True))]


@pytest.mark.parametrize("cut", [450, 1530])
def test_worker_with_a_restart_equals_replay_on_categories(kafka_bootstrap, unique, start_worker,
                                                           tmp_path: Path, cut: int) -> None:
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    lines = _lines()
    expected = [a for a in replay_records(config_path, lines, tmp_path)
                if a["type"] == "drift_alert"]
    assert {a["signal"] for a in expected} == {"feature:seg", "prediction"}
    for a in expected:
        validate_record(a)
        assert a["evidence"]["change"]["kind"] == "category_mix"

    topic = unique.topics["inference"]
    first = start_worker(config_path, unique)
    asyncio.run(produce(kafka_bootstrap, topic, ((b"cat-1", v) for v in lines[:cut])))
    wait_committed(kafka_bootstrap, unique.app_id, topic, cut, first)
    assert first.stop(signal.SIGTERM) == 0, first.tail()
    second = start_worker(config_path, unique)
    asyncio.run(produce(kafka_bootstrap, topic, ((b"cat-1", v) for v in lines[cut:])))
    wait_committed(kafka_bootstrap, unique.app_id, topic, len(lines), second)

    def alerts(msgs: list[Any]) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in msgs if m.topic == unique.topics["alerts"]]

    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["alerts"]],
                               until=lambda m: len(alerts(m)) >= len(expected), timeout=60))
    got = alerts(msgs)
    assert sorted((a["alert_id"], a["detected_at"]["offset"]) for a in got) == \
        sorted((a["alert_id"], a["detected_at"]["offset"]) for a in expected)

    def evidence(a: dict[str, Any]) -> bytes:
        ev = a["evidence"]
        ev["change"]["start"].pop("topic")  # replay names the file, the worker the topic
        return orjson.dumps(ev, option=orjson.OPT_SORT_KEYS)

    assert sorted(map(evidence, got)) == sorted(map(evidence, expected))
