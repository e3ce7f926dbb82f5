"""What the worker does about a Kafka producer error, and a brake on aiokafka's metadata refresh.

:func:`classify_send_error` sorts an error of ``AIOKafkaProducer.send`` (or of the future it
returns) into one of four answers:

- ``retry``: the broker is away or moving (``NotLeaderForPartition``, a request or metadata
  timeout, no connection): send again after a backoff, with the same producer.
- ``renew``: the idempotent producer's own state is broken. After a broker restart a partition
  can answer ``OutOfOrderSequenceNumber`` (or ``UnknownProducerId``, ``InvalidProducerEpoch``)
  to every later batch of that producer id, however often it is retried; a new producer gets a
  new producer id whose sequence numbers start again at 0, which the broker accepts.
- ``missing_topic``: the broker does not know the topic. Also what a broker that is restarting
  answers for a while, so it is retried; only a topic still missing after a minute of
  tries ends the process (adapters/worker.py).
- ``refused``: retrying cannot mend it (a record over the topic's ``max.message.bytes``, no
  WRITE permission, an invalid topic name, a policy). ``cause`` names it for the operator.

An error that is neither a Kafka error nor a connection error (a bug of ours) is ``bug``: the
caller lets it propagate.

Re-sending is safe for every answer: an output's bytes and id are fixed before it is first sent
(contracts/outputs.py), so a record that was written before the error and is sent again is a
byte-identical repeat, which consumers drop by id.

:func:`brake_metadata_refresh` stops a busy loop of aiokafka 0.13-0.14: while a partition
leader is unknown (the broker is down), the producer's sender and the consumer's fetcher ask
for a metadata update, wait for it, and ask again at once; an update that cannot reach any
broker fails at once on a refused connection, so the loop ran about 3,000 times a second, a
core busy and two ERROR lines each time. The brake makes a failed update wait (capped
exponential backoff with jitter, reset by the first update that succeeds) before it reports
its failure to the waiters.

>>> from aiokafka.errors import NotLeaderForPartitionError, OutOfOrderSequenceNumber
>>> classify_send_error(NotLeaderForPartitionError()).kind
'retry'
>>> classify_send_error(OutOfOrderSequenceNumber()).kind
'renew'
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import errors as ke
from redis.backoff import EqualJitterBackoff

__all__ = ["SendFault", "brake_metadata_refresh", "classify_send_error"]

log = logging.getLogger(__name__)

# The producer id / sequence state of the idempotent producer no longer matches the broker's.
_RENEW: tuple[type[BaseException], ...] = (
    ke.OutOfOrderSequenceNumber, ke.UnknownProducerId, ke.InvalidProducerEpoch,
    ke.InvalidProducerIdMapping, ke.ProducerFenced, ke.ProducerClosed, ke.IllegalStateError,
)
# Not marked retriable by aiokafka, but a broker that is away or slow: waiting mends them.
_TRANSIENT: tuple[type[BaseException], ...] = (
    ke.KafkaTimeoutError, ke.RequestTimedOutError, ke.BrokerNotAvailableError,
    ke.ReplicaNotAvailableError, ke.KafkaUnavailableError, ke.NoBrokersAvailable,
    ke.KafkaConnectionError, ke.NodeNotReadyError, ke.CorruptRecordException,
    ke.KafkaStorageError, ke.NotEnoughReplicasError, ke.NotEnoughReplicasAfterAppendError,
    TimeoutError, ConnectionError, OSError,
)
_TOO_LARGE = (ke.MessageSizeTooLargeError, ke.RecordListTooLargeError, ke.RecordTooLargeError)
_NOT_ALLOWED = (ke.TopicAuthorizationFailedError, ke.ClusterAuthorizationFailedError,
                ke.SaslAuthenticationFailed, ke.AuthenticationFailedError,
                ke.TransactionalIdAuthorizationFailed)

_SEVERITY = {"retry": 0, "missing_topic": 1, "renew": 2, "refused": 3, "bug": 4}


@dataclass(frozen=True)
class SendFault:
    """``kind``: retry, renew, missing_topic, refused or bug (module docstring); ``cause``: what
    to tell the operator when it ends the process."""

    kind: str
    cause: str
    error: BaseException

    @property
    def severity(self) -> int:
        return _SEVERITY[self.kind]


def classify_send_error(exc: BaseException) -> SendFault:
    """What a producer error asks of the worker (module docstring)."""
    name = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, _RENEW):
        return SendFault("renew", f"the idempotent producer's state was refused ({name})", exc)
    if isinstance(exc, ke.UnknownTopicOrPartitionError):
        return SendFault("missing_topic", "the output topic does not exist on the broker "
                         "(UnknownTopicOrPartition); create it, or let the worker create it at "
                         "start (it needs CREATE on the cluster for that)", exc)
    if isinstance(exc, _TOO_LARGE):
        return SendFault("refused", f"a record is larger than the topic accepts ({name}); raise "
                         "the topic's max.message.bytes (and the broker's message.max.bytes) to "
                         "at least SM_MAX_OUTPUT_BYTES plus 16 KiB, or lower SM_MAX_OUTPUT_BYTES",
                         exc)
    if isinstance(exc, _NOT_ALLOWED):
        return SendFault("refused", f"the worker is not authorized to write the topic ({name}); "
                         "grant its principal WRITE and DESCRIBE on the output topics (and "
                         "IDEMPOTENT_WRITE on the cluster for brokers before Kafka 3.0)", exc)
    if isinstance(exc, ke.InvalidTopicError):
        return SendFault("refused", f"the topic name is invalid ({name}); fix SM_TOPIC_*", exc)
    if isinstance(exc, _TRANSIENT) or (isinstance(exc, ke.KafkaError) and exc.retriable):
        return SendFault("retry", f"the broker is unavailable ({name})", exc)
    if isinstance(exc, ke.KafkaError):
        if "Unexpected error during batch delivery" in str(exc):  # the sender task died
            return SendFault("renew", f"the producer's sender stopped ({name})", exc)
        return SendFault("refused", f"the broker refused the records ({name})", exc)
    return SendFault("bug", name, exc)


def worst(faults: list[SendFault]) -> SendFault:
    """The fault that decides what to do when several records failed differently."""
    return max(faults, key=lambda f: f.severity)


def brake_metadata_refresh(client: Any, *, base: float = 0.05, cap: float = 1.0) -> bool:
    """Make a failed metadata update of an aiokafka client (``AIOKafkaProducer.client``,
    ``AIOKafkaConsumer._client``) wait ``min(cap, base * 2**failures)`` seconds (equal jitter)
    before it reports the failure, so the loops that wait for it do not spin (module
    docstring). The first update that succeeds resets the wait.

    It wraps the client's ``_metadata_update`` coroutine on this instance only, a private method:
    no public API reaches that path in aiokafka 0.13-0.14. The producer's sender and the
    consumer's fetcher wait on ``force_metadata_update()`` and call it again as soon as it
    resolves, with no backoff (``retry_backoff_ms`` is not used there; ``metadata_max_age_ms``
    only paces the periodic refresh), and both build their ``AIOKafkaClient`` themselves, so a
    subclass cannot be passed in. Returns False, and changes nothing, when that method is not
    there (another aiokafka version); tests/unit/test_outage_handling.py checks that it fits the
    installed aiokafka."""
    update = getattr(client, "_metadata_update", None)
    if update is None or not asyncio.iscoroutinefunction(update):
        log.warning("this aiokafka version has no %s._metadata_update: a broker outage may "
                    "cost CPU and log lines (see docs/operations.md)", type(client).__name__)
        return False
    backoff = EqualJitterBackoff(cap=cap, base=base)
    failures = 0

    @functools.wraps(update)
    async def braked(*args: Any, **kwargs: Any) -> Any:
        nonlocal failures
        ok = await update(*args, **kwargs)
        if ok:
            failures = 0
        else:
            failures += 1
            await asyncio.sleep(backoff.compute(failures))
        return ok

    client._metadata_update = braked
    return True
