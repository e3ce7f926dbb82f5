"""The data-quality gate: whole-event rules (one reason code each), value rules that reject one
value and keep the event, fault rates as signals, categorical features, the counters, the
duplicate claims, and restarts mid-sample. Property-based tests throw random bytes, random JSON
and adversarial events at the gate and the core."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Iterable
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from stream_monitor.config import parse_config
from stream_monitor.contracts import (
    DeadLetter,
    InferenceEvent,
    Position,
    RawRecord,
    load_schema,
    validate_record,
)
from stream_monitor.contracts.records import REASON_CODES
from stream_monitor.core import Monitor, MonitorState
from stream_monitor.core.gate import Claim, EventGate, QualityCounters
from stream_monitor.core.plan import MonitorPlan
from stream_monitor.core.signals import rate_scale
from stream_monitor.core.value_rules import learned_bounds
from stream_monitor.errors import ConfigError
from stream_monitor.pipeline import BatchPipeline, OutputRecord
from stream_monitor.state import MemoryStore
from stream_monitor.state.dedupe import MemoryDedupe

from ..helpers import by_type, pipeline_outputs, record_json

NOW = 1_767_225_600.0  # the processing clock in these tests: 2026-01-01T00:00:00Z
SIGNALS = [{"match": "*", "detectors": ["adwin", "page_hinkley"]}]


def config(quality: dict[str, Any] | None = None, model_quality: dict[str, Any] | None = None,
           reference_size: int = 200) -> MonitorPlan:
    rule: dict[str, Any] = {"match": "m*", "signals": SIGNALS}
    if model_quality is not None:
        rule["quality"] = model_quality
    raw: dict[str, Any] = {"windows": {"reference_size": reference_size, "recent_size": 100,
                                       "evidence_size": 20},
                           "detectors": {"adwin": {"type": "adwin"},
                                         "page_hinkley": {"type": "page_hinkley"},
                                         "cusum": {"type": "cusum"}},
                           "models": [rule]}
    if quality is not None:
        raw["quality"] = quality
    return parse_config(raw)


FULL = {"bounds": {"a": {"min": 0.0, "max": 100.0}}, "learned_bounds": {"k": 3.0},
        "categorical": True, "indicators": ["missing", "out_of_bounds", "unseen_category"],
        "detectors": ["adwin"], "reference_samples": 20}
STRICT = {"max_message_bytes": 2048, "unknown_model": "dead_letter",
          "duplicates": {"window_seconds": 3600},
          "timestamps": {"max_future_seconds": 300, "max_past_seconds": 86400}}


def event(i: int = 0, **fields: Any) -> dict[str, Any]:
    ev = {"event_id": f"e{i}", "model_id": "m", "timestamp": NOW - 1000 + i,
          "features": {"a": 10.0, "b": 0.5, "seg": "x"}, "prediction": 0.3}
    ev.update(fields)
    return ev


def raw(value: bytes | None, offset: int = 0, key: bytes | None = b"m") -> RawRecord:
    return RawRecord(value, Position("in", 0, offset, None), key, (("trace", b"t-1"),))


def dumps(obj: Any) -> bytes:
    """What a Python producer sends: json.dumps writes NaN/Infinity tokens."""
    return json.dumps(obj).encode()


async def run_pipeline(cfg: MonitorPlan, raws: list[RawRecord], batch: int = 100,
                       store: MemoryStore | None = None, dedupe: MemoryDedupe | None = None,
                       ) -> tuple[list[OutputRecord], QualityCounters, BatchPipeline]:
    pipe = BatchPipeline(cfg, store or MemoryStore(), clock=lambda: NOW, dedupe=dedupe)
    out: list[OutputRecord] = []
    counters = QualityCounters()
    for i in range(0, len(raws), batch):
        res = await pipe.run(raws[i:i + batch])
        out += res.records
        counters.merge(res.quality)
        await pipe.store.clear_outbox(res.outbox)
    return out, counters, pipe


# -- whole-event rules: one reason code each ---------------------------------------------------

WHOLE_EVENT_CASES: list[tuple[str, bytes | None]] = [
    ("too_large", dumps(event(pad="x" * 3000))),
    ("undecodable", b'{"event_id": "e1"'),
    ("undecodable", b"\xff\xfe binary"),
    ("undecodable", None),  # tombstone
    ("undecodable", b'{"event_id": "\\ud800", "model_id": "m", "features": {"a": NaN}, '
                    b'"prediction": 1}'),  # NaN is read, a lone surrogate is not
    ("not_an_object", b"[1, 2]"),
    ("missing_field", dumps({"event_id": "e", "model_id": "m", "features": {}})),
    ("wrong_type", dumps(event(event_id=17))),
    ("wrong_type", dumps(event(features={"a": [1]}))),
    ("non_finite", dumps(event(timestamp=math.nan))),
    ("non_finite", dumps(event(timestamp=-math.inf))),
    ("unknown_model", dumps(event(model_id="fraud-1"))),
    ("timestamp_in_future", dumps(event(timestamp=NOW + 301))),
    ("timestamp_too_old", dumps(event(timestamp=NOW - 86401))),
]


@pytest.mark.parametrize(("code", "value"), WHOLE_EVENT_CASES,
                         ids=[f"{c}-{i}" for i, (c, _) in enumerate(WHOLE_EVENT_CASES)])
def test_whole_event_faults_are_dead_lettered_with_their_code(code: str,
                                                              value: bytes | None) -> None:
    gate, counters = EventGate(config(STRICT)), QualityCounters()
    events, dead = gate.admit([raw(value, 7)], NOW, counters)
    assert events == []
    assert [d.reason_code for d in dead] == [code], dead[0].reason
    rec = dead[0].to_record(NOW)
    validate_record(rec)
    assert rec.original["headers"] == [{"key": "trace", "value": {"encoding": "utf-8",
                                                                     "data": "t-1"}}]
    if value is not None and code != "too_large":
        assert rec.original["value"] is not None
    assert counters.total_dead_letters() == 1
    assert counters.by_reason() == {code: 1}


def test_the_same_events_pass_when_the_rules_are_off() -> None:
    """Each rule fires only when configured: with the defaults, only decoding faults remain."""
    gate = EventGate(config())
    passing = {"unknown_model", "timestamp_in_future", "timestamp_too_old", "too_large"}
    for code, value in WHOLE_EVENT_CASES:
        events, _ = gate.admit([raw(value)], NOW, QualityCounters())
        assert (len(events) == 1) == (code in passing), code


def test_boundaries_are_inclusive() -> None:
    gate = EventGate(config(STRICT))
    ok = [dumps(event(timestamp=NOW + 300)), dumps(event(timestamp=NOW - 86400)),
          dumps(event(pad="x" * (2048 - len(dumps(event(pad=""))))))]
    assert len(ok[2]) == 2048
    events, dead = gate.admit([raw(v, i) for i, v in enumerate(ok)], NOW, QualityCounters())
    assert len(events) == 3 and dead == []


def test_kafka_timestamp_is_checked_when_the_event_has_none() -> None:
    gate = EventGate(config(STRICT))
    ev = event()
    del ev["timestamp"]
    old = RawRecord(dumps(ev), Position("in", 0, 0, int((NOW - 2 * 86400) * 1000)))
    untimed = RawRecord(dumps(ev), Position("in", 0, 1, None))
    events, dead = gate.admit([old, untimed], NOW, QualityCounters())
    assert [d.reason_code for d in dead] == ["timestamp_too_old"]
    assert [e.position.offset for e in events] == [1]


def test_unknown_models_are_ignored_by_default_and_not_claimed() -> None:
    cfg = config({"duplicates": {"window_seconds": 60}})
    gate = EventGate(cfg)
    events, dead = gate.admit([raw(dumps(event(model_id="fraud-1")))], NOW, QualityCounters())
    assert len(events) == 1 and dead == []
    assert gate.claims(events) == ([], [])
    assert Monitor(cfg).process(events, MonitorState()).unwatched == 1


def test_reason_codes_match_the_dead_letter_schema() -> None:
    enum = load_schema("dead-letter")["properties"]["reason_code"]["enum"]
    assert sorted(enum) == sorted(REASON_CODES)
    description = load_schema("dead-letter")["properties"]["reason_code"]["description"]
    for code in REASON_CODES:
        assert code in description


# -- value rules: one value rejected, the event kept ------------------------------------------

def test_non_finite_values_are_rejected_alone_and_the_event_is_kept() -> None:
    """A Python producer's NaN/Infinity tokens: orjson refuses them, the stdlib re-reads them,
    and only those values are rejected, in the plain core as in the quality path."""
    value = dumps(event(features={"a": math.nan, "b": math.inf, "c": 1e999, "d": 2.0},
                        prediction=-math.inf))
    assert b"NaN" in value and b"Infinity" in value
    for cfg in (config(), config(model_quality=FULL)):
        events, dead = EventGate(cfg).admit([raw(value)], NOW, QualityCounters())
        assert dead == [] and len(events) == 1
        state = MonitorState()
        out = Monitor(cfg).process(events, state)
        assert out.values == 1  # only d
        assert state.models["m"].signals["feature:d"].n == 1
        assert out.quality.rejected_values == {
            ("m", "feature:a", "non_finite"): 1, ("m", "feature:b", "non_finite"): 1,
            ("m", "feature:c", "non_finite"): 1, ("m", "prediction", "non_finite"): 1}


def test_missing_null_and_out_of_bounds_values_are_rejected_alone() -> None:
    cfg = config(model_quality={"bounds": {"a": {"min": 0.0, "max": 100.0}}})
    evs = [event(0), event(1, features={"a": 10.0, "seg": "x"}),  # b absent
           event(2, features={"a": None, "b": 1.0, "seg": "x"}),  # a null
           event(3, features={"a": 101.0, "b": 1.0, "seg": "x"}),  # a out of bounds
           event(4, features={"a": -0.5, "b": 1.0})]  # a out of bounds, seg absent
    events, _ = EventGate(cfg).admit([raw(dumps(e), i) for i, e in enumerate(evs)], NOW,
                                       QualityCounters())
    state = MonitorState()
    out = Monitor(cfg).process(events, state)
    sigs = state.models["m"].signals
    assert (sigs["feature:a"].n, sigs["feature:b"].n) == (2, 4)
    assert list(sigs["feature:a"].recent) == [10.0, 10.0]
    assert out.quality.rejected_values == {
        ("m", "feature:b", "missing"): 1, ("m", "feature:a", "missing"): 1,
        ("m", "feature:a", "out_of_bounds"): 2, ("m", "feature:seg", "missing"): 1}
    assert state.models["m"].signals["prediction"].n == 5


def test_a_feature_is_expected_once_seen() -> None:
    """Missing counts start with the first event that carries the feature."""
    cfg = config(model_quality={"indicators": ["missing"]})
    evs = [event(0, features={"a": 1.0}), event(1, features={"a": 1.0}),
           event(2, features={"a": 1.0, "new": 1.0}), event(3, features={"a": 1.0})]
    events = [_decode(e, i) for i, e in enumerate(evs)]
    out = Monitor(cfg).process(events, MonitorState())
    assert out.quality.rejected_values == {("m", "feature:new", "missing"): 1}


def test_unwatched_features_are_not_checked() -> None:
    cfg = parse_config({"models": [{
        "match": "m", "signals": [{"match": "feature:a", "detectors": ["adwin"]}],
        "quality": {"indicators": ["missing"], "bounds": {"b": {"max": 0}}}}]})
    evs = [event(0, features={"a": 1.0, "b": 5.0}), event(1, features={"a": 2.0})]
    out = Monitor(cfg).process([_decode(e, i) for i, e in enumerate(evs)], MonitorState())
    assert out.quality.rejected_values == {}


def test_learned_bounds_rule() -> None:
    assert learned_bounds([float(i) for i in range(101)], (0.25, 0.75), 3.0) == (-125.0, 225.0)
    assert learned_bounds([float(i) for i in range(101)], (0.0, 1.0), 0.0) == (0.0, 100.0)
    assert learned_bounds([0.0] * 9 + [1.0], (0.25, 0.75), 1.0) == (-1.0, 1.0)
    assert learned_bounds([3.0] * 10, (0.25, 0.75), 3.0) is None
    assert learned_bounds([], (0.25, 0.75), 3.0) is None


def test_bounds_are_learned_from_the_reference_then_applied() -> None:
    cfg = config(model_quality={"learned_bounds": {"quantiles": [0.25, 0.75], "k": 1.0},
                                "sample_events": 10}, reference_size=100)
    rng = random.Random(3)
    values = [rng.uniform(0, 100) for _ in range(200)] + [1000.0, 50.0, -500.0]
    evs = [_decode(event(i, features={"a": v}), i) for i, v in enumerate(values)]
    state = MonitorState()
    out = Monitor(cfg).process(evs, state)
    sig = state.models["m"].signals["feature:a"]
    fq = state.models["m"].value_rules.features["a"]  # type: ignore[union-attr]
    assert fq.learned == learned_bounds(sig.reference, (0.25, 0.75), 1.0)
    assert fq.learned_gen == 0
    assert out.quality.rejected_values == {("m", "feature:a", "out_of_bounds"): 2}
    assert sig.n == 201


def test_configured_bounds_win_over_learned_ones() -> None:
    cfg = config(model_quality={"bounds": {"a": {"max": 5.0}},
                                "learned_bounds": {"quantiles": [0.0, 1.0], "k": 0.0},
                                "sample_events": 5}, reference_size=20)
    evs = [_decode(event(i, features={"a": float(i % 4)}), i) for i in range(40)]
    state = MonitorState()
    Monitor(cfg).process(evs, state)
    fq = state.models["m"].value_rules.features["a"]  # type: ignore[union-attr]
    assert fq.learned == (0.0, 3.0)
    assert (fq.lo, fq.hi) == (0.0, 5.0)


# -- categorical features ------------------------------------------------------------------

def test_categories_unseen_in_the_reference_are_rejected_and_counted() -> None:
    cfg = config(model_quality={"categorical": True, "indicators": ["unseen_category"]},
                 reference_size=20)
    evs = [_decode(event(i, features={"seg": "x" if i % 2 else "y"}), i) for i in range(20)]
    evs += [_decode(event(20, features={"seg": "z"}), 20),
            _decode(event(21, features={"seg": "x"}), 21)]
    state = MonitorState()
    out = Monitor(cfg).process(evs, state)
    cat = state.models["m"].value_rules.features["seg"].cat  # type: ignore[union-attr]
    assert cat.known == {"x", "y"} and cat.top == ("x", "y")
    assert out.quality.rejected_values == {("m", "feature:seg", "unseen_category"): 1}


def test_a_shift_in_category_frequencies_raises_one_category_mix_alert() -> None:
    # The categories are one signal (feature:seg), watched jointly: one alert for the mix, which
    # names the categories that moved (x down, y up) and where the change began.
    cfg = config(model_quality={"categorical": True, "reference_samples": 30}, reference_size=200)
    rng = random.Random(5)
    evs = []
    for i in range(4000):
        weights = [0.5, 0.3, 0.2] if i < 2500 else [0.25, 0.55, 0.2]
        evs.append(_decode(event(i, features={"seg": rng.choices("xyz", weights)[0]}), i))
    out = Monitor(cfg).process(evs, MonitorState())
    assert [a.signal for a in out.alerts] == ["feature:seg"], [a.summary for a in out.alerts]
    a = out.alerts[0]
    validate_record(a)
    assert 2500 <= a.detected_at.offset < 2700
    ev = a.evidence
    assert ev["change"]["kind"] == "category_mix"
    assert a.detector.type == "multinomial_cusum"
    start = ev["change"]["start"]
    assert abs(start["offset"] - 2500) < 40, start
    assert start["signal_index_low"] <= start["signal_index"] <= start["signal_index_high"]
    moved = {r["category"]: r for r in ev["categories"]["moved"]}
    assert moved["x"]["change"] < -0.1 and moved["y"]["change"] > 0.1
    assert abs(moved["z"]["change"]) < 0.1
    assert ev["calibration"]["budget_per_value"] == 1e-6


def test_only_the_most_frequent_categories_get_a_slot() -> None:
    cfg = config(model_quality={"categorical": True, "max_categories": 2, "sample_events": 10},
                 reference_size=30)
    cats = ["a"] * 15 + ["b"] * 10 + ["c"] * 5
    evs = [_decode(event(i, features={"seg": c}), i) for i, c in enumerate(cats * 3)]
    state = MonitorState()
    Monitor(cfg).process(evs, state)
    signals = state.models["m"].signals
    assert not [s for s in signals if "=" in s]  # no per-category share signals any more
    cal = signals["feature:seg"].calibration
    assert cal is not None and cal["categories"] == ["a", "b", "(other)"]
    assert cal["reference_counts"] == [15, 10, 5]  # c counts in "other"


# -- fault rates as signals: the scenario of the issue ------------------------------------------

def missing_stream(n: int, jump_at: int, before: float, after: float, seed: int,
                   feature: str = "utilization") -> list[InferenceEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        f = {"amount": rng.gauss(120, 35), feature: rng.gauss(0.4, 0.12), "age": rng.gauss(41, 11)}
        if rng.random() < (before if i < jump_at else after):
            if rng.random() < 0.5:
                del f[feature]
            else:
                f[feature] = None
        out.append(InferenceEvent(f"e{i}", "m", f, rng.random(), Position("in", 0, i),
                                  timestamp=NOW + i))
    return out


# The calibrated default on fault rates: a cusum, built as a Bernoulli CUSUM on the per-event
# 0/1 flags (core/bernoulli.py), under the default budget (1 per 1,000,000 values).
QUALITY_SIGNALS = {"indicators": ["missing"], "detectors": ["cusum"]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_missing_rate_jump_raises_a_data_quality_alert_naming_the_feature(seed: int) -> None:
    cfg = config(model_quality=QUALITY_SIGNALS, reference_size=300)
    out = Monitor(cfg).process(missing_stream(6000, 3000, 0.01, 0.30, seed), MonitorState())
    assert out.quality_alerts, "no data-quality alert"
    first = out.quality_alerts[0]
    validate_record(first)
    assert first.type == "data_quality_alert"
    assert (first.feature, first.indicator) == ("utilization", "missing")
    assert first.signal == "quality:missing:utilization"
    # Per-event 0/1 flags under the Bernoulli CUSUM: 1% -> 30% is caught within tens of events
    # (seeds 0-2: 16, 39, 34), and the change start is placed at the jump.
    assert 3000 <= first.detected_at.offset < 3000 + 60
    assert abs(first.evidence["change"]["start"]["offset"] - 3000) <= 10
    assert 0.0 < first.rate_before < 0.03
    # The rate after the estimated start, over the 15-40 events to the detection: a binomial
    # estimate of 0.30 from so few events is within about +-0.2.
    assert 0.15 < first.rate_after < 0.55
    calibration = first.evidence["calibration"]
    assert calibration["budget"] == {"per_events": 1_000_000}
    assert calibration["detectors"][0]["type"] == "bernoulli_cusum"
    assert "utilization" in first.summary and "missing rate rose" in first.summary
    # Nothing about the features whose rate did not move, and no drift alert for it.
    assert {a.feature for a in out.quality_alerts} == {"utilization"}
    assert all(a.type == "drift_alert" for a in out.alerts)


@pytest.mark.parametrize("seed", [0, 1])
def test_missing_values_appearing_in_a_clean_feature_are_noticed(seed: int) -> None:
    """A fault-free reference has no spread of its own: the Bernoulli CUSUM's prior on the
    rate still makes 0% -> 5% a clear change (after a few hundred events: with no fault seen,
    the reference cannot rule out a rate of a few tenths of a percent)."""
    cfg = config(model_quality=QUALITY_SIGNALS, reference_size=300)
    out = Monitor(cfg).process(missing_stream(5000, 2000, 0.0, 0.05, seed), MonitorState())
    assert out.quality_alerts, "no data-quality alert"
    first = out.quality_alerts[0]
    assert first.feature == "utilization" and first.rate_before == 0.0
    assert 2000 <= first.detected_at.offset < 2000 + 1000  # seeds 0-1: 657, 595
    assert 0.02 < first.rate_after < 0.15


def test_no_data_quality_alert_on_a_stable_rate() -> None:
    cfg = config(model_quality=QUALITY_SIGNALS, reference_size=300)
    for seed, rate in [(0, 0.0), (1, 0.01), (2, 0.2)]:
        out = Monitor(cfg).process(missing_stream(20000, 20000, rate, rate, seed), MonitorState())
        assert out.quality_alerts == [], (rate, [a.summary for a in out.quality_alerts])


def test_data_quality_alert_schema_is_closed_and_not_vacuous() -> None:
    from stream_monitor.config import INDICATORS
    from stream_monitor.core.detectors import REGISTRY

    schema = load_schema("data-quality-alert")
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["properties"]["type"]["const"] == "data_quality_alert"
    detector_types = schema["properties"]["detector"]["properties"]["type"]["enum"]
    assert sorted(detector_types) == sorted(REGISTRY)
    assert schema["properties"]["indicator"]["enum"] == list(INDICATORS)
    cfg = config(model_quality=QUALITY_SIGNALS, reference_size=300)
    stream = missing_stream(5000, 2500, 0.01, 0.3, 0)
    alert = Monitor(cfg).process(stream, MonitorState()).quality_alerts[0]
    validate_record(alert)
    for path, value in [(("type",), "drift_alert"), (("indicator",), "nulls"),
                        (("rate_after",), 1.5), (("signal",), "feature:utilization"),
                        (("evidence", "extra"), 1), (("detected_at", "offset"), -1),
                        (("alert_id",), "x")]:
        broken = record_json(alert)
        node = broken
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            validate_record(broken, "data-quality-alert")


def test_rate_scale() -> None:
    mean, scale = rate_scale([0.01] * 50, 20)
    assert mean == pytest.approx(0.01)
    p = (10 + 1) / (1000 + 2)
    assert scale == pytest.approx(math.sqrt(p * (1 - p) / 20))


# -- the pipeline: duplicates, ordering, counters, restarts ------------------------------------

def test_duplicates_are_dead_lettered_but_a_redelivered_record_is_not() -> None:
    cfg = config(STRICT)
    lines = [dumps(event(i)) for i in range(10)]
    lines[7] = lines[3]  # e3 again, at offset 7
    raws = [raw(v, i) for i, v in enumerate(lines)]
    dedupe = MemoryDedupe()

    async def go() -> None:
        out, counters, pipe = await run_pipeline(cfg, raws, batch=4, dedupe=dedupe)
        dead = [r.record for r in out if r.record.type == "dead_letter"]
        assert [(d.source.offset, d.reason_code) for d in dead] == [(7, "duplicate")]
        assert "in:0:3" in dead[0].reason
        assert counters.dead_letters == {("m", "duplicate"): 1}
        assert pipe.state.models["m"].events == 9
        # The whole stream again, as after a crash before the commit: nothing new is a
        # duplicate (same positions), the core skips what it applied, e3@7 stays a duplicate.
        again = await pipe.run(raws)
        assert [(r.record.source.offset, r.record.reason_code) for r in again.records] \
            == [(7, "duplicate")]
        assert again.redelivered == 9
        # A restarted pipeline (nothing in memory) on the same claims: the same answer.
        fresh = BatchPipeline(cfg, pipe.store, clock=lambda: NOW, dedupe=dedupe)
        res = await fresh.run(raws[5:])
        assert [r.record.reason_code for r in res.records] == ["duplicate"]

    asyncio.run(go())


def test_dead_letters_come_out_in_input_order() -> None:
    cfg = config(STRICT)
    lines = [dumps(event(0)), b"junk", dumps(event(0)), dumps(event(1, model_id="zz")),
             dumps(event(2, timestamp=NOW + 9999))]
    out, counters, _ = asyncio.run(run_pipeline(cfg, [raw(v, i) for i, v in enumerate(lines)]))
    assert [(r.record.source.offset, r.record.reason_code) for r in out] == [
        (1, "undecodable"), (2, "duplicate"), (3, "unknown_model"), (4, "timestamp_in_future")]
    assert counters.dead_letters == {("", "undecodable"): 1, ("m", "duplicate"): 1,
                                     ("", "unknown_model"): 1, ("m", "timestamp_in_future"): 1}


def test_memory_dedupe_window_and_positions() -> None:
    d = MemoryDedupe()

    def claim(*cs: tuple[str, str, str], now: float) -> list[str | None]:
        return asyncio.run(d.claim([Claim(*c) for c in cs], 10.0, now))

    assert claim(("m", "1", "t:0:1"), ("n", "1", "t:0:2"), ("m", "1", "t:0:3"), now=0) == \
        [None, None, "t:0:1"]
    assert claim(("m", "1", "t:0:1"), now=9.9) == [None]  # redelivery
    assert claim(("m", "1", "t:1:1"), now=9.9) == ["t:0:1"]  # same offset, other partition
    assert claim(("m", "1", "t:0:3"), now=19.9) == ["t:0:1"]  # kept at least one window
    assert claim(("m", "1", "t:0:3"), now=20.0) == [None]  # two buckets on: claimed anew
    assert claim(("m", "1", "t:0:1"), now=25.0) == ["t:0:3"]
    assert len(d) == 1  # ("n", "1") and the first claim of ("m", "1") are gone
    assert claim(("m", "x" * 500, "t:0:7"), ("m", "x" * 500, "t:0:8"), now=25.0) == [None, "t:0:7"]


def test_the_pipeline_keeps_claims_in_memory_unless_given_a_store() -> None:
    assert isinstance(BatchPipeline(config(), MemoryStore()).dedupe, MemoryDedupe)


def test_data_quality_alerts_go_to_the_alerts_topic_with_their_schema_header() -> None:
    cfg = config(model_quality=QUALITY_SIGNALS, reference_size=300)
    evs = missing_stream(6000, 3000, 0.01, 0.3, seed=4)
    lines = [orjson.dumps({"event_id": e.event_id, "model_id": "m", "timestamp": e.timestamp,
                           "features": e.features, "prediction": e.prediction}) for e in evs]
    out, _, _ = asyncio.run(run_pipeline(cfg, [raw(v, i) for i, v in enumerate(lines)], batch=500))
    dq = [r for r in out if r.record.type == "data_quality_alert"]
    assert dq
    for r in dq:
        assert r.topic == cfg.topics.alerts and r.key == b"m"
        headers = dict(r.headers)
        assert headers["schema"] == b"data-quality-alert/v1"
        assert headers["feature"] == b"utilization"
        assert headers["alert-id"] == r.record.alert_id.encode()
        validate_record(orjson.loads(r.value))


def mixed_stream(n: int, seed: int) -> list[bytes]:
    """Everything at once: NaN, nulls, absent features, out-of-bounds values, categories that
    shift and unseen ones, a missing-rate jump, duplicates and undecodable records."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        late = i >= n // 2
        f: dict[str, Any] = {"a": rng.gauss(70 if late else 50, 10), "b": rng.gauss(0, 1),
                             "seg": rng.choices("xyzw", [2, 3, 5, 1] if late else [5, 3, 2, 0])[0]}
        if rng.random() < (0.3 if late else 0.02):
            del f["b"]
        if rng.random() < 0.01:
            f["a"] = rng.choice([math.nan, math.inf, -5.0, 500.0, None])
        lines.append(dumps({"event_id": f"e{i}", "model_id": "m", "timestamp": NOW - n + i,
                            "features": f, "prediction": rng.random()}))
    for k in range(n // 500):
        lines[k * 500 + 7] = lines[k * 500 + 3]
        lines[k * 500 + 11] = b"{broken"
    return lines


@pytest.mark.parametrize("cuts", [(777,), (1000, 2603), (1234, 3001, 3333)])
def test_a_restart_mid_sample_continues_exactly(cuts: tuple[int, ...]) -> None:
    """Partial samples, learned bounds, category sets and fault-rate signals are all in the
    stored state: a pipeline rebuilt from the store at any point gives the outputs of one
    uninterrupted run, byte for byte."""
    cfg = config(STRICT, model_quality=FULL, reference_size=200)
    raws = [raw(v, i) for i, v in enumerate(mixed_stream(5000, seed=9))]

    def run(restart_at: Iterable[int]) -> list[bytes]:
        return [v for v in pipeline_outputs(cfg, raws, restart_at, 300, NOW, MemoryDedupe())
                if b'"dead_lettered_at"' not in v]

    whole = by_type(run(()))
    assert {"drift_alert", "data_quality_alert"} <= set(whole)  # the test checks something
    assert by_type(run(cuts)) == whole


# -- property-based: nothing escapes the gate -------------------------------------------------

DEAD_LETTER = Draft202012Validator(load_schema("dead-letter"),
                                   format_checker=Draft202012Validator.FORMAT_CHECKER)
EVENT_SCHEMA = Draft202012Validator(load_schema("inference-event"))
PROPERTY_CFG = config(STRICT, model_quality=FULL, reference_size=20)

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], one_in: int = 20,
           ) -> st.SearchStrategy[Any]:
    """``good``, and ``bad`` about once in ``one_in`` draws: events that mostly pass the gate
    (so the core sees plenty of them) with a bad field now and then."""
    return st.integers(0, one_in - 1).flatmap(lambda k: bad if k == 0 else good)


