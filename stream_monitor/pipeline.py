"""One batch, start to finish, for any transport: the core's decisions and the I/O they need.

Adapters (Kafka worker, file replay) own the transport: they hand raw records to
:meth:`BatchPipeline.run` and get back the output records to publish. The pipeline hands them
to the core (core/batch.py), answers what the core asks of the stores on the way (claims of
event ids, the label join, state units, version indexes), encodes the outputs
(contracts/outputs.py) and saves the changed state with its outbox. State is saved before this
returns, so an adapter that publishes the outputs and then acknowledges the input has
acknowledged nothing whose effects could be lost.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .contracts.outputs import OutputRecord, encode_batch
from .contracts.readings import ModelReading, ReadingFilter, SignalReading
from .contracts.records import RawRecord
from .core.batch import BatchCore, BatchOutcome, Need
from .core.gate import Claims, QualityCounters
from .core.label_join import Join, LabelStats
from .core.load import Expire, Load, Versions
from .core.model_state import ModelState, MonitorState
from .core.performance import SCALAR_METRICS
from .core.plan import MonitorPlan
from .state.base import ModelDelta, SignalDelta, StateStore
from .state.cache import ModelCache
from .state.dedupe import DedupeStore, MemoryDedupe
from .state.label_store import LabelStore, MemoryLabelStore

__all__ = ["BatchOutput", "BatchPipeline", "model_readings"]


@dataclass(slots=True)
class BatchOutput:
    records: list[OutputRecord] = field(default_factory=list)
    events: int = 0
    dead_letters: int = 0
    alerts: int = 0
    retrain_requests: int = 0
    unwatched: int = 0
    redelivered: int = 0
    # Published outputs to delete from the store's outbox once Kafka confirmed them.
    outbox: dict[str, list[str]] = field(default_factory=dict)
    # Outputs found in the outbox of models loaded by this batch: saved by an earlier run that
    # stopped before Kafka confirmed them. Already included in `records`.
    recovered: int = 0
    quality_alerts: int = 0
    # Dead letters per (model, reason) and rejected values per (model, signal, reason).
    quality: QualityCounters = field(default_factory=QualityCounters)
    labels: int = 0  # label records taken in (joined or waiting)
    labels_ignored: int = 0  # labels of models whose rule takes none
    pairs: int = 0  # joined pairs fed to performance signals
    # The label join's counters of the models this batch touched (store totals), and the
    # errors and delays of the pairs it fed.
    label_stats: dict[str, LabelStats] = field(default_factory=dict)
    pair_delays: dict[str, list[float]] = field(default_factory=dict)
    units: list[str] = field(default_factory=list)  # state units the batch changed

    def merge(self, other: BatchOutput) -> None:
        """Add another output of the same batch (e.g. events retried one by one)."""
        self.records.extend(other.records)
        for f in ("events", "dead_letters", "alerts", "retrain_requests", "unwatched",
                  "redelivered", "recovered", "quality_alerts", "labels", "labels_ignored",
                  "pairs"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        for mid, ids in other.outbox.items():
            self.outbox.setdefault(mid, []).extend(ids)
        self.quality.merge(other.quality)
        self.label_stats.update(other.label_stats)
        for mid, ds in other.pair_delays.items():
            self.pair_delays.setdefault(mid, []).extend(ds)
        self.units.extend(u for u in other.units if u not in self.units)


class BatchPipeline:
    def __init__(self, config: MonitorPlan, store: StateStore, *,
                 clock: Callable[[], float] = time.time,
                 dedupe: DedupeStore | None = None, labels: LabelStore | None = None,
                 cache_size: int | None = None) -> None:
        self.config = config
        self.core = BatchCore(config)
        # Model states held in memory (state/cache.py): at most `cache_size`; None: no limit.
        self.cache = ModelCache(cache_size)
        self.store = store
        self.clock = clock  # the processing clock: timestamps rules, duplicate window
        # Event-id claims and the delayed-label join live next to the state: the worker passes
        # the Redis ones (cli.py wires them); a replay or a test keeps them in memory.
        self.dedupe = dedupe if dedupe is not None else MemoryDedupe()
        self.labels = labels if labels is not None else MemoryLabelStore()
        # Testing only: called after a label join (the worker's test hooks, adapters/hooks.py).
        self.after_join: Callable[[], None] | None = None

    @property
    def state(self) -> MonitorState:
        """The model states in memory (the cache's)."""
        return self.cache.state

    @property
    def cache_size(self) -> int | None:
        return self.cache.size

    def forget(self) -> None:
        """Drop the in-memory cache (e.g. on a rebalance); state is reloaded from the store."""
        self.cache.forget()

    async def run(self, raws: Sequence[RawRecord]) -> BatchOutput:
        """Process one batch and persist its state. Raises TransientStoreError (retry it).

        The core decides the batch (core/batch.py), asking here for what the stores hold; its
        records are encoded once; state and outboxes are saved, fenced, before this returns.
        Nothing is published here: the adapter publishes ``out.records`` after this returns."""
        now = self.clock()
        outcome = await self._decide(self.core.steps(raws, self.state, now), now)
        encoded = encode_batch(outcome.recovered, outcome.outgoing)
        await self._save(outcome, encoded.saved, now)
        result = outcome.result
        return BatchOutput(
            records=encoded.records, events=len(raws), dead_letters=outcome.dead_letters,
            alerts=len(result.alerts), retrain_requests=len(result.retrain_requests),
            unwatched=result.unwatched, redelivered=result.redelivered, outbox=encoded.outbox,
            recovered=encoded.recovered, quality_alerts=len(result.quality_alerts),
            quality=outcome.counters, labels=outcome.labels,
            labels_ignored=outcome.labels_ignored, pairs=result.pairs,
            label_stats=outcome.label_stats, pair_delays=result.pair_delays,
            units=[m.unit for m in result.dirty_models])

    async def _decide(self, steps: Generator[Need, None, BatchOutcome],
                      now: float) -> BatchOutcome:
        """Run the core's steps, answering each question they ask, in their order."""
        try:
            need = next(steps)
            while True:
                match need:
                    case Claims():
                        need.first_seen = await self.dedupe.claim(need.claims, need.window,
                                                                  need.now)
                    case Join():
                        need.pairs, need.stats = await self.labels.apply(
                            need.ops, need.rules, need.cursors)
                        if self.after_join is not None:
                            self.after_join()
                    case Load():
                        # Idle model versions leave the cache first (at most once a minute).
                        self.cache.sweep(now)
                        missing = self.state.missing(need.units)
                        if missing:
                            need.found = await self.store.load(missing)
                    case Versions():
                        need.index = await self.store.versions(need.model_ids)
                    case Expire():
                        await self.store.expire(need.units, need.seconds)
                    case _:  # a pause between two parts of the detectors' work
                        await asyncio.sleep(0)
                need = next(steps)
        except StopIteration as done:
            outcome: BatchOutcome = done.value
            return outcome

    def readings(self, units: Iterable[str], wanted: ReadingFilter) -> list[ModelReading]:
        """A typed copy, for the metrics, of the signals ``wanted`` accepts of the newest
        version of each model among ``units`` (a batch's ``BatchOutput.units``; the gauges are
        per model and signal, and during a canary they follow the new version). The worker's
        reporter asks for it after the batch's commit, so a failure in it cannot fail a
        batch."""
        models = self.state.models
        newest: dict[str, ModelState] = {}
        for u in units:
            m = models.get(u)
            if m is None:
                continue
            cur = newest.get(m.model_id)
            if cur is None or (m.retrain.first_seen or 0.0) >= (cur.retrain.first_seen or 0.0):
                newest[m.model_id] = m
        return model_readings(newest.values(), wanted)

    async def _save(self, outcome: BatchOutcome, outboxes: dict[str, dict[str, bytes]],
                    now: float) -> None:
        """State and outbox of every changed model, one fenced write per model."""
        changed = outcome.result.dirty_models
        # A model's newest version is saved first: when it is new, it becomes the model's latest
        # version before an older version's save of the same batch, which then gets its TTL.
        dirty = sorted(changed, key=lambda m: (m.model_id, -(m.retrain.first_seen or 0.0)))
        deltas = [_delta(m, outboxes.get(m.unit, {})) for m in dirty]
        try:
            await self.store.save(deltas)
        except BaseException:
            # The batch will be retried from the same input (or dropped, when fenced): forget
            # what it did in memory.
            self.forget()
            raise
        for m in changed:
            m.dirty = False
            m.revision += 1
            for s in m.signals.values():
                if s.dirty:
                    s.mark_saved()
        self.cache.used((m.unit for m in changed), now)
        self.cache.evict(outcome.units)


def _delta(model: ModelState, outbox: dict[str, bytes]) -> ModelDelta:
    meta = model.meta()
    signals = []
    for s in model.dirty_signals():
        signals.append(SignalDelta(
            signal=s.signal,
            meta=s.meta(),
            recent=s.recent,
            reference=s.reference if s.reference_changed else None,
        ))
    versioned = model.model_version is not None
    return ModelDelta(model.unit, meta, signals, model.revision, outbox,
                      first_seen=model.retrain.first_seen if versioned else None,
                      ttl_seconds=model.rule.versions.expire_seconds if versioned else None)


def model_readings(models: Iterable[Any], wanted: ReadingFilter | None = None,
                   ) -> list[ModelReading]:
    """Readings of models' signals, those ``wanted`` accepts only. ``models``: the core's
    ``ModelState`` objects; Any because the metrics' tests pass stand-ins with only some of its
    attributes (an attribute missing reads as absent)."""
    out = []
    for m in models:
        mid = str(m.model_id)
        sigs = []
        for sig in getattr(m, "signals", {}).values():
            if sig is None or (wanted is not None and not wanted(mid, str(sig.signal))):
                continue
            ref = getattr(sig, "reference", ()) or ()
            recent = getattr(sig, "recent", ()) or ()
            detecting = getattr(sig, "detectors", None) is not None
            codes = getattr(sig, "table", None) is not None  # categories: no mean
            watch = getattr(sig, "watch", None)
            sigs.append(SignalReading(
                str(sig.signal), len(ref), len(recent),
                # An active signal's reference mean is kept by the core; computing it again
                # from the window would cost a pass over up to thousands of values.
                None if codes else getattr(sig, "ref_mean", None) if detecting else _mean(ref),
                None if codes else _mean(recent), detecting,
                getattr(sig, "watched_after", None), dict(watch) if watch is not None else None))
        perf = getattr(m, "performance", None)
        if perf is not None and perf.rows:
            v = perf.values()
            out.append(ModelReading(
                mid, tuple(sigs), tuple((k, float(v[k])) for k in SCALAR_METRICS if k in v),
                tuple((c, k, float(x[k])) for c, x in v.get("classes", {}).items()
                      for k in ("precision", "recall", "f1"))))
        else:
            out.append(ModelReading(mid, tuple(sigs)))
    return out


def _mean(values: Sequence[float]) -> float | None:
    """Mean of a window, or None when empty. Never raises: values as large as 1e308 overflow
    ``math.fsum`` (OverflowError), and a gauge must not take the worker loop down; an
    overflowing sum gives an infinite mean instead.

    >>> _mean([1e308, 1e308]), _mean([]), _mean([1.0, 2.0])
    (inf, None, 1.5)
    """
    n = len(values)
    if not n:
        return None
    try:
        return math.fsum(values) / n
    except OverflowError:
        return sum(values) / n
