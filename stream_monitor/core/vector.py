"""The batch half of the hot path: feed a model's values per signal, as arrays, ahead of the loop.

:meth:`Monitor.process <stream_monitor.core.monitor.Monitor.process>` walks a batch event by
event, because an alarm changes what happens next (the signal rebaselines, an alert may open an
incident, count towards a retrain request, make the model check its retrain policy at every
later event). Until a model's first alarm, though, nothing of that happens, and each signal's
values only go through its detectors: that part can be computed per signal over the whole
batch. Before the loop, :func:`feed_ahead`:

1. gathers, per *quiet* model (below) and per signal, the numbers the loop would feed it;
2. finds, per signal, the first value that would raise an alarm (the detectors' ``feed`` on
   copies: numpy over the values, bit-identical to ``update``; core/scan.py), hence the model's
   first event with an alarm;
3. feeds each signal its values from the events before that one (none fires), and tells the
   loop to skip the values of those events. The loop does everything else as before (offsets,
   counts, the event ring) and takes over, value by value, at the alarm's event.

So the outputs, their order and the saved state are the per-value loop's. A model is *quiet* for
a batch, and fed ahead, only when nothing in the batch can read its signals between events or
make the loop do more than feed them:

* it is in the state already, and its events all map to it (no new model or version, so no
  post-deploy watch can start and read it);
* it has no timed seasonal signal and no deployment watch; the signals an open incident or
  pending retrain evidence reads after each event are *pinned*: the loop feeds them;
* under value rules (core/value_rules.py), no event of the run has a fault (each expected
  feature present, a finite number within its bounds), no bounds are about to be learned, and
  each watched fault rate is then fed a ``0.0`` per event; the pinned signals' first alarm is
  looked for too (an alarm may lead to new learned bounds);
* its events carry no class probabilities (core/probabilities.py: their signals are fed by
  the loop);
* each event's features are all known (no new signal), numbers that are finite (no rejected
  value to count) or ignored non-numbers, on signals that are not categorical, and fit under
  ``quality.max_features_per_model``;
* every signal it feeds is :attr:`~stream_monitor.core.signals.SignalState.vectorised`
  (its detectors have a batch ``feed``: the project's CUSUMs and Page-Hinkley, River's ADWIN);
  a signal collecting or growing its reference is fed up to the value that completes it,
  which, like an alarm, the loop takes.

Anything else leaves the model to the loop, for the whole batch; so does a model with fewer than
:data:`MIN_EVENTS` events in the batch (arrays of a few values cost more than the loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..contracts.records import InferenceEvent
from .model_state import MISSING, FeatureRuleState, ModelState, ValueRuleState
from .signals import SignalState

if TYPE_CHECKING:
    from .model_state import StateBuilder

__all__ = ["MIN_EVENTS", "Pinned", "feed_ahead"]

# A model with fewer events in the batch (in a part: the pipeline feeds the core 2,000 events at
# a time) is left to the loop: a run of values costs a few dozen numpy calls per signal, the
# loop about 1.5 µs a value (benchmarks/hotpath.py).
MIN_EVENTS = 64


class Pinned(NamedTuple):
    """The signals of a model fed ahead that the loop still feeds value by value (read after
    each event by an open incident or pending retrain evidence): its features' (name, signal),
    and the prediction's signal or None."""

    features: list[tuple[str, SignalState]]
    prediction: SignalState | None


class _Run(NamedTuple):
    """One signal's values in a model's events: ``counted`` as values fed (fault flags are
    not), and fed ``ahead`` (else only searched for the first alarm: a pinned signal of a
    model under value rules, which the loop feeds)."""

    sig: SignalState
    xs: list[float]
    at: list[int]
    counted: bool = True
    ahead: bool = True


