"""Retraining decisions: from drift alerts to at most a few well-founded retrain requests.

Pure and I/O-free, like the rest of the core. The monitor hands every drift alert to
:func:`note_alert`, calls :func:`tick` after each event of a model that has something to watch
(``RetrainState.watching``), and :func:`decide` whenever the evidence may have changed. The
policy, per model (``models[].retrain``, README "Retraining decisions"):

* **evidence**: a drift alert on a signal matching ``signals`` (or ``performance_signals``);
* **persistence**: an alert counts once it is *confirmed*
  (:class:`~stream_monitor.core.plan.Persistence`);
  a drift whose signal comes back within the persistence period is dropped as transient;
* **window**: confirmed evidence counts for ``within_seconds`` of event time and/or
  ``within_events`` of the model's events (with both, while it is within both); per signal only
  its latest confirmed drift counts;
* **rules**, first match wins: ``performance_signal`` (a performance signal degraded, i.e. its
  mean rose, when ``any_performance_signal``), ``min_drifted_signals`` (k distinct signals),
  or with ``count: incidents`` ``min_incidents`` (k distinct incidents, core/incidents.py: one
  upstream break that moved eight features is one),
  ``staleness`` (performance degraded since the last request and no retrain for
  ``staleness_seconds``);
* **gates**: no request within ``cooldown_seconds`` of the last one, and at most ``max_per_day``
  requests per UTC day of event time. A blocked rule keeps its evidence (within the window).

A request consumes all evidence: one incident gives one request.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from ..contracts.output_records import (
    DriftAlert,
    Json,
    JsonObject,
    RequestTrigger,
    RetrainRequest,
)
from ..contracts.records import iso_time, record_id
from .mixshift import mix_of_alert, mix_shift
from .plan import RetrainPolicy

__all__ = ["Evidence", "RetrainState", "decide", "note_alert", "persistence_values",
           "retrain_request", "tick"]

DAY = 86400.0


class _Signal(Protocol):
    n: int
    recent: deque[float]


@dataclass(slots=True)
class Evidence:
    """One drift alert as retrain evidence."""

    t: float  # event time of the alert
    signal: str
    alert_id: str
    detector: str
    offset: int
    shift: float | None  # the alert's mean_shift_in_reference_std
    ref_mean: float  # the reference the drift was measured against
    ref_std: float
    n_at: int  # the signal's value count at the alert
    performance: bool
    confirmed_at: float | None = None  # None while persistence is pending
    persisted_values: int = 0
    persisted_shift: float | None = None
    confirmed_event: int = 0  # the model's event count at the confirmation (within_events)
    need: int = 0  # values the persistence check waits for (persistence.values x dependence)
    # A categorical signal's reference mix, [categories, shares, tau] (core/mixshift.py): its
    # persistence check is the distance of the recent mix from it. None: a numeric signal.
    mix: list[Any] | None = None
    incident_id: str | None = None  # the alert's incident (core/incidents.py)

    @property
    def degraded(self) -> bool:
        """A performance signal (an error) whose mean rose."""
        s = self.persisted_shift if self.persisted_shift is not None else self.shift
        return self.performance and (s is None or s > 0)

    def meta(self) -> list[Any]:
        return [self.t, self.signal, self.alert_id, self.detector, self.offset, self.shift,
                self.ref_mean, self.ref_std, self.n_at, self.performance, self.confirmed_at,
                self.persisted_values, self.persisted_shift, self.confirmed_event, self.need,
                self.mix, self.incident_id]

    @classmethod
    def restore(cls, m: list[Any]) -> Evidence:
        return cls(float(m[0]), str(m[1]), str(m[2]), str(m[3]), int(m[4]), m[5], float(m[6]),
                   float(m[7]), int(m[8]), bool(m[9]), m[10], int(m[11]), m[12],
                   int(m[13]) if len(m) > 13 else 0, int(m[14]) if len(m) > 14 else 0,
                   m[15] if len(m) > 15 else None, m[16] if len(m) > 16 else None)

    def record(self) -> JsonObject:
        """This evidence as a retrain request lists it."""
        return {
            "alert_id": self.alert_id,
            "signal": self.signal,
            "detector": self.detector,
            "performance": self.performance,
            "detected_at": iso_time(self.t),
            "offset": self.offset,
            "mean_shift_in_reference_std": self.shift,
            "reference": {"mean": self.ref_mean, "std": self.ref_std},
            "confirmed_at": iso_time(self.t if self.confirmed_at is None else self.confirmed_at),
            "persistence": {"values": self.persisted_values,
                            "mean_shift_in_reference_std": self.persisted_shift},
        }


@dataclass(slots=True)
class RetrainState:
    """A model's retrain evidence and budget bookkeeping (persisted in the model meta)."""

    evidence: list[Evidence] = field(default_factory=list)  # confirmed and pending
    degraded: list[Evidence] = field(default_factory=list)  # degraded perf. since last request
    first_seen: float | None = None  # event time of the model's first event (staleness origin)
    day: int = -1  # UTC day (event time // 86400) of `day_count`
    day_count: int = 0
    suppressed_cooldown: int = 0  # decisions a rule made but the cooldown blocked
    suppressed_budget: int = 0  # ... the daily budget blocked
    transient: int = 0  # drifts dropped by the persistence check

    def watching(self, rule: RetrainPolicy) -> bool:
        """Whether :func:`tick` has work after an event (kept cheap: called per event)."""
        return bool(self.degraded and rule.staleness_seconds is not None) or any(
            e.confirmed_at is None for e in self.evidence)

    def meta(self) -> dict[str, Any]:
        return {"evidence": [e.meta() for e in self.evidence],
                "degraded": [e.meta() for e in self.degraded],
                "first_seen": self.first_seen, "day": self.day, "day_count": self.day_count,
                "suppressed_cooldown": self.suppressed_cooldown,
                "suppressed_budget": self.suppressed_budget, "transient": self.transient}

    @classmethod
    def restore(cls, m: Mapping[str, Any]) -> RetrainState:
        return cls([Evidence.restore(e) for e in m.get("evidence", [])],
                   [Evidence.restore(e) for e in m.get("degraded", [])],
                   m.get("first_seen"), int(m.get("day", -1)), int(m.get("day_count", 0)),
                   int(m.get("suppressed_cooldown", 0)), int(m.get("suppressed_budget", 0)),
                   int(m.get("transient", 0)))


