"""Categorical signals (issue 18): the multinomial CUSUM, its calibration, category codes in the
signal's windows and meta, class-label predictions, and exactness across restarts.

All seeded and deterministic; no services."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position, RawRecord, validate_record
from stream_monitor.core import Monitor, MonitorState
from stream_monitor.core.categories import OVERFLOW, CodeTable, label_of
from stream_monitor.core.detectors import checkpoint, restore_detector
from stream_monitor.core.multinomial import (
    Multinomial,
    calibrate_multinomial,
    category_long_run_ratio,
)
from stream_monitor.core.plan import MonitorPlan
from stream_monitor.errors import ConfigError
from stream_monitor.fleet import feature_columns, fleet_model
from stream_monitor.synth import category_stream

from ..helpers import pipeline_outputs

NOW = 1_767_225_600.0
MIX = ([0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4])


def cfg(reference_size: int = 1000, reference_min_size: int = 200, categorical: bool = True,
        signals: list[dict[str, Any]] | None = None, **extra: Any) -> MonitorPlan:
    rule: dict[str, Any] = {"match": "m*", "signals": signals or [
        {"match": "*", "detectors": ["cusum"]}]}
    if categorical:
        rule["quality"] = {"categorical": True, "indicators": ["unseen_category"]}
    return parse_config({
        "windows": {"reference_size": reference_size, "reference_min_size": reference_min_size,
                    "recent_size": 500},
        "detectors": {"cusum": {"type": "cusum"}, "adwin": {"type": "adwin"},
                      "page_hinkley": {"type": "page_hinkley"},
                      "mn": {"type": "multinomial_cusum", "params": {"w": 5.0}}},
        "models": [rule], **extra})


def events(features: list[dict[str, Any]], predictions: list[Any] | None = None,
           labels: list[Any] | None = None, model: str = "m") -> list[InferenceEvent]:
    out = []
    for i, f in enumerate(features):
        pred = predictions[i] if predictions is not None else 0.5
        out.append(InferenceEvent(f"e{i}", model, f, pred, Position("t", 0, i), None,
                                  NOW - 10_000 + i, None if labels is None else labels[i]))
    return out


def detect(ref: list[int], stream: list[int], budget: float = 1e-6, **params: Any) -> int | None:
    labels = [str(i) for i in range(max(ref + stream) + 1)]
    over, _ = calibrate_multinomial([float(c) for c in ref], labels, budget, params, 20)
    det = Multinomial(**{**params, **over})
    for i, c in enumerate(stream):
        det.update(float(c))
        if det.drift_detected:
            return i
    return None


def codes(shares: list[float], n: int, seed: int, after: list[float] | None = None,
          at: int | None = None, stay: float = 0.0) -> list[int]:
    return [int(c[1:]) for c in category_stream(shares, n, seed, at, after, stay)]


# -- the detector ------------------------------------------------------------------------------

def test_exact_seeded_detection_indices() -> None:
    # A mix change TV 0.3 after 500 stationary values (reference 1000): pinned indices, so a
    # change to the arithmetic shows; all are soon after the change.
    got = [detect(codes(MIX[0], 1000, s), codes(MIX[0], 2000, 100 + s, MIX[1], 500))
           for s in range(5)]
    assert got == [558, 540, 563, 538, 538]


def test_no_alarm_on_the_stationary_stream_and_a_fast_one_on_a_change() -> None:
    assert detect(codes(MIX[0], 1000, 1), codes(MIX[0], 20_000, 2)) is None
    i = detect(codes(MIX[0], 1000, 1), codes(MIX[1], 500, 3))
    assert i is not None and i < 150


def test_checkpoint_and_restore_continue_identically() -> None:
    ref = codes(MIX[0], 1000, 4)
    stream = codes(MIX[0], 600, 5) + codes(MIX[1], 300, 6)
    over, _ = calibrate_multinomial([float(c) for c in ref], list("0123"), 1e-6, {}, 20)
    whole = Multinomial(**over)
    flags = []
    for c in stream:
        whole.update(float(c))
        flags.append(whole.drift_detected)
    first = flags.index(True)
    for cut in (0, 100, first, first + 1):
        a = Multinomial(**over)
        for c in stream[:cut]:
            a.update(float(c))
        state = orjson.loads(orjson.dumps(checkpoint(a)))
        b = restore_detector("multinomial_cusum", over, state)
        rest_a, rest_b = [], []
        for c in stream[cut:]:
            a.update(float(c))
            b.update(float(c))
            rest_a.append(a.drift_detected)
            rest_b.append(b.drift_detected)
        assert rest_a == rest_b == flags[cut:]
        assert checkpoint(a) == checkpoint(b)


def test_long_run_ratio_of_categories() -> None:
    rng = np.random.default_rng(7)
    assert category_long_run_ratio(rng.integers(0, 4, 5000), 4) < 1.2
    sticky = codes(MIX[0], 5000, 8, stay=0.9)  # stay 0.9 + redraw: rho ~0.92, tau ~24
    assert 12 < category_long_run_ratio(sticky, 4) < 40
    assert category_long_run_ratio([0] * 100, 2) == 1.0  # a constant sequence: no variance


def test_long_run_ratio_sees_an_autoregressive_latent_behind_the_categories() -> None:
    # The fleet's `segment`: 6 categories (two rare) cut from an AR(1) latent. The pooled
    # lag-1 and batch-means estimates took tau at a quarter to a half of the latent's for the
    # most dependent models (46 false alarms against 4.85 allowed in the fleet); the most
    # persistent score's autoregressive fit must see at least half of it on 1,000 values.
    for i in range(20):
        m = fleet_model(1, i)
        a = m.coef["segment"]
        seg = feature_columns(m, 1000)["segment"].astype(np.int64)
        assert category_long_run_ratio(seg, 6) >= 0.5 * (1 + a) / (1 - a), (i, a)


def test_calibration_slots_prior_and_threshold() -> None:
    ref = [0.0] * 50 + [1.0] * 30 + [2.0] * 15 + [3.0] * 5 + [OVERFLOW] * 2
    over, info = calibrate_multinomial(ref, ["a", "b", "c", "d"], 1e-4, {}, 2)
    assert info["categories"] == ["a", "b", "(other)"]
    assert info["reference_counts"] == [50, 30, 22]  # c, d and the overflow are "other"
    assert over["slot_of"] == [0, 1, 2, 2]
    assert math.isclose(over["h"], math.log(1e4), rel_tol=1e-6)
    assert all(u >= 0.5 for u in over["urn"])  # the Jeffreys prior: no slot at 0
    assert info["effective_sample_size"] <= len(ref)


def test_config_rejects_a_bad_prior_weight() -> None:
    with pytest.raises(ConfigError, match="w must be > 0"):
        parse_config({"detectors": {"mn": {"type": "multinomial_cusum", "params": {"w": 0}}},
                      "models": [{"match": "*", "signals": [{"match": "*",
                                                             "detectors": ["mn"]}]}]})


# -- property: degenerate references never alert on their own stationary values ----------------

@settings(max_examples=25, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["one", "two", "rare_unseen"]), seed=st.integers(0, 10_000),
       ref_n=st.sampled_from([200, 1000]), stay=st.sampled_from([0.0, 0.7]))
def test_degenerate_references_never_alert_on_stationary_values(kind: str, seed: int,
                                                                  ref_n: int, stay: float) -> None:
    shares = {"one": [1.0], "two": [0.97, 0.03], "rare_unseen": [0.6, 0.399, 0.001]}[kind]
    xs = codes(shares, ref_n + 8000, seed, stay=stay)
    ref = xs[:ref_n]
    if kind == "rare_unseen":
        ref = [c for c in ref if c != 2] or [0]  # the rare level is never in the reference
    # Dependence is estimated from the reference's own switches: a reference that never left
    # one category shows none, and then a level arriving in sticky runs is a change from what
    # the reference showed (docs/detection.md "Categories", limits).
    assume(stay == 0.0 or len(set(ref)) > 1)
    assert detect(ref, xs[ref_n:]) is None


def test_a_single_category_reference_meets_a_new_category() -> None:
    # The principled prior gives "other" a share; a *sustained* new category is a change.
    rng = np.random.default_rng(5)
    i = detect([0] * 500, [0] * 300 + [int(b) for b in rng.random(300) < 0.5])
    assert i is not None and 300 <= i < 320


# -- code table and labels ---------------------------------------------------------------------

def test_code_table_and_labels() -> None:
    t = CodeTable(3)
    assert [t.code(c) for c in ("a", "b", "a", "c", "d")] == [0.0, 1.0, 0.0, 2.0, OVERFLOW]
    assert t.label(1.0) == "b" and t.label(OVERFLOW) == "(other)"
    assert [label_of(v) for v in (1, 1.0, True, "x", None)] == ["1", "1", "true", "x", None]


# -- through the monitor -----------------------------------------------------------------------

def _mixed(n: int, seed: int, at: int | None = None) -> list[InferenceEvent]:
    seg = category_stream(MIX[0], n, seed, at, MIX[1], labels=["a", "b", "c", "d"])
    cls = category_stream([0.6, 0.3, 0.1], n, seed + 1, labels=["no", "yes", "maybe"])
    lab = category_stream([0.6, 0.3, 0.1], n, seed + 2, labels=["no", "yes", "maybe"])
    rng = np.random.default_rng(seed)
    return events([{"seg": s, "x": float(v), "flag": bool(v > 1)}
                   for s, v in zip(seg, rng.standard_normal(n), strict=True)], cls, lab)


def test_a_mix_change_is_one_alert_that_says_what_moved() -> None:
    out = Monitor(cfg()).process(_mixed(3000, 11, at=2000), MonitorState())
    seg = [a for a in out.alerts if a.signal == "feature:seg"]
    assert len(seg) == 1, [a.summary for a in out.alerts]
    a = seg[0]
    validate_record(a)
    assert 2000 < a.detected_at.offset < 2150
    ev = a.evidence
    assert ev["change"]["kind"] == "category_mix"
    start = ev["change"]["start"]
    assert start["offset"] is not None and abs(start["offset"] - 2000) < 40
    moved = {r["category"]: r for r in ev["categories"]["moved"]}
    assert moved["a"]["change"] < -0.15 and moved["d"]["change"] > 0.15
    assert 0.15 < ev["categories"]["total_variation"] < 0.5
    cal = ev["calibration"]
    assert cal["budget"] == {"per_events": 1000000} and cal["budget_per_value"] == 1e-6
    assert a.detector.type == "multinomial_cusum"
    assert "category mix changed" in a.summary


def test_class_label_predictions_are_a_categorical_signal_and_labels_give_0_1_errors() -> None:
    state = MonitorState()
    out = Monitor(cfg(categorical=False)).process(_mixed(1500, 12), state)
    sigs = state.models["m"].signals
    pred = sigs["prediction"]
    assert pred.table is not None and set(pred.table.labels) == {"no", "yes", "maybe"}
    assert pred.calibration is not None
    assert pred.calibration["categories"][:3] == ["no", "yes", "maybe"]
    perf = sigs["performance:error"]
    assert set(perf.reference) == {0.0, 1.0}  # class labels: 0/1 errors
    # Booleans are 0/1 numbers; strings are not categories without `categorical`.
    assert sigs["feature:flag"].table is None and set(sigs["feature:flag"].reference) <= {0, 1}
    assert sigs["feature:seg"].table is None and sigs["feature:seg"].n == 0
    assert not [a for a in out.alerts if a.signal == "prediction"]


def test_kind_categorical_makes_integer_classes_categories() -> None:
    rng = np.random.default_rng(3)
    xs = rng.choice(3, 1200, p=[0.5, 0.3, 0.2])
    evs = events([{"k": int(v)} for v in xs], [int(v) for v in xs])
    c = cfg(categorical=False, signals=[{"match": "prediction", "detectors": ["cusum"],
                                         "kind": "categorical"},
                                        {"match": "feature:*", "detectors": ["mn"]}])
    state = MonitorState()
    Monitor(c).process(evs, state)
    sigs = state.models["m"].signals
    for name in ("prediction", "feature:k"):
        assert sigs[name].table is not None
        assert sorted(sigs[name].table.labels) == ["0", "1", "2"]
    assert sigs["feature:k"].detector_params[0]["w"] == 5.0  # the named detector's params


def test_river_detectors_on_a_categorical_signal_give_way_to_the_multinomial_cusum() -> None:
    c = cfg(signals=[{"match": "*", "detectors": ["adwin", "page_hinkley"]}])
    state = MonitorState()
    Monitor(c).process(_mixed(400, 13), state)
    seg = state.models["m"].signals["feature:seg"]
    assert seg.detector_names == ("adwin",)
    assert seg.detector_params[0]["__type__"] == "multinomial_cusum"


def test_unseen_categories_count_in_other_and_as_a_data_quality_fault() -> None:
    evs = events([{"seg": "a" if i % 2 else "b"} for i in range(1000)]
                 + [{"seg": "new"} for _ in range(3)])
    state = MonitorState()
    out = Monitor(cfg(reference_size=500)).process(evs, state)
    assert out.quality.rejected_values == {("m", "feature:seg", "unseen_category"): 3}
    seg = state.models["m"].signals["feature:seg"]
    assert seg.table is not None and "new" in seg.table.labels
    assert seg.n == 1003  # the unseen values were fed (as "other")


# -- exactness: restarts and batching ------------------------------------------------------------

def _raws(n: int) -> list[RawRecord]:
    out = []
    for ev in _mixed(n, 21, at=n // 2):
        rec = {"event_id": ev.event_id, "model_id": ev.model_id, "timestamp": ev.event_time,
               "features": ev.features, "prediction": ev.prediction, "label": ev.label}
        out.append(RawRecord(orjson.dumps(rec), Position("in", 0, ev.position.offset, None),
                             b"m", ()))
    return out


@pytest.mark.parametrize(("cuts", "batch"), [((777,), 300), ((1000, 2603), 250),
                                             ((1234, 1501, 2999), 1000)])
def test_a_restart_or_other_batches_give_the_same_outputs(cuts: tuple[int, ...],
                                                          batch: int) -> None:
    """Code tables, detector checkpoints and the reference of categories are in the stored
    state: a pipeline rebuilt from the store at any point (the worker after a restart), in
    batches of any size, publishes what one uninterrupted replay publishes, byte for byte."""
    c = cfg()
    raws = _raws(4000)


    whole = pipeline_outputs(c, raws, (), 5000, NOW)
    signals = [orjson.loads(v).get("signal") for v in whole]
    assert "feature:seg" in signals  # the test checks something
    assert pipeline_outputs(c, raws, cuts, batch, NOW) == whole


def test_an_empty_numeric_prediction_signal_of_an_older_state_gives_way_to_class_labels() -> None:
    # Versions that skipped class labels stored an empty numeric `prediction` signal.
    mon, state = Monitor(cfg(categorical=False)), MonitorState()
    model = mon.new_model("m")
    assert model is not None
    old = mon.new_signal(model, "prediction")
    assert old is not None and old.table is None
    state.models["m"] = model
    mon.process(events([{}] * 300, ["yes", "no", "no"] * 100), state)
    pred = model.signals["prediction"]
    assert pred is not old and pred.table is not None and pred.n == 300
