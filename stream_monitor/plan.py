"""What a monitoring config will watch: ``stream-monitor check-config`` prints the compiled
plan the core runs from (core/plan.py, compiled by config.py at load), not a reading of its own.

Signals are discovered from the data at run time (``feature:<name>``, ``prediction``,
``performance:error``, ``quality:<fault>:<feature>``), so the plan of a config alone lists its
*rules*: per model rule, the signal globs with their detectors (effective parameters, and
whether a false-alarm budget calibrates them on each reference), the reference size a signal
needs before it is watched, and the value rules. Given a sample of events, :func:`observe`
replays it through the same core with in-memory state and lists the concrete signals found,
watched or still collecting their reference.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .core.plan import DetectorSpec, ModelPlan, MonitorPlan, SignalPlan
from .core.seasonal import MAX_GROWTH, MIN_PERIODS

__all__ = ["config_plan", "observe", "render_plan"]


def _detector(spec: DetectorSpec, budgeted: bool) -> dict[str, Any]:
    return {"name": spec.name, "type": spec.type, "input": spec.input,
            "params": dict(spec.effective_params),
            # River's binary detectors (the DDM family) keep their own statistics; ours
            # (bernoulli_cusum) is calibrated (core/bernoulli.py).
            "calibrated": budgeted and (spec.input != "binary"
                                        or spec.type == "bernoulli_cusum")}


def _signal_rule(plan: MonitorPlan, rule: ModelPlan, sr: SignalPlan) -> dict[str, Any]:
    budget = sr.budget
    out: dict[str, Any] = {
        "match": sr.match,
        "watched_after": sr.watched_after,
        "detectors": [_detector(plan.detectors[d], budget is not None) for d in sr.detectors],
        "false_alarm_budget": None if budget is None else {
            **budget.describe(), "label": budget.label(), "per_value": budget.per_value()},
    }
    if sr.period:
        out["period"] = sr.period
    if sr.period_seconds:
        ref = rule.reference_size
        # The reference must span MIN_PERIODS periods of event time: at most this many values
        # per second fill reference_size values in that time; above it the reference grows (to
        # at most MAX_GROWTH x reference_size values) until it does.
        out["period_seconds"] = sr.period_seconds
        out["period_max_rate"] = ref / (MIN_PERIODS * sr.period_seconds)
        out["period_max_reference"] = MAX_GROWTH * ref
    return out


def _probabilities(rule: ModelPlan) -> dict[str, Any] | None:
    """What the rule watches of class probabilities (docs/probabilities.md)."""
    pp = rule.probabilities
    if pp is None:
        return None
    return {"classes": pp.classes, "confidence": pp.confidence, "class_mix": pp.class_mix,
            "max_classes": pp.max_classes, "estimate": pp.estimate,
            "calibration_size": pp.calibration_size,
            "default_detector": _detector(pp.detector, pp.default_rule.budget is not None)}


def _joint(plan: MonitorPlan, rule: ModelPlan, signal: str = "joint") -> dict[str, Any] | None:
    """The rule's joint (or embedding) signal (docs/joint-drift.md)."""
    jp = rule.joint if signal == "joint" else rule.embedding
    if jp is None:
        return None
    sr = rule.signal_rule(signal)
    named = sr is not None and sr is not jp.default_rule
    return {"features": list(jp.features) or None, "max_features": jp.max_features,
            "fit_size": jp.fit_size,
            "detectors": (list(sr.detectors) if named and sr is not None
                          else [_detector(jp.detector, jp.default_rule.budget is not None)])}
def _performance(rule: ModelPlan) -> dict[str, Any] | None:
    """The rule's windowed performance metrics (docs/metrics.md)."""
    mp = rule.performance
    if mp is None:
        return None
    return {"window": mp.window, "max_classes": mp.max_classes, "calibration_bins": mp.bins,
            "watch": sorted(mp.watch),
            "default_detector": _detector(mp.detector, mp.default_rule.budget is not None)}


def config_plan(plan: MonitorPlan) -> dict[str, Any]:
    """The compiled plan (core/plan.py) as JSON-able data (``check-config --json``)."""
    models = []
    for rule in plan.models:
        q = rule.quality
        models.append({
            "match": rule.match,
            "reference_size": rule.reference_size,
            "recent_size": rule.recent_size,
            "sample_rate": rule.sample_rate,
            "signals": [_signal_rule(plan, rule, sr) for sr in rule.signals],
            "value_rules": None if not q.active else {
                "bounds": {f: asdict(b) for f, b in q.bounds.items()},
                "learned_bounds": None if q.learned_bounds is None
                else asdict(q.learned_bounds),
                "categorical": q.categorical, "max_categories": q.max_categories,
                "indicators": list(q.indicators),
                "fault_rate_detectors": [_detector(plan.detectors[d], False)
                                         for d in q.detectors],
                "sample_events": q.sample_events, "reference_samples": q.reference_samples},
            "labels": None if rule.labels is None else asdict(rule.labels),
            "alerts": None if rule.alerts is None else asdict(rule.alerts),
            "incidents": None if rule.incidents is None else asdict(rule.incidents),
            "retrain": {"min_drifted_signals": rule.retrain.min_drifted_signals,
                        "signals": list(rule.retrain.signals),
                        "within_seconds": rule.retrain.within_seconds,
                        "within_events": rule.retrain.within_events,
                        "count": rule.retrain.count, "min_incidents": rule.retrain.min_incidents},
            "versions_separate": rule.versions.separate,
            "probabilities": _probabilities(rule),
            "joint": _joint(plan, rule),
            "embeddings": _joint(plan, rule, "embedding"),
            "performance": _performance(rule),
        })
    return {"topics": asdict(plan.topics), "detectors": len(plan.detectors),
            "models": models}


