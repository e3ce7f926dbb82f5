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
import tempfile
from collections.abc import Sequence
from typing import Any

import faust

from ..config import MonitorConfig, Settings
from ..contracts.records import DeadLetter, Position, RawRecord
from ..errors import TransientStoreError
from ..pipeline import BatchOutput, BatchPipeline, OutputRecord, _output
from ..state.base import StateStore

__all__ = ["MonitorWorker", "build_app"]

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
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # noqa: BLE001 - River's Rust code panics with a BaseException
                if len(raws) == 1:
                    log.exception("event failed in the core; dead-lettering it (%s)",
                                  _where(raws[0].position))
                    return _internal_error(self.config, raws[0])
                # Isolate the poison event: process one at a time, in order.
                log.exception("batch failed in the core; retrying its %d events one by one",
                              len(raws))
                total = BatchOutput()
                for raw in raws:
                    res = await self.process([raw])
                    total.records.extend(res.records)
                    total.events += res.events
                    total.dead_letters += res.dead_letters
                    total.alerts += res.alerts
                    total.retrain_requests += res.retrain_requests
                return total
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.store_retry_max_seconds)

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
                # Re-sending is safe: ids are deterministic, consumers dedupe on them.
                log.warning("publishing %d records failed, retrying in %.1fs: %s",
                            len(records), delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _where(p: Position) -> str:
    return f"topic={p.topic} partition={p.partition} offset={p.offset}"


def _internal_error(config: MonitorConfig, raw: RawRecord) -> BatchOutput:
    import time

    dl = DeadLetter(raw, "internal_error", "the monitoring core raised on this event; see the "
                    "worker log at this topic/partition/offset")
    out = BatchOutput(events=1, dead_letters=1)
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


def build_app(config: MonitorConfig, settings: Settings, store: StateStore) -> tuple[faust.App, MonitorWorker]:
    """The Faust app with one agent on the inference topic."""
    datadir = settings.data_dir or os.path.join(tempfile.gettempdir(), "stream-monitor")
    os.makedirs(datadir, exist_ok=True)
    app = faust.App(
        settings.app_id,
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
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        broker_max_poll_records=max(500, settings.batch_max),
    )
    worker = MonitorWorker(config, settings, store)
    t = config.topics
    for name in (t.alerts, t.retrain, t.dead_letter):
        worker.topics[name] = app.topic(name, key_type=bytes, value_type=bytes,
                                        key_serializer="raw", value_serializer="raw")
    inference = app.topic(t.inference, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

    @app.agent(inference, concurrency=1)
    async def monitor(stream: faust.StreamT) -> None:
        async for events in stream.noack_take(settings.batch_max, within=settings.batch_within_seconds):
            raws = [_raw(e) for e in events]
            out = await worker.process(raws)
            if out.records:
                await worker.publish(out.records)
            for e in events:
                await stream.ack(e)
            worker.batches += 1
            worker.events += len(events)
            if out.alerts or out.retrain_requests or out.dead_letters:
                log.info("batch of %d: %d alerts, %d retrain requests, %d dead letters (%s)",
                         len(events), out.alerts, out.retrain_requests, out.dead_letters,
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