scalar_features = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                   | st.floats(allow_nan=True, allow_infinity=True)
                   | st.floats(min_value=-1e6, max_value=1e6)
                   | st.sampled_from(["x", "y", "z", "", "é", "\x00"]))
adversarial_events = st.fixed_dictionaries(
    {"event_id": mostly(st.text(min_size=1, max_size=6), json_values),
     "model_id": mostly(st.sampled_from(["m", "m1", "m{x}"]),
                        st.sampled_from(["", "other"]) | json_values),
     "features": mostly(st.dictionaries(st.sampled_from(["a", "b", "seg", "c"])
                                        | st.text(max_size=4),
                                        mostly(scalar_features, json_values, 50), max_size=5),
                        json_values),
     "prediction": mostly(st.booleans() | st.integers() | st.floats() | st.sampled_from(["x", ""]),
                          json_values)},
    optional={"timestamp": mostly(st.floats(min_value=NOW - 80000, max_value=NOW + 200),
                                  st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                            st.integers(min_value=-(2**64), max_value=2**64),
                                            st.sampled_from([NOW + 1e6, NOW - 1e7, "x", None,
                                                             "2026-01-01T00:00:00Z"])), 5),
              "model_version": mostly(st.none() | st.text(max_size=4) | st.integers(0, 99),
                                      json_values, 5),
              "label": json_values})


