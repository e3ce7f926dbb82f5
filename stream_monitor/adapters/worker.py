"""The Kafka worker: a Faust agent that feeds batches of inference events to the core.

Faust acks an event even when the agent raises, so this agent never lets an exception out:
it takes events with ``noack_take`` (no automatic ack), saves state, publishes the outputs,
waits for the broker to confirm them, and only then acks the events of the batch. A Redis
outage is retried with capped backoff on the same batch, which also pauses consumption
(the buffer is bounded by ``SM_BATCH_MAX``). An event the core cannot handle goes to the
dead-letter topic; it never blocks its partition.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import faust

from ..config import MonitorConfig, Settings
from ..contracts.records import SCHEMA_VERSION, DeadLetter, Position, RawRecord, iso_time, record_id
from ..errors import TransientStoreError
from ..observability.logging import log_context
from ..pipeline import BatchOutput, BatchPipeline, OutputRecord, _output
from ..state.base import StateFencedError, StateStore

__all__ = ["MonitorWorker", "build_app", "faust_app"]

log = logging.getLogger("stream_monitor.worker")


class MonitorWorker:
    """Glue between a Faust stream and the batch pipeline (kept apart from Faust for tests)."""

    def __init__(self, config: MonitorConfig, settings: Settings, store: StateStore) -> None:
        self.config = config
        self.settings = settings
        self.store = store
        self.pipeline = BatchPipeline(config, store)
        self.topics: dict[str, Any] = {}
        self._declared: set[str] = set()
        self.metrics: Any = None
        self.batches = 0
        self.events = 0

    async def process(self, raws: Sequence[RawRecord]) -> BatchOutput:
        """Run a batch until its state is saved; retry while the store is down."""
        delay = 0.1
        while True:
            try:
                return await self.pipeline.run(raws)
            except TransientStoreError as exc:
                log.warning("state store unavailable, retrying batch of %d in %.1fs: %s",
                            len(raws), delay, exc)
            except StateFencedError as exc:
                # Another worker saved these models since we loaded them (a rebalance), or Redis
                # lost them. Nothing of this batch was written for them. Reload and run the batch
                # again: the stored watermark skips what the other worker already applied, and
                # the events still get acked, so this partition's commits never stall.
                if exc.lost:
                    await self.state_reset(f"stored state vanished: {exc}", exc.model_ids)
                else:
                    log.warning("state moved on under this worker (%s); reloading and retrying "
                                "the batch of %d", exc, len(raws))
                self.pipeline.forget()
                continue
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # River's Rust code panics with a BaseException
                if len(raws) == 1:
                    log.exception("event failed in the core; dead-lettering it (%s)",
                                  _where(raws[0].position))
                    return _internal_error(self.config, raws[0])
                # Isolate the poison event: process one at a time, in order.
                log.exception("batch failed in the core; retrying its %d events one by one",
                              len(raws))
                total = BatchOutput()
                for raw in raws:
                    total.merge(await self.process([raw]))
                return total
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.store_retry_max_seconds)

    async def clear_outbox(self, out: BatchOutput) -> None:
        """Confirmed outputs leave the outbox. If this fails they are published again later
        (same ids), so a failure here is logged, not retried."""
        try:
            await self.store.clear_outbox(out.outbox)
        except TransientStoreError as exc:
            log.warning("could not clear the outbox (outputs may be re-sent, same ids): %s", exc)

    async def check_epoch(self) -> None:
        """Notice that Redis lost its data, say so on the operations topic, start fresh."""
        delay = 0.1
        while True:
            try:
                if await self.store.check_epoch():
                    return
                break
            except TransientStoreError as exc:
                log.warning("state store unavailable, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.settings.store_retry_max_seconds)
        await self.state_reset("the Redis epoch marker is gone: Redis lost its data (restarted "
                               "without persistence?)", models=sorted(self.pipeline.state.models))

    async def state_reset(self, reason: str, models: list[str]) -> None:
        import socket

        self.pipeline.forget()
        now = time.time()
        rec = {
            "schema_version": SCHEMA_VERSION,
            "type": "state_reset",
            "reset_id": record_id("reset", self.settings.app_id, socket.gethostname(), os.getpid(), now),
            "detected_at": iso_time(now),
            "reason": reason,
            "models": models,
            "worker": {"app_id": self.settings.app_id, "host": socket.gethostname(), "pid": os.getpid()},
            "action": "continuing from fresh detectors and reference windows; alerts before this "
                      "point are not comparable with alerts after it",
        }
        log.error("STATE RESET: %s; models affected: %s. %s", reason, ", ".join(models) or "unknown",
                  rec["action"])
        await self.publish([_output(self.config.topics.operations, b"", rec, ())])

    async def publish(self, records: Sequence[OutputRecord]) -> None:
        """Send every output and wait until the broker confirms all of them."""
        delay = 0.2
        while True:
            try:
                for name in {r.topic for r in records} - self._declared:
                    # Output topics may not exist yet and brokers may not auto-create them.
                    await self.topics[name].maybe_declare()
                    self._declared.add(name)
                futs = []
                for r in records:
                    topic = self.topics[r.topic]
                    futs.append(await topic.send(key=r.key, value=r.value,
                                                 headers=list(r.headers), force=True))
                await asyncio.gather(*futs)
                return
            except Exception as exc:
                if self.metrics is not None:
                    self.metrics.publish_failed()
                # Re-sending is safe: ids are deterministic, consumers dedupe on them.
                log.warning("publishing %d records failed, retrying in %.1fs: %s",
                            len(records), delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _observe(metrics: Any, worker: MonitorWorker, raws: list[RawRecord], out: BatchOutput,
             seconds: float) -> None:
    from ..observability import batch_counts

    label_topic = worker.config.topics.labels
    c = batch_counts([r for r in raws if r.position.topic != label_topic], out.records)
    if out.labels or out.label_stats:
        labels_by_model: dict[str, int] = {}
        dead = {(src["topic"], src["partition"], src["offset"]) for o in out.records
                if o.record["type"] == "dead_letter" for src in (o.record["source"],)}
        for r in raws:
            p = r.position
            if p.topic == label_topic and (p.topic, p.partition, p.offset) not in dead:
                k = r.key.decode("utf-8", "replace") if r.key else "(no key)"
                labels_by_model[k] = labels_by_model.get(k, 0) + 1
        metrics.observe_labels(labels_by_model, out.pair_delays, out.label_stats)
        for r in raws:
            if r.position.topic == label_topic:
                tp = (r.position.topic, r.position.partition)
                c.positions[tp] = max(c.positions.get(tp, -1), r.position.offset)
    metrics.observe_batch(c.events_by_model, c.dead_letters_by_reason, seconds, alerts=c.alerts,
                          retrain_requests=c.retrain_requests, positions=c.positions)
    # Per model, the signals of its newest version this batch touched (the gauges are per
    # model and signal; during a canary they follow the new version).
    models = worker.pipeline.state.models
    newest: dict[str, Any] = {}
    for u in out.units:
        m = models.get(u)
        if m is None:
            continue
        cur = newest.get(m.model_id)
        if cur is None or (m.retrain.first_seen or 0.0) >= (cur.retrain.first_seen or 0.0):
            newest[m.model_id] = m
    metrics.observe_models(newest.values())


def _failpoint(spec: str | None) -> tuple[str, int] | None:
    """Testing only (SM_FAILPOINT): where to SIGKILL ourselves, e.g. 'after_save:3'."""
    if not spec:
        return None
    name, _, n = spec.partition(":")
    if name not in ("mid_batch", "after_join", "after_save", "after_publish") or not n.isdigit():
        raise ValueError(f"SM_FAILPOINT={spec!r}: use after_join:N, after_save:N, "
                         "after_publish:N or mid_batch:N")
    return name, int(n)


def _die_if(point: tuple[str, int] | None, name: str, batch: int) -> None:
    if point is not None and point == (name, batch):
        log.warning("failpoint %s:%d reached: SIGKILL", name, batch)
        os.kill(os.getpid(), signal.SIGKILL)


def _where(p: Position) -> str:
    return f"topic={p.topic} partition={p.partition} offset={p.offset}"


def _internal_error(config: MonitorConfig, raw: RawRecord) -> BatchOutput:
    dl = DeadLetter(raw, "internal_error", "the monitoring core raised on this event; see the "
                    "worker log at this topic/partition/offset")
    out = BatchOutput(events=1, dead_letters=1)
    out.quality.dead_letter("(unknown)", "internal_error")
    out.records.append(_output(config.topics.dead_letter, raw.key or b"", dl.to_record(time.time()),
                               (("reason-code", b"internal_error"),)))
    return out


def _raw(event: Any) -> RawRecord:
    m = event.message
    headers = m.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    ts = m.timestamp
    return RawRecord(
        m.value,
        Position(m.topic, m.partition, m.offset, int(ts * 1000) if ts else None),
        m.key,
        tuple((str(k), bytes(v or b"")) for k, v in headers),
    )


_FETCH_WAIT_MS: int | None = None


def _set_fetch_wait(ms: int) -> None:
    """Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, hard-coded
    (faust/transport/drivers/aiokafka.py). aiokafka leaves partitions that still have buffered
    records out of the next fetch, so while the inference partition's records are being
    processed the only fetch in flight is for an idle partition (the labels topic, say) and the
    broker holds it for the whole wait: measured here, an idle labels topic next to the
    inference topic took the worker from 8,600 to 3,500 events/s. Set the wait our way
    (SM_FETCH_MAX_WAIT_MS) on the consumer Faust creates, before it starts."""
    global _FETCH_WAIT_MS
    _FETCH_WAIT_MS = ms
    from faust.transport.drivers import aiokafka as driver

    cls: Any = driver.AIOKafkaConsumerThread
    if getattr(cls, "_stream_monitor_fetch_wait", False):
        return
    create = cls._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        if _FETCH_WAIT_MS is not None:
            consumer._fetch_max_wait_ms = _FETCH_WAIT_MS  # read by AIOKafkaConsumer.start()
        return consumer

    cls._create_worker_consumer = _create_worker_consumer
    cls._stream_monitor_fetch_wait = True


def faust_app(app_id: str, settings: Settings) -> faust.App:
    """The Faust app settings of the worker; the benchmark's no-op baseline uses the same."""
    _set_fetch_wait(settings.fetch_max_wait_ms)
    datadir = settings.data_dir or os.path.join(tempfile.gettempdir(), "stream-monitor")
    os.makedirs(datadir, exist_ok=True)
    return faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        web_enabled=False,
        # Faust creates a data directory for tables even with the memory store; keep it out of
        # the working directory.
        datadir=os.path.join(datadir, "{conf.id}-data"),
        producer_linger_ms=5,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        broker_max_poll_records=max(500, settings.batch_max),
    )


