"""Kafka tools for the demo, the benchmarks and the tests: create topics, produce a stream,
read topics back. The worker does not use them (its clients are in :mod:`.worker` and
:mod:`.kafka_clients`).

Each takes ``bootstrap``: settings with the Kafka security configuration, or a ``host:port``
string, which gets the security settings of the environment (:mod:`.kafka_clients`), so the
same helpers work against a SASL_SSL cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .kafka_clients import KafkaTarget, describe, kafka_kwargs

__all__ = ["consume", "create_topics", "produce", "wait_for_kafka"]


async def wait_for_kafka(bootstrap: KafkaTarget, timeout: float = 60.0) -> None:
    """Return once the broker answers a metadata request (asks it; does not sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap), request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise TimeoutError(f"Kafka at {describe(bootstrap)} did not answer within {timeout}s: {last}")


async def create_topics(bootstrap: KafkaTarget, names: Iterable[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        for name in names:
            try:
                await admin.create_topics([NewTopic(name, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def produce(
    bootstrap: KafkaTarget,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    *,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Send (key, value) pairs and wait until every one is acknowledged."""
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), linger_ms=5, max_batch_size=262144,
                                acks="all", enable_idempotence=True)
    await producer.start()
    n = 0
    try:
        pending: list[Any] = []
        for key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            n += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
                if on_progress:
                    on_progress(n)
        await asyncio.gather(*pending)
        if on_progress:
            on_progress(n)
    finally:
        await producer.stop()
    return n


async def consume(
    bootstrap: KafkaTarget,
    topics: list[str],
    *,
    until: Callable[[list[Any]], bool] | None = None,
    timeout: float = 30.0,
    idle: float | None = None,
) -> list[Any]:
    """Read topics from the beginning (no group) until ``until(messages)``, ``idle`` seconds
    without a message after the first one, or ``timeout``. Returns aiokafka ConsumerRecords.
    (The idle clock starts at the first message: a consumer's first fetch can take seconds on
    a busy machine.)"""
    consumer = AIOKafkaConsumer(*topics, **kafka_kwargs(bootstrap),
                                auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    last: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = [m for msgs in batch.values() for m in msgs]
            if got:
                out.extend(got)
                last = time.monotonic()
            if until is not None and until(out):
                break
            if idle is not None and last is not None and time.monotonic() - last > idle:
                break
    finally:
        await consumer.stop()
    return out