def encodings(obj: Any) -> st.SearchStrategy[bytes]:
    def std(o: Any) -> bytes:
        try:
            return json.dumps(o).encode("utf-8", "surrogatepass")
        except (ValueError, RecursionError):
            return b"?"
    return st.sampled_from([std(obj)])


def check_gate(raws: list[RawRecord]) -> None:
    """The property: every record comes back exactly once, as an event the core can take
    or as a dead letter that matches its schema; then the core runs on the events."""
    gate, counters = EventGate(PROPERTY_CFG), QualityCounters()
    events, dead = gate.admit(raws, NOW, counters)
    assert len(events) + len(dead) == len(raws)
    assert counters.total_dead_letters() == len(dead)
    positions = sorted([e.position.offset for e in events] + [d.raw.position.offset for d in dead])
    assert positions == [r.position.offset for r in raws]
    for d in dead:
        assert isinstance(d, DeadLetter) and d.reason_code in REASON_CODES
        assert d.reason_code != "internal_error", d.reason
        DEAD_LETTER.validate(record_json(d.to_record(NOW)))
    for e in events:
        assert isinstance(e, InferenceEvent)
        prediction = e.prediction
        if isinstance(prediction, float) and not math.isfinite(prediction):
            prediction = 0.0  # kept, and rejected as a value (non_finite) by the core
        body = {"event_id": e.event_id, "model_id": e.model_id, "features": e.features,
                "prediction": prediction, "model_version": e.model_version,
                "timestamp": e.timestamp}
        # Valid against the event schema once its non-finite features are replaced by null
        # (orjson writes them so), which is what the value rules do with them.
        EVENT_SCHEMA.validate(orjson.loads(orjson.dumps(body)))
    out = Monitor(PROPERTY_CFG).process(events, MonitorState(), counters)
    for rec in out.alerts + out.quality_alerts:
        validate_record(rec)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes_never_escape_the_gate(values: list[bytes]) -> None:
    check_gate([raw(v, i) for i, v in enumerate(values)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values.flatmap(encodings), max_size=8))
