"""The notifier: reads the alert and retrain topics and forwards each record to every target.

Delivery is at least once, offset by offset: a record's offset is committed only after every
target has either accepted it or it has been written (and acknowledged) to the notifier's
dead-letter topic for that target. A crash in between redelivers the record; Alertmanager,
PagerDuty and OpsGenie deduplicate on the alert's identity, webhooks get the same
``Idempotency-Key``, a mail the same ``Message-ID``, and Slack and Teams may show the message
twice.

Records of one partition are handled in order (a resolution never overtakes its alert);
partitions are handled concurrently, and so are the targets of one record.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from redis.backoff import ExponentialBackoff

from ..adapters.kafka_clients import KafkaTarget, describe, kafka_kwargs
from ..contracts.records import SCHEMA_VERSION, bytes_field, iso_time, record_id
from ..observability.logging import log_context
from ..observability.metrics import NotifierMetrics
from .config import NotifyConfig, ResolvedTarget
from .delivery import DeliveryResult, Forwarder
from .notification import Notification, UnsupportedRecord, notification_from_record

__all__ = ["HandledRecord", "Notifier", "dead_letter_record", "run_notifier"]

log = logging.getLogger("stream_monitor.notify")


class HandledRecord:
    """What happened to one consumed record (returned for tests and logs)."""

    __slots__ = ("dead_letters", "notification", "offset", "results", "tp")

    def __init__(self, tp: TopicPartition, offset: int) -> None:
        self.tp = tp
        self.offset = offset
        self.notification: Notification | None = None
        self.results: list[DeliveryResult] = []
        self.dead_letters: list[dict[str, Any]] = []


def dead_letter_record(msg: Any, reason_code: str, reason: str, now: float, *,
                       target: ResolvedTarget | None = None, result: DeliveryResult | None = None,
                       notification: Notification | None = None) -> dict[str, Any]:
    """A record for the notifier's dead-letter topic (schema ``notification-dead-letter``)."""
    headers = [{"key": str(k), "value": bytes_field(bytes(v or b""))}
               for k, v in (msg.headers or ())]
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "notification_dead_letter",
        "dead_letter_id": record_id("ndl", msg.topic, msg.partition, msg.offset,
                                    target.name if target else "-"),
        "reason_code": reason_code,
        "reason": reason,
        "target": {"name": target.name, "type": target.spec.type} if target else None,
        "attempts": result.attempts if result else 0,
        "last_status": result.status if result else None,
        "record_type": notification.record_type if notification else None,
        "idempotency_key": notification.idempotency_key if notification else None,
        "fingerprint": notification.fingerprint if notification else None,
        "source": {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                   "timestamp_ms": msg.timestamp},
        "original": {"key": bytes_field(msg.key), "value": bytes_field(msg.value),
                     "headers": headers},
        "dead_lettered_at": iso_time(now),
    }


