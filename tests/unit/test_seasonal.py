"""Periods of event time (``signals[].period: 1d``, core/seasonal.py): each value is compared with
the reference at the same phase of its event's timestamp, exact for uneven event rates."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from stream_monitor.config import ConfigError, parse_config
from stream_monitor.contracts import InferenceEvent, Position
from stream_monitor.core.model_state import MonitorState
from stream_monitor.core.monitor import Monitor
from stream_monitor.core.seasonal import TimedSignalState
from stream_monitor.plan import config_plan

DAY = 86_400.0
T0 = 1_767_225_600.0  # midnight UTC


def _cfg(period: int | str | None) -> Any:
    sr: dict[str, Any] = {"match": "feature:*", "detectors": ["cusum"]}
    if period is not None:
        sr["period"] = period
    return parse_config({"false_alarm_budget": {"per_events": 1e6},
                         "windows": {"reference_size": 1000, "recent_size": 500},
                         "detectors": {"cusum": {"type": "cusum"}},
                         "models": [{"match": "*", "signals": [sr]}]})


def _daily(n: int, seed: int, change_at: int | None = None, size: float = 0.0,
           ) -> tuple[list[float], list[float]]:
    """``n`` values with a daily cycle of event time (amplitude 1.5 sd of the noise), at an
    uneven rate: 6 times as many events by day as by night (about 300 a day), so the same
    number of values covers very different stretches of the cycle."""
    rng = np.random.default_rng(seed)
    times, t = [], T0
    for _ in range(n):
        phase = (t % DAY) / DAY
        rate = 300.0 / DAY * (0.3 + 1.5 * (0.5 - 0.5 * np.cos(2 * np.pi * phase)))
        t += float(rng.exponential(1.0 / rate))
        times.append(t)
    ts = np.asarray(times)
    x = 1.5 * np.sin(2 * np.pi * (ts % DAY) / DAY) + rng.standard_normal(n)
    if change_at is not None:
        x[change_at:] += size
    return [round(float(v), 6) for v in x], times


def _events(xs: list[float], times: list[float]) -> list[InferenceEvent]:
    return [InferenceEvent(f"e{i}", "m", {"x": x}, None, Position("t", 0, i), None, t)
            for i, (x, t) in enumerate(zip(xs, times, strict=True))]


def _alerts(cfg: Any, xs: list[float], times: list[float]) -> list[int]:
    out = Monitor(cfg).process(_events(xs, times), MonitorState())
    return [a.detected_at.signal_index for a in out.alerts]


def test_a_daily_period_of_event_time_holds_the_budget_at_uneven_rates() -> None:
    """Stationary: no false alarm with ``period: 1d``; with the period counted in values (300,
    the average values per day) the cycle at an uneven rate is out of phase and looks like
    drift."""
    xs, ts = _daily(20_000, 11)
    assert _alerts(_cfg("1d"), xs, ts) == []
    assert len(_alerts(_cfg(300), xs, ts)) >= 3


def test_a_shift_is_caught_against_the_same_phase() -> None:
    """A 0.5 sd shift at value 5,000: exact seeded detection indices with ``period: 1d``; without
    a period the cycle's variance is in the thresholds and the shift is caught later, if at
    all."""
    found, without = [], []
    for seed in range(3):
        xs, ts = _daily(8000, 30 + seed, change_at=5000, size=0.5)
        alerts = _alerts(_cfg("1d"), xs, ts)
        found.append(alerts)
        without.append([i for i in _alerts(_cfg(None), xs, ts) if i >= 5000])
    assert found == [[5041], [5112], [5145]], found
    assert all(not w or w[0] > f[0] for w, f in zip(without, found, strict=True)), without


def test_checkpoint_and_restore_equal_continuing() -> None:
    cfg = _cfg("1d")
    xs, ts = _daily(8000, 41, change_at=5000, size=0.5)
    evs = _events(xs, ts)
    mon = Monitor(cfg)
    whole = MonitorState()
    expected = mon.process(evs, whole).alerts
    for cut in (400, 1500, 5050):  # collecting the reference, watching, in the change
        mon2, state = Monitor(cfg), MonitorState()
        first = mon2.process(evs[:cut], state).alerts
        model = state.models["m"]
        sig = model.signals["feature:x"]
        assert isinstance(sig, TimedSignalState)
        meta = orjson.loads(orjson.dumps(sig.meta()))  # as the store writes it
        restored = mon2.restore_model(orjson.loads(orjson.dumps(model.meta())))
        assert restored is not None
        mon2.restore_signal(restored, meta, list(sig.recent), list(sig.reference))
        again = Monitor(cfg).process(evs[cut:], MonitorState({"m": restored})).alerts
        got = first + again
        assert [a.detected_at.signal_index for a in got] == \
            [a.detected_at.signal_index for a in expected]


def test_duration_periods_parse_and_bad_ones_name_the_fix() -> None:
    sr = _cfg("12h").models[0].signals[0]
    assert sr.period_seconds == 43_200.0 and sr.period_values == 0
    assert _cfg(200).models[0].signals[0].period_values == 200
    for bad in ("1 day", "0h", "h", "-1d"):
        with pytest.raises(ConfigError) as exc:
            _cfg(bad)
        assert any("period" in f and "'1d'" in m for f, m in exc.value.problems), \
            exc.value.problems


def test_the_plan_says_what_reference_a_duration_period_needs() -> None:
    s = config_plan(_cfg("1d"))["models"][0]["signals"][0]
    assert s["period_seconds"] == DAY
    assert s["period_max_rate"] == pytest.approx(1000 / (2 * DAY))
    assert s["watched_after"] == 1000
