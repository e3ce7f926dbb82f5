"""Detection quality of a config on labelled history: `stream-monitor evaluate` and `simulate`.

``evaluate`` replays an events file through the core (``adapters/replay.py``, in-memory state),
then scores the drift alerts of each signal against labelled change points
(docs/detection.md "Evaluating a config"). The change-point file is JSON::

    {"changes": [
        {"model_id": "credit-risk", "signal": "feature:amount", "event_id": "credit-risk-00003000"},
        {"model_id": "credit-risk", "signal": "prediction", "offset": 6001, "kind": "mean"}
    ]}

Each change names its signal and its first changed event, by ``event_id`` or by ``offset`` (the
0-based line of the events file). ``kind`` is optional (mean, spread, shape, rate, category_mix)
and is compared with the alert's. A signal with no change listed is scored as stationary.

Per signal: an alert within ``margin`` values after a change (and before the next one) detects
it, with its **delay** (values from the change to the alert) and **localization error** (|the
alert's estimated change start - the true one|, in values); a change without one is a
**miss**; any other alert is a **false alarm**, counted per 10,000 values of the signal.
Precision, recall and F1 at the margin follow.

``simulate`` turns a config and event rates per model into the expected false alerts per day
under the calibrated budget (the calibration is conservative: measured rates are at or below
the budget, docs/detection.md).
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .config import MonitorConfig, compile_plan
from .core.plan import WEEK, MonitorPlan
from .errors import UsageError

__all__ = ["ChangePoint", "Evaluation", "SignalScore", "evaluate", "load_changes", "simulate"]

DAY = 86400.0


class EvaluateError(UsageError, ValueError):
    """A user mistake in the inputs of evaluate/simulate (one line for the CLI)."""


@dataclass(frozen=True, slots=True)
class ChangePoint:
    model_id: str
    signal: str
    event_id: str | None = None
    offset: int | None = None
    kind: str | None = None


@dataclass(slots=True)
class SignalScore:
    model_id: str
    signal: str
    values: int = 0
    changes: int = 0
    detected: int = 0
    false_alarms: int = 0
    delays: list[int] = field(default_factory=list)
    localization_errors: list[int] = field(default_factory=list)
    kinds_right: int = 0
    kinds_checked: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)  # (index, start, kind, ok)
    change_indices: list[int] = field(default_factory=list)

    @property
    def misses(self) -> int:
        return self.changes - self.detected

    @property
    def false_alarms_per_10k(self) -> float:
        return self.false_alarms / self.values * 1e4 if self.values else 0.0

    def row(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "signal": self.signal, "values": self.values,
                "changes": self.changes, "detected": self.detected, "misses": self.misses,
                "false_alarms": self.false_alarms,
                "false_alarms_per_10k": round(self.false_alarms_per_10k, 4),
                "delays": self.delays, "localization_errors": self.localization_errors,
                "median_delay": _median(self.delays),
                "median_localization_error": _median(self.localization_errors),
                "kinds_right": self.kinds_right, "kinds_checked": self.kinds_checked}


@dataclass(slots=True)
class Evaluation:
    margin: int
    signals: list[SignalScore]
    dead_letters: int = 0
    # Signals whose reference could not support the budget at the end (core/watchable.py):
    # model_id, signal, watched (slowly, on a full reference) or still growing, and the line
    # that says what each needs.
    not_watchable: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        tp = sum(s.detected for s in self.signals)
        fa = sum(s.false_alarms for s in self.signals)
        changes = sum(s.changes for s in self.signals)
        values = sum(s.values for s in self.signals)
        precision = tp / (tp + fa) if tp + fa else None
        recall = tp / changes if changes else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision and recall else (0.0 if changes else None))
        delays = [d for s in self.signals for d in s.delays]
        locs = [e for s in self.signals for e in s.localization_errors]
        return {
            "signals": len(self.signals), "values": values, "changes": changes,
            "detected": tp, "misses": changes - tp, "false_alarms": fa,
            "false_alarms_per_10k": round(fa / values * 1e4, 4) if values else 0.0,
            "precision": precision, "recall": recall, "f1": f1, "margin": self.margin,
            "median_delay": _median(delays), "p90_delay": _quantile(delays, 0.9),
            "median_localization_error": _median(locs),
            "p90_localization_error": _quantile(locs, 0.9),
            "kinds_right": sum(s.kinds_right for s in self.signals),
            "kinds_checked": sum(s.kinds_checked for s in self.signals),
            "dead_letters": self.dead_letters,
            "not_watchable": len(self.not_watchable),
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "signals": [s.row() for s in self.signals],
                "not_watchable": self.not_watchable}


def _median(xs: Sequence[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def _quantile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return float(s[min(len(s) - 1, math.ceil(q * len(s)) - 1)])


def load_changes(path: Path) -> list[ChangePoint]:
    """Read and check a change-point file (format in the module doc)."""
    try:
        raw = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise EvaluateError(f"--changes: cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise EvaluateError(f"--changes: {path} is not JSON: {exc}") from None
    items = raw.get("changes") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise EvaluateError(f'--changes: {path} must be {{"changes": [...]}}; '
                            "see docs/detection.md")
    out = []
    for i, c in enumerate(items):
        if not isinstance(c, dict) or not isinstance(c.get("model_id"), str) \
                or not isinstance(c.get("signal"), str):
            raise EvaluateError(f"--changes: changes[{i}] needs string model_id and signal")
        eid, off = c.get("event_id"), c.get("offset")
        if (eid is None) == (off is None) or (eid is not None and not isinstance(eid, str)) \
                or (off is not None and (not isinstance(off, int) or off < 0)):
            raise EvaluateError(f"--changes: changes[{i}] needs exactly one of event_id (a "
                                "string) or offset (a line number >= 0)")
        out.append(ChangePoint(c["model_id"], c["signal"], eid, off, c.get("kind")))
    return out


def _signal_values(events: Path) -> tuple[dict[tuple[str, str], list[int]], dict[str, int]]:
    """Per (model, signal): the offsets (lines) of the events that gave it a value (a number,
    or a category: a string); and every event id's line."""
    offsets: dict[tuple[str, str], list[int]] = {}
    ids: dict[str, int] = {}
    with events.open("rb") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(ev, dict):
                continue
            mid = ev.get("model_id")
            if not isinstance(mid, str):
                continue
            eid = ev.get("event_id")
            if isinstance(eid, str):
                ids.setdefault(eid, i)
            for name, v in (ev.get("features") or {}).items():
                if _numeric(v) or type(v) is str:
                    offsets.setdefault((mid, "feature:" + name), []).append(i)
            pred = ev.get("prediction")
            if _numeric(pred) or type(pred) is str:
                offsets.setdefault((mid, "prediction"), []).append(i)
    return offsets, ids