def note_alert(rule: RetrainPolicy, rs: RetrainState, alert: DriftAlert, n_at: int,
               t: float, events: int = 0) -> None:
    """Record a drift alert as evidence (pending when persistence is configured).

    Call it before the signal rebaselines: ``alert.standardization`` must be the
    reference the drift was measured against, ``n_at`` the signal's value count, ``t`` the
    alert's event time and ``events`` the model's event count (the clock of ``within_events``).
    """
    signal = alert.signal
    perf = rule.is_performance(signal)
    if not perf and not rule.counts(signal):
        return
    ref_mean, ref_std = alert.standardization
    # A new drift of the same signal supersedes a pending one (one incident, one evidence).
    rs.evidence = [e for e in rs.evidence if not (e.signal == signal and e.confirmed_at is None)]
    p = rule.persistence
    e = Evidence(t, signal, alert.alert_id, alert.detector.name, alert.detected_at.offset,
                 alert.shift, ref_mean, ref_std, n_at, perf,
                 need=persistence_values(p.values, alert.calibration),
                 mix=mix_of_alert(alert), incident_id=alert.incident_id)
    rs.evidence.append(e)
    if p.values == 0 and p.seconds == 0:
        _confirm(rs, e, t, 0, e.shift, events)


def persistence_values(values: int, calibration: JsonObject | None) -> int:
    """How many values the persistence check of an alert waits for: ``values`` *effective*
    values, i.e. ``values`` times the long-run variance ratio ``tau`` of the signal's reference
    (its calibration; 1 without one). A dependent signal's false alarm is an excursion that
    lasts about ``tau`` values: ``values`` raw values of an AR(1) 0.9 signal (``tau`` about 19)
    would still sit inside the excursion that raised the alarm and confirm it.

    >>> persistence_values(50, {"long_run_variance_ratio": 4.2}), persistence_values(50, None)
    (210, 50)
    """
    ratio = (calibration or {}).get("long_run_variance_ratio")
    tau = float(ratio) if isinstance(ratio, int | float) and ratio else 1.0
    return math.ceil(values * max(tau, 1.0) - 1e-9)


