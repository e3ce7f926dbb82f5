"""Alert evidence levels (``privacy.alert_evidence``, docs/security.md "Privacy").

The core builds every output record with the full evidence, because retrain decisions and the
alert lifecycle read it. :func:`redact_outputs` then cuts what leaves the worker down to the
configured level, at the end of a batch:

* ``full``: as built;
* ``aggregate``: window summaries keep count, mean and std (no min, max, quantiles);
* ``none``: only the shift in reference standard deviations and counts; summaries quote no
  statistic of the values.

>>> from stream_monitor.contracts.output_records import DriftAlert, EventRef, FiredDetector
>>> alert = DriftAlert(alert_id="a", model_id="m", model_version=None, signal="feature:x",
...     detector=FiredDetector("adwin", "adwin", {}), detected_at=EventRef("e", "t", 0, 7,
...     "1970-01-01T00:00:00.000Z", 9), sample_rate=1.0,
...     evidence={"reference": {"count": 3, "mean": 1.0, "std": 0.5, "min": 0.4,
...               "max": 1.6, "quantiles": {}}, "current": {"count": 2, "mean": 2.0,
...               "std": 0.1, "min": 1.9, "max": 2.1, "quantiles": {}},
...               "recent": {"count": 2, "mean": 2.0, "std": 0.1, "min": 1.9,
...               "max": 2.1, "quantiles": {}}, "mean_shift_in_reference_std": 2.0,
...               "standardization": {"mean": 1.0, "std": 0.5}},
...     summary="m feature:x: mean rose from 1 to 2 (+2.00 reference std) ...")
>>> redact_record(alert, "aggregate").evidence["current"]
{'count': 2, 'mean': 2.0, 'std': 0.1}
>>> r = redact_record(alert, "none")
>>> r.evidence
{'mean_shift_in_reference_std': 2.0}
>>> r.summary
'm feature:x: mean rose by +2.00 reference std over the last 2 values; adwin fired at offset 7'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal, Protocol, TypeVar

from ..contracts.output_records import (
    DeploymentCheck,
    DriftAlert,
    DriftResolved,
    Json,
    JsonObject,
    OutputBody,
    RetrainRequest,
)

__all__ = ["EvidenceLevel", "redact_outputs", "redact_record"]

EvidenceLevel = Literal["full", "aggregate", "none"]

_AGGREGATE = ("count", "mean", "std")


def _aggregate(summary: Json) -> Json:
    if not isinstance(summary, Mapping):
        return summary
    return {k: summary[k] for k in _AGGREGATE if k in summary}


def _strip_extremes(obj: Json) -> Json:
    """Every window summary anywhere in the evidence (reference, current, recent, and the
    `before` / `after` of a localized change) cut to count, mean and std: min, max and
    quantiles are raw values or close to them."""
    if isinstance(obj, Mapping):
        if "min" in obj or "max" in obj or "quantiles" in obj:
            return _aggregate(obj)
        return {k: _strip_extremes(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_extremes(v) for v in obj]
    return obj


def _num(x: Json) -> str:
    return f"{x:+.2f}" if isinstance(x, int | float) else "?"


def _object(v: Json) -> JsonObject:
    return v if isinstance(v, Mapping) else {}


def _drift_record(rec: DriftAlert | DriftResolved,
                  level: EvidenceLevel) -> DriftAlert | DriftResolved:
    """A drift alert or a resolution. ``aggregate``: its window summaries cut to count, mean
    and std. ``none``: the evidence keeps the shift (a resolution also its window's count) and
    the summary is written again from them, without the reference mean."""
    ev = rec.evidence
    if level == "aggregate":
        return replace(rec, evidence=_object(_strip_extremes(ev)))
    shift = ev.get("mean_shift_in_reference_std")
    current = _object(ev.get("current"))
    evidence: dict[str, Json]
    if isinstance(rec, DriftResolved):
        evidence = {"current": {"count": current.get("count")}}
        summary = _resolved_summary(rec, shift, current)
    else:
        evidence, summary = {}, _alert_summary(rec, shift, current)
    evidence["mean_shift_in_reference_std"] = shift
    return replace(rec, evidence=evidence, summary=summary)


def _alert_summary(rec: DriftAlert, shift: Json, current: JsonObject) -> str:
    direction = "rose" if isinstance(shift, int | float) and shift > 0 else "fell"
    return (f"{rec.model_id} {rec.signal}: mean {direction} by "
            f"{_num(shift)} reference std over the last {current.get('count', '?')} "
            f"values; {rec.detector.name} fired at offset {rec.detected_at.offset}")


def _resolved_summary(rec: DriftResolved, shift: Json, current: JsonObject) -> str:
    return (f"{rec.model_id} {rec.signal}: back within "
            f"{rec.rule.get('resolve_max_shift')} reference std of the reference mean "
            f"({_num(shift)} std over the last {current.get('count')} values); "
            f"resolved at offset {rec.resolved_at.offset}")


def _retrain_request(rec: RetrainRequest, level: EvidenceLevel) -> RetrainRequest:
    if level == "aggregate":
        return rec
    return replace(rec, evidence=[{k: v for k, v in e.items() if k != "reference"}
                                  for e in rec.evidence])


def _deployment_check(rec: DeploymentCheck, level: EvidenceLevel) -> DeploymentCheck:
    keep = _AGGREGATE if level == "aggregate" else ("count",)
    signals: list[JsonObject] = []
    for s in rec.signals:
        out = dict(s)
        for side in ("previous", "new"):
            part = out.get(side)
            if isinstance(part, Mapping):
                out[side] = {k: part[k] for k in keep if k in part}
        cats = out.get("categories")
        if level == "none" and isinstance(cats, Mapping):
            out["categories"] = {k: v for k, v in cats.items() if k != "shares"}
        signals.append(out)
    return replace(rec, signals=signals)


_R = TypeVar("_R", bound=OutputBody)


def redact_record(rec: _R, level: EvidenceLevel) -> _R:
    """The record as it may leave the worker at ``level`` (a new record; ``rec`` is unchanged,
    since the core's state may still refer to it)."""
    if level == "full":
        return rec
    out: OutputBody = rec
    if isinstance(rec, DriftAlert | DriftResolved):
        out = _drift_record(rec, level)
    elif isinstance(rec, RetrainRequest):
        out = _retrain_request(rec, level)
    elif isinstance(rec, DeploymentCheck):
        out = _deployment_check(rec, level)
    assert isinstance(out, type(rec))
    return out


class _Outputs(Protocol):
    alerts: list[DriftAlert]
    retrain_requests: list[RetrainRequest]
    resolved: list[DriftResolved]
    deployment_checks: list[DeploymentCheck]


def redact_outputs(result: _Outputs, level: EvidenceLevel) -> None:
    """Apply ``level`` to the output records of a ``BatchResult`` (its lists are replaced)."""
    if level == "full":
        return
    result.alerts = [redact_record(r, level) for r in result.alerts]
    result.retrain_requests = [redact_record(r, level) for r in result.retrain_requests]
    result.resolved = [redact_record(r, level) for r in result.resolved]
    result.deployment_checks = [redact_record(r, level) for r in result.deployment_checks]
