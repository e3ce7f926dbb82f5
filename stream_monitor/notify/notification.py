"""What a record on the alert or retrain topic means to a person on call. Pure: no I/O.

Every forwarder starts from a :class:`Notification`: trigger or resolve, the alert fingerprint
(the same for a drift alert and its later resolution), labels, a one-line summary and the
evidence as flat ``name -> text`` details.

The **fingerprint** identifies *the problem*, not one detection: a hash of (model_id,
model_version, signal, detector name). PagerDuty uses it as ``dedup_key`` and Alertmanager
derives the same identity from the labels, so a ``drift_resolved`` record with the same four
fields resolves the incident the drift alert opened.

>>> rec = {"type": "drift_resolved", "model_id": "m", "model_version": "1",
...        "signal": "prediction", "detector": {"name": "adwin"},
...        "resolved_at": "2026-01-01T00:00:00.000Z"}
>>> n = notification_from_record(rec)
>>> n.action, n.alertname, n.fingerprint == fingerprint("m", "1", "prediction", "adwin")
('resolve', 'ModelDrift', True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from ..contracts.records import iso_time, parse_time, record_id

__all__ = [
    "Notification",
    "UnsupportedRecord",
    "fingerprint",
    "notification_from_record",
    "parse_time",
]

ALERTNAMES = {"drift_alert": "ModelDrift", "drift_resolved": "ModelDrift",
              "data_quality_alert": "ModelDataQuality", "retrain_request": "RetrainRequested",
              "deployment_check": "ModelDeploymentCheck", "incident": "ModelIncident"}
RETRAIN_SIGNAL = "retrain"  # stands in for the signal in a retrain request's fingerprint


class UnsupportedRecord(ValueError):
    """The record is not something the notifier can forward (unknown type, missing fields)."""

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


def fingerprint(model_id: str, model_version: str | None, signal: str, detector: str) -> str:
    """The alert's identity across trigger and resolve (32 hex chars).

    >>> fingerprint("credit-risk", "1", "feature:amount", "adwin")
    '22ce5048c2a2c70842cfd19dd7e071bd'
    """
    return record_id("fingerprint", model_id, model_version or "", signal, detector)


@dataclass(frozen=True, slots=True)
class Notification:
    action: Literal["trigger", "resolve"]
    # drift_alert | retrain_request | drift_resolved | deployment_check | incident (opened,
    # resolved) | incident_updated
    record_type: str
    alertname: str
    fingerprint: str
    model_id: str
    model_version: str | None
    signal: str | None  # None for a retrain request (it names several signals)
    detector: str | None  # the detector's name; the rule's name for a retrain request
    severity: str
    summary: str
    occurred_at: float  # event time, epoch seconds: detection, request or resolution
    idempotency_key: str  # the same for every delivery of this record
    record: dict[str, Any] = field(repr=False)
    details: dict[str, str] = field(default_factory=dict, repr=False)  # evidence, ordered

    @property
    def occurred_at_iso(self) -> str:
        return iso_time(self.occurred_at)

    @property
    def labels(self) -> dict[str, str]:
        """Labels that identify the alert (Alertmanager labels; PagerDuty custom details)."""
        out = {"alertname": self.alertname, "model": self.model_id}
        if self.model_version:
            out["model_version"] = self.model_version
        if self.signal is not None:
            out["signal"] = self.signal
        if self.detector is not None and self.record_type != "retrain_request":
            out["detector"] = self.detector
        if self.record_type.startswith("incident"):
            out["incident"] = self.fingerprint  # two incidents of a model: two alerts
        out["severity"] = self.severity
        return out


def _str(rec: dict[str, Any], key: str) -> str:
    v = rec.get(key)
    if not isinstance(v, str) or not v:
        raise UnsupportedRecord("missing_field", f"{rec.get('type')} record has no {key!r} string")
    return v


def _version(rec: dict[str, Any]) -> str | None:
    v = rec.get("model_version")
    return v if isinstance(v, str) and v else (str(v) if isinstance(v, int) else None)


def _detector_name(rec: dict[str, Any]) -> str:
    det = rec.get("detector")
    if isinstance(det, dict):
        det = det.get("name")
    if not isinstance(det, str) or not det:
        raise UnsupportedRecord("missing_field", f"{rec.get('type')} record has no detector name")
    return det


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _drift_details(rec: dict[str, Any]) -> dict[str, str]:
    d: dict[str, str] = {}
    ev = rec.get("evidence") or {}
    for window in ("reference", "current", "recent"):
        s = ev.get(window) or {}
        if s:
            d[f"{window}_mean"] = _fmt(s.get("mean"))
            d[f"{window}_std"] = _fmt(s.get("std"))
            d[f"{window}_count"] = _fmt(s.get("count"))
    if ev.get("mean_shift_in_reference_std") is not None:
        d["mean_shift_in_reference_std"] = _fmt(ev["mean_shift_in_reference_std"])
    det = rec.get("detector") or {}
    if isinstance(det, dict) and det.get("type"):
        d["detector_type"] = str(det["type"])
    at = rec.get("detected_at") or {}
    if at:
        d["offset"] = f"{at.get('topic')}/{at.get('partition')}@{at.get('offset')}"
        d["event_id"] = str(at.get("event_id"))
        d["event_time"] = str(at.get("event_time"))
    if rec.get("alert_id"):
        d["alert_id"] = str(rec["alert_id"])
    # Data-quality alerts, and the sample rate of any alert (docs/scaling.md).
    for k in ("feature", "indicator", "rate_before", "rate_after", "sample_rate"):
        if rec.get(k) is not None:
            d[k] = _fmt(rec[k]) if isinstance(rec[k], float) else str(rec[k])
    return d


def notification_from_record(record: Any, severities: dict[str, str] | None = None,
                             *, raw: bytes | None = None,
                             now: float | None = None) -> Notification | None:
    """Interpret one record from the alert/retrain/deployment topics. Raises
    :class:`UnsupportedRecord`. None: nothing to tell anyone (a deployment check that passed).

    ``raw`` (the record's bytes on the topic) makes the idempotency key of records without an id
    of their own; ``now`` is the fallback time of a resolution that carries none.
    """
    if not isinstance(record, dict):
        raise UnsupportedRecord("not_an_object",
                                f"expected a JSON object, got {type(record).__name__}")
    sev = {"drift_alert": "warning", "data_quality_alert": "warning", "retrain_request": "critical",
           "deployment_check_fail": "critical", "deployment_check_warn": "warning",
           "incident": "warning", **(severities or {})}
    kind = record.get("type")
    if kind not in ALERTNAMES:
        raise UnsupportedRecord("unsupported_type",
                                f"record type {kind!r} is not one the notifier forwards "
                                f"({', '.join(ALERTNAMES)})")
    model_id = _str(record, "model_id")
    version = _version(record)
    if kind == "deployment_check":
        return _deployment_check(record, model_id, version, sev, now)
    if kind == "incident":
        return _incident(record, model_id, version, sev, now)
    if kind in ("drift_alert", "drift_resolved") and record.get("incident_id"):
        return None  # one of an incident's signals: the incident record pages for it
    if kind == "retrain_request":
        rule = record.get("rule") or {}
        rule_name = rule.get("name") if isinstance(rule, dict) else None
        rule_name = rule_name if isinstance(rule_name, str) and rule_name else "retrain"
        request_id = _str(record, "request_id")
        signals = [str(s) for s in record.get("signals") or []]
        at = record.get("triggered_by") or {}
        details = {"reason": str(record.get("reason", "")), "signals": ", ".join(signals),
                   "alert_ids": ", ".join(map(str, record.get("alert_ids") or [])),
                   "request_id": request_id, "rule": rule_name}
        if at:
            details["offset"] = f"{at.get('topic')}/{at.get('partition')}@{at.get('offset')}"
            details["event_id"] = str(at.get("event_id"))
        t = parse_time(record.get("requested_at")) or parse_time(at.get("event_time"))
        return Notification(
            action="trigger", record_type=kind, alertname=ALERTNAMES[kind],
            fingerprint=fingerprint(model_id, version, RETRAIN_SIGNAL, rule_name),
            model_id=model_id, model_version=version, signal=None, detector=rule_name,
            severity=sev["retrain_request"],
            summary=f"{model_id}: retrain requested. {record.get('reason', '')}".strip(),
            occurred_at=t if t is not None else (now or 0.0),
            idempotency_key=request_id, record=record, details=details)

    signal = _str(record, "signal")
    detector = _detector_name(record)
    fp = fingerprint(model_id, version, signal, detector)
    if kind in ("drift_alert", "data_quality_alert"):
        at = record.get("detected_at") or {}
        t = parse_time(at.get("event_time"))
        alert_id = _str(record, "alert_id")
        summary = record.get("summary") or f"{model_id} {signal}: drift detected by {detector}"
        return Notification(
            action="trigger", record_type=kind, alertname=ALERTNAMES[kind], fingerprint=fp,
            model_id=model_id, model_version=version, signal=signal, detector=detector,
            severity=sev.get(kind, sev["drift_alert"]), summary=str(summary),
            occurred_at=t if t is not None else (now or 0.0),
            idempotency_key=alert_id, record=record, details=_drift_details(record))

    # drift_resolved: its exact shape comes with a later record type; read what it has.
    resolved = record.get("resolved_at")
    if isinstance(resolved, dict):
        resolved = resolved.get("event_time")
    t = parse_time(resolved)
    if t is None:
        t = parse_time((record.get("detected_at") or {}).get("event_time"))
    key = record.get("resolution_id") or record.get("alert_id")
    if not isinstance(key, str) or not key:
        key = hashlib.sha256(raw).hexdigest()[:32] if raw is not None else record_id(
            "resolved", fp, resolved)
    details = _drift_details(record)
    summary = record.get("summary") or f"{model_id} {signal}: drift ({detector}) resolved"
    return Notification(
        action="resolve", record_type=kind, alertname=ALERTNAMES[kind], fingerprint=fp,
        model_id=model_id, model_version=version, signal=signal, detector=detector,
        severity=sev["drift_alert"],  # the same labels as the alert it resolves
        summary=str(summary), occurred_at=t if t is not None else (now or 0.0),
        idempotency_key="resolve-" + key, record=record, details=details)


def _incident(record: dict[str, Any], model_id: str, version: str | None,
              sev: dict[str, str], now: float | None) -> Notification:
    """An incident (docs/incidents.md): ``opened`` pages, ``resolved`` resolves the page, both
    keyed by the incident id; ``updated`` (a signal joined or came back) is the record type
    ``incident_updated``, which a target receives only when its ``records`` name it."""
    incident_id = _str(record, "incident_id")
    status = record.get("status")
    if status not in ("opened", "updated", "resolved"):
        raise UnsupportedRecord("unsupported_type", f"incident status {status!r}")
    at = record.get("at") or {}
    t = parse_time(at.get("event_time") if isinstance(at, dict) else None)
    signals = [s for s in record.get("signals") or [] if isinstance(s, dict)]
    details = {"incident_id": incident_id, "status": str(status),
               "signals": ", ".join(
                   f"{s.get('signal')} ({_fmt(s.get('mean_shift_in_reference_std'))} std"
                   + (", back)" if s.get("resolved") else ")") for s in signals),
               "opened_at": str(record.get("opened_at"))}
    moved = record.get("moved") or {}
    if isinstance(moved, dict):
        for k, v in moved.items():
            details[f"{k}_moved"] = "n/a" if v is None else str(bool(v)).lower()
    if at and isinstance(at, dict):
        details["offset"] = f"{at.get('topic')}/{at.get('partition')}@{at.get('offset')}"
        details["event_id"] = str(at.get("event_id"))
    if record.get("segment") is not None:
        details["segment"] = str(record["segment"])
    return Notification(
        action="resolve" if status == "resolved" else "trigger",
        record_type="incident_updated" if status == "updated" else "incident",
        alertname=ALERTNAMES["incident"], fingerprint=incident_id, model_id=model_id,
        model_version=version, signal=None, detector=None, severity=sev["incident"],
        summary=str(record.get("summary") or f"{model_id}: incident {status}"),
        occurred_at=t if t is not None else (now or 0.0),
        idempotency_key=_str(record, "record_id"), record=record, details=details)


def _deployment_check(record: dict[str, Any], model_id: str, version: str | None,
                      sev: dict[str, str], now: float | None) -> Notification | None:
    """A new model version's deployment check: `fail` and `warn` page (their own severities),
    `pass` is not forwarded."""
    verdict = record.get("verdict")
    if verdict == "pass":
        return None
    if verdict not in ("fail", "warn"):
        raise UnsupportedRecord("unsupported_type", f"deployment check verdict {verdict!r}")
    check_id = _str(record, "check_id")
    reasons = [str(r) for r in record.get("reasons") or []]
    details = {"verdict": str(verdict), "previous_version": str(record.get("previous_version")),
               "reasons": "; ".join(reasons), "check_id": check_id,
               "reason": str(record.get("reason", ""))}
    t = parse_time(record.get("completed_at"))
    return Notification(
        action="trigger", record_type="deployment_check", alertname=ALERTNAMES["deployment_check"],
        fingerprint=fingerprint(model_id, version, "deployment", "deployment_check"),
        model_id=model_id, model_version=version, signal=None, detector="deployment_check",
        severity=sev.get(f"deployment_check_{verdict}", "warning"),
        summary=str(record.get("summary") or f"{model_id} {version}: deployment check {verdict}"),
        occurred_at=t if t is not None else (now or 0.0), idempotency_key=check_id,
        record=record, details=details)