class _Gather:
    """One model's events in the batch that the loop will apply (their indices and features,
    and predictions)."""

    __slots__ = ("applied", "at", "features", "model", "predictions")

    def __init__(self, model: ModelState) -> None:
        self.model = model
        self.applied = dict(model.applied)
        self.at: list[int] = []
        self.features: list[dict[str, Any]] = []
        self.predictions: list[Any] = []

    def runs(self) -> list[_Run] | None:
        """Per signal fed ahead, its values, the indices of their events and whether they count
        as values (fault flags do not); None when the model must be left to the loop."""
        model = self.model
        if model.value_rules is not None:
            return self._rule_runs(model.value_rules)
        pinned = _pinned(model)
        by_feature = model.by_feature
        names: set[str] = set().union(*self.features)
        out = []
        for name in names:
            sig = by_feature.get(name, MISSING)
            if sig is None:
                continue
            if sig is MISSING or sig.table is not None:
                return None  # a new signal, or categories
            run = _column([f.get(name) for f in self.features], self.at)
            if run is None:
                return None
            if id(sig) not in pinned and run[0]:
                out.append(_Run(sig, *run))
        pred = self._prediction(pinned)
        if pred is None:
            return None
        return out + [r for r in pred if r.ahead]

    def _prediction(self, pinned: frozenset[int]
                    ) -> list[_Run] | None:
        sig = self.model.prediction
        if sig is None:
            return []
        if sig.table is not None:
            return None
        run = _column(self.predictions, self.at)
        if run is None:
            return None
        if not run[0]:
            return []
        return [_Run(sig, *run, ahead=id(sig) not in pinned)]

    def _rule_runs(self, mq: ValueRuleState
                   ) -> list[_Run] | None:
        """The runs of a model under value rules (core/value_rules.py), when none of its
        events has a fault: every expected feature present in each event, a finite number
        within its bounds, on a numeric signal; then each event feeds ``0.0`` to each watched
        fault-rate signal. Anything else (a fault, a string, a new feature) leaves the model
        to the loop.

        The pinned signals (read after each event by an open incident or pending evidence),
        which the loop feeds, are searched for their first alarm too: an alarm rebaselines its
        signal, whose next reference may learn new bounds, which would change how later values
        are checked."""
        fqs = mq.features
        names: set[str] = set().union(*self.features)
        out = []
        n = len(self.at)
        pinned = _pinned(self.model)
        for fq in mq.expected:
            if fq.name not in names:
                return None  # missing from every event
        for name in names:
            got: Any = fqs.get(name, MISSING)  # a FeatureRuleState, None (unwatched), MISSING
            if got is None:
                continue  # not watched
            if got is MISSING:
                return None  # a new feature
            sig = got.sig
            if sig is None or sig.table is not None:
                return None
            run = _column([f.get(name) for f in self.features], self.at)
            if run is None or len(run[0]) != n:
                return None  # missing, non-finite, a string: a fault or a category
            x = np.asarray(run[0], dtype=np.float64)
            if (x < got.lo).any() or (x > got.hi).any():
                return None  # out of bounds
            out.append(_Run(sig, *run, ahead=id(sig) not in pinned))
        zeros = [0.0] * n
        for fq in mq.expected:
            for fault in _faults(mq, fq):
                sig = fq.indicators.get(fault)
                if sig is None:
                    return None  # created by the loop at its first value
                if id(sig) in pinned:
                    return None  # the loop's pinned values are features and predictions
                out.append(_Run(sig, zeros, self.at, counted=False))
        pred = self._prediction(pinned)
        if pred is None:
            return None
        return out + pred


def _faults(mq: ValueRuleState, fq: FeatureRuleState) -> list[str]:
    """The faults of a feature whose rates are fed a 0/1 flag per event (as
    core/value_rules.py ``_feed_faults`` feeds them)."""
    out = []
    if mq.want_missing:
        out.append("missing")
    if mq.want_oob and fq.bounded:
        out.append("out_of_bounds")
    if mq.want_unseen and fq.cat is not None and fq.cat.known is not None:
        out.append("unseen_category")
    return out


def _column(col: list[Any], at: list[int]) -> tuple[list[float], list[int]] | None:
    """The numbers the loop feeds from one signal's values, with their events; None when one
    would be rejected (non-finite). Other types are ignored, as the loop ignores them."""
    types = set(map(type, col))
    if types == {float}:
        if not np.isfinite(np.asarray(col, dtype=np.float64)).all():
            return None
        return col, at
    xs, ats = [], []
    for v, i in zip(col, at, strict=True):
        t = type(v)
        if t is float:
            if v - v != 0.0:
                return None
            xs.append(v)
            ats.append(i)
        elif t is int or t is bool:
            xs.append(float(v))
            ats.append(i)
    return xs, ats


def _eligible(model: ModelState) -> bool:
    dw = model.deploy
    if model.timed or not (dw is None or dw.done) or model.prediction is MISSING:
        return False
    mq = model.value_rules
    return mq is None or all(_learns_nothing(model, fq) for fq in mq.expected)


