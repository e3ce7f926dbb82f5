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

Anything else leaves the model to the loop, for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..contracts.records import InferenceEvent
from .model_state import MISSING, ModelState
from .signals import SignalState

if TYPE_CHECKING:
    from .model_state import StateBuilder

__all__ = ["feed_ahead"]


class _Gather:
    """One quiet model's values in the batch, per signal, with the events they came from."""

    __slots__ = ("applied", "model", "signals")

    def __init__(self, model: ModelState) -> None:
        self.model = model
        self.applied = dict(model.applied)
        self.signals: dict[int, tuple[SignalState, list[float], list[int]]] = {}

    def add(self, sig: SignalState, x: float, i: int) -> None:
        got = self.signals.get(id(sig))
        if got is None:
            self.signals[id(sig)] = (sig, [x], [i])
        else:
            got[1].append(x)
            got[2].append(i)


def _quiet(model: ModelState) -> bool:
    rs, lc, dw = model.retrain, model.lifecycle, model.deploy
    return (model.value_rules is None and not model.timed and not rs.evidence
            and not rs.degraded and (lc is None or not lc.incidents)
            and (dw is None or dw.done) and model.prediction is not MISSING)


def _number(v: object) -> float | None | bool:
    """The float the loop feeds for a feature value; None when it ignores the value; False
    when the value would be rejected (non-finite)."""
    t = type(v)
    if t is float:
        return v if v - v == 0.0 else False  # type: ignore[operator,return-value]
    if t is int or t is bool:
        return float(v)  # type: ignore[arg-type]
    return None


def feed_ahead(builder: StateBuilder, events: Sequence[InferenceEvent],
               models: dict[str, ModelState], max_features: int) -> tuple[dict[str, int], int]:
    """Feed the quiet models' values ahead of the loop (module docstring). Returns, per state
    unit fed, the index in ``events`` of its first event whose values the loop must feed
    (``len(events)`` when none), and the count of values fed."""
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
            if model is None or not _quiet(model) or mid in unit_for:
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
        if ev.label is not None and model.rule.labels is None:
            refused.add(mid)
            continue
        if len(model.signals) + len(ev.features) > max_features:
            refused.add(mid)
            continue
        by_feature = model.by_feature
        ok = True
        for name, value in ev.features.items():
            sig = by_feature.get(name, MISSING)
            if sig is None:
                continue
            x = _number(value)
            if sig is MISSING or x is False or sig.table is not None:  # type: ignore[union-attr]
                ok = False
                break
            if x is not None:
                g.add(sig, x, i)  # type: ignore[arg-type]
        sig = model.prediction
        if ok and sig is not None:
            x = _number(ev.prediction)
            if x is False or sig.table is not None:
                ok = False
            elif x is not None:
                g.add(sig, x, i)
        if not ok:
            refused.add(mid)
    limits: dict[str, int] = {}
    fed = 0
    end = len(events)
    for uid, g in gathers.items():
        if g.model.model_id in refused:
            continue
        runs = list(g.signals.values())
        if not all(sig.vectorised for sig, _, _ in runs):
            continue
        first = end
        for sig, xs, at in runs:
            k = sig.first_alarm(xs)
            if k < len(xs):
                first = min(first, at[k])
        for sig, xs, at in runs:
            k = len(xs) if first == end else _count_before(at, first)
            sig.feed(xs[:k])
            fed += k
        limits[uid] = first
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
