"""The pure monitoring core, on hand-built event lists: seeded streams with exact detection
indices (in the spirit of River's drift detector tests), rebaselining, retrain rules, ids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from river import drift

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position
from stream_monitor.contracts.output_records import RequestTrigger
from stream_monitor.contracts.schemas import validate_record
from stream_monitor.contracts.units import unit_id
from stream_monitor.core import REGISTRY, Monitor, MonitorState, reference_scale
from stream_monitor.core.plan import MonitorPlan

UNIT = unit_id("m", "7")  # events carry model_version "7": its own state

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RIVER_CLASSES = {"page_hinkley": drift.PageHinkley, "adwin": drift.ADWIN}


def config(detectors: Sequence[str], *, reference_size: int = 200, recent_size: int = 100,
           signals: str = "feature:*", **retrain: float) -> MonitorPlan:
    rule: dict[str, Any] = {"match": "m",
                            "signals": [{"match": signals, "detectors": list(detectors)}]}
    if retrain:
        rule["retrain"] = retrain
    return parse_config({"windows": {"reference_size": reference_size, "recent_size": recent_size},
                         "models": [rule]})


def events_from(values: Sequence[float] | np.ndarray, feature: str = "x", model: str = "m",
                start: int = 0) -> list[InferenceEvent]:
    return [InferenceEvent(f"e{start + i}", model, {feature: float(v)}, 0.0,
                           Position("t", 0, start + i), timestamp=T0 + start + i)
            for i, v in enumerate(values)]


def shifted_stream(seed: int, n_before: int = 700, n_after: int = 800) -> np.ndarray:
    """N(0, 1), then N(3, 1)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, 1.0, n_before), rng.normal(3.0, 1.0, n_after)])


def river_first_detection(name: str, values: np.ndarray, reference_size: int) -> int:
    """Index at which River's own detector, with our default parameters, first fires on the
    values after the reference, standardized with the reference's mean and std."""
    mean, std = reference_scale(values[:reference_size].tolist())
    det = RIVER_CLASSES[name](**REGISTRY[name].params())
    for i in range(reference_size, len(values)):
        det.update((values[i] - mean) / std)
        if det.drift_detected:
            return i
    raise AssertionError(f"River's {name} never fired")


# -- exact detection indices ----------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("detectors", [["page_hinkley"], ["adwin"], ["adwin", "page_hinkley"]])
def test_one_alert_at_the_index_river_detects(detectors: list[str], seed: int) -> None:
    values = shifted_stream(seed)
    out = Monitor(config(detectors)).process(events_from(values), MonitorState())

    expected = {name: river_first_detection(name, values, 200) for name in detectors}
    first = min(expected.values())
    # On a tie the first detector of the rule is named.
    fired = next(name for name in detectors if expected[name] == first)
    assert 700 <= first < 760  # after the shift, and soon
    assert [(a.detector.name, a.detected_at.offset) for a in out.alerts] == [
        (fired, first)]
    alert = out.alerts[0]
    assert alert.signal == "feature:x"
    assert alert.detected_at.signal_index == first + 1
    assert alert.detected_at.event_id == f"e{first}"
    mean, std = reference_scale(values[:200].tolist())
    assert alert.evidence["standardization"] == {"mean": mean, "std": std}
    assert alert.evidence["reference"]["count"] == 200
    # `current` is the last 50 values: mostly from before the shift, so it moved only partly.
    assert 0 < alert.evidence["mean_shift_in_reference_std"] < 3
    assert alert.summary.startswith("m feature:x: mean rose from ")


def test_page_hinkley_exact_index_pinned() -> None:
    """A pinned number, so a change in River or in our defaults is noticed even when the
    monitor and River still agree with each other."""
    values = shifted_stream(0)
    out = Monitor(config(["page_hinkley"])).process(events_from(values), MonitorState())
    assert [a.detected_at.offset for a in out.alerts] == [710]