def _learns_nothing(model: ModelState, fq: FeatureRuleState) -> bool:
    """Would the close of a sample learn no bounds for ``fq`` (core/value_rules.py
    ``_learn``)? Then, while its signal raises no alarm, its bounds stay as they are."""
    if model.value_rules is None or model.value_rules.rule.learned_bounds is None:
        return True
    sig = fq.sig or model.signals.get(fq.signal)
    return (sig is None or sig.detectors is None or sig.growing
            or fq.learned_gen == sig.generation or sig.table is not None)


def _pinned(model: ModelState) -> frozenset[int]:
    """The signals (by ``id``) that the loop reads after each event of the model: those of its
    open incidents and of its pending retrain evidence. The loop feeds them value by value."""
    names = {e.signal for e in model.retrain.evidence}
    if model.lifecycle is not None:
        names.update(model.lifecycle.incidents)
    return frozenset(id(model.signals[n]) for n in names if n in model.signals)


def feed_ahead(builder: StateBuilder, events: Sequence[InferenceEvent],
               models: dict[str, ModelState], max_features: int
               ) -> tuple[dict[str, tuple[int, Pinned]], int]:
    """Feed the quiet models' values ahead of the loop (module docstring). Returns, per state
    unit fed, the index in ``events`` of its first event whose values the loop must feed
    (``len(events)`` when none) with its pinned signals (fed by the loop), and the count of
    values fed."""
    gathers: dict[str, _Gather] = {}
    refused: set[str] = set()  # model ids left to the loop
    unit_for: dict[str, str] = {}  # model id -> its one state unit in the batch
    unit_of = builder.unit_of
    for i, ev in enumerate(events):
        mid = ev.model_id
        if mid in refused:
            continue
        ver = ev.model_version
        uid = mid if ver is None else unit_of(mid, ver)
        g = gathers.get(uid)
        if g is None:
            model = models.get(uid)
            if model is None or not _eligible(model) or mid in unit_for:
                refused.add(mid)  # (another unit of the same model: a version change)
                continue
            g = gathers[uid] = _Gather(model)
            unit_for[mid] = uid
        model = g.model
        pos = ev.position
        tp = (pos.topic, pos.partition)
        if pos.offset <= g.applied.get(tp, -1):
            continue  # redelivered: the loop skips it
        if ev.probabilities is not None:
            refused.add(mid)
            continue
        g.applied[tp] = pos.offset
        # (+ 1: an inline label may add the performance signal in the loop.)
        mq = model.value_rules
        if (len(mq.features) > max_features if mq is not None
                else len(model.signals) + len(ev.features) + 1 > max_features):
            refused.add(mid)
            continue
        g.at.append(i)
        g.features.append(ev.features)
        g.predictions.append(ev.prediction)
    limits: dict[str, tuple[int, Pinned]] = {}
    fed = 0
    end = len(events)
    for uid, g in gathers.items():
        if g.model.model_id in refused or len(g.at) < MIN_EVENTS:
            continue
        runs = g.runs()
        if runs is None or not all(r.sig.vectorised for r in runs):
            continue
        first = end
        twins = []
        for sig, xs, at, _, _ in runs:
            k, fed_twins = sig.first_alarm(xs)
            twins.append(fed_twins)
            if k < len(xs):
                first = min(first, at[k])
        for (sig, xs, at, counted, is_ahead), fed_twins in zip(runs, twins, strict=True):
            if not is_ahead:
                continue
            if first == end:  # no alarm: the copies were fed exactly these values
                sig.feed(xs, fed_twins)
                k = len(xs)
            else:
                k = _count_before(at, first)
                sig.feed(xs[:k])
            if counted:
                fed += k
        model = g.model
        ids = _pinned(model)
        pred = model.prediction
        mq = model.value_rules
        by_feature = (model.by_feature if mq is None
                      else {name: fq.sig for name, fq in mq.features.items() if fq is not None})
        limits[uid] = (first, Pinned(
            [(name, sig) for name, sig in by_feature.items()
             if sig is not None and id(sig) in ids],
            pred if pred is not None and id(pred) in ids else None))
    return limits, fed


def _count_before(at: list[int], first: int) -> int:
    """How many of the (ascending) event indices ``at`` are below ``first``."""
    lo, hi = 0, len(at)
    while lo < hi:
        mid = (lo + hi) // 2
        if at[mid] < first:
            lo = mid + 1
        else:
            hi = mid
    return lo