def observe(cfg: MonitorPlan, events: Path, labels: Path | None = None) -> dict[str, Any]:
    """Replay a sample of events (and labels) through the core with in-memory state; the
    concrete signals found per model, each watched (with what calibration chose) or still
    collecting its reference (values it has vs values it needs)."""
    from .adapters.replay import replay_file
    from .core.model_state import MonitorState
    from .core.monitor import collecting
    from .core.watchable import describe

    states: list[MonitorState] = []
    total = replay_file(cfg, events, io.BytesIO(), labels=labels, state_out=states)
    # What the core itself reports as still collecting (replay's summary, the metrics).
    pending = {(r["model_id"], r["model_version"], r["signal"]): r
               for r in collecting(states[0])}
    models = []
    for unit in sorted(states[0].models.values(), key=lambda m: m.unit or m.model_id):
        signals = []
        for name in sorted(unit.signals):
            sig = unit.signals[name]
            todo = pending.get((unit.model_id, unit.model_version, name))
            row: dict[str, Any] = {"signal": name, "values": sig.n, "watched": todo is None,
                                   "reference": todo["have"] if todo else None,
                                   "reference_needed": todo["need"] if todo else None,
                                   "rebaselines": sig.generation,
                                   "detectors": list(sig.detector_names)}
            if sig.watch is not None and not sig.watch["watchable"]:
                row["not_watchable"] = describe(sig.watch)
            if sig.overrides:
                row["calibrated"] = {d: o for d, o in zip(sig.detector_names, sig.overrides,
                                                          strict=True) if o}
            signals.append(row)
        models.append({"model_id": unit.model_id, "model_version": unit.model_version,
                       "rule": unit.rule.match, "events": unit.events, "signals": signals})
    return {"file": str(events), "records": total.events, "dead_letters": total.dead_letters,
            "unwatched": total.unwatched, "pairs": total.pairs, "models": models}


def _name(d: dict[str, Any]) -> str:
    return d["name"] if d["name"] == d["type"] else f"{d['name']} = {d['type']}"


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in p.items()) or "defaults"


