"""Windowed performance metrics on the real Kafka and Redis (issue 21 item 3): a calibrated
classifier with inline labels and concept drift, a model rule watching the Brier score's
per-event contributions. The worker, stopped and restarted part-way (the metrics window goes
through Redis with the model), publishes the alerts of one replay, each performance alert with
the same windowed metrics in its evidence."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import validate_record
from stream_monitor.synth import classifier_stream

from ..helpers import free_port, http_get, replay_records
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
    events = classifier_stream(3000, 23, concept_at=1800)
    lines = [orjson.dumps(ev) for ev in events]
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
    port = free_port()
    second = start_worker(config_path, unique, SM_METRICS_PORT=str(port),
                          SM_METRICS_HOST="127.0.0.1")
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

    # /metrics: the window's figures after the last batch, as computed the plain way from the
    # last 200 labelled events (one per event here).
    last = events[-200:]
    accuracy = sum(e["prediction"] == e["label"] for e in last) / 200
    brier = sum(0.5 * sum((p - (c == e["label"])) ** 2
                          for c, p in e["probabilities"].items()) for e in last) / 200
    got_metrics: dict[str, float] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
        got_metrics = {s.labels["metric"]: s.value for fam in text_string_to_metric_families(text)
                       for s in fam.samples if s.name == "stream_monitor_model_performance"
                       and s.labels.get("model") == "clf-1"}
        if got_metrics.get("accuracy") == pytest.approx(accuracy):
            break
        time.sleep(0.5)
    assert got_metrics.get("accuracy") == pytest.approx(accuracy), got_metrics
    assert got_metrics["brier"] == pytest.approx(brier)
    assert {"auc", "ece", "f1_macro"} <= got_metrics.keys()


def test_redis_join_carries_the_probabilities_as_the_pure_book_does(redis_url, unique) -> None:
    """A prediction's probability map (up to JOIN_PROBABILITIES_MAX classes) waits with it in
    the Redis join and comes back on its pair, early labels included, as in the pure book."""
    import random

    import redis.asyncio as aioredis

    from stream_monitor.core.label_join import LabelOp
    from stream_monitor.state.label_store import MemoryLabelStore, RedisLabelStore

    rng = random.Random(7)
    ops: list[LabelOp] = []
    t = 1_767_225_600.0
    for i in range(200):
        t += rng.random()
        probs = None
        if i % 4:
            a = round(rng.uniform(0.34, 1.0), 6)
            probs = (("a", a), ("b", round(1.0 - a, 6)))
        conf = None if probs is None else max(p for _, p in probs)
        if i % 5 == 0:  # the label first
            ops.append(LabelOp("label", "m", f"e{i}", "a", t, "lab", 0, len(ops)))
        ops.append(LabelOp("prediction", "m", f"e{i}", "a", t, "inf", 0, len(ops), None, conf,
                           probs))
        if i % 5:
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
    assert len(got) == 200
    assert [(p.event_id, p.confidence, p.probabilities) for p in got] == \
        [(p.event_id, p.confidence, p.probabilities) for p in want]
    by_id = {p.event_id: p.probabilities for p in got}
    assert by_id["e0"] is None and by_id["e1"] is not None and by_id["e5"] is not None
