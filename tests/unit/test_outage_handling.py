"""Riding out outages without the services: the producer-error classification, the producer
renewal and re-send of the unacknowledged records only, the store waits (NOSCRIPT retried at
once), the brake on aiokafka's metadata refresh and the rate-limited log filter. The real
outages (broker and Redis restarts) are tests/integration/test_outages.py."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from aiokafka import errors as ke

from stream_monitor.adapters import kafka_faults
from stream_monitor.adapters.kafka_faults import brake_metadata_refresh, classify_send_error
from stream_monitor.adapters.retry import RetryPolicy
from stream_monitor.adapters.worker import MonitorWorker
from stream_monitor.config import load_config
from stream_monitor.contracts.output_records import StateReset, WorkerRef
from stream_monitor.contracts.outputs import output_record
from stream_monitor.errors import OutputRejectedError, ScriptsLostError, TransientStoreError
from stream_monitor.observability.logging import JsonFormatter, RateLimitFilter
from stream_monitor.settings import Settings
from stream_monitor.state import MemoryStore

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "monitor.yaml"


# -- classification ------------------------------------------------------------------------
@pytest.mark.parametrize(("exc", "kind"), [
    (ke.NotLeaderForPartitionError(), "retry"),
    (ke.LeaderNotAvailableError(), "retry"),
    (ke.RequestTimedOutError(), "retry"),
    (ke.KafkaTimeoutError(), "retry"),          # metadata wait or full buffer: not "retriable"
    (ke.KafkaConnectionError("refused"), "retry"),
    (ke.NodeNotReadyError(), "retry"),
    (ke.NotEnoughReplicasError(), "retry"),
    (ke.BrokerNotAvailableError(), "retry"),
    (ConnectionResetError(), "retry"),
    (ke.OutOfOrderSequenceNumber(), "renew"),
    (ke.UnknownProducerId(), "renew"),
    (ke.InvalidProducerEpoch(), "renew"),
    (ke.ProducerFenced(), "renew"),
    (ke.KafkaError("Unexpected error during batch delivery"), "renew"),
    (ke.UnknownTopicOrPartitionError(), "missing_topic"),
    (ke.MessageSizeTooLargeError(), "refused"),
    (ke.RecordListTooLargeError(), "refused"),
    (ke.TopicAuthorizationFailedError("alerts"), "refused"),
    (ke.ClusterAuthorizationFailedError(), "refused"),
    (ke.InvalidTopicError(), "refused"),
    (ke.PolicyViolationError(), "refused"),
    (TypeError("a bug of ours"), "bug"),
])
def test_producer_errors_are_classified(exc: BaseException, kind: str) -> None:
    assert classify_send_error(exc).kind == kind


def test_a_refusal_names_its_real_cause() -> None:
    too_large = classify_send_error(ke.MessageSizeTooLargeError()).cause
    assert "max.message.bytes" in too_large and "SM_MAX_OUTPUT_BYTES" in too_large
    denied = classify_send_error(ke.TopicAuthorizationFailedError("alerts")).cause
    assert "authorized" in denied and "WRITE" in denied and "max.message.bytes" not in denied
    missing = classify_send_error(ke.UnknownTopicOrPartitionError()).cause
    assert "does not exist" in missing and "max.message.bytes" not in missing


# -- publish: renewal, re-send of what failed only, refusals --------------------------------
class Producer:
    """``plan``: per send, None (acknowledged) or an exception the send's future fails with;
    sends beyond the plan are acknowledged."""

    def __init__(self, plan: list[BaseException | None] | None = None,
                 raise_on_send: BaseException | None = None) -> None:
        self.plan = list(plan or [])
        self.raise_on_send = raise_on_send
        self.acked: list[bytes] = []
        self.stopped = False

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any) -> Any:
        if self.raise_on_send is not None:
            raise self.raise_on_send
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        outcome = self.plan.pop(0) if self.plan else None
        if outcome is None:
            self.acked.append(value)
            fut.set_result(None)
        else:
            fut.set_exception(outcome)
        return fut

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The worker's waits, recorded instead of slept."""
    out: list[float] = []

    async def record(s: float) -> None:
        out.append(s)

    monkeypatch.setattr("stream_monitor.adapters.retry.asyncio.sleep", record)
    return out