def test_no_alert_on_a_stationary_stream_with_the_default_detectors() -> None:
    cfg = parse_config({"models": [{"match": "m", "signals": [
        {"match": "*", "detectors": ["adwin", "page_hinkley"]}]}]})
    assert set(cfg.detectors) == {"adwin", "page_hinkley"}  # the defaults, not the example's
    rng = np.random.default_rng(100)
    x = rng.normal(0.0, 1.0, (20_000, 4))
    # Plain Python numbers, as the JSON decoder gives them.
    events = [InferenceEvent(f"e{i}", "m", {"amount": float(120 + 35 * r[0]),
                                            "utilization": float(0.4 + 0.12 * r[1]),
                                            "age": round(41 + 11 * r[2])},
                             float(0.3 + 0.1 * r[3]), Position("t", 0, i), timestamp=T0 + i)
             for i, r in enumerate(x.tolist())]
    mon, state = Monitor(cfg), MonitorState()
    alerts = []
    for start in range(0, len(events), 2_500):
        out = mon.process(events[start:start + 2_500], state)
        alerts += out.alerts
    assert alerts == []
    model = state.models["m"]
    assert sorted(model.signals) == ["feature:age", "feature:amount", "feature:utilization",
                                     "prediction"]
    for sig in model.signals.values():
        assert sig.n == 20_000 and sig.generation == 0 and sig.detectors is not None


# -- rebaselining ---------------------------------------------------------------------------

def test_rebaseline_after_a_drift() -> None:
    values = shifted_stream(0)
    events = events_from(values)
    first = river_first_detection("page_hinkley", values, 200)
    mon, state = Monitor(config(["page_hinkley"])), MonitorState()

    out = mon.process(events[:first + 1], state)
    assert len(out.alerts) == 1
    sig = state.models["m"].signals["feature:x"]
    # Right after the alert: the old reference and the detectors are gone.
    assert sig.generation == 1
    assert sig.detectors is None and sig.reference == []
    assert sig.ref_reset and sig.dirty

    out = mon.process(events[first + 1:first + 200], state)
    assert out.alerts == [] and sig.detectors is None and len(sig.reference) == 199

    out = mon.process(events[first + 200:first + 201], state)
    # The 200 values after the alert are the new reference, and standardize what follows.
    new_ref = values[first + 1:first + 201].tolist()
    assert sig.reference == new_ref
    assert sig.detectors is not None
    assert (sig.ref_mean, sig.ref_std) == reference_scale(new_ref)
    assert 2.7 < sig.ref_mean < 3.3
    assert sig.n == first + 201

    out = mon.process(events[first + 201:], state)
    assert out.alerts == []  # N(3, 1) against an N(3, 1) reference
    assert sig.generation == 1


def test_second_drift_is_measured_against_the_new_reference() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(0, 1, 500), rng.normal(3, 1, 600), rng.normal(0, 1, 400)])
    out = Monitor(config(["page_hinkley"])).process(events_from(values), MonitorState())
    assert [a.evidence["mean_shift_in_reference_std"] > 0 for a in out.alerts] == [True, False]
    first, second = out.alerts
    assert 500 <= first.detected_at.offset < 540
    assert 1100 <= second.detected_at.offset < 1140
    assert second.evidence["standardization"]["mean"] == pytest.approx(3.0, abs=0.3)
    assert first.alert_id != second.alert_id


# -- what is and is not monitored -----------------------------------------------------------

def test_unwatched_models_are_counted_and_skipped() -> None:
    cfg = parse_config({"windows": {"reference_size": 10},
                        "models": [{"match": "credit-*", "signals": [
                            {"match": "*", "detectors": ["page_hinkley"]}]}]})
    mon, state = Monitor(cfg), MonitorState()
    models = ["credit-risk", "churn", "credit-limit", "churn", "fraud"]
    events = [InferenceEvent(f"e{i}", models[i % 5], {"x": float(i)}, 0.5, Position("t", 0, i))
              for i in range(50)]
    out = mon.process(events, state)
    assert out.events == 50
    assert out.unwatched == 30
    assert sorted(state.models) == ["credit-limit", "credit-risk"]
    assert sorted(m.model_id for m in out.dirty_models) == ["credit-limit", "credit-risk"]
    assert state.models["credit-risk"].events == 10
    assert out.values == 2 * 20  # x and prediction of the 20 watched events
    # Still counted in a later batch.
    more = [InferenceEvent(f"f{i}", "churn", {"x": 1.0}, 0.5, Position("t", 0, 50 + i))
            for i in range(7)]
    assert mon.process(more, state).unwatched == 7


