"""The retrain policy (core/retrain.py) through the pure core: persistence, budget, cooldown,
performance signals, staleness, ids and persistence of the policy state. Streams are
deterministic (a zero-mean cycle plus injected shifts), so detection indices are exact."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position
from stream_monitor.contracts.output_records import (
    DriftAlert,
    EventRef,
    FiredDetector,
    RequestTrigger,
)
from stream_monitor.contracts.schemas import validate_record
from stream_monitor.contracts.units import unit_id
from stream_monitor.core import Monitor, MonitorState
from stream_monitor.core.retrain import RetrainState
from stream_monitor.errors import ConfigError

UNIT = unit_id("m", "1")  # events carry model_version "1": its own state

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def monitor(retrain: dict[str, Any], features: str = "feature:*") -> Monitor:
    return Monitor(parse_config({
        "windows": {"reference_size": 50, "recent_size": 50},
        "models": [{"match": "m", "signals": [{"match": features, "detectors": ["page_hinkley"]}],
                    "retrain": retrain}]}))


def stream(n: int, shifts: dict[str, Sequence[tuple[int, int, float]]], *, step: float = 1.0,
           start: int = 0) -> list[InferenceEvent]:
    """Events i = start..start+n-1 at T0 + i*step; feature f is a zero-mean cycle plus `delta`
    for start_i <= i < end_i for each (start_i, end_i, delta) in shifts[f]."""
    out = []
    for i in range(start, start + n):
        feats = {f: float((i * (j + 2)) % 5 - 2 + sum(d for a, b, d in sh if a <= i < b))
                 for j, (f, sh) in enumerate(sorted(shifts.items()))}
        out.append(InferenceEvent(f"e{i}", "m", feats, 0.0, Position("t", 0, i),
                                  model_version="1", timestamp=T0 + i * step))
    return out


FOREVER = 10**9


def offsets(out: Any) -> list[tuple[str, int]]:
    return [(a.signal, a.detected_at.offset) for a in out.alerts]


def test_old_three_field_rule_still_parses_and_behaves_as_before() -> None:
    mon = monitor({"min_drifted_signals": 1, "within_seconds": 60, "cooldown_seconds": 0})
    out = mon.process(stream(400, {"x": [(300, FOREVER, 10.0)]}), MonitorState())
    assert offsets(out) == [("feature:x", 304)]
    [req] = out.retrain_requests
    validate_record(req)
    assert req.rule["name"] == "min_drifted_signals" and req.rule["out_of"] == 1
    assert req.triggered_by == RequestTrigger.of(out.alerts[0].detected_at)
    assert req.budget == {"day": "2026-01-01", "max_per_day": None, "used_today": 1,
                             "left_today": None}
    [ev] = req.evidence
    assert ev["alert_id"] == out.alerts[0].alert_id and ev["persistence"]["values"] == 0
    assert ev["mean_shift_in_reference_std"] == out.alerts[0].evidence[
        "mean_shift_in_reference_std"]


def test_unknown_retrain_field_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="max_per_day"):
        monitor({"max_per_dya": 2})


@pytest.mark.parametrize(("end", "requests"), [(310, 0), (FOREVER, 1)])
def test_persistence_drops_a_drift_that_does_not_hold(end: int, requests: int) -> None:
    """Shift +10 at 300: held for 10 values only (transient) or for good. Persistence of 40
    values: the mean of the last 40 values must still be 1 old-reference std away. Transient:
    5 shifted values after the alert at 304 give 50/40/1.43 = 0.88 std: dropped."""
    mon = monitor({"min_drifted_signals": 1, "cooldown_seconds": 0,
                   "persistence": {"values": 40, "min_shift": 1.0}})
    state = MonitorState()
    out = mon.process(stream(500, {"x": [(300, end, 10.0)]}), state)
    assert offsets(out)[0] == ("feature:x", 304)
    assert len(out.retrain_requests) == requests
    rs = state.models[UNIT].retrain
    assert rs.transient == 1 - requests
    if requests:
        [req] = out.retrain_requests
        validate_record(req)
        # Confirmed at the 40th value after the alert, at offset 344; no alert triggered it.
        assert req.triggered_by.offset == 344 and req.triggered_by.signal_index is None
        [ev] = req.evidence
        assert ev["persistence"]["values"] == 40
        shift = ev["persistence"]["mean_shift_in_reference_std"]
        assert shift == pytest.approx(10 / 1.4285, rel=0.02)


def test_persistence_in_seconds_waits_for_event_time() -> None:
    mon = monitor({"min_drifted_signals": 1, "cooldown_seconds": 0,
                   "persistence": {"seconds": 30}})
    out = mon.process(stream(500, {"x": [(300, FOREVER, 10.0)]}, step=2.0), MonitorState())
    [req] = out.retrain_requests
    assert req.triggered_by.offset == 304 + 15  # 15 events of 2 s after the alert


def test_budget_caps_requests_per_utc_day_and_resets_the_next_day() -> None:
    """A drift every 200 events, 1 event per 100 s: 864 events a day. With k=1, no cooldown and
    a budget of 2 a day: 2 requests the first day, then 2 more once the next day starts."""
    shifts = [(a, FOREVER, 10.0) for a in range(300, 2000, 200)]
    mon = monitor({"min_drifted_signals": 1, "cooldown_seconds": 0, "max_per_day": 2})
    state = MonitorState()
    out = mon.process(stream(2000, {"x": shifts}, step=100.0), state)
    assert len(out.alerts) == len(shifts)
    days = [(r.budget["day"], r.budget["used_today"], r.budget["left_today"])
            for r in out.retrain_requests]
    assert days == [("2026-01-01", 1, 1), ("2026-01-01", 2, 0),
                    ("2026-01-02", 1, 1), ("2026-01-02", 2, 0), ("2026-01-03", 1, 1)]
    # 9 alerts (3 on day 1, 5 on day 2, 1 on day 3): 5 requests, 4 blocked by the budget.
    assert state.models[UNIT].retrain.suppressed_budget == 4
    for r in out.retrain_requests:
        validate_record(r)


def test_cooldown_blocks_then_keeps_evidence_within_the_window() -> None:
    mon = monitor({"min_drifted_signals": 1, "cooldown_seconds": 150, "within_seconds": 1000})
    state = MonitorState()
    out = mon.process(stream(700, {"x": [(300, FOREVER, 10.0), (400, FOREVER, 10.0),
                                         (600, FOREVER, 10.0)]}), state)
    assert [a.detected_at.offset for a in out.alerts] == [304, 404, 604]
    assert [r.triggered_by.offset for r in out.retrain_requests] == [304, 604]
    assert state.models[UNIT].retrain.suppressed_cooldown == 1


PERF = {"performance_signals": ["feature:err"], "signals": ["feature:*"]}


@pytest.mark.parametrize(("delta", "requests"), [(10.0, 1), (-10.0, 0)])
def test_one_degraded_performance_signal_is_enough(delta: float, requests: int) -> None:
    """`err` stands in for a performance signal: its mean rising is a degradation and fires
    alone although k is 3; falling (the model got better) does not."""
    mon = monitor({"min_drifted_signals": 3, "cooldown_seconds": 0, **PERF})
    out = mon.process(stream(400, {"err": [(300, FOREVER, delta)], "x": []}), MonitorState())
    assert [a.signal for a in out.alerts] == ["feature:err"]
    assert len(out.retrain_requests) == requests
    if requests:
        [req] = out.retrain_requests
        validate_record(req)
        assert req.rule["name"] == "performance_signal"
        assert req.rule["out_of"] == 2
        assert req.evidence[0]["performance"] is True
        assert req.reason == "performance degraded: feature:err"


def test_staleness_fallback_requests_once_the_period_has_passed() -> None:
    """Performance alone is not enough here (any_performance_signal off, k=3), but degraded
    performance and no retrain since the first event (offset 0) for 500 s is."""
    mon = monitor({"min_drifted_signals": 3, "cooldown_seconds": 0,
                   "any_performance_signal": False, "staleness_seconds": 500, **PERF})
    out = mon.process(stream(800, {"err": [(300, FOREVER, 10.0)], "x": []}), MonitorState())
    [req] = out.retrain_requests
    validate_record(req)
    assert req.rule["name"] == "staleness"
    assert req.triggered_by.offset == 500 and req.triggered_by.signal_index is None
    assert req.signals == ["feature:err"]


def test_ids_are_deterministic_and_a_split_batch_gives_the_same_requests() -> None:
    retrain = {"min_drifted_signals": 1, "cooldown_seconds": 0, "max_per_day": 3,
               "persistence": {"values": 20}}
    events = stream(1500, {"x": [(a, FOREVER, 10.0) for a in (300, 600, 900, 1200)]})
    whole = monitor(retrain).process(events, MonitorState()).retrain_requests
    state, mon, split = MonitorState(), monitor(retrain), []
    for i in range(0, len(events), 37):
        split += mon.process(events[i:i + 37], state).retrain_requests
        # The policy state survives a JSON round trip (it is stored in the model meta).
        model = state.models[UNIT]
        model.retrain = RetrainState.restore(json.loads(json.dumps(model.retrain.meta())))
    assert len(whole) == 3 and split == whole
    assert len({r.request_id for r in whole}) == 3


# -- windows in events (retrain.within_events) ------------------------------------------------

TWO_DRIFTS = {"x": [(300, FOREVER, 10.0)], "y": [(340, FOREVER, 10.0)]}
DAY = 86400.0


def test_one_event_a_day_pairs_drifts_only_with_a_window_in_events() -> None:
    """Two signals drift 40 events apart at one event a day: 40 days apart. The default window
    (3600 s of event time) can never pair them; `within_events: 100` does, and the request says
    which window applied."""
    seconds = monitor({"min_drifted_signals": 2, "cooldown_seconds": 0})
    out = seconds.process(stream(500, TWO_DRIFTS, step=DAY), MonitorState())
    assert [a.signal for a in out.alerts] == ["feature:x", "feature:y"]
    assert out.retrain_requests == []
    events = monitor({"min_drifted_signals": 2, "cooldown_seconds": 0, "within_events": 100})
    out = events.process(stream(500, TWO_DRIFTS, step=DAY), MonitorState())
    [req] = out.retrain_requests
    validate_record(req)
    assert req.triggered_by == RequestTrigger.of(out.alerts[1].detected_at)
    assert {k: req.rule[k] for k in ("within_seconds", "within_events", "window")} == {
        "within_seconds": None, "within_events": 100, "window": "events"}
    assert "within 100 events:" in req.reason


@pytest.mark.parametrize(("within_events", "requests"), [(30, 0), (50, 1)])
def test_evidence_counts_for_within_events_of_the_model(within_events: int,
                                                        requests: int) -> None:
    """The alerts come 40 events apart: a window of 30 events lets the first expire, 50 keeps it."""
    mon = monitor({"min_drifted_signals": 2, "cooldown_seconds": 0,
                   "within_events": within_events})
    out = mon.process(stream(500, TWO_DRIFTS, step=DAY), MonitorState())
    alerts = [a.detected_at.offset for a in out.alerts]
    assert len(alerts) == 2 and 30 < alerts[1] - alerts[0] < 50
    assert len(out.retrain_requests) == requests


@pytest.mark.parametrize(("step", "requests"), [(1.0, 1), (DAY, 0), (1000.0, 0)])
def test_with_both_windows_evidence_counts_while_within_both(step: float, requests: int) -> None:
    """within_seconds 3600 and within_events 100: 40 events apart pair at 1 s an event (40 s),
    not at one a day or at 1,000 s an event (40,000 s: within the events, not the seconds)."""
    mon = monitor({"min_drifted_signals": 2, "cooldown_seconds": 0, "within_seconds": 3600,
                   "within_events": 100})
    out = mon.process(stream(500, TWO_DRIFTS, step=step), MonitorState())
    assert len(out.alerts) == 2
    assert len(out.retrain_requests) == requests
    for r in out.retrain_requests:
        validate_record(r)
        assert r.rule["window"] == "both" and r.rule["within_seconds"] == 3600
        assert "within 3600s and 100 events:" in r.reason


def test_a_rule_without_any_window_fails_at_start_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="within_events"):
        monitor({"within_seconds": None})
    sig = [{"match": "*", "detectors": ["adwin"]}]
    rule = parse_config({"models": [{"match": "m", "signals": sig,
                                     "retrain": {"within_events": 5}}]}).models[0].retrain
    assert (rule.within_seconds, rule.within_events, rule.window) == (None, 5, "events")
    default = parse_config({"models": [{"match": "m", "signals": sig}]}).models[0].retrain
    assert (default.within_seconds, default.within_events, default.window) == (
        3600.0, None, "seconds")


def test_event_window_evidence_survives_a_checkpoint() -> None:
    """Restored mid-way (after the first alert), the state decides as if it had stayed."""
    mon = monitor({"min_drifted_signals": 2, "cooldown_seconds": 0, "within_events": 50})
    events = stream(500, TWO_DRIFTS, step=DAY)
    whole = mon.process(events, MonitorState())
    state = MonitorState()
    first = mon.process(events[:320], state)
    assert len(first.alerts) == 1
    meta = json.loads(json.dumps(state.models[UNIT].retrain.meta()))
    assert meta["evidence"][0][13] > 0  # the model's event count at the confirmation
    restored = RetrainState.restore(meta)
    assert restored.meta() == meta
    state.models[UNIT].retrain = restored
    # An old checkpoint (no event count) still restores.
    assert RetrainState.restore({"evidence": [meta["evidence"][0][:13]]}).evidence[
        0].confirmed_event == 0
    rest = mon.process(events[320:], state)
    assert [r.request_id for r in rest.retrain_requests] == [
        r.request_id for r in whole.retrain_requests]


def _alert(tau: float | None) -> DriftAlert:
    ev: dict[str, Any] = {"mean_shift_in_reference_std": 3.0,
                          "standardization": {"mean": 0.0, "std": 1.0}}
    if tau is not None:
        ev["calibration"] = {"long_run_variance_ratio": tau}
    return DriftAlert(alert_id="a1", model_id="m", model_version=None, signal="feature:x",
                      detector=FiredDetector("cusum", "cusum", {}),
                      detected_at=EventRef("e", "t", 0, 99, "1970-01-01T00:00:00.000Z", 100),
                      evidence=ev, summary="", sample_rate=1.0)


class _Sig:
    def __init__(self) -> None:
        from collections import deque
        self.n = 100
        self.recent: Any = deque(maxlen=500)


@pytest.mark.parametrize(("tau", "need"), [(None, 50), (1.0, 50), (4.0, 200), (19.3, 965)])
def test_persistence_waits_for_effective_values_of_a_dependent_signal(tau: float | None,
                                                                       need: int) -> None:
    """An alert on a dependent signal (long-run variance ratio tau) is an excursion lasting
    about tau values: the check waits for 50 *effective* values, 50 x tau raw ones. Here the
    signal stays 1 std high for 60 values and then returns to its old mean: with tau = 1 the
    excursion confirms the drift, with tau >= 4 the check sees the return and drops it."""
    from stream_monitor.config import RetrainRule, compile_retrain
    from stream_monitor.core.retrain import note_alert, tick

    rule = compile_retrain(RetrainRule(min_drifted_signals=1,
                                       persistence={"values": 50, "min_shift": 0.5}))
    rs, sig = RetrainState(), _Sig()
    note_alert(rule, rs, _alert(tau), n_at=sig.n, t=0.0)
    [e] = rs.evidence
    assert e.need == need
    for i in range(need):
        sig.n += 1
        sig.recent.append(1.0 if i < 60 else 0.0)
        tick(rule, rs, {"feature:x": sig}, float(i))
        assert (rs.evidence[0].confirmed_at is None if i < need - 1 else True)
    if need <= 60:
        assert rs.evidence[0].confirmed_at is not None and rs.transient == 0
    else:
        assert rs.evidence == [] and rs.transient == 1
    assert RetrainState.restore(json.loads(json.dumps(rs.meta()))).meta() == rs.meta()