def _confirm(rs: RetrainState, e: Evidence, t: float, values: int, shift: float | None,
             events: int) -> None:
    e.confirmed_at = t
    e.confirmed_event = events
    e.persisted_values = values
    e.persisted_shift = shift
    if e.degraded:
        rs.degraded.append(e)


def tick(rule: RetrainPolicy, rs: RetrainState, signals: Mapping[str, _Signal], t: float,
         events: int = 0) -> None:
    """Confirm or drop pending evidence whose persistence period is over (after an event at ``t``,
    the model's ``events``-th).

    The check looks at the mean of the last ``persistence.values`` *effective* values of the
    signal (:func:`persistence_values`; all values since the alert when that is 0), at most the
    signal's recent window; for a categorical signal at the distance of their category mix from
    the reference mix the alert was measured on (:func:`~stream_monitor.core.mixshift.mix_shift`,
    in the same reference-std unit). The drift is confirmed when that is at least
    ``persistence.min_shift``.
    """
    p = rule.persistence
    keep = []
    for e in rs.evidence:
        if e.confirmed_at is None:
            sig = signals.get(e.signal)
            if sig is None:
                continue
            count = sig.n - e.n_at
            need = e.need or p.values
            if count < need or t - e.t < p.seconds:
                keep.append(e)
                continue
            k = min(need or count, len(sig.recent))
            shift: float | None = e.shift
            table = getattr(sig, "table", None)
            if k > 0 and e.mix is not None and table is not None:
                # Categories: the distance of the last k values' mix from the reference mix,
                # in the same reference-std unit (core/mixshift.py).
                shift = mix_shift(islice(reversed(sig.recent), k), table.labels,
                                  e.mix).distance
            elif k > 0 and table is None:
                tail = list(islice(reversed(sig.recent), k))
                shift = (math.fsum(tail) / k - e.ref_mean) / e.ref_std
            if shift is None or abs(shift) >= p.min_shift:
                _confirm(rs, e, t, count, shift, events)
            else:
                rs.transient += 1
                continue
        keep.append(e)
    rs.evidence = keep


@dataclass(slots=True)
class Decision:
    rule: str  # performance_signal | min_drifted_signals | staleness
    evidence: list[Evidence]
    out_of: int
    used_today: int
    day: int


def in_window(rule: RetrainPolicy, e: Evidence, t: float, events: int) -> bool:
    """Whether confirmed evidence still counts at event time ``t``, the model's ``events``-th
    event: within ``within_seconds`` of event time and within ``within_events`` events of its
    confirmation (each when set; with both, within both)."""
    assert e.confirmed_at is not None
    return ((rule.within_seconds is None or t - e.confirmed_at <= rule.within_seconds)
            and (rule.within_events is None or events - e.confirmed_event <= rule.within_events))


