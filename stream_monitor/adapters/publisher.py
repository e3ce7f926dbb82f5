"""Kafka output I/O of the worker: send a batch's outputs and wait until the broker acknowledged
every one (step 3 of the batch guarantee, adapters/worker.py).

A loop of ours around aiokafka's own retries: it outlasts a broker outage (the worker's
:class:`~stream_monitor.adapters.retry.RetryPolicy`), replaces a producer whose idempotence
state the broker refuses, and ends only on a refusal that retrying cannot mend
(adapters/kafka_faults.py). Only the records that were not acknowledged are sent again (the same
bytes: ids fixed, so a repeat is identical).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from ..contracts.outputs import OutputRecord
from ..errors import OutputRejectedError
from .kafka_faults import SendFault, classify_send_error, worst
from .retry import RetryPolicy

__all__ = ["OutputPublisher", "Producer", "record_size"]

_REJECTED_TRIES = 3  # sends of a batch that Kafka refused with a non-retriable error
_TOPIC_MISSING_SECONDS = 60.0  # an output topic unknown this long (a restarting broker: seconds)
# Waits between tries while the broker is away: capped low enough that the first try after it
# returns comes within a couple of seconds.
PUBLISH_RETRY = RetryPolicy(cap_seconds=2.0, base_seconds=0.1, at_once=1,
                            deadline_seconds=_TOPIC_MISSING_SECONDS)


class Producer(Protocol):
    """What the publisher needs of a Kafka producer (aiokafka's ``AIOKafkaProducer``):
    ``send`` returns an awaitable that resolves once the broker acknowledged the record."""

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> Awaitable[Any]: ...

    async def stop(self) -> None: ...


class PublishCounter(Protocol):
    def publish_failed(self) -> None: ...


def record_size(r: OutputRecord) -> int:
    """Bytes of an output record as the producer counts them (before framing)."""
    return len(r.key) + len(r.value) + sum(len(k) + len(v) for k, v in r.headers)


class OutputPublisher:
    """Publishes outputs through ``producer``; ``renew`` (given the producer in use, closes it
    and returns a started new one) replaces a producer the broker no longer accepts."""

    def __init__(self, producer: Any, *, max_output_bytes: int,
                 renew: Callable[[Any], Awaitable[Any]] | None = None,
                 failures: PublishCounter | None = None,
                 policy: RetryPolicy = PUBLISH_RETRY) -> None:
        # Any: aiokafka's producer (untyped) or a test's stand-in (the Producer protocol).
        self.producer: Any = producer
        self.renew = renew
        self.failures = failures
        self.max_output_bytes = max_output_bytes
        self.policy = policy

    async def publish(self, records: Sequence[OutputRecord]) -> None:
        """Send every output and wait until the broker acknowledged all of them. Transient
        faults (broker down, leader moving) are retried with capped backoff for as long as it
        takes (shutdown cancels the wait); a producer whose idempotence state the broker refuses
        is replaced; a refusal that retrying cannot mend is tried ``_REJECTED_TRIES`` times,
        then raised as :class:`OutputRejectedError` naming the cause."""
        if not records:
            return
        limit = self.max_output_bytes
        for r in records:
            size = record_size(r)
            if size > limit:
                raise OutputRejectedError(
                    f"{r.record.type} for topic {r.topic} is {size} bytes, over "
                    f"SM_MAX_OUTPUT_BYTES={limit}; this is a bug (outputs are bounded), please "
                    "report it")
        tries = self.policy.start("Kafka")
        pending = list(records)
        refused = 0
        renew = False  # the producer in use must be replaced before the next send
        while True:
            if renew and self.renew is not None:
                try:
                    self.producer = await self.renew(self.producer)
                    renew = False
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # e.g. the broker is still away: try again later
                    await tries.sleep(repr(exc), "starting a new producer again")
                    continue
            faults = await self._send_all(pending)
            if not faults:
                return
            pending = [r for r, _ in faults]
            if self.failures is not None:
                self.failures.publish_failed()
            fault = worst([f for _, f in faults])
            if fault.kind == "bug":
                raise fault.error
            topics = ", ".join(sorted({r.topic for r, f in faults if f is fault}))
            if fault.kind == "refused":
                refused += 1
                if refused >= _REJECTED_TRIES:
                    raise OutputRejectedError(
                        f"Kafka refused {len(pending)} output records for {topics} {refused} "
                        f"times: {fault.cause}") from fault.error
            else:
                refused = 0
            held = tries.persisting(fault.kind == "missing_topic")
            if held is not None:
                raise OutputRejectedError(
                    f"output topic {topics} still unknown to Kafka after {held:.0f}s of tries: "
                    f"{fault.cause}") from fault.error
            if fault.kind == "renew" and self.renew is not None:
                renew = True
            # A producer renewed for the first time is tried at once: a new producer id is
            # all it takes.
            await tries.sleep(fault.cause, f"publishing {len(pending)} records again"
                              + (" with a new producer" if renew else ""), now=renew)

    async def _send_all(self, records: Sequence[OutputRecord]
                        ) -> list[tuple[OutputRecord, SendFault]]:
        """Send records and wait for every answer; the records that failed, with why."""
        futs: list[Awaitable[Any]] = []
        send_error: BaseException | None = None
        for r in records:
            try:
                futs.append(await self.producer.send(r.topic, r.value, key=r.key,
                                                     headers=list(r.headers)))
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # not queued: this one and the rest are sent again
                send_error = exc
                break
        results = await asyncio.gather(*futs, return_exceptions=True) if futs else []
        failed = [(r, classify_send_error(res)) for r, res in zip(records, results, strict=False)
                  if isinstance(res, BaseException)]
        if send_error is not None:
            fault = classify_send_error(send_error)
            failed += [(r, fault) for r in records[len(futs):]]
        return failed
