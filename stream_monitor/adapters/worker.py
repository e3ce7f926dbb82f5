"""The Kafka worker: batches of records from an aiokafka consumer, through the pipeline, with
offsets committed by hand.

One batch is one call of :meth:`MonitorWorker.step`, in the order of the guarantee:

0. decode the records of topics in a Schema Registry format (their schemas fetched by id, the
   batch waiting while the registry is down): adapters/registry.py;
1. make sure Redis still holds our state (its epoch marker): :meth:`~MonitorWorker.check_epoch`;
2. run the pipeline: detection, then state and outbox saved in Redis:
   :meth:`~MonitorWorker.process`;
3. publish the outputs and wait until Kafka acknowledged every one: :meth:`~MonitorWorker.publish`;
4. commit the batch's offsets, for the partitions this worker still owns (``commit_owned``);
5. clear the outbox (best effort: a leftover is re-sent with the same ids):
   :meth:`~MonitorWorker.clear_outbox`;
6. metrics and logs (best effort: nothing is left to lose at this point):
   :meth:`~MonitorWorker.report`.

The parts, wired in :class:`KafkaWorker` (the one place that builds them): the Kafka consumer
loop, rebalances and shutdown (:class:`KafkaWorker`); the batch guarantee
(:class:`MonitorWorker`); the output publisher (adapters/publisher.py); the metrics and logs of a
committed batch (observability/batch_report.py, reading typed readings the pipeline gives);
one retry policy for the store, the epoch check and publishing (adapters/retry.py); and the
step hooks a test passes to act at a point of a batch (adapters/hooks.py; none in production).

An exception in steps 1-4 stops the batch before its commit: the worker forgets its cache,
rewinds its partitions to their committed offsets and reads the batch again (the stored
per-partition watermarks make a second pass change nothing twice). After
``_MAX_FAILURES`` consecutive failures it exits non-zero for its supervisor to restart it.

Why not Faust's agent: Faust acks an event in a ``finally`` even when the agent raised, so
any exception after the pipeline (one in the metrics code was enough) committed events that
were never applied; and its per-event stream machinery cost more than detection itself. This
module drives aiokafka (the Kafka client Faust itself runs on) directly, one batch at a time;
see docs/architecture.md ("The worker runtime").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    TopicAlreadyExistsError,
)

from ..contracts.output_records import StateReset, WorkerRef
from ..contracts.outputs import OutputRecord, output_record
from ..contracts.records import DeadLetter, Position, RawRecord, iso_time, record_id
from ..core.batch import dead_letter_out
from ..core.plan import MonitorPlan
from ..errors import OutputRejectedError, TransientStoreError
from ..observability.batch_report import BatchReporter, where
from ..observability.metrics import WorkerMetrics
from ..pipeline import BatchOutput, BatchPipeline
from ..settings import Settings
from ..state.base import StateFencedError, StateStore
from ..state.dedupe import DedupeStore
from ..state.label_store import LabelStore
from .hooks import NO_HOOKS, Point, StepHooks
from .kafka_clients import client_kwargs
from .kafka_faults import brake_metadata_refresh
from .publisher import OutputPublisher, record_size
from .registry import RegistryDecoder
from .retry import RetryPolicy, retry_log

__all__ = ["KafkaWorker", "MonitorWorker", "record_size", "store_retry"]

log = logging.getLogger("stream_monitor.worker")

_MAX_FAILURES = 5  # consecutive failed batches before the process gives up (exit 1)
_PRODUCER_CLOSE_SECONDS = 5.0
# Kafka's own framing around a record (batch header, record header, varints): the producer's
# max_request_size is set this far above SM_MAX_OUTPUT_BYTES.
_FRAMING_BYTES = 16_384


def store_retry(settings: Settings) -> RetryPolicy:
    """The waits while Redis is down (the batch's store work and the epoch check): capped at
    SM_STORE_RETRY_MAX_SECONDS, so the first try after Redis returns comes within that long; a
    NOSCRIPT (scripts already reloaded) is tried again at once, three times."""
    return RetryPolicy(cap_seconds=settings.store_retry_max_seconds, base_seconds=0.05,
                       at_once=3)


class MonitorWorker:
    """The batch guarantee (the six steps of the module docstring), apart from the Kafka
    consumer so that it can be tested without it. Its collaborators: the pipeline (detection,
    state), the :class:`~stream_monitor.adapters.publisher.OutputPublisher` (Kafka output),
    the :class:`~stream_monitor.observability.batch_report.BatchReporter` (metrics, logs), one
    :class:`~stream_monitor.adapters.retry.RetryPolicy` for the store and the test ``hooks``.

    ``producer`` needs ``send(topic, value, key=, headers=)`` returning an awaitable that
    resolves when the broker acknowledged the record (aiokafka's ``AIOKafkaProducer``);
    ``renew_producer``, given the producer in use, closes it and returns a started new one.
    """

    def __init__(self, config: MonitorPlan, settings: Settings, store: StateStore, *,
                 dedupe: DedupeStore | None = None, labels: LabelStore | None = None,
                 # Any: aiokafka's AIOKafkaProducer is untyped (tests pass a stand-in with the
                 # same send/stop; adapters/publisher.py's Producer protocol).
                 producer: Any = None, metrics: WorkerMetrics | None = None,
                 renew_producer: Callable[[Any], Awaitable[Any]] | None = None,
                 decoder: RegistryDecoder | None = None,
                 hooks: StepHooks = NO_HOOKS) -> None:
        self.config = config
        self.settings = settings
        self.store = store
        # Avro / Protobuf / JSON Schema input (input.*.format): None when every topic is JSON.
        if decoder is None and config.input.uses_registry:
            decoder = RegistryDecoder(config, settings)
        self.decoder = decoder
        self.pipeline = BatchPipeline(config, store, dedupe=dedupe, labels=labels,
                                      cache_size=settings.model_cache_size)
        self.publisher = OutputPublisher(producer, max_output_bytes=settings.max_output_bytes,
                                         renew=renew_producer, failures=metrics)
        self.reporter = BatchReporter(metrics, config.topics.labels,
                                      readings=self.pipeline.readings)
        self.retry = store_retry(settings)
        self.metrics = metrics
        self.batches = 0
        self.events = 0
        self.hooks = hooks
        if hooks is not NO_HOOKS:
            # Between the label join (in Redis) and the state save: the pairs are logged but
            # not yet consumed by any saved state.
            self.pipeline.after_join = lambda: self._reached("after_join")

    @property
    def metrics(self) -> WorkerMetrics | None:
        return self.reporter.metrics

    @metrics.setter
    def metrics(self, metrics: WorkerMetrics | None) -> None:
        self.reporter.metrics = metrics
        self.publisher.failures = metrics

    @property
    def producer(self) -> Any:
        """The producer in use (replaced after a refused idempotence state)."""
        return self.publisher.producer

    # -- the batch step ------------------------------------------------------------------
    async def step(self, raws: Sequence[RawRecord],
                   commit_owned: Callable[[], Awaitable[None]]) -> BatchOutput:
        """One batch, in the order of the guarantee (module docstring). ``commit_owned``
        commits the batch's offsets of the partitions this worker still owns; it is called only
        once the state is saved and every output is confirmed."""
        t0 = time.perf_counter()
        if self.decoder is not None:                     # 0. registry formats decoded
            raws = await self.decoder.decode(raws)
        await self.check_epoch()                         # 1. Redis still holds our state
        self._reached("mid_batch")
        out = await self.process(raws)                   # 2. detect; state + outbox saved
        self._reached("after_save")
        t_saved = time.perf_counter()
        await self.publish(out.records)                  # 3. every output acked by Kafka
        self._reached("after_publish")
        t_published = time.perf_counter()
        await commit_owned()                             # 4. offsets committed
        self._count(raws, t0, t_saved, t_published)
        await self.clear_outbox(out)                     # 5. best effort
        self.report(raws, out, time.perf_counter() - t0)  # 6. best effort
        return out

    def _reached(self, point: Point) -> None:
        self.hooks.reached(point, self.batches + 1)

    def _count(self, raws: Sequence[RawRecord], t0: float, t_saved: float,
               t_published: float) -> None:
        """A committed batch: counted, and its timings logged at debug level."""
        self.batches += 1
        self.events += len(raws)
        if log.isEnabledFor(logging.DEBUG):
            t1 = time.perf_counter()
            ts = [r.position.timestamp_ms for r in raws if r.position.timestamp_ms]
            age = ((time.time() - (t1 - t0)) * 1000 - min(ts)) if ts else 0.0
            log.debug("batch of %d: saved %.1f, published %.1f, committed %.1f ms after it was "
                      "fetched; its oldest record was %.0f ms old then", len(raws),
                      1000 * (t_saved - t0), 1000 * (t_published - t0), 1000 * (t1 - t0), age)

    async def process(self, raws: Sequence[RawRecord]) -> BatchOutput:
        """Run a batch until its state is saved; retry while the store is down.

        A loop of ours, not redis-py's Retry (which already retried each command, see
        state/client.py): a fenced save reloads before the next try, a poison event is
        isolated, and a store that stays down is waited for as long as it takes."""
        tries = self.retry.start("state store")
        while True:
            try:
                return await self.pipeline.run(raws)
            except TransientStoreError as exc:
                await tries.sleep(exc, f"retrying the batch of {len(raws)}", now=exc.retry_now)
            except StateFencedError as exc:
                # Another worker saved these models since we loaded them (a rebalance), or
                # Redis lost them. Nothing of this batch was written for them. Reload and run
                # the batch again: the stored watermark skips what the other worker applied.
                if exc.lost:
                    await self.state_reset(f"stored state vanished: {exc}", exc.model_ids)
                else:
                    log.warning("state moved on under this worker (%s); reloading and retrying "
                                "the batch of %d", exc, len(raws))
                self.pipeline.forget()
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # River's Rust code panics with a BaseException
                if len(raws) == 1:
                    log.exception("event failed in the core; dead-lettering it (%s)",
                                  where(raws[0].position))
                    return _internal_error(self.config, raws[0])
                # Isolate the poison event: process one at a time, in order.
                log.exception("batch failed in the core; retrying its %d events one by one",
                              len(raws))
                total = BatchOutput()
                for raw in raws:
                    total.merge(await self.process([raw]))
                return total

    async def publish(self, records: Sequence[OutputRecord]) -> None:
        """Step 3: every output acknowledged by Kafka (adapters/publisher.py)."""
        await self.publisher.publish(records)

    async def clear_outbox(self, out: BatchOutput) -> None:
        """Confirmed outputs leave the outbox. If this fails they are published again later
        (same ids), so a failure here is logged, not retried."""
        if not out.outbox:
            return
        try:
            await self.store.clear_outbox(out.outbox)
        except TransientStoreError as exc:
            log.warning("could not clear the outbox (outputs may be re-sent, same ids): %s", exc)

    async def check_epoch(self) -> None:
        """Notice that Redis lost its data, say so on the operations topic, start fresh."""
        tries = self.retry.start("state store")
        while True:  # until Redis answers: the batch cannot go on without knowing
            try:
                if await self.store.check_epoch():
                    return
                break
            except TransientStoreError as exc:
                await tries.sleep(exc, "checking the epoch again", now=exc.retry_now)
        await self.state_reset("the Redis epoch marker is gone: Redis lost its data (restarted "
                               "without persistence?)", models=sorted(self.pipeline.state.models))

    async def state_reset(self, reason: str, models: list[str]) -> None:
        self.pipeline.forget()
        now = time.time()
        host = socket.gethostname()
        rec = StateReset(
            reset_id=record_id("reset", self.settings.app_id, host, os.getpid(), now),
            detected_at=iso_time(now),
            reason=reason,
            models=models,
            worker=WorkerRef(self.settings.app_id, host, os.getpid()),
            action="continuing from fresh detectors and reference windows; alerts before this "
                   "point are not comparable with alerts after it",
        )
        log.error("STATE RESET: %s; models affected: %s. %s", reason,
                  ", ".join(models) or "unknown", rec.action)
        await self.publish([output_record(self.config.topics.operations, b"", rec, ())])

    # -- after the commit ----------------------------------------------------------------
    def report(self, raws: Sequence[RawRecord], out: BatchOutput, seconds: float) -> None:
        """Step 6: metrics and logs (best effort; observability/batch_report.py)."""
        self.reporter.report(raws, out, seconds)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: KafkaWorker) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.runtime.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runtime.on_assigned(set(assigned))


class KafkaWorker:
    """The process: Kafka clients, the batch loop, rebalances, signals and the shutdown
    deadline. ``run()`` returns the process exit code."""

    def __init__(self, config: MonitorPlan, settings: Settings, store: StateStore, *,
                 dedupe: DedupeStore | None = None, labels: LabelStore | None = None,
                 metrics: WorkerMetrics | None = None, hooks: StepHooks = NO_HOOKS) -> None:
        self.config = config
        self.settings = settings
        self.store = store
        self.metrics = metrics
        t = config.topics
        self.sources = [t.inference] + ([t.labels] if any(r.labels for r in config.models) else [])
        self.outputs = [t.alerts, t.retrain, t.dead_letter, t.operations, t.deployments,
                        t.incidents]
        client_id = settings.client_id or f"{settings.app_id}-{socket.gethostname()}-{os.getpid()}"
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(settings), group_id=settings.app_id, client_id=client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=settings.batch_max,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(settings.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(min(3.0, settings.session_timeout_seconds / 3) * 1000),
        )
        brake_metadata_refresh(self.consumer._client)
        self._client_id = client_id
        self.worker = MonitorWorker(config, settings, store, dedupe=dedupe, labels=labels,
                                    producer=self._new_producer(), metrics=metrics,
                                    renew_producer=self._renew_producer, hooks=hooks)
        self._stop = asyncio.Event()
        self._stop_at: float | None = None  # monotonic deadline once a stop was asked
        self._inflight: asyncio.Task[Any] | None = None
        self._reload = False  # forget the cache before the next batch (rebalance)
        self.assigned: set[TopicPartition] = set()
        self.started = False

    @property
    def producer(self) -> Any:
        """The producer in use (replaced after a refused idempotence state)."""
        return self.worker.producer

    def _new_producer(self) -> Any:
        producer = AIOKafkaProducer(
            **client_kwargs(self.settings), client_id=self._client_id, acks="all",
            enable_idempotence=True, linger_ms=5,
            max_request_size=self.settings.max_output_bytes + _FRAMING_BYTES,
        )
        brake_metadata_refresh(producer.client)
        return producer

    async def _renew_producer(self, old: Any) -> Any:
        """Close ``old`` (bounded: what it still holds fails or is sent again anyway) and start
        a new producer: a new producer id, sequence numbers from 0."""
        try:
            await asyncio.wait_for(old.stop(), timeout=_PRODUCER_CLOSE_SECONDS)
        except Exception as exc:
            retry_log.warning("closing the old producer: %r", exc)
        new = self._new_producer()
        try:
            await new.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(new.stop(), timeout=_PRODUCER_CLOSE_SECONDS)
            raise
        log.info("started a new Kafka producer")
        return new

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        try:
            await self._ensure_topics()
            await self.producer.start()
            await self.consumer.start()
            self.consumer.subscribe(self.sources, listener=_Rebalance(self))
            self.started = True
            log.info("worker %s consuming %s (batches of up to %d)", self.settings.app_id,
                     ", ".join(self.sources), self.settings.batch_max)
            return await self._loop()
        finally:
            await self._close()

    def request_stop(self, why: str = "stop") -> None:
        """Stop within SM_SHUTDOWN_TIMEOUT_SECONDS, whatever is stuck (signal handler)."""
        if self._stop.is_set():
            return
        timeout = self.settings.shutdown_timeout_seconds
        log.info("%s: stopping (deadline %.0fs)", why, timeout)
        self._stop_at = time.monotonic() + timeout
        self._stop.set()
        # The last resort, outside the event loop: if anything (a stuck client, a blocked
        # loop) holds the process past the deadline, it exits anyway. What was not committed
        # is redelivered.
        timer = threading.Timer(timeout, _hard_exit, args=(timeout,))
        timer.daemon = True
        timer.start()

    def _left(self, reserve: float = 0.0) -> float:
        if self._stop_at is None:
            return float("inf")
        return max(0.0, self._stop_at - time.monotonic() - reserve)

    async def _loop(self) -> int:
        failures = 0
        within_ms = int(self.settings.batch_within_seconds * 1000)
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                fetched = await self.consumer.getmany(timeout_ms=within_ms,
                                                      max_records=self.settings.batch_max)
                if not fetched or self._stop.is_set():
                    continue
                if self._reload:
                    self._reload = False
                    self.worker.pipeline.forget()
                raws, offsets = _batch(fetched)
                step = asyncio.ensure_future(
                    self.worker.step(raws, functools.partial(self.commit_owned, offsets)))
                self._inflight = step
                try:
                    await asyncio.wait({step, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    if not step.done():
                        # Stopping: let the batch finish while the deadline allows (keeping a
                        # few seconds to close the clients), else abandon it uncommitted.
                        await asyncio.wait({step}, timeout=self._left(reserve=5.0))
                        if not step.done():
                            log.warning("shutdown deadline: abandoning a batch of %d in flight; "
                                        "it was not committed and will be redelivered", len(raws))
                            step.cancel()
                            with contextlib.suppress(BaseException):
                                await step
                            return 0
                    step.result()
                    failures = 0
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:
                    failures += 1
                    if self.metrics is not None:
                        with contextlib.suppress(Exception):
                            self.metrics.internal_error("batch")
                    if failures >= _MAX_FAILURES or isinstance(exc, OutputRejectedError):
                        log.error("batch failed %d times in a row, giving up (exit 1); nothing "
                                  "of it was committed: %s", failures, exc,
                                  exc_info=not isinstance(exc, OutputRejectedError))
                        return 1
                    log.exception("batch of %d failed before its commit; rewinding to the "
                                  "committed offsets to read it again (%d/%d)", len(raws),
                                  failures, _MAX_FAILURES)
                    await self._rewind()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 0.5 * 2 ** failures)
                finally:
                    self._inflight = None
            return 0
        finally:
            stop_wait.cancel()

    async def _rewind(self) -> None:
        """Forget the cache and go back to the committed offsets of every owned partition."""
        self.worker.pipeline.forget()
        tps = self.consumer.assignment()
        if tps:
            try:
                await self.consumer.seek_to_committed(*tps)
            except Exception as exc:  # the next rebalance re-reads committed offsets anyway
                log.warning("rewind to committed offsets failed: %r", exc)

    async def commit_owned(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the batch's next offsets for the partitions still ours. A partition lost in a
        rebalance is not committed (its new owner re-reads it; the watermarks skip what we
        applied)."""
        owned = self.consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in owned}
        if len(mine) < len(offsets):
            log.info("not committing %d partitions lost in a rebalance", len(offsets) - len(mine))
        if not mine:
            return
        try:
            await self.consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit refused after a rebalance (the batch is redelivered to the "
                        "partition's new owner; its effects are idempotent): %s", exc)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish the batch in flight while the group waits (bounded), so its offsets are
        committed by the owner that applied it; then drop the cache."""
        if revoked:
            log.info("rebalancing: %d partitions revoked", len(revoked))
        step = self._inflight
        if step is not None and not step.done():
            wait = min(self.settings.session_timeout_seconds, self._left(reserve=5.0))
            done, _ = await asyncio.wait({step}, timeout=wait)
            if not done:
                log.warning("rebalance: the batch in flight did not finish within %.0fs; its "
                            "revoked partitions will not be committed", wait)
        self._reload = True
        self.assigned = set()
        if self.metrics is not None:
            self.metrics.set_assigned([])

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._reload = True  # reload state from Redis: another worker may have moved it on
        self.assigned = assigned
        if self.metrics is not None:
            self.metrics.set_assigned([(tp.topic, tp.partition) for tp in assigned
                                       if tp.topic == self.config.topics.inference])
        log.info("assigned %d partitions", len(assigned))

    async def _ensure_topics(self) -> None:
        """Create missing input and output topics (brokers may not auto-create them; a consumer
        subscribed to a missing topic gets no partitions until its next metadata refresh)."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(**client_kwargs(self.settings), request_timeout_ms=10000)
        try:
            await admin.start()
            have = set(await admin.list_topics())
            for name in [*self.sources, *self.outputs]:
                if name in have:
                    continue
                try:
                    await admin.create_topics([NewTopic(name, self.settings.topic_partitions, 1)])
                except TopicAlreadyExistsError:
                    pass
        except KafkaError as exc:  # e.g. not authorized to create: the topics may exist
            log.warning("could not check or create topics (%r); continuing", exc)
        finally:
            await admin.close()

    async def _close(self) -> None:
        """Close the clients within what is left of the deadline (nothing to commit here:
        every committed batch was committed in its step)."""
        budget = self._left() if self._stop_at is not None else 10.0
        for name, close in (("consumer", self.consumer.stop), ("producer", self.producer.stop)):
            try:
                await asyncio.wait_for(close(), timeout=max(0.5, budget / 2))
            except Exception as exc:
                log.warning("closing the Kafka %s: %r", name, exc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.close(), timeout=2.0)
        if self.worker.decoder is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.worker.decoder.close(), timeout=2.0)


