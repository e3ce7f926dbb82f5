"""Alert rendering: the records a fired detector becomes, with their evidence and summary.

* :func:`drift_alert`: a detector fired on a signal's values (schema ``drift-alert``): the
  reference it was measured against, the values before and after the estimated change start
  (core/localize.py), the kind of change, and a one-line summary.
* :func:`quality_alert`: a detector fired on a fault rate (schema ``data-quality-alert``).

Both are called before the signal rebaselines: the evidence is against the reference the change
was measured on. Pure functions of the state; the monitor decides what is published.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..contracts.output_records import DriftAlert, FiredDetector, Json, QualityAlert
from ..contracts.records import InferenceEvent, Position, detected_at, record_id
from ..contracts.units import id_parts
from .bernoulli import locate_rate
from .calibrate import change_kind
from .categories import category_evidence
from .joint import JointState
from .localize import locate
from .model_state import ModelState
from .plan import MonitorPlan, QualityPlan
from .signals import SignalState
from .stats import summarize

__all__ = ["drift_alert", "joint_alert", "quality_alert", "rate_change"]


def _alert_id(id_tag: str, model: ModelState, sig: SignalState, detector: str) -> str:
    """An alert's id: a function of the unit, the signal, the detector and the signal's value
    count, so a redelivered event gives the same alert id."""
    return record_id(id_tag, *id_parts(model.model_id, model.model_version), sig.signal,
                     detector, sig.generation, sig.n)


def drift_alert(config: MonitorPlan, model: ModelState, sig: SignalState, i: int,
                ev: InferenceEvent) -> DriftAlert:
    """The ``drift_alert`` of detector ``i`` of ``sig``, which fired at event ``ev``."""
    if sig.table is not None:
        return _category_alert(config, model, sig, i, ev)
    name = sig.detector_names[i]
    spec = config.detector(name, model.rule)
    pos = ev.position
    watched_ref = sig.watched_reference
    reference = summarize(watched_ref)
    recent = list(sig.recent)
    # The values since the reference formed (all in `recent`, or its tail), split at the
    # estimated change start (core/localize.py): `before` follows the reference, `current`
    # is the change.
    since = sig.n - sig.base_n - len(watched_ref)
    window = recent[max(len(recent) - since, 0):] if since > 0 else recent[-1:]
    z = (np.asarray(window, dtype=np.float64) - sig.ref_mean) / sig.ref_std
    tau = 1.0
    if sig.calibration is not None:
        tau = float(sig.calibration.get("long_run_variance_ratio", 1.0))
    kind = _kind_of(sig)
    if kind is None and _binary_values(watched_ref):
        kind = "rate"  # a 0/1 flag's level is its rate
    loc: dict[str, Any] | None
    if sig.kinds and sig.kinds[i] == "bernoulli_cusum":
        window, loc = rate_change(sig, recent)  # the binomial likelihood ratio's start
        kind = "rate"
    else:
        loc = locate(z, tau, kind="mean" if kind is not None else None)
    if kind is None and loc is not None:
        # Level or spread: which robust statistic moved more after the estimated start (a
        # shift also raises a spread statistic, so which sum fired first does not tell);
        # then the start of that kind of change.
        kind = change_kind(watched_ref, window[loc["start"]:])
        if kind != loc["kind"]:
            loc = locate(z, tau, kind=kind)
        if spec.type == "kswin" and loc is not None and loc["llr"] < 3.0:
            kind = "shape"  # KSWIN fired and neither level nor spread explains it
    start = loc["start"] if loc is not None else len(window) - 1
    after = window[start:]
    evidence_n = min(len(after), config.windows.evidence_size)
    current = summarize(after[len(after) - evidence_n:])
    before = summarize(window[:start])
    shift = None
    if reference["mean"] is not None and current["mean"] is not None:
        shift = (current["mean"] - sig.ref_mean) / sig.ref_std
    if kind is None:
        kind = "mean"
    change_start = _change_start(model, sig, len(window), loc, pos)
    params = _params(spec.effective_params, sig, i)
    evidence: dict[str, Json] = {
        "reference": reference,
        "current": current,
        "before": before,
        "recent": summarize(recent),
        "mean_shift_in_reference_std": shift,
        "standardization": {"mean": sig.ref_mean, "std": sig.ref_std},
        "change": {"kind": kind, "start": change_start},
    }
    if sig.calibration is not None:
        evidence["calibration"] = sig.calibration
    perf = performance_evidence(model, sig.signal)
    if perf is not None:
        evidence["performance"] = perf
    return DriftAlert(
        alert_id=_alert_id("alert", model, sig, name),
        model_id=model.model_id,
        model_version=ev.model_version,
        signal=sig.signal,
        detector=FiredDetector(name, spec.type, params),
        detected_at=detected_at(ev, sig.n),
        evidence=evidence,
        summary=_summary(model.model_id, sig, kind, reference, current, shift, evidence_n,
                         name, pos.offset, change_start),
        sample_rate=model.rule.sample_rate,
    )


def performance_evidence(model: ModelState, signal: str) -> Json | None:
    """The windowed metrics of the model's last labelled events (core/performance.py) in the
    evidence of an alert on a performance signal (``performance:*``, ``estimate_gap``); None
    for other signals, or before the model has a labelled event."""
    ms = model.performance
    if ms is None or not ms.rows or not (signal.startswith("performance:")
                                          or signal == "estimate_gap"):
        return None
    v: Json = ms.values()
    return v


def _params(configured: Mapping[str, Any], sig: SignalState, i: int) -> dict[str, Any]:
    """Detector ``i``'s effective parameters: the configured ones overlaid with the calibrated
    ones; only the calibrated ones when it was built as another type (a ``cusum`` on a binary
    signal is a ``bernoulli_cusum``, which takes none of the numeric parameters)."""
    other = bool(sig.kinds) and sig.kinds[i] != sig.detector_params[i]["__type__"]
    params = {} if other else dict(configured)
    if sig.overrides is not None:
        params.update(sig.overrides[i])
    return params


def _category_alert(config: MonitorPlan, model: ModelState, sig: SignalState, i: int,
                    ev: InferenceEvent) -> DriftAlert:
    """The ``drift_alert`` of a categorical signal (core/categories.py): which categories
    moved, from what share to what share, and where the mix began to change."""
    name = sig.detector_names[i]
    pos = ev.position
    watched_ref = sig.watched_reference
    recent = list(sig.recent)
    since = sig.n - sig.base_n - len(watched_ref)
    window = recent[max(len(recent) - since, 0):] if since > 0 else recent[-1:]
    cal = sig.calibration or {}
    over = (sig.overrides or [{}])[i]
    cats, _, loc = category_evidence(window, cal, over.get("slot_of", []))
    change_start = _change_start(model, sig, len(window), loc, pos)
    top = cats["moved"][0]
    p = min(max(top["reference_share"], 1e-9), 1.0 - 1e-9)
    # The category that moved most, as a 0/1 indicator: its shift in reference std.
    shift = top["change"] / math.sqrt(p * (1.0 - p))
    params = {k: v for k, v in over.items() if k in ("w", "h", "inv_tau")}
    evidence: dict[str, Json] = {
        "categories": cats,
        "mean_shift_in_reference_std": shift,
        # (Its share and binomial std: what the shift is measured against.)
        "standardization": {"mean": p, "std": math.sqrt(p * (1.0 - p))},
        "change": {"kind": "category_mix", "start": change_start},
        "calibration": cal,
    }
    where = (f"; change began at offset {change_start['offset']}"
             if change_start["offset"] is not None
             else f"; change began {change_start['values_before_detection']} values earlier")
    moved = ", ".join(f"{r['category']!r} {r['reference_share']:.1%} -> {r['current_share']:.1%}"
                      for r in cats["moved"][:3] if r["change"])
    return DriftAlert(
        alert_id=_alert_id("alert", model, sig, name),
        model_id=model.model_id,
        model_version=ev.model_version,
        signal=sig.signal,
        detector=FiredDetector(name, "multinomial_cusum", params),
        detected_at=detected_at(ev, sig.n),
        evidence=evidence,
        summary=(f"{model.model_id} {sig.signal}: category mix changed (total variation "
                 f"{cats['total_variation']:.2f} over the last {cats['values_after_start']} "
                 f"values): {moved}{where}; {name} fired at offset {pos.offset}"),
        sample_rate=model.rule.sample_rate,
    )


def _change_start(model: ModelState, sig: SignalState, window: int,
                  loc: dict[str, Any] | None, pos: Position) -> dict[str, Any]:
    """The estimated first changed value: its signal index, and its event when every event
    of the model since the reference began carried a value of this signal (then value
    ``j`` is event ``j``); ``low``/``high`` bound it (profile-likelihood interval)."""
    start = loc["start"] if loc is not None else window - 1
    low = loc["low"] if loc is not None else start
    high = loc["high"] if loc is not None else start
    values_back = window - start  # values from the start to the detection, inclusive
    out: dict[str, Any] = {
        "signal_index": sig.n - values_back + 1,
        "signal_index_low": sig.n - (window - low) + 1,
        "signal_index_high": sig.n - (window - high) + 1,
        "values_before_detection": values_back - 1,
        "event_id": None, "topic": None, "partition": None, "offset": None,
        "method": "profile_likelihood",
    }
    exact = model.events - sig.base_events == sig.n - sig.base_n
    if exact and values_back <= len(model.ring_ids):
        out.update(event_id=model.ring_ids[-values_back], topic=pos.topic,
                   partition=pos.partition, offset=model.ring_offsets[-values_back])
    return out


def _kind_of(sig: SignalState) -> str | None:
    """The kind of change an alert reports when the signal tells it (fault rates, category
    shares, 0/1 errors under binary detectors); None: decided from the values."""
    name = sig.signal
    if name.startswith("quality:"):
        return "rate"
    if any(sig.binary):
        return "rate"
    return None


def _binary_values(values: Sequence[float]) -> bool:
    return bool(values) and all(v == 0.0 or v == 1.0 for v in values)


def _summary(model_id: str, sig: SignalState, kind: str, reference: dict[str, Any],
             current: dict[str, Any], shift: float | None, n: int, name: str, offset: int,
             start: dict[str, Any]) -> str:
    where = (f"; change began at offset {start['offset']}" if start["offset"] is not None
             else f"; change began {start['values_before_detection']} values earlier")
    head = f"{model_id} {sig.signal}: "
    if kind == "spread":
        r_sd, c_sd = reference["std"] or 0.0, current["std"] or 0.0
        ratio = c_sd / r_sd if r_sd else float("inf")
        what = (f"spread {'rose' if ratio >= 1 else 'fell'} from std {r_sd:.4g} to {c_sd:.4g} "
                f"(x{ratio:.2f}); mean {reference['mean']:.4g} -> {current['mean']:.4g}")
    else:
        direction = "rose" if (shift or 0) > 0 else "fell"
        noun = {"rate": "rate", "category_mix": "share", "shape": "distribution shape; mean"}.get(
            kind, "mean")
        if kind == "rate" and _binary_values(sig.watched_reference):
            what = f"rate {direction} from {reference['mean']:.1%} to {current['mean']:.1%}"
        else:
            what = (f"{noun} {direction} from {reference['mean']:.4g} to {current['mean']:.4g} "
                    f"({shift:+.2f} reference std)")
    return (f"{head}{what} over the last {n} values{where}; {name} fired at offset {offset}")


_FAULT_WORDS = {"missing": "missing", "out_of_bounds": "out-of-bounds",
                "unseen_category": "unseen-category"}


def joint_alert(alert: DriftAlert, joint: JointState, last: int) -> DriftAlert:
    """A ``joint`` signal's alert (core/joint.py) with the features that moved it: evidence
    ``joint`` (each feature's contribution to the distance over the last ``last`` events against
    the fit reference's) and their names in the summary."""
    ev = joint.evidence(last)
    top = ev.get("top") or []
    if not top:
        return alert
    # Name those whose contribution at least doubled against the reference, else the first.
    top = [t for t in top if t["ratio"] >= 2.0] or top[:1]
    names = ", ".join(f"{t['feature']} (x{t['ratio']:.2f}, mean "
                      f"{t['mean_shift_in_reference_std']:+.2f} std)" for t in top)
    what = "projections" if joint.dim else "features"
    return replace(alert, evidence={**alert.evidence, "joint": ev},
                   summary=f"{alert.summary}; {what} that moved it most: {names}")


def quality_alert(config: MonitorPlan, model: ModelState, rule: QualityPlan, sig: SignalState,
                  feature: str, fault: str, i: int, ev: InferenceEvent) -> QualityAlert:
    """The ``data_quality_alert`` of detector ``i`` of the fault-rate signal ``sig`` (of
    ``fault`` on ``feature``, under the model's value rules ``rule``): one 0/1 value per event;
    the rate after the change is measured from its estimated start (:func:`rate_change`)."""
    name = sig.detector_names[i]
    spec = config.detectors[name]
    pos = ev.position
    watched_ref = sig.watched_reference
    before = _mean(watched_ref)
    recent = list(sig.recent)
    k = min(len(recent), rule.evidence_samples * rule.sample_events)
    current = _mean(recent[len(recent) - k:])
    window, loc = rate_change(sig, recent)
    after = _mean(window[loc["start"]:]) if loc is not None else current
    change_start = _change_start(model, sig, len(window), loc, pos)
    word = _FAULT_WORDS[fault]
    direction = "rose" if after > before else "fell"
    params = _params(spec.effective_params, sig, i)
    evidence: dict[str, Json] = {
        "sample_events": rule.sample_events,
        "reference": {"samples": len(watched_ref), "rate": before},
        "current": {"samples": k, "rate": current},
        "change": {"kind": "rate", "start": change_start},
    }
    if sig.calibration is not None:
        evidence["calibration"] = sig.calibration
    where = (f"; change began at offset {change_start['offset']}"
             if change_start["offset"] is not None
             else f"; change began {change_start['values_before_detection']} events earlier")
    return QualityAlert(
        alert_id=_alert_id("dq", model, sig, name),
        model_id=model.model_id,
        model_version=ev.model_version,
        feature=feature,
        indicator=fault,
        signal=sig.signal,
        detector=FiredDetector(name, spec.type, params),
        detected_at=detected_at(ev, sig.n),
        rate_before=before,
        rate_after=after,
        sample_rate=model.rule.sample_rate,
        evidence=evidence,
        summary=(
            f"{model.model_id} feature {feature!r}: {word} rate {direction} from {before:.1%} "
            f"(reference, {len(watched_ref)} events) to {after:.1%} over the last "
            f"{len(window) - (loc['start'] if loc is not None else 0)} events{where}; "
            f"{name} fired at offset {pos.offset}"
        ),
    )


def rate_change(sig: SignalState, recent: Sequence[float],
                ) -> tuple[list[float], dict[str, Any] | None]:
    """The 0/1 values since the reference formed (those still in ``recent``) and where a rate
    change among them began (:func:`~stream_monitor.core.bernoulli.locate_rate`: the argmax of
    the binomial likelihood ratio against the reference rate, over the candidate starts)."""
    ref = sig.watched_reference
    since = sig.n - sig.base_n - len(ref)
    window = list(recent[max(len(recent) - since, 0):]) if since > 0 else list(recent[-1:])
    p0 = (math.fsum(ref) + 0.5) / (len(ref) + 1.0)  # Jeffreys: a fault-free reference too
    tau = 1.0
    if sig.calibration is not None:
        tau = float(sig.calibration.get("long_run_variance_ratio", 1.0))
    return window, locate_rate(window, p0, tau)


def _mean(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    m = math.fsum(values) / len(values)
    return min(1.0, max(0.0, m))