def test_random_json_never_escapes_the_gate(values: list[bytes]) -> None:
    check_gate([raw(v, i) for i, v in enumerate(values)])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(adversarial_events.flatmap(encodings), min_size=1, max_size=12))
def test_adversarial_events_never_escape_the_gate(values: list[bytes]) -> None:
    check_gate([raw(v, i) for i, v in enumerate(values)])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(adversarial_events.flatmap(encodings), st.binary(max_size=50)),
                min_size=10, max_size=60))
def test_the_pipeline_outputs_only_valid_records_on_adversarial_streams(
        values: list[bytes]) -> None:
    """Through BatchPipeline with duplicates on: outputs validate, and every record is either
    processed by the core or dead-lettered, exactly once (unknown models are dead-lettered)."""
    raws = [raw(v, i) for i, v in enumerate(values)]
    out, counters, pipe = asyncio.run(run_pipeline(PROPERTY_CFG, raws, batch=17))
    dead = [r.record for r in out if r.record.type == "dead_letter"]
    for r in out:
        validate_record(orjson.loads(r.value))
    assert len(dead) == counters.total_dead_letters()
    assert len({d.source.offset for d in dead}) == len(dead)
    processed = sum(m.events for m in pipe.state.models.values())
    assert processed + len(dead) == len(raws)