def test_unwatched_signals_get_no_state_and_no_values() -> None:
    cfg = config(["page_hinkley"], reference_size=10, signals="feature:amount")
    mon, state = Monitor(cfg), MonitorState()
    events = [InferenceEvent(f"e{i}", "m", {"amount": float(i), "age": 40.0}, 0.5,
                             Position("t", 0, i)) for i in range(20)]
    out = mon.process(events, state)
    assert out.values == 20
    assert sorted(state.models["m"].signals) == ["feature:amount"]


def test_non_numeric_none_and_nan_values_are_skipped() -> None:
    mon, state = Monitor(config(["page_hinkley"], reference_size=10, signals="*")), MonitorState()
    bad_x = [None, "12.5", float("nan"), float("inf"), -float("inf"), [1.0], {"v": 1.0}]
    events = []
    for i in range(30):
        features: dict[str, Any] = {"x": bad_x[i % len(bad_x)] if i % 2 else float(i),
                                    "flag": i % 3 == 0, "count": i, "name": "gold", "gap": None}
        prediction: Any = float("nan") if i % 5 == 0 else ("approve" if i % 5 == 1 else 0.25)
        events.append(InferenceEvent(f"e{i}", "m", features, prediction, Position("t", 0, i)))
    out = mon.process(events, state)
    sigs = state.models["m"].signals
    assert sigs["feature:x"].n == 15  # the even events only
    assert sigs["feature:x"].reference == [float(i) for i in range(0, 20, 2)]
    assert sigs["feature:flag"].n == 30  # booleans are 0/1
    assert sigs["feature:flag"].reference[:4] == [1.0, 0.0, 0.0, 1.0]
    assert sigs["feature:count"].n == 30
    assert sigs["prediction"].n == 18  # 30 minus 6 NaN and 6 labels
    assert sigs["feature:name"].n == 0 and sigs["feature:gap"].n == 0
    assert out.values == 15 + 30 + 30 + 18
    for sig in sigs.values():
        assert all(math.isfinite(v) for v in sig.recent)
        assert math.isfinite(sig.ref_mean) and math.isfinite(sig.ref_std)
    assert out.alerts == []


# -- retrain requests -----------------------------------------------------------------------

# Drift points per feature. Values are a deterministic zero-mean cycle plus 10 per drift so far,
# so detection is quick and the reference never false-alarms: the test is about the rule.
SHIFTS = {"a": (300, 380, 900, 1720), "b": (600, 920), "c": (650, 1700)}


def retrain_events() -> list[InferenceEvent]:
    out = []
    for i in range(1800):
        feats = {k: float((i * (j + 2)) % 5 - 2 + 10 * sum(i >= s for s in SHIFTS[k]))
                 for j, k in enumerate("abc")}
        out.append(InferenceEvent(f"e{i}", "m", feats, 0.0, Position("t", 0, i),
                                  model_version="7", timestamp=T0 + i))  # one event a second
    return out


def run_retrain(min_signals: int, within: float, cooldown: float) -> tuple[Any, MonitorState]:
    cfg = config(["page_hinkley"], reference_size=50, recent_size=50,
                 min_drifted_signals=min_signals, within_seconds=within, cooldown_seconds=cooldown)
    state = MonitorState()
    return Monitor(cfg).process(retrain_events(), state), state


def drift_point(alert: dict[str, Any]) -> tuple[str, int]:
    """The injected drift an alert belongs to: (feature, drift index)."""
    feature = alert.signal.removeprefix("feature:")
    offset = alert.detected_at.offset
    at = max(s for s in SHIFTS[feature] if s <= offset)
    assert offset - at < 15, f"{alert.signal} alert at {offset} is not soon after a drift"
    return feature, at


def test_each_injected_drift_gives_one_alert() -> None:
    out, _ = run_retrain(2, 100, 1000)
    points = [drift_point(a) for a in out.alerts]
    assert points == [("a", 300), ("a", 380), ("b", 600), ("c", 650), ("a", 900), ("b", 920),
                      ("c", 1700), ("a", 1720)]


