"""The Kafka worker on the real broker and Redis: outputs, dead letters, offsets, restarts,
and equivalence with replay and with River run directly."""

from __future__ import annotations

import asyncio
import base64
import signal
from typing import Any

import numpy as np
import orjson
import pytest
import redis as redis_sync
from river import drift

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import validate_record
from stream_monitor.contracts.units import unit_id
from stream_monitor.core.signals import reference_scale
from stream_monitor.state.base import unit_key
from stream_monitor.synth import Drift, StreamSpec, generate

from ..helpers import replay_records
from .conftest import TEST_CONFIG, wait_committed

pytestmark = pytest.mark.integration

SPEC = StreamSpec(models=("credit-risk",), events_per_model=3000, seed=11,
                  drifts=(Drift(1500, "amount", 1.5), Drift(1500, "utilization", -1.5),
                          Drift(1500, "prediction", 1.0)))


def _produce(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"credit-risk") -> None:
    asyncio.run(produce(bootstrap, topic, ((key, v) for v in values)))


def _outputs(bootstrap: str, u: Any, until: Any, timeout: float = 90) -> list[Any]:
    topics = [u.topics["alerts"], u.topics["retrain"], u.topics["dead_letter"]]
    return asyncio.run(consume(bootstrap, topics, until=until, timeout=timeout))


def _alerts(msgs: list[Any], u: Any) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in msgs if m.topic == u.topics["alerts"]]


def direct_river(values: list[float], reference_size: int) -> list[int]:
    """River's ADWIN and Page-Hinkley run directly, with the documented standardization and
    rebaseline rule; an independent re-implementation of what the core promises."""
    hits: list[int] = []
    ref: list[float] = []
    dets: list[Any] | None = None
    mean = std = 0.0
    for i, x in enumerate(values):
        if dets is None:
            ref.append(x)
            if len(ref) == reference_size:
                mean, std = reference_scale(ref)
                dets = [drift.ADWIN(delta=0.002, clock=32),
                        drift.PageHinkley(min_instances=30, delta=0.25, threshold=30.0, alpha=1.0)]
            continue
        z = (x - mean) / std
        fired = False
        for d in dets:
            d.update(z)
            fired = fired or d.drift_detected
        if fired:
            hits.append(i)
            ref, dets = [], None
    return hits


def test_alerts_retrain_and_dead_letters_on_real_kafka(kafka_bootstrap, redis_url, unique,
                                                       config_path, start_worker, tmp_path):
    lines = list(generate(SPEC))
    bad = {10: b"not json", 20: b"\xff\xfe\x00binary", 30: b'{"event_id": "x", "features": {}}',
           40: b'"a string"'}
    for off in sorted(bad):
        lines.insert(off, bad[off])
    worker = start_worker(config_path, unique)
    _produce(kafka_bootstrap, unique.topics["inference"], lines)

    def done(msgs: list[Any]) -> bool:
        # The three topics are fetched independently: wait for each one's records (the alerts
        # are published before the retrain request, but may be read after it).
        signals = {orjson.loads(m.value).get("signal") for m in msgs
                   if m.topic == unique.topics["alerts"]}
        return (any(m.topic == unique.topics["retrain"] for m in msgs)
                and {"feature:amount", "feature:utilization", "prediction"} <= signals
                and sum(m.topic == unique.topics["dead_letter"] for m in msgs) >= len(bad))

    msgs = _outputs(kafka_bootstrap, unique, done)
    assert done(msgs), worker.tail()
    # The partition keeps moving: every event, good or bad, is committed.
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], len(lines), worker)

    alerts = _alerts(msgs, unique)
    by_signal = {a["signal"]: a for a in alerts}
    assert {"feature:amount", "feature:utilization", "prediction"} <= set(by_signal)
    drift_at = 1500 + len(bad)  # offsets count the inserted bad records
    for a in alerts:
        validate_record(a)
        assert drift_at <= a["detected_at"]["offset"] < drift_at + 300, a["summary"]
        assert a["detected_at"]["topic"] == unique.topics["inference"]
        assert a["evidence"]["reference"]["count"] == TEST_CONFIG["windows"]["reference_size"]
    assert by_signal["feature:amount"]["evidence"]["mean_shift_in_reference_std"] > 0.3
    assert by_signal["feature:utilization"]["evidence"]["mean_shift_in_reference_std"] < -0.3
    for m in msgs:
        headers = dict(m.headers)
        assert headers["content-type"] == b"application/json"
        if m.topic != unique.topics["dead_letter"]:
            assert m.key == b"credit-risk"

    retrain = [orjson.loads(m.value) for m in msgs if m.topic == unique.topics["retrain"]]
    assert len(retrain) == 1
    validate_record(retrain[0])
    assert set(retrain[0]["alert_ids"]) <= {a["alert_id"] for a in alerts}
    assert len(retrain[0]["signals"]) >= 2

    dead = {orjson.loads(m.value)["source"]["offset"]: orjson.loads(m.value)
            for m in msgs if m.topic == unique.topics["dead_letter"]}
    assert sorted(dead) == sorted(bad)
    for off, rec in dead.items():
        validate_record(rec)
        original = rec["original"]["value"]
        data = (base64.b64decode(original["data"]) if original["encoding"] == "base64"
                else original["data"].encode())
        assert data == bad[off]
    assert dead[20]["original"]["value"]["encoding"] == "base64"
    codes = {dead[o]["reason_code"] for o in dead}
    assert codes == {"undecodable", "missing_field", "not_an_object"}

    # State is in Redis under the model's hash tag, as JSON (never pickle); the events carry
    # model_version "1", which has its own state unit.
    r = redis_sync.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in r.scan_iter(f"{unique.prefix}:*"))
    base = unit_key(unique.prefix, unit_id("credit-risk", "1"))
    assert base == f"{unique.prefix}:{{credit-risk}}:v:1"
    assert f"{base}:model" in keys
    assert r.hkeys(f"{unique.prefix}:{{credit-risk}}:versions") == [b"1"]
    meta = orjson.loads(r.get(f"{base}:sig:feature:amount"))
    assert meta["n"] == SPEC.events_per_model
    recent = np.frombuffer(r.get(f"{base}:sig:feature:amount:recent"), "<f8")
    assert len(recent) == 200
    assert recent[-1] == orjson.loads(lines[-1])["features"]["amount"]

    assert worker.stop() == 0, worker.tail()  # SIGTERM: clean exit