def _records(n: int) -> list[Any]:
    return [output_record("t-alerts", b"k", StateReset(reset_id=f"r{i}", detected_at="t",
                                                    reason="test", models=[],
                                                    worker=WorkerRef("app", "h", 1), action="-"),
                          ()) for i in range(n)]


def _worker(producer: Producer, renew: Any = None) -> MonitorWorker:
    return MonitorWorker(load_config(CONFIG), Settings(), MemoryStore(), producer=producer,
                         renew_producer=renew)


async def test_out_of_order_sequence_gets_a_new_producer_and_only_failed_records_again(
        sleeps: list[float]) -> None:
    oos = ke.OutOfOrderSequenceNumber()
    # The old producer: 3 records acknowledged, 2 refused for its sequence state, every time.
    old = Producer([None, oos, None, oos, None] + [oos] * 20)
    new = Producer()
    renewed: list[Any] = []

    async def renew(p: Any) -> Any:
        await p.stop()
        renewed.append(p)
        return new

    w = _worker(old, renew)
    recs = _records(5)
    await w.publish(recs)
    assert renewed == [old] and old.stopped and w.producer is new
    assert sleeps == []  # renewed at once, no wait
    assert len(old.acked) == 3 and len(new.acked) == 2
    assert sorted(old.acked + new.acked) == sorted(r.value for r in recs)  # each once


async def test_a_renewal_that_fails_is_tried_again_after_a_wait(sleeps: list[float]) -> None:
    tries: list[int] = []
    new = Producer()

    async def renew(p: Any) -> Any:
        tries.append(1)
        if len(tries) < 3:
            raise ke.KafkaConnectionError("Unable to bootstrap")
        return new

    w = _worker(Producer([ke.OutOfOrderSequenceNumber()]), renew)
    await w.publish(_records(1))
    assert len(tries) == 3 and len(sleeps) == 2 and all(0 < s <= 2.0 for s in sleeps)
    assert len(new.acked) == 1


async def test_transient_faults_are_retried_with_capped_backoff(sleeps: list[float]) -> None:
    p = Producer([ke.NotLeaderForPartitionError()] * 30)
    await _worker(p).publish(_records(1))
    assert len(sleeps) == 30 and max(sleeps) <= 2.0 and len(p.acked) == 1


@pytest.mark.parametrize(("exc", "words"), [
    (ke.MessageSizeTooLargeError(), ("max.message.bytes", "t-alerts")),
    (ke.TopicAuthorizationFailedError("t-alerts"), ("not authorized", "WRITE")),
])
async def test_a_refusal_that_cannot_clear_ends_with_its_cause(
        sleeps: list[float], exc: BaseException, words: tuple[str, ...]) -> None:
    p = Producer(raise_on_send=exc)
    with pytest.raises(OutputRejectedError) as info:
        await _worker(p).publish(_records(2))
    for w in words:
        assert w in str(info.value)


async def test_a_topic_missing_for_a_minute_is_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]

    async def advance(s: float) -> None:
        clock[0] += s

    monkeypatch.setattr("stream_monitor.adapters.retry.asyncio.sleep", advance)
    monkeypatch.setattr("stream_monitor.adapters.retry.time.monotonic", lambda: clock[0])
    p = Producer(raise_on_send=ke.UnknownTopicOrPartitionError())
    with pytest.raises(OutputRejectedError, match="does not exist"):
        await _worker(p).publish(_records(1))
    assert 60.0 <= clock[0] <= 65.0  # retried for a minute first (a restarting broker)


async def test_a_bug_is_not_retried() -> None:
    p = Producer(raise_on_send=TypeError("bad argument"))
    with pytest.raises(TypeError):
        await _worker(p).publish(_records(1))