def _num(v: Any) -> str:
    if isinstance(v, list):  # per-sum parameters (thresholds, alternatives, base rates)
        return "[" + ", ".join(_num(x) for x in v) + "]"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def render_plan(plan: dict[str, Any], observed: dict[str, Any] | None = None) -> list[str]:
    """The plan as text lines (what ``check-config`` prints)."""
    t = plan["topics"]
    lines = [f"reads {t['inference']} (labels: {t['labels']}); writes {t['alerts']}, "
             f"{t['retrain']}, {t['dead_letter']}, {t['deployments']}, {t['operations']}",
             "a signal is watched once its reference is complete; signals are found in the "
             "events (features, prediction, performance:error from labels)"]
    for i, m in enumerate(plan["models"]):
        rate = f", sample rate {m['sample_rate']:g}" if m["sample_rate"] != 1 else ""
        lines.append(f"models[{i}] {m['match']!r}: reference {m['reference_size']} values per "
                     f"signal, recent {m['recent_size']}{rate}")
        for s in m["signals"]:
            b = s["false_alarm_budget"]
            budget = (f"false-alarm budget {b['label']} ({b['per_value']:.3g} per value)"
                      if b else "no false-alarm budget: parameters as declared")
            period = f", period {s['period']} values" if "period" in s else ""
            if "period_seconds" in s:
                period = (f", period {s['period']} of event time (its reference must span "
                          f"{MIN_PERIODS:g} periods: {m['reference_size']} values fill it at up "
                          f"to {s['period_max_rate']:.3g} values per second; at a higher rate "
                          f"the reference keeps growing until it does, up to "
                          f"{s['period_max_reference']} values, or set reference_size to "
                          f"{MIN_PERIODS:g} x period x values per second)")
            short = (f" (on a short reference, re-based at {m['reference_size']})"
                     if s["watched_after"] < m["reference_size"] else "")
            lines.append(f"  signals {s['match']!r}: watched after its first "
                         f"{s['watched_after']} values{short}; {budget}{period}")
            for d in s["detectors"]:
                how = ("calibrated to the budget on each reference (a bernoulli_cusum on a "
                       "0/1 signal)" if d["calibrated"] and d["type"] == "cusum" else
                       "calibrated to the budget on each reference" if d["calibrated"] else
                       "binary input: not calibrated" if b and d["input"] == "binary" else
                       "as declared")
                lines.append(f"    {_name(d)}({_params(d['params'])}): {how}")
        v = m["value_rules"]
        if v:
            parts = [f"bounds {f} [{_num(b['min']) if b['min'] is not None else '-inf'}, "
                     f"{_num(b['max']) if b['max'] is not None else '+inf'}]"
                     for f, b in v["bounds"].items()]
            if v["learned_bounds"]:
                lb = v["learned_bounds"]
                parts.append(f"bounds learned from the reference (quantiles "
                             f"{lb['quantiles'][0]:g}-{lb['quantiles'][1]:g}, k {lb['k']:g})")
            if v["categorical"]:
                parts.append(f"string features as categorical signals (top {v['max_categories']} "
                             "categories + other, multinomial_cusum)")
            if v["indicators"]:
                dets = ", ".join(_name(d) for d in v["fault_rate_detectors"])
                parts.append(f"fault rates quality:<{'|'.join(v['indicators'])}>:<feature> "
                             f"0/1 per event, reference "
                             f"{v['reference_samples'] * v['sample_events']} events, "
                             f"detectors {dets}")
            lines.append(f"  value rules: {'; '.join(parts)}")
        else:
            lines.append("  value rules: none")
        if m["labels"]:
            lb = m["labels"]
            lines.append(f"  labels: {lb['task']} from {t['labels']} -> performance:error "
                         f"(a prediction waits {lb['ttl_seconds']:g} s for its label)")
        p = m.get("probabilities")
        if p:
            what = [w for w, on in (
                (f"probability:<class> (first {p['max_classes']} classes)", p["classes"]),
                ("confidence", p["confidence"]), ("predicted_class", p["class_mix"]),
                (f"performance:estimated_error and estimate_gap (calibrated on "
                 f"{p['calibration_size']} labelled events)", p["estimate"])) if on]
            lines.append(f"  probabilities: {', '.join(what) or 'nothing'}; those no signal "
                         f"rule names watched by {_name(p['default_detector'])} (calibrated to "
                         "the budget)")
        j = m.get("joint")
        if j:
            which = (", ".join(j["features"]) if j["features"]
                     else f"the numeric features of its first events (at most {j['max_features']})")
            dets = ", ".join(d if isinstance(d, str) else _name(d) for d in j["detectors"])
            lines.append(f"  joint: {which} together, fitted on {j['fit_size']} events -> "
                         f"joint, watched by {dets}")
        e = m.get("embeddings")
        if e:
            dets = ", ".join(d if isinstance(d, str) else _name(d) for d in e["detectors"])
            lines.append(f"  embeddings: {e['max_features']} random projections together, "
                         f"fitted on {e['fit_size']} events -> embedding, watched by {dets}")
        pf = m.get("performance")
        if pf:
            watched = (f"; watched: {', '.join(pf['watch'])} (by the signal rule naming it, "
                       f"else {_name(pf['default_detector'])} calibrated to the budget)"
                       if pf["watch"] else "")
            lines.append(f"  performance: metrics over the last {pf['window']} labelled "
                         f"events{watched}")
        if m["incidents"]:
            k = m["retrain"]
            counts = (f"; retrain counts incidents (k = {k['min_incidents']})"
                      if k["count"] == "incidents" else "")
            lines.append(f"  incidents: alerts within {m['incidents']['window_seconds']:g} s "
                         f"of event time are one, on {t['incidents']}{counts}")
    if observed is not None:
        lines += render_observed(observed)
    return lines


def render_observed(o: dict[str, Any]) -> list[str]:
    lines = [f"signals found in {o['file']}: {o['records']} records, {o['dead_letters']} "
             f"dead-lettered, {o['unwatched']} of models no rule watches"
             + (f", {o['pairs']} joined labels" if o["pairs"] else "")]
    if not o["models"]:
        lines.append("  (no model of the file is watched by a rule)")
    for m in o["models"]:
        version = f" version {m['model_version']}" if m["model_version"] is not None else ""
        lines.append(f"  {m['model_id']}{version} (rule {m['rule']!r}, {m['events']} events):")
        for s in m["signals"]:
            unit = "events" if s["signal"].startswith("quality:") else "values"
            if s["watched"]:
                cal = "; ".join(f"{d} {_params(o)}" for d, o in s.get("calibrated", {}).items())
                lines.append(f"    {s['signal']}: watched by {', '.join(s['detectors'])} "
                             f"({s['values']} {unit}" + (f"; calibrated {cal}" if cal else "")
                             + (f"; reference renewed after {s['rebaselines']} drifts"
                                if s["rebaselines"] else "") + ")")
                if s.get("not_watchable"):
                    lines.append(f"      not watchable at this budget: {s['not_watchable']}")
            else:
                again = " again, after a drift" if s["rebaselines"] else ""
                lines.append(f"    {s['signal']}: not yet watched{again}: {s['reference']} of "
                             f"{s['reference_needed']} reference {unit}")
                if s.get("not_watchable"):
                    lines.append(f"      not watchable yet: {s['not_watchable']}")
    return lines
