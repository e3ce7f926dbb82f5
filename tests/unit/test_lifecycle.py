"""Alert lifecycle (core/lifecycle.py) through the pure core: fingerprints shared with the
notifier, one firing alert per incident, resolution when the signal is back, flapping held."""

from __future__ import annotations

from typing import Any

import pytest

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position
from stream_monitor.contracts.schemas import validate_record
from stream_monitor.contracts.units import unit_id
from stream_monitor.core import Monitor, MonitorState
from stream_monitor.notify.notification import fingerprint, notification_from_record
from tests.helpers import record_json

UNIT = unit_id("m", "3")  # events carry model_version "3": its own state

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def monitor(alerts: dict[str, Any] | None,
            detectors: tuple[str, ...] = ("page_hinkley",)) -> Monitor:
    rule: dict[str, Any] = {"match": "m",
                            "signals": [{"match": "feature:*", "detectors": list(detectors)}],
                            "retrain": {"min_drifted_signals": 5}}
    if alerts is not None:
        rule["alerts"] = alerts
    return Monitor(parse_config({"windows": {"reference_size": 50, "recent_size": 50},
                                 "models": [rule]}))


def stream(n: int, level: Any) -> list[InferenceEvent]:
    """One event a second; x = a zero-mean cycle plus level(i)."""
    return [InferenceEvent(f"e{i}", "m", {"x": float((i * 2) % 5 - 2 + level(i))}, 0.0,
                           Position("t", 0, i), model_version="3", timestamp=T0 + i)
            for i in range(n)]


def run(alerts: dict[str, Any] | None, events: list[InferenceEvent], **kw: Any) -> Any:
    state = MonitorState()
    return monitor(alerts, **kw).process(events, state), state


def window(a: int, b: int, d: float = 10.0) -> Any:
    return lambda i: d if a <= i < b else 0.0


def test_a_drift_that_goes_back_fires_once_and_resolves_once() -> None:
    events = stream(1000, window(300, 500))
    plain, _ = run(None, events)
    # Without the lifecycle: the rise and the fall are two alerts.
    assert [a.detected_at.offset for a in plain.alerts] == [304, 504]
    out, state = run({"resolve_values": 50, "resolve_max_shift": 0.5, "hold_seconds": 100},
                     events)
    [alert] = out.alerts
    assert alert.detected_at.offset == 304
    [res] = out.resolved
    validate_record(res)
    assert res.alert_id == alert.alert_id and res.folded_alerts == 1
    # Checks every 50 values from the alert (304): at 554 the last 50 values are all back;
    # held 100 s: resolved at the check of 654.
    assert res.resolved_at.offset == 654
    assert abs(res.evidence["mean_shift_in_reference_std"]) <= 0.5
    # The notifier sees the same incident: trigger, then resolve, one fingerprint.
    trig, resolve = (notification_from_record(record_json(alert)),  # as read from the topic
                     notification_from_record(record_json(res)))
    assert (trig.action, resolve.action) == ("trigger", "resolve")
    assert trig.fingerprint == resolve.fingerprint == res.fingerprint == fingerprint(
        "m", "3", "feature:x", "page_hinkley")
    lc = state.models[UNIT].lifecycle
    assert lc.incidents == {} and lc.resolved == 1 and lc.folded == 1


def test_a_change_in_two_steps_is_one_incident() -> None:
    """+10 at 300 and +10 more at 420: two detections, one firing alert (as for river#574)."""
    events = stream(700, lambda i: 10.0 * ((i >= 300) + (i >= 420)))
    plain, _ = run(None, events, detectors=("adwin", "page_hinkley"))
    assert len(plain.alerts) == 2
    out, state = run({}, events, detectors=("adwin", "page_hinkley"))
    assert len(out.alerts) == 1 and out.resolved == []
    assert state.models[UNIT].lifecycle.incidents["feature:x"].folded == 1


@pytest.mark.parametrize(("hold", "resolutions"), [(0.0, 2), (300.0, 1)])
def test_flapping_is_held(hold: float, resolutions: int) -> None:
    """On for 100 s, off for 250 s, on again, then off for good: without a hold each return
    resolves and the next rise is a new alert; a 300 s hold keeps one incident (the falls are
    folded either way: within dedupe_seconds)."""
    events = stream(1600, lambda i: 10.0 if 300 <= i < 400 or 650 <= i < 750 else 0.0)
    out, _ = run({"hold_seconds": hold}, events)
    assert len(out.resolved) == resolutions
    assert len(out.alerts) == resolutions
    for r in out.resolved:
        validate_record(r)


def test_lifecycle_state_survives_the_model_meta() -> None:
    events = stream(1000, window(300, 500))
    mon = monitor({"hold_seconds": 100})
    state = MonitorState()
    mon.process(events[:560], state)
    model = state.models[UNIT]
    restored = mon.restore_model(model.meta())
    assert restored is not None and restored.lifecycle == model.lifecycle
