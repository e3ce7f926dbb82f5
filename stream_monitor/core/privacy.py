"""Alert evidence levels (``privacy.alert_evidence``, docs/security.md "Privacy").

The core builds every output record with the full evidence, because retrain decisions and the
alert lifecycle read it. :func:`redact_outputs` then cuts what leaves the worker down to the
configured level, at the end of a batch:

* ``full``: as built;
* ``aggregate``: window summaries keep count, mean and std (no min, max, quantiles);
* ``none``: only the shift in reference standard deviations and counts; summaries quote no
  statistic of the values.

>>> alert = {"type": "drift_alert", "model_id": "m", "signal": "feature:x",
...          "detector": {"name": "adwin"}, "detected_at": {"offset": 7},
...          "evidence": {"reference": {"count": 3, "mean": 1.0, "std": 0.5, "min": 0.4,
...                       "max": 1.6, "quantiles": {}}, "current": {"count": 2, "mean": 2.0,
...                       "std": 0.1, "min": 1.9, "max": 2.1, "quantiles": {}},
...                       "recent": {"count": 2, "mean": 2.0, "std": 0.1, "min": 1.9,
...                       "max": 2.1, "quantiles": {}}, "mean_shift_in_reference_std": 2.0,
...                       "standardization": {"mean": 1.0, "std": 0.5}},
...          "summary": "m feature:x: mean rose from 1 to 2 (+2.00 reference std) ..."}
>>> redact_record(alert, "aggregate")["evidence"]["current"]
{'count': 2, 'mean': 2.0, 'std': 0.1}
>>> r = redact_record(alert, "none")
>>> r["evidence"]
{'mean_shift_in_reference_std': 2.0}
>>> r["summary"]
'm feature:x: mean rose by +2.00 reference std over the last 2 values; adwin fired at offset 7'
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["EvidenceLevel", "redact_outputs", "redact_record"]

EvidenceLevel = Literal["full", "aggregate", "none"]

_AGGREGATE = ("count", "mean", "std")


def _aggregate(summary: Any) -> Any:
    if not isinstance(summary, dict):
        return summary
    return {k: summary[k] for k in _AGGREGATE if k in summary}


def _strip_extremes(obj: Any) -> Any:
    """Every window summary anywhere in the evidence (reference, current, recent, and the
    `before` / `after` of a localized change) cut to count, mean and std: min, max and
    quantiles are raw values or close to them."""
    if isinstance(obj, dict):
        if "min" in obj or "max" in obj or "quantiles" in obj:
            return _aggregate(obj)
        return {k: _strip_extremes(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_extremes(v) for v in obj]
    return obj


def _num(x: Any) -> str:
    return f"{x:+.2f}" if isinstance(x, int | float) else "?"


def _drift_record(rec: dict[str, Any], level: EvidenceLevel) -> dict[str, Any]:
    """A drift alert or a resolution. ``aggregate``: its window summaries cut to count, mean
    and std. ``none``: the evidence keeps the shift (a resolution also its window's count) and
    the summary is written again from them, without the reference mean."""
    ev = rec.get("evidence") or {}
    if level == "aggregate":
        return {**rec, "evidence": _strip_extremes(ev)}
    shift = ev.get("mean_shift_in_reference_std")
    current = ev.get("current") or {}
    if rec.get("type") == "drift_resolved":
        evidence: dict[str, Any] = {"current": {"count": current.get("count")}}
        summary = _resolved_summary(rec, shift, current)
    else:
        evidence, summary = {}, _alert_summary(rec, shift, current)
    evidence["mean_shift_in_reference_std"] = shift
    return {**rec, "evidence": evidence, "summary": summary}


def _alert_summary(rec: dict[str, Any], shift: Any, current: dict[str, Any]) -> str:
    direction = "rose" if (shift or 0) > 0 else "fell"
    det = rec.get("detector") or {}
    at = rec.get("detected_at") or {}
    return (f"{rec.get('model_id')} {rec.get('signal')}: mean {direction} by "
            f"{_num(shift)} reference std over the last {current.get('count', '?')} "
            f"values; {det.get('name')} fired at offset {at.get('offset')}")


def _resolved_summary(rec: dict[str, Any], shift: Any, current: dict[str, Any]) -> str:
    rule = rec.get("rule") or {}
    at = rec.get("resolved_at") or {}
    return (f"{rec.get('model_id')} {rec.get('signal')}: back within "
            f"{rule.get('resolve_max_shift')} reference std of the reference mean "
            f"({_num(shift)} std over the last {current.get('count')} values); "
            f"resolved at offset {at.get('offset')}")


def _retrain_request(rec: dict[str, Any], level: EvidenceLevel) -> dict[str, Any]:
    if level == "aggregate":
        return rec
    out = dict(rec)
    out["evidence"] = [{k: v for k, v in e.items() if k != "reference"}
                       for e in rec.get("evidence") or []]
    return out


def _deployment_check(rec: dict[str, Any], level: EvidenceLevel) -> dict[str, Any]:
    keep = _AGGREGATE if level == "aggregate" else ("count",)
    out = dict(rec)
    signals = []
    for s in rec.get("signals") or []:
        s = dict(s)
        for side in ("previous", "new"):
            if isinstance(s.get(side), dict):
                s[side] = {k: s[side][k] for k in keep if k in s[side]}
        if level == "none" and isinstance(s.get("categories"), dict):
            s["categories"] = {k: v for k, v in s["categories"].items() if k != "shares"}
        signals.append(s)
    out["signals"] = signals
    return out


_BY_TYPE = {"drift_alert": _drift_record, "drift_resolved": _drift_record,
            "retrain_request": _retrain_request, "deployment_check": _deployment_check}


def redact_record(rec: dict[str, Any], level: EvidenceLevel) -> dict[str, Any]:
    """The record as it may leave the worker at ``level`` (a new dict; ``rec`` is unchanged,
    since the core's state may still refer to it)."""
    if level == "full":
        return rec
    fn = _BY_TYPE.get(str(rec.get("type")))
    return fn(rec, level) if fn is not None else rec


def redact_outputs(result: Any, level: EvidenceLevel) -> None:
    """Apply ``level`` to the output records of a ``BatchResult`` (its lists are replaced)."""
    if level == "full":
        return
    for name in ("alerts", "retrain_requests", "resolved", "deployment_checks"):
        records = getattr(result, name, None)
        if records:
            setattr(result, name, [redact_record(r, level) for r in records])