def _batch(fetched: dict[TopicPartition, list[Any]]) -> tuple[list[RawRecord],
                                                                 dict[TopicPartition, int]]:
    """Raw records of a fetch (each partition in order) and the offsets to commit after it."""
    raws: list[RawRecord] = []
    offsets: dict[TopicPartition, int] = {}
    for tp, msgs in fetched.items():
        if not msgs:
            continue
        topic, part = tp.topic, tp.partition
        for m in msgs:
            raws.append(RawRecord(m.value, Position(topic, part, m.offset, m.timestamp), m.key,
                                  tuple(m.headers) if m.headers else ()))
        offsets[tp] = msgs[-1].offset + 1
    return raws, offsets


def _hard_exit(timeout: float) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(f"stream-monitor worker: still running {timeout:g}s after the stop "
                         "signal (SM_SHUTDOWN_TIMEOUT_SECONDS); exiting now, uncommitted input "
                         "is redelivered\n")
        sys.stderr.flush()
    os._exit(70)


def _internal_error(config: MonitorPlan, raw: RawRecord) -> BatchOutput:
    dl = DeadLetter(raw, "internal_error", "the monitoring core raised on this event; see the "
                    "worker log at this topic/partition/offset")
    out = BatchOutput(events=1, dead_letters=1)
    out.quality.dead_letter("(unknown)", "internal_error")
    o = dead_letter_out(config, dl, time.time())
    out.records.append(output_record(o.topic, o.key, o.record,
                                     (("reason-code", b"internal_error"),)))
    return out
