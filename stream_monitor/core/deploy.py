"""Deployment checks: does a new ``model_version`` behave like the one it replaced? Pure.

When a model's events arrive with a new ``model_version``, that version gets its own detectors
and reference window (a drift detector must not fire just because a deployment changed the
inputs or outputs on purpose). That leaves one question the detectors cannot answer: *is the new
version as good as the old one, and does it see the same data?* After a watch period the service
answers it once per version with a ``deployment_check`` record (schema ``deployment-check``):

* **Signals.** The new version's first window of each signal is compared with the previous
  version's reference window of the same signal by a two-sample Kolmogorov-Smirnov test
  (:func:`ks_2samp`). A signal *changed* when the test rejects at ``alpha`` **and** the means
  moved by at least ``min_shift`` previous-version standard deviations: with thousands of values
  the test alone rejects on shifts too small to matter.
* **Categories.** A categorical signal (a category mix, a class-label prediction) is compared
  by the two versions' category shares, matched by label (:func:`compare_mix`): a chi-square
  test of homogeneity scaled by the signal's dependence, and the distance of the shares in
  previous-version std; *changed* on the same ``alpha`` and ``min_shift``. The record gives the
  per-category shares and the total-variation distance.
* **Performance.** The new version's ``performance:error`` values (0/1 errors for
  classification, absolute errors for regression) are compared with the previous version's
  (:func:`compare_performance`): a one-sided test that the error rose, *degraded* when it rose by
  more than ``max_error_increase`` and the test rejects at ``alpha``.
* **Verdict** (:func:`deployment_check`): ``fail`` when performance degraded or a feature
  changed; ``warn`` when only non-feature signals (the prediction) changed or there were too few
  labels to compare performance; ``pass`` otherwise.

Everything here is I/O-free and deterministic: the same windows give the same record and the
same ``check_id`` (one check per version), so a replay or a redelivery can be deduplicated.
The KS test is scipy's; the normal tail of the performance test is ``math.erfc``.

The watch itself: :func:`deploys` decides which versions first seen in a batch start one (from
the model's version index), :func:`start_watch` starts it, :func:`watch` follows it after each
of its events (and once at the end of a batch) until the check is out, and
:func:`watched_previous` names the previous versions a batch must keep loaded meanwhile.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ..contracts.output_records import DeploymentCheck, JsonObject, TriggerEvent
from ..contracts.records import InferenceEvent, iso_time, record_id
from ..contracts.units import unit_id
from .label_join import PERFORMANCE_SIGNAL
from .mixshift import compare_mix
from .model_state import DeployWatch, ModelState
from .signals import PREDICTION
from .stats import summarize

__all__ = [
    "VERDICTS",
    "Deploy",
    "DeployWatch",
    "compare_performance",
    "compare_signal",
    "deployment_check",
    "deploys",
    "ks_2samp",
    "start_watch",
    "watch",
    "watched_previous",
]

VERDICTS = ("pass", "warn", "fail")
FEATURE_PREFIX = "feature:"


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test: (D statistic, two-sided p-value), by
    :func:`scipy.stats.ks_2samp` with its default method.

    That method is *exact* while both samples have at most 10,000 values and asymptotic
    beyond; scipy also falls back to the asymptotic one when the exact sum fails (its
    RuntimeWarning is silenced here: the fallback is what we want). The hand-written test this
    replaced used the Numerical Recipes asymptotic formula: on windows of hundreds of values the
    p-values differ by a few thousandths, on tiny ones the exact value is the right one (5
    against 5 disjoint values: 2/252, where the formula said 0.0038). Measured cost with normal
    samples: 0.02 s for 500 against 500 values, 0.1 s for 5,000 against 5,000, once per signal
    and version. Both samples must be non-empty; values must be finite.

    >>> ks_2samp([1, 2, 3], [1, 2, 3])
    (0.0, 1.0)
    >>> d, p = ks_2samp([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    >>> d, round(p, 4)  # exact: 2 of the C(10, 5) orderings are this extreme
    (1.0, 0.0079)
    >>> ks_2samp([0, 0, 1], [0, 1, 1])[0]  # ties: F_a(0) = 2/3, F_b(0) = 1/3
    0.3333333333333333
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError("ks_2samp needs two non-empty samples")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation",
                                category=RuntimeWarning)
        res = stats.ks_2samp(x, y)
    return float(res.statistic), float(res.pvalue)


def compare_signal(signal: str, previous: Sequence[float], new: Sequence[float], *,
                   alpha: float, min_shift: float, min_values: int) -> dict[str, Any]:
    """Compare the new version's first window of a signal with the previous version's reference.

    ``changed`` needs both a KS rejection at ``alpha`` and a mean shift of at least
    ``min_shift`` previous-version standard deviations (1 when the previous window was
    constant). With fewer than ``min_values`` values on either side nothing is tested:
    ``ks`` is None and ``changed`` False.

    >>> r = compare_signal("feature:x", [0, 1, 2, 3] * 25, [5, 6, 7, 8] * 25,
    ...                    alpha=0.01, min_shift=0.5, min_values=30)
    >>> r["changed"], r["ks"]["statistic"], round(r["mean_shift_in_previous_std"], 2)
    (True, 1.0, 4.45)
    >>> compare_signal("prediction", [1.0] * 10, [2.0] * 10, alpha=0.01, min_shift=0.5,
    ...                min_values=30)["ks"] is None
    True
    """
    if min_values < 1:
        raise ValueError(f"min_values must be at least 1, not {min_values}")
    prev, cur = summarize(previous), summarize(new)
    shift: float | None = None
    if prev["count"] and cur["count"]:
        std = prev["std"] or 1.0
        shift = _finite((cur["mean"] - prev["mean"]) / std)
    sufficient = prev["count"] >= min_values and cur["count"] >= min_values
    ks: dict[str, float] | None = None
    changed = False
    if sufficient:
        d, p = ks_2samp(previous, new)
        ks = {"statistic": d, "p_value": p}
        changed = p < alpha and shift is not None and abs(shift) >= min_shift
    return {
        "signal": signal,
        "previous": prev,
        "new": cur,
        "mean_shift_in_previous_std": shift,
        "ks": ks,
        "changed": changed,
        "sufficient": sufficient,
    }


def compare_performance(signal: str, previous: Sequence[float], new: Sequence[float], *,
                        binary: bool, alpha: float, max_increase: float,
                        min_values: int) -> dict[str, Any]:
    """Compare the new version's errors with the previous version's: did the error rise?

    ``p_value`` is one-sided (H1: the new mean error is higher). Binary (0/1) errors use the
    pooled two-proportion z-test; other errors (absolute errors of a regression) use Welch's
    t statistic, referred to the normal distribution (the windows are large). ``degraded`` when
    the mean error rose by more than ``max_increase`` and ``p_value < alpha``. With fewer than
    ``min_values`` values on either side nothing is tested: ``increase`` and ``p_value`` are None.

    >>> r = compare_performance("performance:error", [0] * 95 + [1] * 5, [0] * 80 + [1] * 20,
    ...                         binary=True, alpha=0.01, max_increase=0.02, min_values=50)
    >>> r["degraded"], round(r["increase"], 2), r["p_value"] < 0.01
    (True, 0.15, True)
    """
    if min_values < 1:
        raise ValueError(f"min_values must be at least 1, not {min_values}")
    x = np.asarray(previous, dtype=np.float64).ravel()
    y = np.asarray(new, dtype=np.float64).ravel()
    n1, n2 = x.size, y.size
    m1 = _finite(x.mean()) if n1 else None
    m2 = _finite(y.mean()) if n2 else None
    sufficient = n1 >= min_values and n2 >= min_values
    increase: float | None = None
    p: float | None = None
    degraded = False
    if sufficient and m1 is not None and m2 is not None:
        increase = m2 - m1
        if binary:
            pooled = (m1 * n1 + m2 * n2) / (n1 + n2)
            se = math.sqrt(max(0.0, pooled * (1.0 - pooled)) * (1.0 / n1 + 1.0 / n2))
        else:
            v1 = float(x.var(ddof=1)) if n1 > 1 else 0.0
            v2 = float(y.var(ddof=1)) if n2 > 1 else 0.0
            se = math.sqrt(v1 / n1 + v2 / n2)
        p = _upper_normal_p(increase, se)
        degraded = increase > max_increase and p < alpha
    return {
        "signal": signal,
        "previous": {"count": n1, "mean": m1},
        "new": {"count": n2, "mean": m2},
        "increase": increase,
        "p_value": p,
        "degraded": degraded,
        "sufficient": sufficient,
    }


def deployment_check(*, model_id: str, model_version: str | None, previous_version: str | None,
                     started_at: float, completed_at: float, reason: str,
                     trigger: TriggerEvent, signals: Sequence[JsonObject],
                     performance: JsonObject | None, rule: JsonObject,
                     sample_rate: float = 1.0) -> DeploymentCheck:
    """The ``deployment_check`` record of a new version (schema ``deployment-check``).

    ``reason`` is why the watch ended (``watch_complete`` or ``timeout``), ``trigger`` the event
    that ended it, ``signals`` the :func:`compare_signal` results, ``performance`` the
    :func:`compare_performance` result or None (the model has no labels), ``rule`` the thresholds
    used (passed through), ``sample_rate`` the model rule's. With no previous version (the first
    version ever seen) there is nothing to compare: the comparisons are dropped and the verdict
    is ``pass``.

    >>> r = deployment_check(model_id="fraud", model_version="v1", previous_version=None,
    ...     started_at=0.0, completed_at=60.0, reason="watch_complete",
    ...     trigger=TriggerEvent("e9", "t", 0, 9), signals=[], performance=None, rule={})
    >>> r.verdict, r.summary
    ('pass', 'fraud v1: pass - no previous version to compare')
    """
    if previous_version is None:
        signals, performance = [], None
        verdict, reasons = "pass", ["no previous version to compare"]
    else:
        verdict, reasons = _verdict(signals, performance)
    name = f"{model_id} {_version(model_version)}"
    if previous_version is not None:
        name += f" vs {_version(previous_version)}"
    return DeploymentCheck(
        check_id=record_id("deployment_check", model_id, model_version or "",
                           previous_version or ""),
        model_id=model_id,
        model_version=model_version,
        sample_rate=sample_rate,
        previous_version=previous_version,
        verdict=verdict,
        reasons=reasons,
        started_at=iso_time(started_at),
        completed_at=iso_time(completed_at),
        reason=reason,
        trigger=trigger,
        signals=list(signals),
        performance=performance,
        rule=dict(rule),
        summary=f"{name}: {verdict} - " + "; ".join(reasons),
    )


def _verdict(signals: Sequence[Mapping[str, Any]],
             performance: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    # (The comparisons are JSON objects whose keys depend on the signal's kind; read as Any.)
    fail: list[str] = []
    warn: list[str] = []
    if performance is not None:
        ps = performance["signal"]
        prev, new = performance["previous"], performance["new"]
        if performance["degraded"]:
            fail.append(f"{ps} rose from {_num(prev['mean'])} to {_num(new['mean'])} "
                        f"(p={_num(performance['p_value'])})")
        elif not performance["sufficient"]:
            warn.append(f"{ps}: too few values to compare ({prev['count']} before, "
                        f"{new['count']} after)")
    short = [s["signal"] for s in signals if not s["sufficient"]]
    if short:
        warn.append(f"too few values to compare {', '.join(short)}")
    for s in signals:
        if not s["changed"]:
            continue
        cats = s.get("categories")
        if cats is not None:
            # (Which categories moved is in `categories.shares`, which privacy can withhold.)
            text = (f"{s['signal']} category mix changed (total variation "
                    f"{cats['total_variation']:.2f}, chi-square p={_num(cats['test']['p_value'])}, "
                    f"shift {_num(s['mean_shift_in_previous_std'])} std)")
        else:
            text = (f"{s['signal']} changed (KS p={_num(s['ks']['p_value'])}, "
                    f"shift {_num(s['mean_shift_in_previous_std'])} std)")
        (fail if s["signal"].startswith(FEATURE_PREFIX) else warn).append(text)
    if fail:
        return "fail", fail + warn
    if warn:
        return "warn", warn
    if performance is None:
        tail = "no labels to compare performance"
    else:
        tail = (f"{performance['signal']} did not degrade "
                f"({_num(performance['previous']['mean'])} -> "
                f"{_num(performance['new']['mean'])})")
    what = f"none of {len(signals)} signals changed" if signals else "no signals compared"
    return "pass", [what, tail]


def _upper_normal_p(diff: float, se: float) -> float:
    """One-sided p of ``diff`` > 0 when ``diff / se`` is standard normal under H0."""
    if se <= 0.0 or not math.isfinite(se):
        return 0.0 if diff > 0.0 else 1.0
    return min(1.0, max(0.0, 0.5 * math.erfc(diff / se / math.sqrt(2.0))))


def _finite(v: Any) -> float:
    f = float(v)
    return f if math.isfinite(f) else 0.0


def _version(v: str | None) -> str:
    return "(no version)" if v is None else v


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2g}"


@dataclass(frozen=True, slots=True)
class Deploy:
    """A version first seen in a batch that replaced an earlier one: watch it."""

    unit: str
    model_id: str
    version: str
    previous_version: str
    first_seen: float  # event time of its first event

    @property
    def previous_unit(self) -> str:
        return unit_id(self.model_id, self.previous_version)


def deploys(new: Iterable[tuple[str, str, str, float]],
            index: dict[str, dict[str, float]]) -> list[Deploy]:
    """Which versions new to the cache start a post-deploy watch. ``new``: (unit, model id,
    version, event time of its first event in the batch), in event-time order; ``index``: each
    model's version index (version -> first seen), as the store keeps it; the batch's versions
    are entered in it here.

    A version the index knows (its state expired: it starts fresh) or a model's first version
    has no deploy to check. A version first seen in this batch counts as known for the later
    ones (a batch may hold a model's first two). Else its predecessor is the version seen most
    recently (ties: the greater name).

    >>> idx = {"m": {"1": 10.0}}
    >>> [(d.version, d.previous_version) for d in deploys([("u2", "m", "2", 20.0)], idx)]
    [('2', '1')]
    >>> deploys([("u3", "n", "3", 5.0)], idx), idx["n"]
    ([], {'3': 5.0})
    """
    out = []
    for unit, mid, ver, first_seen in new:
        known = index.setdefault(mid, {})
        if ver in known or not known:
            known.setdefault(ver, first_seen)
            continue
        prev = max(known, key=lambda v: (known[v], v))
        known[ver] = first_seen
        out.append(Deploy(unit, mid, ver, prev, first_seen))
    return out


def watched_previous(models: Mapping[str, ModelState], units: Iterable[str]) -> set[str]:
    """The previous versions' units of the ``units`` whose post-deploy watch goes on: a batch
    keeps them loaded (the check compares with their windows)."""
    return {m.deploy.previous_unit for u in units
            if (m := models.get(u)) is not None and m.deploy is not None and not m.deploy.done}


def start_watch(model: ModelState, previous: ModelState | None, previous_version: str | None,
                started_at: float) -> None:
    """A new version of a model appeared: watch it, and carry over its predecessor's last
    retrain request and today's count, so that cooldown and budget hold across a deploy."""
    model.deploy = DeployWatch(previous_version, unit_id(model.model_id, previous_version),
                               started_at)
    model.dirty = True
    if previous is not None:
        model.last_retrain_at = previous.last_retrain_at
        model.retrain.day = previous.retrain.day
        model.retrain.day_count = previous.retrain.day_count


def watch(model: ModelState, dw: DeployWatch, ev: InferenceEvent, models: dict[str, ModelState],
          pending: dict[str, InferenceEvent], reference_size: int,
          final: bool = False) -> DeploymentCheck | None:
    """End the post-deploy watch with a deployment check once the first window is complete
    (and, with labels, enough of them joined or ``max_wait_seconds`` passed). The timeout is
    decided only at the end of a batch (``final``), after the batch's labels were fed, so it
    does not depend on how events and labels were split into batches. Returns the check, or
    None while the watch goes on (``pending`` then keeps, per unit, the latest event whose
    watch waits for labels: the end of the batch checks its timeout)."""
    vr = model.rule.versions
    need = vr.watch_events or model.rule.reference_size or reference_size
    if model.events < need:
        return None
    t = ev.event_time
    if dw.full_at is None:
        dw.full_at = t
        model.dirty = True
    reason = "watch_complete"
    perf = model.signals.get(PERFORMANCE_SIGNAL)
    if model.rule.labels is not None and (perf is None or perf.n < vr.min_labeled):
        if not final:
            waiting = pending.get(model.unit)
            if waiting is None or t >= waiting.event_time:
                pending[model.unit] = ev
            return None
        if vr.max_wait_seconds is None or t - dw.full_at < vr.max_wait_seconds:
            return None
        reason = "timeout"
    prev = models.get(dw.previous_unit)  # the pipeline keeps it loaded during the watch
    signals = []
    for name in sorted(model.signals):
        if not (name.startswith("feature:") or name == PREDICTION):
            continue
        sig = model.signals[name]
        old = prev.signals.get(name) if prev is not None else None
        if sig.table is not None:
            # Categories (codes of each version's own table): the two mixes, matched by label.
            old_table = old.table if old is not None else None
            signals.append(compare_mix(
                name, old.reference if old is not None and old_table is not None else [],
                old_table.labels if old_table is not None else [], sig.reference,
                sig.table.labels, alpha=vr.alpha, min_shift=vr.min_shift,
                min_values=vr.min_values))
            continue
        signals.append(compare_signal(
            name, old.reference if old is not None else [], sig.reference,
            alpha=vr.alpha, min_shift=vr.min_shift, min_values=vr.min_values))
    performance = None
    if model.rule.labels is not None:
        old = prev.signals.get(PERFORMANCE_SIGNAL) if prev is not None else None
        performance = compare_performance(
            PERFORMANCE_SIGNAL, list(old.recent) if old is not None else [],
            list(perf.recent) if perf is not None else [],
            binary=model.rule.labels.task == "classification", alpha=vr.alpha,
            max_increase=vr.max_error_increase, min_values=min(vr.min_labeled, 30))
    pos = ev.position
    check = deployment_check(
        model_id=model.model_id, model_version=model.model_version,
        sample_rate=model.rule.sample_rate,
        previous_version=dw.previous_version, started_at=dw.started_at, completed_at=t,
        reason=reason, trigger=TriggerEvent(ev.event_id, pos.topic, pos.partition, pos.offset),
        signals=signals, performance=performance,
        rule={"alpha": vr.alpha, "min_shift": vr.min_shift,
              "max_error_increase": vr.max_error_increase, "watch_events": need,
              "min_labeled": vr.min_labeled, "max_wait_seconds": vr.max_wait_seconds})
    dw.done = True
    model.dirty = True
    return check