def _numeric(v: Any) -> bool:
    return (isinstance(v, bool | int) or (isinstance(v, float) and math.isfinite(v)))


def evaluate(config: MonitorPlan, events: Path, changes: Sequence[ChangePoint],
             margin: int = 300, on_progress: Callable[[int], None] | None = None,
             batch: int = 5000) -> Evaluation:
    """Replay ``events`` through ``config`` and score each signal's alerts (module doc)."""
    from bisect import bisect_left

    from .adapters.replay import replay_file
    from .core.monitor import not_watchable
    from .core.watchable import describe

    offsets, ids = _signal_values(events)
    buf = io.BytesIO()
    states: list[Any] = []
    replay_file(config, events, buf, batch=batch, state_out=states,
                on_batch=(lambda done, _: on_progress(done)) if on_progress else None)
    unwatchable = [{"model_id": r["model_id"], "signal": r["signal"], "watched": r["watched"],
                    "growing": r["growing"], "why": describe(r["assessment"])}
                   for r in not_watchable(states[0])]
    alerts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    dead = 0
    for line in buf.getvalue().splitlines():
        rec = orjson.loads(line)
        dead += rec.get("type") == "dead_letter"
        if rec.get("type") == "drift_alert":
            alerts.setdefault((rec["model_id"], rec["signal"]), []).append(rec)
    by_signal: dict[tuple[str, str], list[tuple[int, str | None]]] = {}
    for c in changes:
        off = c.offset if c.offset is not None else ids.get(c.event_id or "")
        if off is None:
            raise EvaluateError(f"--changes: event_id {c.event_id!r} is not in {events}")
        key = (c.model_id, c.signal)
        if key not in offsets:
            raise EvaluateError(f"--changes: {c.model_id} {c.signal} has no values in {events}")
        # The 1-based signal index of the first value at or after the change's line.
        index = bisect_left(offsets[key], off) + 1
        by_signal.setdefault(key, []).append((index, c.kind))
    scores = []
    for key in sorted(set(offsets) | set(alerts)):
        s = SignalScore(key[0], key[1], values=len(offsets.get(key, [])))
        cps = sorted(by_signal.get(key, []))
        s.changes = len(cps)
        s.change_indices = [i for i, _ in cps]
        taken = [False] * len(cps)
        for a in sorted(alerts.get(key, []), key=lambda r: r["detected_at"]["signal_index"]):
            at = a["detected_at"]["signal_index"]
            start = a["evidence"]["change"]["start"]["signal_index"]
            kind = a["evidence"]["change"]["kind"]
            hit = None
            for j, (ci, _) in enumerate(cps):
                nxt = cps[j + 1][0] if j + 1 < len(cps) else math.inf
                if ci <= at < min(ci + margin, nxt):
                    hit = j
                    break
            ok = hit is not None and not taken[hit]
            s.alerts.append({"index": at, "start": start, "kind": kind, "true": ok})
            if ok:
                assert hit is not None
                taken[hit] = True
                s.detected += 1
                ci, want = cps[hit]
                s.delays.append(at - ci)
                s.localization_errors.append(abs(start - ci))
                if want is not None:
                    s.kinds_checked += 1
                    s.kinds_right += int(want == kind)
            elif hit is None:
                s.false_alarms += 1
        scores.append(s)
    return Evaluation(margin, scores, dead, unwatchable)


