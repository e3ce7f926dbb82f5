"""Value rules: the checks of each feature value *inside* the core, and the data-quality signals.

For models whose quality rule is active, :meth:`Monitor.process` hands every event to
:func:`check_features` (README "Data quality"). A feature that is missing (absent or null),
non-finite, out of bounds or an unseen category is rejected *alone*; the event's other values are
used. Per feature, each fault is a binary signal of its own (``quality:<fault>:<feature>``), fed
one 0/1 value per event (1: this event has the fault) and watched by the configured detectors
(a ``cusum`` as a Bernoulli CUSUM, core/bernoulli.py); a change raises a
``data_quality_alert``. String features, when ``categorical`` is on, are categorical
signals ``feature:<name>``: one category per event, the whole mix watched by one multinomial
CUSUM (core/multinomial.py); a category outside the known set is counted ``unseen_category``
and still fed (it counts as "other").

These functions feed signals and *return* what fired (:class:`Fired`); the monitor turns each
into an alert. Rejected values are counted in the batch's
:class:`~stream_monitor.core.gate.QualityCounters`. The bookkeeping they update
(:class:`~stream_monitor.core.model_state.ValueRuleState`) is saved with the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..contracts.records import InferenceEvent
from .categories import label_of
from .gate import QualityCounters
from .model_state import MISSING, FeatureRuleState, ModelState, StateBuilder, ValueRuleState
from .signals import SignalState

__all__ = ["Fired", "check_features", "close_sample", "fault_signal", "learned_bounds"]


@dataclass(slots=True, frozen=True)
class Fired:
    """A detector that fired on a signal the value rules fed; the monitor makes it an alert.

    ``fault`` is None for a drift of a feature's values or of its category mix (a
    ``drift_alert``), else the fault whose rate changed on ``feature`` (a
    ``data_quality_alert``)."""

    signal: SignalState
    detector: int  # index into signal.detector_names
    fault: str | None = None
    feature: str = ""


def fault_signal(fault: str, feature: str) -> str:
    """Name of the signal of a fault rate: ``quality:missing:amount``."""
    return f"quality:{fault}:{feature}"


def learned_bounds(reference: Sequence[float], quantiles: tuple[float, float],
                   k: float) -> tuple[float, float] | None:
    """Bounds learned from a reference window: ``[q_low - k*s, q_high + k*s]`` where ``s`` is
    the interquartile range (p75 - p25), or the range (max - min) when the IQR is 0 (a
    discrete feature). None when the reference is constant: it gives no scale to learn from.
    With the defaults (p25/p75, k = 3) these are Tukey's "far out" fences: for normal data about
    2 values in a million fall outside.

    >>> learned_bounds([float(i) for i in range(101)], (0.25, 0.75), 3.0)
    (-125.0, 225.0)
    >>> learned_bounds([0.0] * 90 + [1.0] * 10, (0.25, 0.75), 3.0)  # IQR 0: the range is used
    (-3.0, 3.0)
    >>> learned_bounds([5.0] * 50, (0.25, 0.75), 3.0) is None
    True
    """
    if not reference:
        return None
    a = np.asarray(reference, dtype=np.float64)
    p25, p75, q_lo, q_hi = np.quantile(a, (0.25, 0.75, quantiles[0], quantiles[1]))
    spread = float(p75 - p25)
    if not spread > 0:
        spread = float(a.max() - a.min())
    if not spread > 0 or not math.isfinite(spread):
        return None
    return float(q_lo) - k * spread, float(q_hi) + k * spread



def check_features(states: StateBuilder, model: ModelState, mq: ValueRuleState,
                   ev: InferenceEvent, counters: QualityCounters) -> tuple[int, list[Fired]]:
    """The features of one event under the model's value rules: the number of values fed to
    numeric signals, and the detectors that fired. A faulty value is rejected alone and
    counted; the others are used. When the event completes a sample, :func:`close_sample` is
    due next (``mq.sample_n >= mq.rule.sample_events``)."""
    feats = ev.features
    fqs = mq.features
    mid = model.model_id
    seen = 0
    values = 0
    fired_: list[Fired] = []
    for name, value in feats.items():
        fq: Any = fqs.get(name, MISSING)  # a FeatureRuleState, None (unwatched) or MISSING
        if fq is MISSING:
            fq = mq.add_feature(name, states.watches(model, "feature:" + name))
        if fq is None:
            continue
        t = type(value)
        if t is float:
            seen += 1
            if value - value != 0.0:  # NaN or +/-inf
                fq.missing += 1
                counters.reject(mid, fq.signal, "non_finite")
                continue
            x = value
        elif t is int or t is bool:
            seen += 1
            x = float(value)
        elif t is str:
            seen += 1
            cat = fq.cat
            if cat is None:
                continue  # strings are categories only when `categorical` is on
            known = cat.known
            if known is None:
                cat.learning[value] = cat.learning.get(value, 0) + 1
                cat.learned_n += 1
                if cat.learned_n >= mq.category_reference:
                    cat.finish(mq.rule.max_categories)
            elif value not in known:
                fq.unseen += 1
                counters.reject(mid, fq.signal, "unseen_category")
            sig = fq.sig
            if sig is None:
                sig = fq.sig = (model.signals.get(fq.signal)
                                or states.new_signal(model, fq.signal, categorical=True))
            if sig is None or sig.table is None:
                continue  # a numeric signal (its first value was a number): strings ignored
            values += 1
            fired = sig.update_category(value)
            if fired >= 0:
                fired_.append(Fired(sig, fired))
            continue
        else:  # null: counted as missing below, with the absent ones
            continue
        if x < fq.lo or x > fq.hi:
            fq.oob += 1
            counters.reject(mid, fq.signal, "out_of_bounds")
            continue
        sig = fq.sig
        if sig is None:
            sig = fq.sig = model.signals.get(fq.signal) or states.new_signal(model, fq.signal)
        values += 1
        if sig.table is None:
            fired = sig.update(x)
        else:  # a rule made the feature categorical (kind: categorical): numbers are classes
            fired = sig.update_category(label_of(value) or "")
        if fired >= 0:
            fired_.append(Fired(sig, fired))
    if seen < len(mq.expected):
        for fq in mq.expected:
            if feats.get(fq.name) is None:
                fq.missing += 1
                counters.reject(mid, fq.signal, "missing")
    if mq.want_missing or mq.want_oob or mq.want_unseen:
        _feed_faults(states, model, mq, fired_)
    mq.sample_n += 1
    return values, fired_


def _feed_faults(states: StateBuilder, model: ModelState, mq: ValueRuleState,
                 out: list[Fired]) -> None:
    """Per event, each watched fault of each expected feature as a 0/1 value (1: this event
    has it) to its rate signal; then the event's fault flags are cleared."""
    for fq in mq.expected:
        if mq.want_missing:
            _feed(states, model, fq, "missing", 1.0 if fq.missing else 0.0, out)
        if mq.want_oob and fq.bounded:
            _feed(states, model, fq, "out_of_bounds", 1.0 if fq.oob else 0.0, out)
        if mq.want_unseen and fq.cat is not None and fq.cat.known is not None:
            _feed(states, model, fq, "unseen_category", 1.0 if fq.unseen else 0.0, out)
        fq.missing = fq.oob = fq.unseen = 0