# -- config --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw_quality", "field", "hint"), [
    ({"unknown_model": "drop"}, "quality.unknown_model", "'ignore' or 'dead_letter'"),
    ({"max_mesage_bytes": 10}, "quality.max_mesage_bytes", "did you mean 'max_message_bytes'"),
    ({"max_message_bytes": 10}, "quality.max_message_bytes", "greater than or equal to 64"),
    ({"duplicates": {"window_seconds": -1}}, "quality.duplicates.window_seconds", "greater"),
    ({"timestamps": {"max_future_seconds": 0}}, "quality.timestamps.max_future_seconds", "greater"),
    ({"defaults": {"bounds": {"a": {"mn": 0}}}}, "quality.defaults.bounds.a.mn",
     "did you mean 'min'"),
    ({"defaults": {"bounds": {"a": {"min": 2, "max": 1}}}}, "quality.defaults.bounds.a", "swap"),
    ({"defaults": {"learned_bounds": {"quantiles": [0.9, 0.1]}}},
     "quality.defaults.learned_bounds.quantiles", "q_low < q_high"),
    ({"defaults": {"indicators": ["nulls"]}}, "quality.defaults.indicators[0]", "'missing'"),
    ({"defaults": {"indicators": ["missing"], "detectors": ["adwn"]}},
     "quality.defaults.detectors[0]", "did you mean 'adwin'"),
    ({"defaults": {"sample_events": 0}}, "quality.defaults.sample_events", "greater"),
])
def test_quality_config_errors_name_the_field_and_the_fix(raw_quality: dict[str, Any], field: str,
                                                          hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"quality": raw_quality, "models": [{"match": "*", "signals": SIGNALS}]})
    problems = dict(info.value.problems)
    assert field in problems, info.value
    assert hint in problems[field]


def test_model_quality_overrides_defaults_field_by_field() -> None:
    cfg = parse_config({"quality": {"defaults": {"indicators": ["missing"], "sample_events": 7}},
                        "models": [{"match": "a", "signals": SIGNALS,
                                    "quality": {"sample_events": 9}},
                                   {"match": "*", "signals": SIGNALS}]})
    a, other = (r.quality for r in cfg.models)  # the plan's effective value rules
    assert (list(a.indicators), a.sample_events) == (["missing"], 9)
    assert (list(other.indicators), other.sample_events) == (["missing"], 7)
    assert not config().models[0].quality.active


def test_without_quality_rules_the_core_takes_the_plain_path() -> None:
    state = MonitorState()
    Monitor(config()).process([_decode(event(0), 0)], state)
    assert state.models["m"].value_rules is None
    assert "quality" not in state.models["m"].meta()


def _decode(ev: dict[str, Any], offset: int) -> InferenceEvent:
    events, dead = EventGate(config()).admit([raw(dumps(ev), offset)], NOW, QualityCounters())
    assert not dead, dead[0].reason
    return events[0]
