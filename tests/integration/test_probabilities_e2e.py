"""Class probabilities on the real Kafka and Redis (issue 21 items 1 and 2): a calibrated
classifier's events with probabilities and inline labels, under a covariate shift, with
invalid maps in between. The worker, stopped and restarted part-way (before and after its
performance estimate is calibrated, so the calibration pairs, the fitted curve and the
detectors go through Redis), publishes the alerts and dead letters of one replay, ids
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
from stream_monitor.synth import classifier_stream

from ..helpers import replay_records
from .conftest import wait_committed

pytestmark = pytest.mark.integration

CONFIG = {
    "windows": {"reference_size": 400, "reference_min_size": 200, "recent_size": 300},
    "false_alarm_budget": {"per_events": 100000},
    "detectors": {"adwin": {"type": "adwin"}},
    "models": [{"match": "clf-*", "signals": [{"match": "feature:*", "detectors": ["adwin"]}],
                "probabilities": {"calibration_size": 300}}],
}
BAD = [{"a": 0.7, "b": 0.7, "c": 0.0}, {"a": -0.2, "b": 0.6, "c": 0.6}, {"a": "x", "b": 1.0}]


def _lines(n: int = 3000) -> list[bytes]:
    out = []
    for i, ev in enumerate(classifier_stream(n, 21, covariate_at=1800)):
        if i % 500 == 250:
            ev = {**ev, "probabilities": BAD[(i // 500) % len(BAD)]}
        out.append(orjson.dumps(ev))
    return out


@pytest.mark.parametrize("cut", [200, 1850])
def test_worker_with_a_restart_equals_replay_on_probabilities(kafka_bootstrap, unique,
                                                              start_worker, tmp_path: Path,
                                                              cut: int) -> None:
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    lines = _lines()
    replayed = replay_records(config_path, lines, tmp_path)
    expected = [a for a in replayed if a["type"] == "drift_alert"]
    dead_expected = sorted(d["reason_code"] for d in replayed if d["type"] == "dead_letter")
    assert dead_expected == sorted(["probabilities_not_normalized", "probability_out_of_range",
                                    "probability_not_numeric", "probabilities_not_normalized",
                                    "probability_out_of_range", "probability_not_numeric"])
    signals = {a["signal"] for a in expected}
    assert "performance:estimated_error" in signals and "confidence" in signals, signals
    for a in expected:
        validate_record(a)

    topic = unique.topics["inference"]
    first = start_worker(config_path, unique)
    asyncio.run(produce(kafka_bootstrap, topic, ((b"clf-1", v) for v in lines[:cut])))
    wait_committed(kafka_bootstrap, unique.app_id, topic, cut, first)
    assert first.stop(signal.SIGTERM) == 0, first.tail()
    second = start_worker(config_path, unique)
    asyncio.run(produce(kafka_bootstrap, topic, ((b"clf-1", v) for v in lines[cut:])))
    wait_committed(kafka_bootstrap, unique.app_id, topic, len(lines), second)

    def of(msgs: list[Any], name: str) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in msgs if m.topic == unique.topics[name]]

    msgs = asyncio.run(consume(
        kafka_bootstrap, [unique.topics["alerts"], unique.topics["dead_letter"]],
        until=lambda m: (len(of(m, "alerts")) >= len(expected)
                         and len(of(m, "dead_letter")) >= len(dead_expected)), timeout=60))
    got = of(msgs, "alerts")
    assert sorted((a["alert_id"], a["signal"], a["detected_at"]["offset"]) for a in got) == \
        sorted((a["alert_id"], a["signal"], a["detected_at"]["offset"]) for a in expected)

    def evidence(a: dict[str, Any]) -> bytes:
        ev = a["evidence"]
        start = (ev.get("change") or {}).get("start")
        if isinstance(start, dict):
            start.pop("topic", None)  # replay names the file, the worker the topic
        return orjson.dumps(ev, option=orjson.OPT_SORT_KEYS)

    assert sorted(map(evidence, got)) == sorted(map(evidence, expected))
    assert sorted(d["reason_code"] for d in of(msgs, "dead_letter")) == dead_expected


def test_redis_join_carries_the_confidence_as_the_pure_book_does(redis_url, unique) -> None:
    """A prediction's confidence (its largest probability) waits with it in the Redis join and
    comes back on its pair, early labels included; predictions without one give None, as in the
    pure book (state/label_store.py, core/label_join.py)."""
    import random

    import redis.asyncio as aioredis

    from stream_monitor.core.label_join import LabelOp
    from stream_monitor.state.label_store import MemoryLabelStore, RedisLabelStore

    rng = random.Random(5)
    ops: list[LabelOp] = []
    t = 1_767_225_600.0
    for i in range(300):
        t += rng.random()
        conf = None if i % 3 == 0 else round(rng.uniform(0.34, 1.0), 6)
        if i % 7 == 0:  # the label first
            ops.append(LabelOp("label", "m", f"e{i}", "a", t, "lab", 0, len(ops)))
        ops.append(LabelOp("prediction", "m", f"e{i}", "a", t, "inf", 0, len(ops), None, conf))
        if i % 7:
            ops.append(LabelOp("label", "m", f"e{i}", "b", t + 1, "lab", 0, len(ops)))
    rules = {"m": (600.0, 5.0)}

    async def run() -> tuple[list[Any], list[Any]]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            r_pairs, _ = await RedisLabelStore(client, unique.prefix).apply(ops, rules, {})
            m_pairs, _ = await MemoryLabelStore().apply(ops, rules, {})
            return r_pairs, m_pairs
        finally:
            await client.aclose()

    got, want = asyncio.run(run())
    assert len(got) == 300
    assert [(p.event_id, p.confidence, p.label_first) for p in got] == \
        [(p.event_id, p.confidence, p.label_first) for p in want]
    confs = {p.event_id: p.confidence for p in got}
    assert confs["e0"] is None and confs["e1"] is not None and confs["e21"] is None
    assert confs["e14"] is not None  # a label-first pair keeps its prediction's confidence