def build_app(config: MonitorConfig, settings: Settings, store: StateStore,
              metrics: Any = None) -> tuple[faust.App, MonitorWorker]:
    """The Faust app with one agent on the inference topic (and the labels topic when a
    model rule takes labels). ``metrics`` is an optional
    :class:`~stream_monitor.observability.WorkerMetrics`, told about every finished batch."""
    app = faust_app(settings.app_id, settings)
    worker = MonitorWorker(config, settings, store)
    worker.metrics = metrics
    t = config.topics
    for name in (t.alerts, t.retrain, t.dead_letter, t.operations, t.deployments):
        worker.topics[name] = app.topic(name, key_type=bytes, value_type=bytes,
                                        key_serializer="raw", value_serializer="raw")
    # Labels share the agent (and its batches) with the inference events when a model takes
    # them: one model's predictions and labels then meet in one place, in order per partition.
    sources = [t.inference] + ([t.labels] if any(r.labels for r in config.models) else [])
    inference = app.topic(*sources, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

    failpoint = _failpoint(settings.failpoint)
    if failpoint is not None and failpoint[0] == "after_join":
        # Between the label join (in Redis) and the state save: the pairs are logged but not
        # yet consumed by any saved state.
        worker.pipeline.after_join = lambda: _die_if(failpoint, "after_join", worker.batches + 1)

    @app.agent(inference, concurrency=1)
    async def monitor(stream: faust.StreamT) -> None:
        async for events in stream.noack_take(settings.batch_max, within=settings.batch_within_seconds):
            n = worker.batches + 1
            t0 = time.perf_counter()
            raws = [_raw(e) for e in events]
            await worker.check_epoch()
            _die_if(failpoint, "mid_batch", n)
            out = await worker.process(raws)
            _die_if(failpoint, "after_save", n)
            if out.records:
                await worker.publish(out.records)
            await worker.clear_outbox(out)
            _die_if(failpoint, "after_publish", n)
            for e in events:
                await stream.ack(e)
            worker.batches = n
            worker.events += len(events)
            if metrics is not None:
                _observe(metrics, worker, raws, out, time.perf_counter() - t0)
            for r in out.records:
                rec = r.record
                if rec["type"] == "drift_alert":
                    at = rec["detected_at"]
                    with log_context(model=rec["model_id"], signal=rec["signal"],
                                     topic=at["topic"], partition=at["partition"],
                                     offset=at["offset"]):
                        log.info("drift alert %s: %s", rec["alert_id"], rec["summary"])
            if out.alerts or out.retrain_requests or out.dead_letters or out.recovered:
                log.info("batch of %d: %d alerts, %d retrain requests, %d dead letters, %d "
                         "recovered from the outbox, %d redelivered (%s)", len(events), out.alerts,
                         out.retrain_requests, out.dead_letters, out.recovered, out.redelivered,
                         _where(raws[-1].position))

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        # State is saved every batch before its events are acked; drop the cache so that a
        # partition that comes back is reloaded from Redis, where another worker may have
        # moved it on.
        worker.pipeline.forget()

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        worker.pipeline.forget()

    return app, worker