@pytest.mark.parametrize(
    ("min_signals", "within", "cooldown", "expected"),
    [
        # b600+c650 are 50 s apart; a900+b920 fall in the cooldown; c1700+a1720 after it.
        # a300+a380 are one signal twice: not two signals.
        (2, 100, 1000, [[("b", 600), ("c", 650)], [("c", 1700), ("a", 1720)]]),
        (2, 100, 0, [[("b", 600), ("c", 650)], [("a", 900), ("b", 920)],
                     [("c", 1700), ("a", 1720)]]),
        (2, 10, 0, []),
        (3, 100, 0, []),
        # Only each signal's latest drift counts: a380, not a300.
        (3, 400, 0, [[("a", 380), ("b", 600), ("c", 650)]]),
        (1, 100, 250, [[("a", 300)], [("b", 600)], [("a", 900)], [("c", 1700)]]),
    ],
)
def test_retrain_needs_distinct_signals_within_the_window_and_respects_cooldown(
        min_signals: int, within: float, cooldown: float,
        expected: list[list[tuple[str, int]]]) -> None:
    out, state = run_retrain(min_signals, within, cooldown)
    alerts = {drift_point(a): a for a in out.alerts}
    assert len(alerts) == 8
    got = []
    for req in out.retrain_requests:
        points = [drift_point(alerts_by_id(out.alerts)[a]) for a in req.alert_ids]
        assert req.signals == [f"feature:{f}" for f, _ in points]
        # Triggered by the alert that completed the rule: the latest one it lists.
        last = alerts[points[-1]]
        assert req.triggered_by == RequestTrigger.of(last.detected_at)
        assert req.requested_at == last.detected_at.event_time
        assert req.model_version == "7"
        assert {k: req.rule[k] for k in ("name", "min_drifted_signals", "within_seconds",
                                            "cooldown_seconds", "out_of")} == {
            "name": "min_drifted_signals", "min_drifted_signals": min_signals,
            "within_seconds": within, "cooldown_seconds": cooldown, "out_of": 3}
        validate_record(req)
        got.append(points)
    assert got == expected
    model = state.models[UNIT]
    assert model.retrain_requests == len(expected)
    if expected:
        last_trigger = alerts[expected[-1][-1]].detected_at.offset
        assert model.last_retrain_at == T0 + last_trigger


def alerts_by_id(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a.alert_id: a for a in alerts}


# -- deterministic ids ----------------------------------------------------------------------

def test_ids_are_deterministic_and_requests_list_their_alerts() -> None:
    first, _ = run_retrain(2, 100, 1000)
    second, _ = run_retrain(2, 100, 1000)
    ids = [a.alert_id for a in first.alerts]
    assert ids == [a.alert_id for a in second.alerts]
    assert len(set(ids)) == len(ids) == 8
    assert [r.request_id for r in first.retrain_requests] == [
        r.request_id for r in second.retrain_requests]
    assert len({r.request_id for r in first.retrain_requests}) == 2
    by_id = alerts_by_id(first.alerts)
    for req in first.retrain_requests:
        assert set(req.alert_ids) <= set(by_id)
        assert [by_id[a].signal for a in req.alert_ids] == req.signals


def test_ids_do_not_depend_on_batching() -> None:
    whole, _ = run_retrain(2, 100, 1000)
    cfg = config(["page_hinkley"], reference_size=50, recent_size=50,
                 min_drifted_signals=2, within_seconds=100, cooldown_seconds=1000)
    mon, state = Monitor(cfg), MonitorState()
    events = retrain_events()
    alerts, requests = [], []
    for start in range(0, len(events), 137):
        out = mon.process(events[start:start + 137], state)
        alerts += out.alerts
        requests += out.retrain_requests
    assert alerts == whole.alerts
    assert requests == whole.retrain_requests


def test_redelivered_events_have_no_effect() -> None:
    _, state = run_retrain(2, 100, 1000)
    events = retrain_events()
    again = Monitor(config(["page_hinkley"], reference_size=50, recent_size=50)).process(
        events[1500:1750], state)
    assert again.redelivered == 250
    assert again.alerts == [] and again.retrain_requests == []
    assert state.models[UNIT].signals["feature:a"].n == 1800
