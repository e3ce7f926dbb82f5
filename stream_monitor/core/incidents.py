"""Incidents: one upstream break, one incident. Pure: no I/O, no wall clock.

Opt-in per model (``models[].incidents``, docs/incidents.md), on top of the alert lifecycle
(core/lifecycle.py), which decides when a signal's alert is published and when the signal is
back. An *incident* groups the published drift alerts of one model (and segment) whose
detections fall within ``window_seconds`` of **event time** of the incident's first alert:

* **Opened** by a published alert that no open incident takes: its id is a hash of the model,
  version, segment and that alert's id, so replay, the worker and a redelivered batch give the
  same id (an alert id is a function of the signal's value count).
* **Updated** when another signal's alert joins (detected within the window), when a signal
  already in the incident and not yet back alerts again (it stays in its incident whatever the
  window), and when one of its signals comes back while others are still out.
* **Resolved** when every signal of it has come back (its ``drift_resolved`` record).

Every drift alert and resolution of the incident carries its ``incident_id``; the incident
record (``incident``, on the incidents topic) ranks its signals by evidence (the alert's
|shift| in reference std, largest first), then by change start (earliest first), and says
whether the prediction, the estimated performance and the realized performance moved. The open
incidents are part of the model's state (its meta, ``incidents``), saved with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from ..contracts.output_records import (
    DriftAlert,
    DriftResolved,
    EventRef,
    IncidentRecord,
    Json,
    JsonObject,
)
from ..contracts.records import iso_time, record_id
from .plan import IncidentPolicy

__all__ = ["IncidentBook", "Member", "OpenIncident", "incident_id", "moved"]

PREDICTION = "prediction"
ESTIMATED = "performance:estimated_"
PERFORMANCE = "performance:"
Status = Literal["opened", "updated", "resolved"]
MAX_ALERT_IDS = 100  # an incident's alert ids kept (the newest): its state stays bounded


def incident_id(model_id: str, model_version: str | None, segment: str | None,
                first_alert_id: str) -> str:
    """An incident's id: the same for the same opening alert, wherever it is computed."""
    return record_id("incident", model_id, model_version or "", segment or "", first_alert_id)


@dataclass(slots=True)
class Member:
    """One signal of an incident."""

    signal: str
    alert_id: str  # its latest published alert in the incident
    detector: str
    detected_at: float  # event time of its first alert in the incident
    detected_offset: int
    shift: float | None  # the evidence: |shift| ranks
    change_offset: int | None  # the estimated change start's offset, when mapped to an event
    change_event_id: str | None
    change_index: int  # the change start's signal index (ranks when no offset)
    alerts: int = 1
    resolved: bool = False

    def record(self, rank: int) -> JsonObject:
        return {"rank": rank, "signal": self.signal, "alert_id": self.alert_id,
                "alerts": self.alerts, "detector": self.detector,
                "mean_shift_in_reference_std": self.shift,
                "change_start_offset": self.change_offset,
                "change_start_event_id": self.change_event_id,
                "detected_offset": self.detected_offset,
                "detected_at": iso_time(self.detected_at), "resolved": self.resolved}


@dataclass(slots=True)
class OpenIncident:
    incident_id: str
    model_version: str | None
    segment: str | None
    opened_at: float  # event time of the first alert
    members: dict[str, Member] = field(default_factory=dict)  # by signal, in joining order
    alert_ids: list[str] = field(default_factory=list)
    records: int = 0  # records published so far (the next record's sequence number)

    def ranked(self) -> list[Member]:
        """Largest |shift| first (no shift last), then the earliest change start, then name."""
        def key(m: Member) -> tuple[float, float, str]:
            ev = -abs(m.shift) if m.shift is not None else float("inf")
            start = m.change_offset if m.change_offset is not None else m.detected_offset
            return ev, float(start), m.signal
        return sorted(self.members.values(), key=key)

    def meta(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "model_version": self.model_version,
                "segment": self.segment, "opened_at": self.opened_at,
                "members": [asdict(m) for m in self.members.values()],
                "alert_ids": list(self.alert_ids), "records": self.records}

    @classmethod
    def restore(cls, m: Mapping[str, Any]) -> OpenIncident:
        members = [Member(**x) for x in m.get("members", [])]
        return cls(str(m["incident_id"]), m.get("model_version"), m.get("segment"),
                   float(m["opened_at"]), {x.signal: x for x in members},
                   [str(a) for a in m.get("alert_ids", [])], int(m.get("records", 0)))


def moved(members: Iterable[Member], signals: Iterable[str]) -> dict[str, Json]:
    """Whether the prediction, the estimated and the realized performance moved: True (a
    signal of the incident), False (the model watches one, it did not move), None (none)."""
    names = set(signals)
    drifted = {m.signal for m in members}

    def kind(pred: Any) -> bool | None:
        if any(pred(s) for s in drifted):
            return True
        return False if any(pred(s) for s in names) else None

    return {
        "prediction": kind(lambda s: s == PREDICTION),
        "estimated_performance": kind(lambda s: s.startswith(ESTIMATED)),
        "realized_performance": kind(
            lambda s: s.startswith(PERFORMANCE) and not s.startswith(ESTIMATED)),
    }