# -- the store waits -----------------------------------------------------------------------
def test_store_wait_retries_lost_scripts_at_once_and_caps_the_rest() -> None:
    # The store's waits: the worker's policy (store_retry) with a cap of 2 s.
    wait = RetryPolicy(cap_seconds=2.0).start("state store")
    lost = ScriptsLostError("NOSCRIPT")
    assert [wait.wait(lost, "x", now=lost.retry_now) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert wait.wait(lost, "x", now=lost.retry_now) > 0.0  # not forever at once
    down = TransientStoreError("connection refused")
    delays = [wait.wait(down, "x", now=down.retry_now) for _ in range(40)]
    assert max(delays) <= 2.0 and min(delays[-10:]) >= 1.0  # capped, jittered in [cap/2, cap]


# -- the metadata brake --------------------------------------------------------------------
class FakeClient:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers

    async def _metadata_update(self, cluster: Any, topics: Any) -> bool:
        return self.answers.pop(0)


async def test_failed_metadata_updates_wait_longer_and_success_resets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def record(s: float) -> None:
        sleeps.append(s)

    monkeypatch.setattr(kafka_faults.asyncio, "sleep", record)
    c = FakeClient([False] * 8 + [True, False])
    assert brake_metadata_refresh(c, base=0.05, cap=1.0)
    results = [await c._metadata_update(None, None) for _ in range(10)]
    assert results == [False] * 8 + [True, False]
    assert len(sleeps) == 9  # a wait after each failure, none after the success
    assert 0.05 <= sleeps[0] <= 0.1 and 0.5 <= sleeps[7] <= 1.0  # growing, capped at 1 s
    assert sleeps[8] <= 0.1  # reset by the success


async def test_the_brake_fits_the_installed_aiokafka() -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    assert brake_metadata_refresh(producer.client)
    assert brake_metadata_refresh(consumer._client)
    assert not brake_metadata_refresh(object())


# -- the rate-limited log filter -----------------------------------------------------------
def _record(name: str, msg: str = "Unable connect to node with id %s", level: int = 40,
            args: tuple[Any, ...] = (1,)) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_storm_of_lines_is_cut_to_a_few_a_second_with_a_count() -> None:
    now = [0.0]
    f = RateLimitFilter(per_second=1.0, burst=5, clock=lambda: now[0])
    passed = []
    for i in range(30_000):  # 3,000 lines a second for 10 s
        now[0] = i / 3000
        r = _record("aiokafka.client")
        if f.filter(r):
            passed.append(r)
    assert 5 + 9 <= len(passed) <= 5 + 11  # the burst, then one a second
    notes = [r.getMessage() for r in passed if "suppressed" in r.getMessage()]
    assert notes and all("similar lines suppressed" in n for n in notes)
    total = sum(getattr(r, "suppressed", 0) for r in passed)
    assert f.suppressed_total == 30_000 - len(passed)
    # A line after a quiet spell carries the count of what was dropped since the last one.
    now[0] = 100.0
    last = _record("aiokafka.client")
    assert f.filter(last)
    assert total + last.suppressed == f.suppressed_total


def test_kinds_are_limited_apart_and_other_loggers_untouched() -> None:
    f = RateLimitFilter(per_second=1.0, burst=2, clock=lambda: 0.0)
    a = [f.filter(_record("aiokafka.client")) for _ in range(4)]
    b = [f.filter(_record("aiokafka.client", msg="Unable to update metadata from %s"))
         for _ in range(4)]
    ours = [f.filter(_record("stream_monitor.retry", msg="retrying in %.1fs", args=(1.0,)))
            for _ in range(4)]
    other = [f.filter(_record("stream_monitor.worker", msg="drift alert %s", args=("a",)))
             for _ in range(50)]
    assert a == b == ours == [True, True, False, False]
    assert all(other)  # alerts and other lines are never dropped
    redis_lines = [f.filter(_record("redis.asyncio.connection", msg="x", args=()))
                   for _ in range(3)]
    assert redis_lines == [True, True, False]


def test_the_count_reaches_json_logs_as_a_field() -> None:
    now = [0.0]
    f = RateLimitFilter(per_second=1.0, burst=1, clock=lambda: now[0])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(clock=lambda: 0.0))
    handler.addFilter(f)
    lg = logging.getLogger("aiokafka.test_outage_json")
    lg.addHandler(handler)
    lg.propagate = False
    try:
        for _ in range(4):
            lg.error("Unable to update metadata from %s", [1])
        now[0] = 10.0
        lg.error("Unable to update metadata from %s", [1])
    finally:
        lg.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert '"suppressed":3' in lines[1] and "+3 similar lines suppressed" in lines[1]