class Notifier:
    def __init__(self, config: NotifyConfig, targets: Sequence[ResolvedTarget],
                 bootstrap: KafkaTarget, *,
                 group_id: str | None = None, metrics: NotifierMetrics | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None, max_poll_records: int = 20,
                 max_poll_interval_ms: int = 900_000) -> None:
        self.config = config
        self.targets = list(targets)
        self.bootstrap = bootstrap
        self.group_id = group_id or config.consumer_group
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.max_poll_records = max_poll_records
        self.max_poll_interval_ms = max_poll_interval_ms
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.session: aiohttp.ClientSession | None = None
        self.forwarders: list[Forwarder] = []
        self.handled = 0
        self._severities = config.severity.model_dump()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        t = self.config.topics
        self.session = aiohttp.ClientSession()
        self.forwarders = [Forwarder(tg, self.session, generator_url=self.config.generator_url,
                                     hooks=self.metrics, sleep=self.sleep, rng=self.rng)
                           for tg in self.targets]
        # Bootstrap servers and security (TLS, SASL) from the settings: docs/security.md.
        kafka = kafka_kwargs(self.bootstrap)
        self.producer = AIOKafkaProducer(**kafka, acks="all", enable_idempotence=True,
                                         linger_ms=5)
        self.consumer = AIOKafkaConsumer(
            t.alerts, t.retrain, t.deployments, t.incidents, **kafka,
            group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=self.max_poll_records,
            # Retries with backoff can hold a poll for minutes; stay in the group meanwhile.
            max_poll_interval_ms=self.max_poll_interval_ms)
        await self.producer.start()
        try:
            await self.consumer.start()
        except BaseException:
            await self.producer.stop()
            raise
        log.info("notifier: group %s reads %s, %s, %s, %s from %s -> %s; dead letters to %s",
                 self.group_id, t.alerts, t.retrain, t.deployments, t.incidents,
                 describe(self.bootstrap),
                 ", ".join(f"{x.spec.type}:{x.name}" for x in self.targets),
                 t.dead_letter)

    async def stop(self) -> None:
        closers: list[Callable[[], Awaitable[Any]]] = []
        if self.consumer is not None:
            closers.append(self.consumer.stop)
        if self.producer is not None:
            closers.append(self.producer.stop)
        if self.session is not None:
            closers.append(self.session.close)
        for close in closers:
            try:
                await asyncio.wait_for(close(), 30)
            except Exception:  # shutting down: best effort
                log.debug("close failed", exc_info=True)
        self.consumer = self.producer = self.session = None

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- health ------------------------------------------------------------------------------
    def readiness_checks(self) -> dict[str, Callable[[], Any]]:
        async def kafka() -> tuple[bool, str]:
            if self.consumer is None:
                return False, "consumer not started"
            topics = await self.consumer.topics()  # a metadata request to the brokers
            return True, f"{len(topics)} topics visible"

        def partitions() -> tuple[bool, str]:
            n = len(self.consumer.assignment()) if self.consumer else 0
            return n > 0, f"{n} partitions assigned"

        return {"kafka": kafka, "partitions_assigned": partitions}

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set."""
        assert self.consumer is not None
        while not stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=500)
            if batch:
                await asyncio.gather(*(self._partition(tp, msgs) for tp, msgs in batch.items()))
            await self._update_lag()

    async def poll_once(self, timeout_ms: int = 500) -> list[HandledRecord]:
        """One poll, handled and committed (for tests and tools)."""
        assert self.consumer is not None
        batch = await self.consumer.getmany(timeout_ms=timeout_ms)
        done = await asyncio.gather(*(self._partition(tp, msgs) for tp, msgs in batch.items()))
        await self._update_lag()
        return [h for part in done for h in part]

    async def _partition(self, tp: TopicPartition, msgs: Sequence[Any]) -> list[HandledRecord]:
        out = []
        for msg in msgs:
            with log_context(topic=msg.topic, partition=msg.partition, offset=msg.offset):
                handled = await self.handle(msg)
                await self._commit(tp, msg.offset + 1)
            out.append(handled)
        return out

    async def _commit(self, tp: TopicPartition, next_offset: int) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit({tp: next_offset})
        except (KafkaError, AssertionError) as exc:
            # Revoked in a rebalance: the new owner redelivers from the last commit, and the
            # targets deduplicate (see the module docstring).
            log.warning("commit of %s@%d failed (%s); the record may be delivered again", tp,
                        next_offset, exc)

    async def _update_lag(self) -> None:
        if self.metrics is None or self.consumer is None:
            return
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)  # known after the first fetch
            if hw is None:
                continue
            try:
                pos = await asyncio.wait_for(self.consumer.position(tp), 2)
            except (KafkaError, TimeoutError, AssertionError):
                continue
            self.metrics.set_lag((tp.topic, tp.partition), hw - pos)

    # -- one record ----------------------------------------------------------------------------
    async def handle(self, msg: Any) -> HandledRecord:
        """Deliver one consumed record to every target, dead-lettering what cannot be."""
        h = HandledRecord(TopicPartition(msg.topic, msg.partition), msg.offset)
        now = self.clock()
        try:
            if msg.value is None:
                raise UnsupportedRecord("undecodable", "the record has no value (tombstone)")
            try:
                record = orjson.loads(msg.value)
            except orjson.JSONDecodeError as exc:
                raise UnsupportedRecord("undecodable", f"not valid UTF-8 JSON: {exc}") from None
            n = notification_from_record(record, self._severities, raw=msg.value, now=now)
            if n is None:  # e.g. a deployment check that passed: nothing to tell anyone
                self._count("(not forwarded)")
                self.handled += 1
                return h
        except UnsupportedRecord as exc:
            self._count("(invalid)")
            log.warning("cannot forward record: %s", exc.reason)
            await self._dead_letter(h, [dead_letter_record(msg, exc.reason_code, exc.reason, now)])
            return h
        h.notification = n
        self._count(n.record_type)
        with log_context(model=n.model_id, signal=n.signal, alert_id=n.idempotency_key):
            results = await asyncio.gather(*(f.deliver(n, msg.value) for f in self.forwarders))
            h.results = list(results)
            dls = []
            for fw, res in zip(self.forwarders, results, strict=True):
                if self.metrics:
                    self.metrics.delivery(fw.name, res.outcome, res.seconds)
                if res.ok:
                    continue
                reason = (f"{fw.spec.type} target {fw.name!r} "
                          + ("rejected the request" if res.outcome == "rejected" else
                             f"failed {res.attempts} attempts")
                          + f"; last error: {res.error}")
                log.error("dead-lettering %s %s for %s: %s", n.record_type, n.idempotency_key,
                          fw.name, reason, extra={"target": fw.name})
                dls.append(dead_letter_record(
                    msg, "rejected" if res.outcome == "rejected" else "delivery_failed", reason,
                    self.clock(), target=fw.target, result=res, notification=n))
            if dls:
                await self._dead_letter(h, dls)
            elif any(r.outcome == "delivered" for r in results):
                log.info("delivered %s %s to %s", n.record_type, n.idempotency_key,
                         ", ".join(r.target for r in results if r.outcome == "delivered"))
        self.handled += 1
        return h

    def _count(self, kind: str) -> None:
        if self.metrics:
            self.metrics.records.labels(kind).inc()

    async def _dead_letter(self, h: HandledRecord, records: list[dict[str, Any]]) -> None:
        """Publish dead letters and wait for the broker; retried until they are safe, since
        the offset must not be committed before."""
        assert self.producer is not None
        topic = self.config.topics.dead_letter
        # A loop of ours around aiokafka's own retries (which end at its request timeout): the
        # offset waits for these records however long the broker is away.
        backoff = ExponentialBackoff(cap=10.0, base=0.1)  # 0.2, 0.4, ... 10 s
        for attempt in itertools.count(1):
            try:
                futs = []
                for rec in records:
                    tgt = rec["target"]["name"] if rec["target"] else "-"
                    headers = [("content-type", b"application/json"),
                               ("schema", b"notification-dead-letter/v1"),
                               ("reason-code", rec["reason_code"].encode()),
                               ("target", tgt.encode())]
                    key = h.notification.model_id.encode() if h.notification else None
                    futs.append(await self.producer.send(topic, orjson.dumps(rec), key=key,
                                                         headers=headers))
                await asyncio.gather(*futs)
                break
            except KafkaError as exc:
                delay = backoff.compute(attempt)
                log.warning("dead-letter publish failed (attempt %d), retrying in %.1fs: %s",
                            attempt, delay, exc)
                await self.sleep(delay)
        h.dead_letters.extend(records)
        if self.metrics:
            for rec in records:
                self.metrics.dead_lettered(rec["target"]["name"] if rec["target"] else "-",
                                           rec["reason_code"])


async def run_notifier(config: NotifyConfig, targets: Sequence[ResolvedTarget],
                       bootstrap: KafkaTarget, *,
                       group_id: str | None = None, http_host: str = "0.0.0.0",
                       http_port: int = 9465, stop: asyncio.Event | None = None) -> None:
    """The ``stream-monitor notify`` process: the notifier, with /metrics, /healthz and /readyz,
    until SIGTERM/SIGINT (or ``stop``)."""
    import signal

    from prometheus_client import REGISTRY

    from ..observability.http import HealthServer, Readiness

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    metrics = NotifierMetrics(REGISTRY)
    notifier = Notifier(config, targets, bootstrap, group_id=group_id, metrics=metrics)
    server: HealthServer | None = None
    if http_port:
        server = HealthServer(REGISTRY, Readiness(notifier.readiness_checks()), host=http_host,
                              port=http_port)
        await server.start()
    try:
        async with notifier:
            await notifier.run(stop)
    finally:
        if server is not None:
            await server.stop()
    log.info("notifier stopped after %d records", notifier.handled)
