"""Alert lifecycle: firing -> resolved, one firing alert per incident, no flapping. Pure.

Opt-in per model (``models[].alerts``, README "Alert lifecycle"). An *incident* is opened by a
published drift alert of a signal and identified by its **fingerprint**, a hash of (model_id,
model_version, signal, detector name) - the same as the notifier's
(:func:`stream_monitor.notify.notification.fingerprint`), so a ``drift_resolved`` record
resolves what the alert opened.

* **One incident, one firing alert.** While a signal's incident is open, a further drift of the
  signal within ``dedupe_seconds`` of the incident's last alert (ADWIN firing twice for one
  change, river#574, a change in steps, or the way back) publishes nothing: it is *folded* into
  the incident. A later one is published but keeps the incident's reference.
* **Resolved** when the signal is back at the reference the alert was measured against: every
  ``resolve_values`` values of the signal, the mean of its last ``resolve_values`` values (at most
  its recent window) is checked; within ``resolve_max_shift`` standard deviations of that
  reference's mean, the signal is back. A categorical signal has no mean: the category mix of
  the same values is compared with the reference mix the alert was measured on, by their
  distance in the same unit (core/mixshift.py); within ``resolve_max_shift``, it is back.
* **Flapping suppression.** The resolution is published only once the signal has stayed back for
  ``hold_seconds`` of event time; a drift during the hold cancels the resolution and is folded.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from typing import Any, Protocol

from ..contracts.output_records import DetectorRef, DriftAlert, DriftResolved
from ..contracts.records import InferenceEvent, detected_at, iso_time, record_id
from .mixshift import MixShift, mix_of_alert, mix_shift
from .plan import LifecyclePolicy

__all__ = ["Incident", "LifecycleState", "alert_fingerprint"]


def alert_fingerprint(model_id: str, model_version: str | None, signal: str, detector: str) -> str:
    """The identity of an alert across firing and resolution (the notifier's fingerprint)."""
    return record_id("fingerprint", model_id, model_version or "", signal, detector)


class _Signal(Protocol):
    n: int
    recent: deque[float]


@dataclass(slots=True)
class Incident:
    signal: str
    fingerprint: str
    alert_id: str
    detector: str
    detector_type: str
    model_version: str | None
    fired_at: float
    ref_mean: float
    ref_std: float
    last_alert_at: float
    next_check: int  # the signal's value count at which to check for a return
    folded: int = 0  # drifts folded into this incident (not published)
    back_since: float | None = None  # event time the signal was first seen back (hold)
    # A categorical signal's reference mix, [categories, shares, tau] (core/mixshift.py); None
    # for a numeric signal (and for an incident checkpointed before categories had one).
    mix: list[Any] | None = None


@dataclass(slots=True)
class LifecycleState:
    """Open incidents of one model (persisted in its meta), by signal."""

    incidents: dict[str, Incident] = field(default_factory=dict)
    folded: int = 0  # all time
    resolved: int = 0  # all time

    def meta(self) -> dict[str, Any]:
        return {"incidents": [asdict(i) for i in self.incidents.values()],
                "folded": self.folded, "resolved": self.resolved}

    @classmethod
    def restore(cls, m: Mapping[str, Any]) -> LifecycleState:
        return cls({i["signal"]: Incident(**i) for i in m.get("incidents", [])},
                   int(m.get("folded", 0)), int(m.get("resolved", 0)))

    def on_drift(self, rule: LifecyclePolicy, alert: DriftAlert, signal_n: int,
                 t: float) -> bool:
        """A detector fired; True when its alert is to be published (it opens an incident)."""
        signal = alert.signal
        inc = self.incidents.get(signal)
        if inc is not None and (t - inc.last_alert_at <= rule.dedupe_seconds
                                or inc.back_since is not None):
            inc.folded += 1
            self.folded += 1
            inc.last_alert_at = t
            inc.back_since = None  # flapping: the pending resolution is off
            inc.next_check = signal_n + rule.resolve_values
            return False
        ref_mean, ref_std = alert.standardization
        mix = mix_of_alert(alert)
        if inc is not None:
            # Still open after dedupe_seconds: a new alert, but the signal must still come back
            # to the reference from before the incident (not to the level it drifted to).
            ref_mean, ref_std, mix = inc.ref_mean, inc.ref_std, inc.mix
        det = alert.detector
        self.incidents[signal] = Incident(
            signal, alert_fingerprint(alert.model_id, alert.model_version, signal, det.name),
            alert.alert_id, det.name, det.type, alert.model_version, t,
            ref_mean, ref_std, t, signal_n + rule.resolve_values, mix=mix)
        return True

    def tick(self, rule: LifecyclePolicy, signals: Mapping[str, _Signal], ev: InferenceEvent,
             model_id: str, sample_rate: float) -> list[DriftResolved]:
        """After an event: the ``drift_resolved`` records of incidents that just resolved
        (``sample_rate``: the model rule's, which the records state)."""
        out = []
        t = ev.event_time
        for signal in list(self.incidents):
            inc = self.incidents[signal]
            sig = signals.get(signal)
            if sig is None:
                del self.incidents[signal]
                continue
            table = getattr(sig, "table", None)
            mix = inc.mix
            if (sig.n < inc.next_check and inc.back_since is None) or (
                    table is not None and mix is None):
                continue  # (an older incident of a categorical signal: no reference mix)
            if sig.n >= inc.next_check:
                inc.next_check = sig.n + rule.resolve_values
                k = min(rule.resolve_values, len(sig.recent))
                if table is not None and mix is not None and k:
                    shift = mix_shift(islice(reversed(sig.recent), k), table.labels,
                                      mix).distance
                else:
                    mean = math.fsum(islice(reversed(sig.recent), k)) / k if k else math.nan
                    shift = (mean - inc.ref_mean) / inc.ref_std
                if not abs(shift) <= rule.resolve_max_shift:
                    inc.back_since = None
                    continue
                if inc.back_since is None:
                    inc.back_since = t
            if inc.back_since is None or t - inc.back_since < rule.hold_seconds:
                continue
            k = min(rule.resolve_values, len(sig.recent))
            if table is not None and mix is not None:
                out.append(_resolved_mix(rule, inc, model_id, ev, sig.n, mix_shift(
                    islice(reversed(sig.recent), k), table.labels, mix), mix, sample_rate))
            else:
                mean = math.fsum(islice(reversed(sig.recent), k)) / k
                out.append(_resolved(rule, inc, model_id, ev, sig.n, mean, k, sample_rate))
            del self.incidents[signal]
            self.resolved += 1
        return out


def _resolved_mix(rule: LifecyclePolicy, inc: Incident, model_id: str, ev: InferenceEvent,
                  signal_n: int, m: MixShift, mix: list[Any],
                  sample_rate: float) -> DriftResolved:
    """The ``drift_resolved`` record of a categorical signal: its distance from the reference
    mix (the shift's unit), and per category the reference and the current share."""
    rec = _resolved(rule, inc, model_id, ev, signal_n, math.nan, m.count, sample_rate)
    cats, shares = mix[0], mix[1]
    return replace(rec, evidence={
        "current": {"count": m.count},
        "mean_shift_in_reference_std": m.distance,
        "categories": {
            "total_variation": round(m.total_variation, 4),
            "shares": [{"category": c, "reference_share": round(p, 4),
                        "current_share": round(f, 4)}
                       for c, p, f in zip(cats, shares, m.shares, strict=True)]},
    }, summary=(f"{model_id} {inc.signal}: category mix back within "
                f"{rule.resolve_max_shift:g} of the reference mix (distance "
                f"{m.distance:.2f}, total variation {m.total_variation:.2f} over the last "
                f"{m.count} values); resolved at offset {ev.position.offset}"))


def _resolved(rule: LifecyclePolicy, inc: Incident, model_id: str, ev: InferenceEvent,
              signal_n: int, mean: float, count: int, sample_rate: float) -> DriftResolved:
    pos = ev.position
    shift = (mean - inc.ref_mean) / inc.ref_std
    return DriftResolved(
        resolution_id=record_id("resolved", inc.alert_id, signal_n),
        fingerprint=inc.fingerprint,
        model_id=model_id,
        model_version=inc.model_version,
        signal=inc.signal,
        detector=DetectorRef(inc.detector, inc.detector_type),
        alert_id=inc.alert_id,
        fired_at=iso_time(inc.fired_at),
        resolved_at=detected_at(ev, signal_n),
        folded_alerts=inc.folded,
        evidence={
            "reference": {"mean": inc.ref_mean, "std": inc.ref_std},
            "current": {"mean": mean, "count": count},
            "mean_shift_in_reference_std": shift,
        },
        rule={"resolve_values": rule.resolve_values,
              "resolve_max_shift": rule.resolve_max_shift,
              "hold_seconds": rule.hold_seconds, "dedupe_seconds": rule.dedupe_seconds},
        summary=(f"{model_id} {inc.signal}: back within {rule.resolve_max_shift:g} reference "
                 f"std of the reference mean {inc.ref_mean:.4g} ({shift:+.2f} std over the last "
                 f"{count} values); resolved at offset {pos.offset}"),
        sample_rate=sample_rate,
    )