def close_sample(model: ModelState, mq: ValueRuleState) -> None:
    """Every ``sample_events`` events of a model: learn bounds where a reference just
    completed (nothing fires here: fault rates are fed per event by :func:`check_features`,
    categories by their own signal)."""
    learn = mq.rule.learned_bounds
    if learn is not None:
        for fq in mq.expected:
            _learn(model, fq, learn.quantiles, learn.k)
    mq.sample_n = 0


def _learn(model: ModelState, fq: FeatureRuleState, quantiles: tuple[float, float],
           k: float) -> None:
    sig = fq.sig or model.signals.get(fq.signal)
    if (sig is None or sig.detectors is None or sig.growing or fq.learned_gen == sig.generation
            or sig.table is not None):
        return  # no complete reference yet (a short one still grows), already learned, or
        # categories (no bounds)
    fq.learned = learned_bounds(sig.reference, quantiles, k)
    fq.learned_gen = sig.generation
    fq.apply_bounds()


def _feed(states: StateBuilder, model: ModelState, fq: FeatureRuleState, fault: str,
          rate: float, out: list[Fired]) -> None:
    sig = fq.indicators.get(fault)
    if sig is None:
        name = fault_signal(fault, fq.name)
        sig = fq.indicators[fault] = model.signals.get(name) or states.new_signal(model, name)
        if sig is None:
            return
    fired = sig.update(rate)
    if fired >= 0:
        out.append(Fired(sig, fired, fault, fq.name))
