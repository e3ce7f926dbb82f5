"""One batch, start to finish, for any transport: decode, load state, detect, save state.

Adapters (Kafka worker, file replay) own the transport: they hand raw records to
:meth:`BatchPipeline.run` and get back the output records to publish. State is saved before
this returns, so an adapter that publishes the outputs and then acknowledges the input has
acknowledged nothing whose effects could be lost.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .contracts.outputs import OutputRecord, decode_output, encode_output, output_record
from .contracts.readings import ModelReading, ReadingFilter, SignalReading
from .contracts.records import (
    DeadLetter,
    InferenceEvent,
    LabelEvent,
    RawRecord,
    decode_label,
)
from .contracts.units import split_unit
from .core.deploy import deploys, watched_previous
from .core.gate import EventGate, QualityCounters
from .core.label_join import JoinedPair, LabelOp, LabelStats
from .core.model_state import ModelState, MonitorState
from .core.monitor import BatchResult, Monitor
from .core.plan import MonitorPlan
from .core.sampling import sampled
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
        self.monitor = Monitor(config)
        # Model states held in memory (state/cache.py): at most `cache_size`; None: no limit.
        self.cache = ModelCache(cache_size)
        self.store = store
        self.clock = clock  # the processing clock: timestamps rules, duplicate window
        self.gate = EventGate(config)
        # Event-id claims and the delayed-label join live next to the state: the worker passes
        # the Redis ones (cli.py wires them); a replay or a test keeps them in memory.
        self.dedupe = dedupe if dedupe is not None else MemoryDedupe()
        self.labels = labels if labels is not None else MemoryLabelStore()
        # Testing only: called after a label join (the worker's test hooks, adapters/hooks.py).
        self.after_join: Callable[[], None] | None = None
        self._batch_units: set[str] = set()
        # Events per call of the core between two yields to the event loop. A part gives
        # each model a run of its events for the batch path (core/vector.py MIN_EVENTS);
        # 2,000 events take about what 500 took value by value.
        self.chunk = 2000
        self._any_labels = any(r.labels is not None for r in config.models)

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

    async def _load_units(self, events: Sequence[InferenceEvent],
                          pairs: Sequence[JoinedPair]) -> dict[str, dict[str, bytes]]:
        """Load the state units of a batch (a model, or a model version); start the post-deploy
        watch of versions seen for the first time; keep the previous version of a watched one
        loaded. Returns the unconfirmed outboxes found."""
        mon = self.monitor
        firsts: dict[tuple[str, str | None], InferenceEvent] = {}
        for ev in events:
            k = (ev.model_id, ev.model_version)
            if k not in firsts:
                firsts[k] = ev
        first: dict[str, InferenceEvent] = {}
        for (mid, ver), ev in firsts.items():
            first.setdefault(mon.unit_of(mid, ver), ev)
        units = set(first) | {mon.unit_of(p.model_id, p.version) for p in pairs}
        self._batch_units = units
        missing = self.state.missing(units)
        outboxes = await self._load(missing)
        models = self.state.models
        new = sorted((u for u in missing if u not in models and u in first
                      and split_unit(u)[1] is not None), key=lambda u: first[u].event_time)
        if new:
            # Which of them start a post-deploy watch: the core's policy (core/deploy.py), on
            # the models' version index.
            index = await self.store.versions({split_unit(u)[0] for u in new})
            firsts_seen = [(u, mid, ver, first[u].event_time) for u in new
                           for mid, ver in (split_unit(u),) if ver is not None]
            for d in deploys(firsts_seen, index):
                model = mon.new_model(d.model_id, d.version)
                if model is None:
                    continue
                models[d.unit] = model
                outboxes.update(await self._load({d.previous_unit} - models.keys()))
                prev = models.get(d.previous_unit)
                mon.start_watch(model, prev, d.previous_version, d.first_seen)
                if prev is not None:
                    await self.store.expire({d.previous_unit: list(prev.signals)},
                                            prev.rule.versions.expire_seconds)
        prevs = watched_previous(models, units)
        if prevs - models.keys():
            outboxes.update(await self._load(prevs - models.keys()))
        self._batch_units = units | prevs
        return outboxes

    async def _load(self, model_ids: set[str]) -> dict[str, dict[str, bytes]]:
        """Load state units not in the cache; returns their unconfirmed outboxes."""
        missing = self.state.missing(model_ids)
        if not missing:
            return {}
        snaps = await self.store.load(missing)
        outboxes = {}
        for mid, snap in snaps.items():
            if snap.outbox:
                outboxes[mid] = snap.outbox
            model = self.monitor.restore_model(snap.meta)
            if model is None:
                continue  # no longer watched by this config
            model.revision = snap.revision
            for s in snap.signals:
                self.monitor.restore_signal(model, s.meta, s.recent, s.reference)
            self.state.models[mid] = model
        return outboxes

    async def run(self, raws: Sequence[RawRecord]) -> BatchOutput:
        """Process one batch and persist its state. Raises TransientStoreError (retry it).

        The steps, in order: the gate, the labels, the state, the core, the outputs, the save.
        Nothing is published here: the adapter publishes ``out.records`` after this returns."""
        counters = QualityCounters()
        # 1. The gate: inference records become events or dead letters; duplicates are claimed.
        inference, label_raws = self._split_labels(raws)
        events, dead = self._admit(inference, self.clock(), counters)
        if self.gate.checks_duplicates and events:
            events, dead = await self._drop_duplicates(inference, events, dead, counters)
        # 2. Labels: decoded, then joined with their predictions (the pairs feed the core).
        labels, ignored = self._admit_labels(label_raws, dead, counters)
        pairs, label_stats = await self._join(events, labels)
        # 3. State: every model the batch touches is in memory (loaded from the store if not).
        now = self.clock()
        self.cache.sweep(now)
        recovered = await self._load_units(events, pairs)
        # 4. The core: events and pairs through the detectors (pure, no I/O).
        result = await self._detect(events, pairs, counters)
        self.cache.used((m.unit for m in result.dirty_models), now)
        # 5. Outputs: the outbox an earlier run left, dead letters, then this batch's records.
        out = _summary(result, counters, len(raws), len(dead), len(labels), ignored,
                       label_stats)
        self._recovered(out, recovered)
        dead = self._dead_letters(out, inference, dead, result, counters)
        per_model = self._new_outputs(out, result)
        # 6. Save: state and outbox of every changed model, fenced, before anything is published.
        await self._save(result, per_model)
        return out

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

    def _split_labels(self, raws: Sequence[RawRecord],
                      ) -> tuple[Sequence[RawRecord], list[RawRecord]]:
        """Inference records and label records (both topics come in one batch)."""
        label_topic = self.config.topics.labels
        if not any(r.position.topic == label_topic for r in raws):
            return raws, []
        return ([r for r in raws if r.position.topic != label_topic],
                [r for r in raws if r.position.topic == label_topic])

    async def _detect(self, events: list[InferenceEvent], pairs: list[JoinedPair],
                      counters: QualityCounters) -> BatchResult:
        """The core runs in parts of `chunk` events with a yield to the event loop between
        them, so that a large batch does not hold up the consumer's heartbeats or the health
        endpoints (same outcome as one call: Monitor.process)."""
        chunk = self.chunk
        result = None
        for lo in range(0, max(len(events), 1), chunk):
            if lo:
                await asyncio.sleep(0)
            last = lo + chunk >= len(events)
            result = self.monitor.process(events[lo:lo + chunk], self.state, counters,
                                          pairs if last else (), result=result, finish=last)
        assert result is not None
        return result

    @staticmethod
    def _recovered(out: BatchOutput, recovered: dict[str, dict[str, bytes]]) -> None:
        """Outputs an earlier run saved but never saw confirmed go out first, in their order."""
        for mid, box in recovered.items():
            for oid in sorted(box):
                out.records.append(decode_output(box[oid]))
                out.outbox.setdefault(mid, []).append(oid)
                out.recovered += 1

    def _dead_letters(self, out: BatchOutput, raws: Sequence[RawRecord],
                      dead: list[DeadLetter], result: BatchResult,
                      counters: QualityCounters) -> list[DeadLetter]:
        """The gate's dead letters and the core's refusals, in input order, as records."""
        topics = self.config.topics
        now = self.clock()
        if result.rejected:
            dead = self._rejected(raws, dead, result.rejected, counters)
            out.dead_letters = len(dead)
        max_bytes = self.config.quality.dead_letter_max_bytes
        privacy = self.config.privacy
        for d in dead:
            # Not in the outbox: a dead letter is a pure function of its input event, which is
            # redelivered (and dead-lettered again, with the same id) if this run dies.
            rec = d.to_record(now, max_bytes, payload=privacy.dead_letter_payload,
                              truncated_bytes=privacy.dead_letter_truncated_bytes)
            key = b"" if privacy.dead_letter_payload == "hash" else d.kafka_key
            out.records.append(output_record(topics.dead_letter, key, rec,
                                              (("reason-code", d.reason_code.encode()),)))
        return dead

    def _new_outputs(self, out: BatchOutput, result: BatchResult,
                     ) -> dict[str, dict[str, bytes]]:
        """This batch's alerts and requests as records, each also in its unit's outbox."""
        per_model: dict[str, dict[str, bytes]] = {}
        for output, uid in self._outputs(result):
            out.records.append(output)
            box = per_model.setdefault(uid, {})
            # Outbox fields sort in publish order: the revision being saved, then the index.
            field_name = f"{self.state.models[uid].revision:012d}.{len(box):05d}"
            box[field_name] = encode_output(output)
            out.outbox.setdefault(uid, []).append(field_name)
        return per_model

    async def _save(self, result: BatchResult, per_model: dict[str, dict[str, bytes]]) -> None:
        """State and outbox of every changed model, one fenced write per model."""
        # A model's newest version is saved first: when it is new, it becomes the model's latest
        # version before an older version's save of the same batch, which then gets its TTL.
        dirty = sorted(result.dirty_models,
                       key=lambda m: (m.model_id, -(m.retrain.first_seen or 0.0)))
        deltas = [_delta(m, per_model.get(m.unit, {})) for m in dirty]
        try:
            await self.store.save(deltas)
        except BaseException:
            # The batch will be retried from the same input (or dropped, when fenced): forget
            # what it did in memory.
            self.forget()
            raise
        for m in result.dirty_models:
            m.dirty = False
            m.revision += 1
            for s in m.signals.values():
                if s.dirty:
                    s.mark_saved()
        self.cache.evict(self._batch_units)

    @staticmethod
    def _rejected(raws: Sequence[RawRecord], dead: list[DeadLetter],
                  rejected: list[tuple[InferenceEvent, str, str]],
                  counters: QualityCounters) -> list[DeadLetter]:
        """Dead letters for the events the core refused whole (a per-model limit), merged
        with the gate's in input order."""
        by_position = {r.position: r for r in raws}
        order = {r.position: i for i, r in enumerate(raws)}
        for ev, code, reason in rejected:
            dead.append(DeadLetter(by_position[ev.position], code, reason))
            counters.dead_letter(ev.model_id, code)
        return sorted(dead, key=lambda d: order.get(d.raw.position, len(order)))

    def _outputs(self, result: BatchResult) -> list[tuple[OutputRecord, str]]:
        """The batch's outputs, each with the state unit whose outbox holds it."""
        topics = self.config.topics
        unit = self.monitor.unit_of
        outs: list[tuple[OutputRecord, str]] = []
        for a in result.alerts:
            outs.append((output_record(topics.alerts, a.model_id.encode(), a,
                                       (("alert-id", a.alert_id.encode()),
                                        ("signal", a.signal.encode()))),
                         unit(a.model_id, a.model_version)))
        # Resolutions share the alerts topic (README "Alert lifecycle"), after the batch's alerts.
        for z in result.resolved:
            outs.append((output_record(topics.alerts, z.model_id.encode(), z,
                                       (("alert-id", z.alert_id.encode()),
                                        ("signal", z.signal.encode()),
                                        ("fingerprint", z.fingerprint.encode()))),
                         unit(z.model_id, z.model_version)))
        for r in result.retrain_requests:
            outs.append((output_record(topics.retrain, r.model_id.encode(), r,
                                       (("request-id", r.request_id.encode()),)),
                         unit(r.model_id, r.model_version)))
        # Data-quality alerts share the alerts topic; `type` and the `schema` header tell them
        # apart from drift alerts (README "Data quality").
        for q in result.quality_alerts:
            outs.append((output_record(topics.alerts, q.model_id.encode(), q,
                                       (("alert-id", q.alert_id.encode()),
                                        ("signal", q.signal.encode()),
                                        ("feature", q.feature.encode()))),
                         unit(q.model_id, q.model_version)))
        for c in result.deployment_checks:
            outs.append((output_record(topics.deployments, c.model_id.encode(), c,
                                       (("check-id", c.check_id.encode()),
                                        ("verdict", c.verdict.encode()))),
                         unit(c.model_id, c.model_version)))
        return outs

    def _admit_labels(self, raws: Sequence[RawRecord], dead: list[DeadLetter],
                      counters: QualityCounters) -> tuple[list[LabelEvent], int]:
        """Decode label records; bad ones join ``dead`` (same reason codes as events). Labels
        of models whose rule takes no labels are ignored (counted), or dead-lettered as
        ``unknown_model`` when no rule matches and ``quality.unknown_model`` says so."""
        labels: list[LabelEvent] = []
        ignored = 0
        policy = self.config.quality.unknown_model
        mapping = self.config.input.labels.mapping()
        for raw in raws:
            lab = decode_label(raw, mapping)
            if isinstance(lab, DeadLetter):
                dead.append(lab)
                counters.dead_letter("", lab.reason_code)
                continue
            rule = self.config.model_rule(lab.model_id)
            if rule is None and policy == "dead_letter":
                dead.append(DeadLetter(raw, "unknown_model",
                                       f"no model rule matches model_id {lab.model_id!r}"))
                counters.dead_letter("", "unknown_model")
            elif rule is None or rule.labels is None:
                ignored += 1
            elif rule.sample_rate < 1.0 and not sampled(lab.event_id, rule.sample_rate):
                # Its prediction was left out by the same test (core/sampling.py).
                counters.sampled_out[(lab.model_id, "label")] += 1
            else:
                labels.append(lab)
        return labels, ignored

    async def _join(self, events: Sequence[InferenceEvent], labels: Sequence[LabelEvent],
                    ) -> tuple[list[JoinedPair], dict[str, LabelStats]]:
        """Predictions of models that take labels, and the labels, through the join store (one
        round trip). Returns every pair not yet consumed by the models' stored state."""
        cfg = self.config
        ops: list[tuple[tuple[str, int, int], LabelOp]] = []
        rules: dict[str, tuple[float, float]] = {}
        takes: dict[str, bool] = {}  # model id -> its rule takes labels
        for ev in events if self._any_labels else ():
            mid = ev.model_id
            t = takes.get(mid)
            if t is None:
                rule = cfg.model_rule(mid)
                policy = rule.labels if rule is not None else None
                t = takes[mid] = policy is not None
                if policy is not None:
                    rules[mid] = (policy.ttl_seconds, policy.bucket_seconds)
            if not t:
                continue
            p = ev.position
            ops.append(((p.topic, p.partition, p.offset), LabelOp(
                "prediction", ev.model_id, ev.event_id, ev.prediction, ev.event_time, p.topic,
                p.partition, p.offset, ev.model_version)))
        for lab in labels:
            if lab.model_id not in rules:
                rule = cfg.model_rule(lab.model_id)
                assert rule is not None and rule.labels is not None  # _admit_labels kept these
                rules[lab.model_id] = (rule.labels.ttl_seconds, rule.labels.bucket_seconds)
            p = lab.position
            ops.append(((p.topic, p.partition, p.offset), LabelOp(
                "label", lab.model_id, lab.event_id, lab.label, lab.event_time, p.topic,
                p.partition, p.offset)))
        if not ops:
            return [], {}
        if labels and events:
            ops.sort(key=lambda o: o[0])  # a fixed order whatever the interleaving delivered
        # What the cached states consumed, per model (each version's unit its own log), so the
        # join store can drop those pairs from its logs.
        cursors: dict[str, dict[str, int]] = {}
        for m in self.state.models.values():
            if m.model_id in rules and m.pairs_applied:
                cursors.setdefault(m.model_id, {}).update(m.pairs_applied)
        joined = await self.labels.apply([o for _, o in ops], rules, cursors)
        if self.after_join is not None:
            self.after_join()
        return joined

    def _admit(self, raws: Sequence[RawRecord], now: float,
               counters: QualityCounters) -> tuple[list[InferenceEvent], list[DeadLetter]]:
        """The gate's whole-event rules (pure): decoded events and dead letters."""
        return self.gate.admit(raws, now, counters)

    async def _drop_duplicates(self, raws: Sequence[RawRecord], events: list[InferenceEvent],
                               dead: list[DeadLetter], counters: QualityCounters,
                               ) -> tuple[list[InferenceEvent], list[DeadLetter]]:
        """Claim the events' ids (one round trip); dead-letter those claimed by another record.
        Claims are written before the state: a batch retried after a failure finds its own
        claims (same positions) and is not mistaken for duplicates of itself."""
        idx, claims = self.gate.claims(events)
        first_seen = await self.dedupe.claim(claims, self.gate.duplicate_window, self.clock())
        kept, dups = self.gate.drop_duplicates(raws, events, idx, first_seen, counters)
        if dups:
            order = {r.position: i for i, r in enumerate(raws)}
            dead = sorted([*dead, *dups], key=lambda d: order[d.raw.position])
        return kept, dead


def _summary(result: BatchResult, counters: QualityCounters, n_raws: int, n_dead: int,
             n_labels: int, ignored: int, label_stats: dict[str, LabelStats]) -> BatchOutput:
    """The batch's counts (its records are added by the output step)."""
    return BatchOutput(events=n_raws, dead_letters=n_dead, alerts=len(result.alerts),
                       retrain_requests=len(result.retrain_requests), unwatched=result.unwatched,
                       redelivered=result.redelivered, quality_alerts=len(result.quality_alerts),
                       quality=counters, labels=n_labels, labels_ignored=ignored,
                       pairs=result.pairs, label_stats=label_stats,
                       pair_delays=result.pair_delays,
                       units=[m.unit for m in result.dirty_models])


def _delta(model: ModelState, outbox: dict[str, bytes]) -> ModelDelta:
    signals = []
    for s in model.dirty_signals():
        signals.append(SignalDelta(
            signal=s.signal,
            meta=s.meta(),
            recent=s.recent,
            reference=s.reference if s.reference_changed else None,
        ))
    versioned = model.model_version is not None
    return ModelDelta(model.unit, model.meta(), signals, model.revision, outbox,
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