def with_option(config: MonitorConfig, budget: float | None = None,
                reference_min_size: int | None = None) -> MonitorPlan:
    """The config compiled with another top-level budget (1 false alarm per ``budget`` values) or
    ``windows.reference_min_size``: what ``evaluate --budget/--reference-min-size`` compares.
    Model and signal rules that set their own keep them."""
    from .config import FalseAlarmBudget

    update: dict[str, Any] = {}
    if budget is not None:
        update["false_alarm_budget"] = FalseAlarmBudget(per_events=budget)
    if reference_min_size is not None:
        update["windows"] = config.windows.model_copy(
            update={"reference_min_size": reference_min_size})
    return compile_plan(config.model_copy(update=update))


def plot_evaluation(ev: Evaluation, image: Path, title: str = "stream-monitor evaluate") -> Path:
    """Delays and localization errors (histograms), and a timeline of changes and alerts of
    the signals with changes or alerts (at most 30)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    delays = [d for s in ev.signals for d in s.delays]
    locs = [e for s in ev.signals for e in s.localization_errors]
    axes[0].hist(delays or [0], bins=30, color="#4477aa")
    axes[0].set_title(f"detection delay (values), median {_median(delays)}")
    axes[1].hist(locs or [0], bins=30, color="#228833")
    axes[1].set_title(f"localization error (values), median {_median(locs)}")
    shown = [s for s in ev.signals if s.changes or s.alerts][:30]
    for row, s in enumerate(shown):
        axes[2].scatter(s.change_indices, [row] * len(s.change_indices), marker="|", s=200,
                        color="black")
        good = [a["index"] for a in s.alerts if a["true"]]
        bad = [a["index"] for a in s.alerts if not a["true"]]
        axes[2].scatter(good, [row] * len(good), marker="o", color="#228833", s=18)
        axes[2].scatter(bad, [row] * len(bad), marker="x", color="#cc3311", s=24)
    axes[2].set_yticks(range(len(shown)))
    axes[2].set_yticklabels([f"{s.model_id} {s.signal}"[:28] for s in shown], fontsize=6)
    axes[2].set_title("changes (|), detections (o), false alarms (x)")
    axes[2].set_xlabel("signal index")
    fig.suptitle(title)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=110)
    plt.close(fig)
    return image


def simulate(config: MonitorPlan, rates: Mapping[str, float],
             signals: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Expected false alerts per day of a deployment under the calibrated budget.

    ``rates``: events per second per model id; ``signals``: the signal names of each model
    (e.g. ``feature:amount``, ``prediction``). A signal's false alarms per day are at most its
    values per day times its budget per value; signals without a budget (no
    ``false_alarm_budget`` and no cusum detector) are listed as uncalibrated.
    """
    rows = []
    total = 0.0
    values = 0.0
    uncalibrated = 0
    for model, eps in sorted(rates.items()):
        rule = config.model_rule(model)
        if rule is None:
            rows.append({"model_id": model, "events_per_second": eps, "watched": False})
            continue
        sigs = []
        for name in signals.get(model, ()):
            sr = rule.signal_rule(name)
            if sr is None:
                continue
            budget = sr.budget
            per_value = budget.per_value() if budget is not None else None
            per_day = eps * DAY * per_value if per_value is not None else None
            if per_day is None:
                uncalibrated += 1
            else:
                total += per_day
            values += eps
            sigs.append({"signal": name, "per_value": per_value, "false_alerts_per_day": per_day})
        rows.append({"model_id": model, "events_per_second": eps, "watched": True,
                     "signals": sigs})
    return {"models": rows, "false_alerts_per_day": total, "false_alerts_per_week": total * 7,
            "values_per_second": values, "uncalibrated_signals": uncalibrated,
            "note": f"values_per_second for a deployment budget: {values:g}",
            "week_seconds": WEEK}