def decide(rule: RetrainPolicy, rs: RetrainState, t: float, last_retrain_at: float | None,
           signal_names: list[str], events: int = 0) -> Decision | None:
    """Whether a retrain request is due at event time ``t`` (the model's ``events``-th event);
    updates the bookkeeping if so.

    ``signal_names``: the model's monitored signals (for ``n`` of k-of-n).
    """
    if rs.first_seen is None:
        rs.first_seen = t
    rs.evidence = [e for e in rs.evidence
                   if e.confirmed_at is None or in_window(rule, e, t, events)]
    latest: dict[str, Evidence] = {}
    for e in rs.evidence:
        if e.confirmed_at is not None:
            latest[e.signal] = e
    counted = sorted(latest.values(), key=lambda e: (e.t, e.signal))
    name = None
    if rule.any_performance_signal and any(e.degraded for e in counted):
        name = "performance_signal"
    elif rule.count == "incidents" and len(_incidents(rule, counted)) >= rule.min_incidents:
        name = "min_incidents"
    elif (rule.count == "signals"
          and sum(1 for e in counted if rule.counts(e.signal)) >= rule.min_drifted_signals):
        name = "min_drifted_signals"
    elif (rule.staleness_seconds is not None and rs.degraded
          and t - (last_retrain_at if last_retrain_at is not None else rs.first_seen)
          >= rule.staleness_seconds):
        name = "staleness"
        extra = {e.signal: e for e in rs.degraded if e.signal not in latest}
        counted = sorted(counted + list(extra.values()), key=lambda e: (e.t, e.signal))
    if name is None:
        return None
    if last_retrain_at is not None and t - last_retrain_at < rule.cooldown_seconds:
        rs.suppressed_cooldown += 1
        return None
    day = int(t // DAY)
    used = rs.day_count if rs.day == day else 0
    if rule.max_per_day is not None and used >= rule.max_per_day:
        rs.suppressed_budget += 1
        return None
    rs.day, rs.day_count = day, used + 1
    # The request consumes the evidence: one incident, one request.
    rs.evidence = []
    rs.degraded = []
    out_of = sum(1 for s in signal_names if rule.counts(s))
    return Decision(name, counted, out_of, used + 1, day)


def _incidents(rule: RetrainPolicy, counted: list[Evidence]) -> set[str]:
    """The distinct incidents of counted evidence (an alert from before the model grouped
    incidents stands for one of its own)."""
    return {e.incident_id or "alert:" + e.alert_id for e in counted if rule.counts(e.signal)}


def window_text(rule: RetrainPolicy) -> str:
    """The evidence window in words: ``600s``, ``1000 events``, ``600s and 1000 events``."""
    parts = []
    if rule.within_seconds is not None:
        parts.append(f"{rule.within_seconds:g}s")
    if rule.within_events is not None:
        parts.append(f"{rule.within_events} events")
    return " and ".join(parts)


def retrain_request(rule: RetrainPolicy, d: Decision, model_id: str, model_version: str | None,
                    trigger: RequestTrigger, t: float, sample_rate: float) -> RetrainRequest:
    """The retrain-request record of a decision (schema ``retrain-request``): ``trigger`` is
    the alert's ``detected_at`` (or the event, when no alert decided it), ``sample_rate`` the
    model rule's."""
    alert_ids = [e.alert_id for e in d.evidence]
    # The k-of-n id keeps its historical form; other rules name themselves.
    parts = () if d.rule == "min_drifted_signals" else (d.rule,)
    signals = [e.signal for e in d.evidence]
    if d.rule == "min_drifted_signals":
        reason = (f"{len(signals)} of {d.out_of} signals drifted within {window_text(rule)}: "
                  + ", ".join(signals))
    elif d.rule == "min_incidents":
        k = len(_incidents(rule, d.evidence))
        reason = (f"{k} incident{'s' if k != 1 else ''} within {window_text(rule)} "
                  f"({len(signals)} signals drifted): " + ", ".join(signals))
    elif d.rule == "performance_signal":
        reason = "performance degraded: " + ", ".join(e.signal for e in d.evidence if e.degraded)
        if len(signals) > 1:
            reason += "; also drifted: " + ", ".join(e.signal for e in d.evidence if not e.degraded)
    else:
        reason = (f"performance degraded and no retrain for {rule.staleness_seconds:g}s: "
                  + ", ".join(e.signal for e in d.evidence if e.degraded))
    cap = rule.max_per_day
    rule_fields: dict[str, Json] = {
        "name": d.rule,
        "min_drifted_signals": rule.min_drifted_signals,
        "out_of": d.out_of,
        "within_seconds": rule.within_seconds,
        "within_events": rule.within_events,
        "window": rule.window,
        "cooldown_seconds": rule.cooldown_seconds,
        "any_performance_signal": rule.any_performance_signal,
        "persistence": {"values": rule.persistence.values, "seconds": rule.persistence.seconds,
                        "min_shift": rule.persistence.min_shift},
        "max_per_day": cap,
        "staleness_seconds": rule.staleness_seconds,
    }
    if rule.count == "incidents":  # (the signal-counting rule keeps its historical fields)
        rule_fields["count"] = rule.count
        rule_fields["min_incidents"] = rule.min_incidents
    return RetrainRequest(
        request_id=record_id("retrain", model_id, *parts, *sorted(alert_ids)),
        model_id=model_id,
        model_version=model_version,
        rule=rule_fields,
        reason=reason,
        signals=signals,
        alert_ids=alert_ids,
        evidence=[e.record() for e in d.evidence],
        budget={"day": iso_time(d.day * DAY)[:10], "max_per_day": cap,
                "used_today": d.used_today,
                "left_today": None if cap is None else cap - d.used_today},
        triggered_by=trigger,
        requested_at=iso_time(t),
        sample_rate=sample_rate,
    )