def test_worker_replay_and_river_agree_on_drift_indices(kafka_bootstrap, unique, config_path,
                                                        start_worker, tmp_path):
    lines = list(generate(SPEC))
    events = [orjson.loads(x) for x in lines]
    ref_size = TEST_CONFIG["windows"]["reference_size"]
    expected: set[tuple[str, int]] = set()
    for name in ("amount", "utilization", "age", "tenure_months", "income_k",
                 "f5", "f6", "f7", "f8", "f9"):
        expected |= {(f"feature:{name}", i) for i in
                     direct_river([e["features"][name] for e in events], ref_size)}
    predictions = [e["prediction"] for e in events]
    expected |= {("prediction", i) for i in direct_river(predictions, ref_size)}
    assert len(expected) >= 3  # the injected drifts are found at all

    replayed = {(a["signal"], a["detected_at"]["offset"])
                for a in replay_records(config_path, lines, tmp_path) if a["type"] == "drift_alert"}
    assert replayed == expected

    worker = start_worker(config_path, unique)
    _produce(kafka_bootstrap, unique.topics["inference"], lines)
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], len(lines), worker)
    msgs = _outputs(kafka_bootstrap, unique, lambda m: len(m) >= len(expected), timeout=30)
    from_kafka = {(a["signal"], a["detected_at"]["offset"]) for a in _alerts(msgs, unique)}
    assert from_kafka == expected


@pytest.mark.parametrize("cut", [700, 1520])
def test_restarted_worker_continues_exactly(kafka_bootstrap, unique, config_path, start_worker,
                                            tmp_path, cut):
    """Stop the worker part-way (before the reference is complete on later signals, or while
    Page-Hinkley is accumulating evidence of the drift), start a new process: the alerts are
    exactly those of one uninterrupted replay, ids included."""
    lines = list(generate(SPEC))
    first = start_worker(config_path, unique)
    _produce(kafka_bootstrap, unique.topics["inference"], lines[:cut])
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], cut, first)
    assert first.stop(signal.SIGTERM) == 0, first.tail()

    second = start_worker(config_path, unique)
    _produce(kafka_bootstrap, unique.topics["inference"], lines[cut:])
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], len(lines), second)

    expected = [a for a in replay_records(config_path, lines, tmp_path)
                if a["type"] == "drift_alert"]
    msgs = _outputs(kafka_bootstrap, unique, lambda m: len(_alerts(m, unique)) >= len(expected),
                    timeout=30)
    got = _alerts(msgs, unique)
    assert sorted((a["alert_id"], a["detected_at"]["offset"]) for a in got) == \
        sorted((a["alert_id"], a["detected_at"]["offset"]) for a in expected)
