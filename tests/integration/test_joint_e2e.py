"""The joint signal on the real Kafka and Redis (issue 21 item 5): a correlation flip that no
marginal shows. The worker, stopped and restarted part-way (while the fit forms, and after it
and the signal's reference are in Redis), publishes the alerts of one replay, ids and evidence
included (docs/joint-drift.md)."""

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
from stream_monitor.synth import correlated_stream

from ..helpers import replay_records
from .conftest import wait_committed

pytestmark = pytest.mark.integration

CONFIG = {
    "windows": {"reference_size": 400, "recent_size": 300},
    "detectors": {"cusum": {"type": "cusum"}},
    "models": [{"match": "joint-*", "joint": {"fit_size": 300},
                "signals": [{"match": "feature:*", "detectors": ["cusum"]}]}],
}


@pytest.mark.parametrize("cut", [150, 1500])
def test_worker_with_a_restart_equals_replay_on_the_joint_signal(kafka_bootstrap, unique,
                                                                 start_worker, tmp_path: Path,
                                                                 cut: int) -> None:
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    lines = [orjson.dumps(e) for e in correlated_stream(2500, 11, flip_at=1800)]
    replayed = replay_records(config_path, lines, tmp_path)
    expected = [a for a in replayed if a["type"] == "drift_alert"]
    assert [a["signal"] for a in expected] == ["joint"], expected
    assert expected[0]["detected_at"]["offset"] >= 1800
    assert {t["feature"] for t in expected[0]["evidence"]["joint"]["top"][:2]} == {"a", "b"}
    validate_record(expected[0])

    topic = unique.topics["inference"]
    first = start_worker(config_path, unique)
    asyncio.run(produce(kafka_bootstrap, topic, ((b"joint-1", v) for v in lines[:cut])))
    wait_committed(kafka_bootstrap, unique.app_id, topic, cut, first)
    assert first.stop(signal.SIGTERM) == 0, first.tail()
    second = start_worker(config_path, unique)
    asyncio.run(produce(kafka_bootstrap, topic, ((b"joint-1", v) for v in lines[cut:])))
    wait_committed(kafka_bootstrap, unique.app_id, topic, len(lines), second)

    def alerts(msgs: list[Any]) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in msgs if m.topic == unique.topics["alerts"]]

    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["alerts"]],
                               until=lambda m: len(alerts(m)) >= len(expected), timeout=60))
    got = alerts(msgs)

    def key(a: dict[str, Any]) -> bytes:
        ev = a["evidence"]
        start = (ev.get("change") or {}).get("start")
        if isinstance(start, dict):
            start.pop("topic", None)  # replay names the file, the worker the topic
        return orjson.dumps([a["alert_id"], a["signal"], a["detected_at"]["offset"], ev,
                             a["summary"].split("; cusum fired")[0]],
                            option=orjson.OPT_SORT_KEYS)

    assert sorted(map(key, got)) == sorted(map(key, expected))
