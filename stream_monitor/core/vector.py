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
* it has no value rules (core/value_rules.py), no timed seasonal signal, no open incident,
  retrain evidence, degraded flag or deployment watch, and its events carry no inline label;
* each event's features are all known (no new signal), numbers that are finite (no rejected
  value to count) or ignored non-numbers, on signals that are not categorical, and fit under
  ``quality.max_features_per_model``;
* every signal it feeds is :attr:`~stream_monitor.core.signals.SignalState.vectorised`
  (watching with the project's CUSUMs; a signal collecting its reference is fed by the loop).

Anything else leaves the model to the loop, for the whole batch; so does a model with fewer than
:data:`MIN_EVENTS` events in the batch (arrays of a few values cost more than the loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..contracts.records import InferenceEvent
from .model_state import MISSING, ModelState
from .signals import SignalState

if TYPE_CHECKING:
    from .model_state import StateBuilder

__all__ = ["MIN_EVENTS", "Pinned", "feed_ahead"]

# A model with fewer events in the batch is left to the loop: a run of values costs a few dozen
# numpy calls (~0.2 ms), the loop about 1.5 µs a value (benchmarks/hotpath.py).
MIN_EVENTS = 64


class Pinned(NamedTuple):
    """The signals of a model fed ahead that the loop still feeds value by value (read after
    each event by an open incident or pending retrain evidence): its features' (name, signal),
    and the prediction's signal or None."""

    features: list[tuple[str, SignalState]]
    prediction: SignalState | None


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

    def runs(self) -> list[tuple[SignalState, list[float], list[int]]] | None:
        """Per signal fed ahead, its values and the indices of their events; None when the
        model must be left to the loop."""
        model = self.model
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
                out.append((sig, *run))
        sig = model.prediction
        if sig is not None:
            if sig.table is not None:
                return None
            run = _column(self.predictions, self.at)
            if run is None:
                return None
            if id(sig) not in pinned and run[0]:
                out.append((sig, *run))
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
    return (model.value_rules is None and not model.timed and (dw is None or dw.done)
            and model.prediction is not MISSING)


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
        g.applied[tp] = pos.offset
        # (+ 1: an inline label may add the performance signal in the loop.)
        if len(model.signals) + len(ev.features) + 1 > max_features:
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
        if runs is None or not all(sig.vectorised for sig, _, _ in runs):
            continue
        first = end
        twins = []
        for sig, xs, at in runs:
            k, fed_twins = sig.first_alarm(xs)
            twins.append(fed_twins)
            if k < len(xs):
                first = min(first, at[k])
        for (sig, xs, at), fed_twins in zip(runs, twins, strict=True):
            if first == end:  # no alarm: the copies were fed exactly these values
                sig.feed(xs, fed_twins)
                fed += len(xs)
            else:
                k = _count_before(at, first)
                sig.feed(xs[:k])
                fed += k
        model = g.model
        ids = _pinned(model)
        pred = model.prediction
        limits[uid] = (first, Pinned(
            [(name, sig) for name, sig in model.by_feature.items()
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