def _change(alert: DriftAlert) -> tuple[int | None, str | None, int]:
    change = alert.evidence.get("change")
    start = change.get("start") if isinstance(change, Mapping) else None
    if not isinstance(start, Mapping):
        return None, None, alert.detected_at.signal_index
    off, eid, idx = start.get("offset"), start.get("event_id"), start.get("signal_index")
    return (off if isinstance(off, int) else None, eid if isinstance(eid, str) else None,
            idx if isinstance(idx, int) else alert.detected_at.signal_index)


@dataclass(slots=True)
class IncidentBook:
    """A model's open incidents (persisted in its meta), oldest first."""

    open: list[OpenIncident] = field(default_factory=list)
    opened: int = 0  # all time
    resolved: int = 0  # all time

    def meta(self) -> dict[str, Any]:
        return {"open": [i.meta() for i in self.open], "opened": self.opened,
                "resolved": self.resolved}

    @classmethod
    def restore(cls, m: Mapping[str, Any]) -> IncidentBook:
        return cls([OpenIncident.restore(i) for i in m.get("open", [])],
                   int(m.get("opened", 0)), int(m.get("resolved", 0)))

    # -- what changes an incident -----------------------------------------------------------
    def on_alert(self, policy: IncidentPolicy, alert: DriftAlert, t: float,
                 signals: Iterable[str], segment: str | None = None,
                 ) -> tuple[DriftAlert, IncidentRecord]:
        """A published drift alert, detected at event time ``t`` (``signals``: the model's
        watched signals): the incident it joins or opens. Returns the alert with its
        ``incident_id`` and the incident's record (opened or updated)."""
        signal = alert.signal
        inc = next((i for i in self.open if i.segment == segment and signal in i.members
                    and not i.members[signal].resolved), None)
        if inc is None:  # the newest open incident whose window is still open takes it
            inc = next((i for i in reversed(self.open) if i.segment == segment
                        and t - i.opened_at <= policy.window_seconds), None)
        status: Status = "updated"
        if inc is None:
            inc = OpenIncident(incident_id(alert.model_id, alert.model_version, segment,
                                           alert.alert_id),
                               alert.model_version, segment, t)
            self.open.append(inc)
            self.opened += 1
            status = "opened"
        m = inc.members.get(signal)
        if m is not None and not m.resolved:
            m.alerts += 1
            m.alert_id = alert.alert_id
        else:
            off, eid, idx = _change(alert)
            shift = alert.shift
            inc.members.pop(signal, None)  # (back, and out again: joins at the end)
            inc.members[signal] = Member(
                signal, alert.alert_id, alert.detector.name, t, alert.detected_at.offset,
                None if shift is None else float(shift), off, eid, idx)
        inc.alert_ids.append(alert.alert_id)
        del inc.alert_ids[:-MAX_ALERT_IDS]
        rec = self._record(policy, inc, status, alert.model_id, alert.detected_at, signals,
                           alert.sample_rate, None)
        return replace(alert, incident_id=inc.incident_id), rec

    def on_resolved(self, policy: IncidentPolicy, z: DriftResolved, signals: Iterable[str],
                    ) -> tuple[DriftResolved, IncidentRecord | None]:
        """A signal came back (its ``drift_resolved``): the resolution with the incident's id,
        and the incident's record (updated, or resolved when it was the last one out)."""
        inc = next((i for i in self.open if z.signal in i.members
                    and not i.members[z.signal].resolved), None)
        if inc is None:
            return z, None  # (a signal whose alert was published before incidents were on)
        inc.members[z.signal].resolved = True
        done = all(m.resolved for m in inc.members.values())
        if done:
            self.open.remove(inc)
            self.resolved += 1
        rec = self._record(policy, inc, "resolved" if done else "updated", z.model_id,
                           z.resolved_at, signals, z.sample_rate,
                           z.resolved_at.event_time if done else None)
        return replace(z, incident_id=inc.incident_id), rec

    def _record(self, policy: IncidentPolicy, inc: OpenIncident, status: Status, model_id: str,
                at: EventRef, signals: Iterable[str], sample_rate: float,
                resolved_at: str | None) -> IncidentRecord:
        ranked = inc.ranked()
        seq = inc.records
        inc.records += 1
        out = moved(ranked, signals)
        n, back = len(ranked), sum(m.resolved for m in ranked)
        top = ", ".join(
            m.signal + (f" ({m.shift:+.2f} std)" if m.shift is not None else "")
            for m in ranked[:3]) + (f" and {n - 3} more" if n > 3 else "")
        what = "; ".join(k.replace("_", " ") + (" moved" if v else " did not move")
                         for k, v in out.items() if v is not None) or "no prediction or " \
            "performance signal watched"
        head = {"opened": "incident opened", "updated": "incident updated",
                "resolved": "incident resolved"}[status]
        summary = (f"{model_id}: {head}: {n} signal{'s' if n != 1 else ''} drifted "
                   f"({back} back): {top}; {what}; at offset {at.offset}")
        return IncidentRecord(
            record_id=record_id("incident-record", inc.incident_id, seq),
            incident_id=inc.incident_id,
            status=status,
            model_id=model_id,
            model_version=inc.model_version,
            segment=inc.segment,
            opened_at=iso_time(inc.opened_at),
            resolved_at=resolved_at,
            window_seconds=policy.window_seconds,
            at=at,
            signals=[m.record(i + 1) for i, m in enumerate(ranked)],
            moved=out,
            alert_ids=list(inc.alert_ids),
            summary=summary,
            sample_rate=sample_rate,
        )
