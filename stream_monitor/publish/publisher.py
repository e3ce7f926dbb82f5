"""The asyncio publisher: checked events to Kafka with the right key and headers, batched by
the producer, every delivery failure counted and reported.

A send returns as soon as the record is in the producer's buffer (it does not wait for the
broker), so records leave in batches (``linger_ms``, ``max_batch_bytes``). Each record's
outcome is watched: a record Kafka does not acknowledge within the request timeout is a
:class:`~stream_monitor.publish.errors.DeliveryFailure`, given to ``on_delivery_error`` when
one is set, else raised (all of them, with counts) by the next :meth:`Publisher.flush` or
:meth:`Publisher.close` as a :class:`~stream_monitor.publish.errors.DeliveryError`. Nothing is
dropped without a word.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError

from ..adapters.kafka_clients import client_kwargs, describe
from .errors import DeliveryError, DeliveryFailure, FlushTimeoutError, PublishError
from .events import (
    EventKind,
    ValueSerializer,
    headers,
    inference_event,
    json_serializer,
    kafka_key,
    label_event,
    validate_event,
)
from .settings import PublisherSettings

__all__ = ["DeliveryCallback", "PublishStats", "Publisher", "publisher_settings"]

log = logging.getLogger("stream_monitor.publish")

DeliveryCallback = Callable[[DeliveryFailure], None]

# Failures that say nothing about the producer's sequence numbers (no answer, no connection,
# cancelled at close): the same producer goes on. Any other (a broker refusal) renews it.
_NOT_A_REFUSAL: tuple[type[BaseException], ...] = (
    asyncio.CancelledError, TimeoutError, KafkaTimeoutError, KafkaConnectionError,
    RequestTimedOutError)


@dataclass(frozen=True, slots=True)
class PublishStats:
    """Counts since the publisher started: records handed to the producer, acknowledged,
    not delivered, and still waiting for an answer."""

    sent: int
    delivered: int
    failed: int
    in_flight: int


def publisher_settings(settings: PublisherSettings | None = None,
                       bootstrap_servers: str | None = None) -> PublisherSettings:
    """``settings`` (else read from the environment), with ``bootstrap_servers`` if given."""
    if settings is None:
        extra = {} if bootstrap_servers is None else {"KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers}
        return PublisherSettings(**extra)  # type: ignore[arg-type]  # the rest from env
    if bootstrap_servers is not None:
        return settings.model_copy(update={"kafka_bootstrap_servers": bootstrap_servers})
    return settings


class Publisher:
    """Publish inference and label events to Kafka from an asyncio service.

    ``value_serializer`` turns ``(topic, event)`` into the record's bytes; it may be a coroutine
    function (a Schema Registry serializer, :func:`stream_monitor.publish.registry.
    registry_serializer`). Default: JSON. ``on_delivery_error`` is called (on the event loop)
    with each record Kafka did not take; without it, :meth:`flush` and :meth:`close` raise
    :class:`DeliveryError`. ``producer_options`` go to aiokafka's ``AIOKafkaProducer`` as they
    are (they win over the settings).

    Use it as ``async with Publisher(...) as pub:``, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, settings: PublisherSettings | None = None, *,
                 bootstrap_servers: str | None = None,
                 value_serializer: ValueSerializer = json_serializer,
                 on_delivery_error: DeliveryCallback | None = None,
                 producer_options: Mapping[str, Any] | None = None) -> None:
        self.settings = publisher_settings(settings, bootstrap_servers)
        self._serializer = value_serializer
        self._on_error = on_delivery_error
        self._options = dict(producer_options or {})
        self._headers = {k: headers(k, value_serializer) for k in ("inference", "label")}
        self._topics = {"inference": self.settings.topic_inference,
                        "label": self.settings.topic_labels}
        self._producer: Any = None
        self._idempotent = False
        self._renew = False  # replace the producer before the next send
        self._retired: set[asyncio.Future[None]] = set()
        self._closed = False
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._sent = self._delivered = self._failed = 0
        # Failures not yet reported (no callback): raised by the next flush or close.
        self._unreported: list[DeliveryFailure] = []
        self._unreported_count = 0
        self._delivered_since_report = 0

    # -- life cycle ------------------------------------------------------------------------
    async def start(self, timeout: float | None = None) -> None:
        """Connect the producer. Raises :class:`PublishError` naming the brokers when they
        cannot be reached within ``timeout`` (default: the request timeout)."""
        if self._producer is None:
            self._producer = await self._new_producer(timeout)

    async def _new_producer(self, timeout: float | None = None) -> Any:
        from aiokafka import AIOKafkaProducer

        s = self.settings
        kwargs: dict[str, Any] = {
            **client_kwargs(s), "acks": s.acks_value(), "linger_ms": s.linger_ms,
            "max_batch_size": s.max_batch_bytes, "max_request_size": s.max_request_bytes,
            "compression_type": s.compression,
            "request_timeout_ms": int(s.request_timeout_seconds * 1000),
            # Retries of an unanswered batch cannot duplicate records (needs acks=all).
            "enable_idempotence": s.acks == "all",
        }
        if s.client_id:
            kwargs["client_id"] = s.client_id
        kwargs.update(self._options)
        self._idempotent = bool(kwargs["enable_idempotence"])
        producer = AIOKafkaProducer(**kwargs)
        wait = timeout if timeout is not None else s.request_timeout_seconds
        try:
            await asyncio.wait_for(producer.start(), wait)
        except Exception as exc:
            try:
                await asyncio.wait_for(producer.stop(), 5)
            except Exception:  # stopping a producer that never connected is best effort
                pass
            why = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise PublishError(f"cannot connect to Kafka at {describe(s)} "
                               f"(KAFKA_BOOTSTRAP_SERVERS): {why}") from exc
        return producer

    async def _renew_producer(self) -> Any:
        """A fresh producer after the broker refused a batch of the idempotent one: the refused
        batch took sequence numbers the broker never saw, so every later batch to that
        partition would fail with OutOfOrderSequenceNumber. The old producer finishes what it
        holds in the background (its records are reported as usual)."""
        old = self._producer
        self._renew = False  # one renewal, however many sends are waiting for it
        try:
            self._producer = await self._new_producer()
        except BaseException:
            self._renew = True
            raise
        log.info("a new producer replaces the one whose batch the broker refused")
        stopping = asyncio.ensure_future(_stop(old, self.settings.request_timeout_seconds))
        self._retired.add(stopping)
        stopping.add_done_callback(self._retired.discard)
        return self._producer

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending ---------------------------------------------------------------------------
    async def publish_inference(self, event_id: str, model_id: str, features: Mapping[str, Any],
                                prediction: float | int | str | bool, *,
                                model_version: str | None = None,
                                timestamp: float | int | str | datetime | None = None,
                                label: Any = None, topic: str | None = None,
                                extra_headers: Iterable[tuple[str, bytes]] = (),
                                ) -> asyncio.Future[Any]:
        """Build, check and send one inference event; see :meth:`send`."""
        event = inference_event(event_id, model_id, features, prediction,
                                model_version=model_version, timestamp=timestamp, label=label)
        return await self.send("inference", event, topic=topic, extra_headers=extra_headers,
                               validate=False)

    async def publish_label(self, event_id: str, model_id: str,
                            label: float | int | str | bool, *,
                            timestamp: float | int | str | datetime | None = None,
                            topic: str | None = None,
                            extra_headers: Iterable[tuple[str, bytes]] = (),
                            ) -> asyncio.Future[Any]:
        """Build, check and send the label of an earlier prediction; see :meth:`send`."""
        event = label_event(event_id, model_id, label, timestamp=timestamp)
        return await self.send("label", event, topic=topic, extra_headers=extra_headers,
                               validate=False)

    async def send(self, kind: EventKind, event: Mapping[str, Any], *, topic: str | None = None,
                   extra_headers: Iterable[tuple[str, bytes]] = (),
                   validate: bool = True) -> asyncio.Future[Any]:
        """Send one event dict of ``kind`` (``inference`` or ``label``) to its topic (the
        settings' unless ``topic``), key ``model_id``, headers ``content-type`` and ``schema``
        (and ``extra_headers``).

        Returns once the record is buffered, with a future of its delivery (aiokafka's
        ``RecordMetadata``); awaiting it is optional, its failure is reported either way.
        Raises :class:`InvalidEventError` (nothing sent) for an event the worker would
        dead-letter, and :class:`DeliveryError` when the producer does not take the record
        (larger than ``max_request_bytes``; no metadata for the topic within the request
        timeout). An exception of the serializer is raised as
        it is; nothing was sent."""
        self._open()
        if validate:
            validate_event(kind, event)
        record = dict(event)
        topic = topic or self._topics[kind]
        value = self._serializer(topic, record)
        if inspect.isawaitable(value):
            value = await value
        key = kafka_key(record)
        hdrs = [*self._headers[kind], *extra_headers]
        event_id = str(record["event_id"])
        producer = await self._renew_producer() if self._renew else self._producer
        try:
            fut = await producer.send(topic, value, key=key, headers=hdrs)
        except Exception as exc:
            self._sent += 1
            self._failed += 1
            failure = DeliveryFailure(topic, key, event_id, kind, exc)
            raise DeliveryError([failure], 1, 0, "not taken by the producer, not sent") from exc
        self._sent += 1
        self._in_flight.add(fut)
        fut.add_done_callback(lambda f: self._settled(f, topic, key, event_id, kind))
        return fut

    def _open(self) -> Any:
        if self._closed:
            raise PublishError("the publisher is closed")
        if self._producer is None:
            raise PublishError("the publisher is not started: await start() or use "
                               "`async with Publisher(...)`")
        return self._producer

    def _settled(self, fut: asyncio.Future[Any], topic: str, key: bytes, event_id: str,
                 kind: str) -> None:
        self._in_flight.discard(fut)
        error: BaseException | None
        if fut.cancelled():
            error = asyncio.CancelledError("the send was cancelled")
        else:
            error = fut.exception()  # also marks a failure as seen (no "never retrieved")
        if error is None:
            self._delivered += 1
            self._delivered_since_report += 1
            return
        if self._idempotent and not isinstance(error, _NOT_A_REFUSAL):
            self._renew = True
        self._fail(DeliveryFailure(topic, key, event_id, kind, error))

    def _fail(self, failure: DeliveryFailure) -> None:
        self._failed += 1
        if self._on_error is not None:
            try:
                self._on_error(failure)
                return
            except Exception:
                log.exception("on_delivery_error raised; the failure is kept for flush/close")
        self._unreported_count += 1
        if len(self._unreported) < DeliveryError.MAX_KEPT:
            self._unreported.append(failure)
        if self._unreported_count == 1:
            log.warning("not delivered: %s", failure.describe())

    # -- flush and close -------------------------------------------------------------------
    @property
    def stats(self) -> PublishStats:
        return PublishStats(self._sent, self._delivered, self._failed, len(self._in_flight))

    async def flush(self, timeout: float | None = None) -> None:
        """Send what is buffered now and wait for every record's answer, at most ``timeout``
        seconds (default: no limit beyond the request timeout). Raises :class:`DeliveryError`
        for the failures not given to ``on_delivery_error`` since the last report, else
        :class:`FlushTimeoutError` when records are still unanswered at the deadline."""
        producer = self._open()
        answered = await self._drain(producer, _deadline(timeout))
        self._raise_unreported()
        if not answered:
            raise FlushTimeoutError(len(self._in_flight), timeout)

    async def close(self, timeout: float = 30.0) -> None:
        """Flush, then stop the producer, all within ``timeout`` seconds. Records still
        unanswered at the deadline count as failures (reported like the others); raises
        :class:`DeliveryError` when any failure is unreported. Closing twice is harmless."""
        if self._closed or self._producer is None:
            self._closed = True
            return
        deadline = time.monotonic() + timeout
        producer, self._producer = self._producer, None
        self._closed = True
        try:
            await self._drain(producer, deadline)
        finally:
            try:
                await asyncio.wait_for(producer.stop(), max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # a stuck producer is abandoned: its records fail below
                log.warning("the producer did not stop cleanly: %s: %s", type(exc).__name__,
                            exc)
            if self._retired:
                await asyncio.wait(self._retired, timeout=max(0.1, deadline - time.monotonic()))
            for fut in list(self._in_flight):
                if not fut.done():  # reported by _settled as not delivered
                    fut.set_exception(KafkaTimeoutError(
                        f"not acknowledged within close()'s deadline of {timeout:g}s"))
            await asyncio.sleep(0)  # let the done-callbacks of those records run
        self._raise_unreported(note=f"closed with a deadline of {timeout:g}s")

    async def _drain(self, producer: Any, deadline: float | None) -> bool:
        """Flush the producer and wait for the answers of the records in flight; whether all
        came before the deadline."""
        try:
            await asyncio.wait_for(producer.flush(), _left(deadline))
            if self._in_flight:
                _, pending = await asyncio.wait(set(self._in_flight), timeout=_left(deadline))
                return not pending
            return True
        except TimeoutError:
            return False

    def _raise_unreported(self, note: str = "") -> None:
        if not self._unreported_count:
            self._delivered_since_report = 0
            return
        err = DeliveryError(self._unreported, self._unreported_count,
                            self._delivered_since_report, note)
        self._unreported, self._unreported_count, self._delivered_since_report = [], 0, 0
        raise err


async def _stop(producer: Any, timeout: float) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout)
    except Exception as exc:
        log.warning("a replaced producer did not stop cleanly: %s: %s", type(exc).__name__, exc)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
