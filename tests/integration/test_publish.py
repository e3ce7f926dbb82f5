"""The publisher SDK on the real Kafka: what it publishes (asyncio and blocking, inference events
and labels, JSON through an async serializer), the worker reads without a single dead letter and
alerts on; records the broker refuses, or never answers, are reported with counts, and close
keeps its deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_monitor.adapters.kafka_tools import consume
from stream_monitor.publish import (
    DeliveryError,
    DeliveryFailure,
    Publisher,
    PublisherSettings,
    SyncPublisher,
)
from stream_monitor.synth import Drift, LabelledSpec, StreamSpec, generate, labelled

from .conftest import TEST_CONFIG, Unique, wait_committed

pytestmark = pytest.mark.integration

SPEC = StreamSpec(models=("credit-risk",), events_per_model=3000, seed=11,
                  drifts=(Drift(1500, "amount", 1.5), Drift(1500, "prediction", 1.0)))
LABELLED = LabelledSpec(model="churn-model", events=800, concept_drift_at=10**9, seed=4,
                        early_labels=0, bogus_labels=0)
CONFIG = {**TEST_CONFIG, "models": [
    *TEST_CONFIG["models"],
    {"match": "churn-*", "labels": {"task": "classification", "ttl_seconds": 100_000},
     "signals": [{"match": "*", "detectors": ["adwin"]}]},
]}


def _settings(bootstrap: str, u: Unique, **extra: Any) -> PublisherSettings:
    return PublisherSettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap,  # type: ignore[call-arg]
                             SM_TOPIC_INFERENCE=u.topics["inference"],
                             SM_TOPIC_LABELS=u.topics["labels"], **extra)


async def _json_later(topic: str, event: dict[str, Any]) -> bytes:
    """An async serializer (as a Schema Registry one is), giving the default JSON."""
    await asyncio.sleep(0)
    return orjson.dumps(event)


def test_what_the_sdk_publishes_the_worker_reads_without_a_dead_letter(
        kafka_bootstrap, redis_url, unique, tmp_path: Path, start_worker) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    worker = start_worker(config, unique)
    events = [orjson.loads(raw) for raw in generate(SPEC)]
    stream = labelled(LABELLED)
    churn = [orjson.loads(raw) for raw in stream.inference]
    labels = [orjson.loads(raw) for raw in stream.labels]

    # Blocking code (a thread of its own, as a web handler would be): the labelled model.
    sync_futures: list[Any] = []

    def blocking_service() -> None:
        with SyncPublisher(_settings(kafka_bootstrap, unique)) as pub:
            for e in churn:
                sync_futures.append(pub.publish_inference(
                    e["event_id"], e["model_id"], e["features"], e["prediction"],
                    model_version=e.get("model_version"), timestamp=e["timestamp"]))
            for lab in labels:
                sync_futures.append(pub.publish_label(lab["event_id"], lab["model_id"],
                                                      lab["label"], timestamp=lab["timestamp"]))
            pub.flush(30)
            assert pub.stats.delivered == len(churn) + len(labels), pub.stats

    thread = threading.Thread(target=blocking_service)
    thread.start()

    async def async_service() -> Any:
        async with Publisher(_settings(kafka_bootstrap, unique),
                             value_serializer=_json_later) as pub:
            futures = [await pub.publish_inference(
                e["event_id"], e["model_id"], e["features"], e["prediction"],
                model_version=e["model_version"], timestamp=e["timestamp"]) for e in events]
            # Sends do not wait for the broker: most records were still in flight here.
            in_flight_after_sends = pub.stats.in_flight
            await pub.flush(30)
            assert all(f.done() and f.exception() is None for f in futures)
            return pub.stats, in_flight_after_sends

    stats, in_flight = asyncio.run(async_service())
    thread.join(60)
    assert not thread.is_alive()
    assert all(f.done() and f.exception() is None for f in sync_futures)
    assert (stats.sent, stats.delivered, stats.failed) == (len(events), len(events), 0)
    assert in_flight > 0, "every send waited for its acknowledgement: nothing was batched"

    n_inference = len(events) + len(churn)
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], n_inference,
                   worker)
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["labels"], len(labels), worker)

    # What is on the input topics is exactly the events, keyed and labelled as documented.
    records = asyncio.run(consume(kafka_bootstrap, [unique.topics["inference"],
                                                    unique.topics["labels"]],
                                  until=lambda m: len(m) >= n_inference + len(labels)))
    assert len(records) == n_inference + len(labels)
    sent = {("inference", e["event_id"]): e for e in events + churn}
    sent |= {("label", lab["event_id"]): lab for lab in labels}
    for m in records:
        kind = "label" if m.topic == unique.topics["labels"] else "inference"
        body = orjson.loads(m.value)
        want = sent[(kind, body["event_id"])]
        assert body == {k: v for k, v in want.items() if v is not None}
        assert m.key == want["model_id"].encode()
        assert m.headers == (("content-type", b"application/json"),
                             ("schema", f"{kind}-event/v1".encode())), m.headers

    outputs = asyncio.run(consume(kafka_bootstrap,
                                  [unique.topics["alerts"], unique.topics["dead_letter"]],
                                  until=lambda m: any(
                                      orjson.loads(x.value).get("signal") == "feature:amount"
                                      for x in m), timeout=60, idle=10))
    dead = [orjson.loads(m.value) for m in outputs if m.topic == unique.topics["dead_letter"]]
    assert dead == [], [d["reason"] for d in dead]
    signals = {orjson.loads(m.value)["signal"] for m in outputs
               if m.topic == unique.topics["alerts"]}
    assert "feature:amount" in signals, worker.tail()


async def _topic_with_max_bytes(bootstrap: str, name: str, max_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1,
                                            topic_configs={"max.message.bytes": str(max_bytes)})])
    finally:
        await admin.close()


def _event(i: int, blob: int = 0) -> dict[str, Any]:
    features: dict[str, Any] = {"amount": float(i)}
    if blob:
        features["note"] = "x" * blob
    return {"event_id": f"e-{i}", "model_id": "credit-risk", "features": features,
            "prediction": 0.5}


async def test_a_record_the_broker_refuses_is_reported_with_counts(kafka_bootstrap, unique):
    """The topic takes records of at most 4 KB; the producer would send 1 MB. The broker's
    refusal of a 20 KB event comes back as a DeliveryError from flush (no callback) or through
    the callback, with exact counts; the records around it are delivered."""
    topic = f"t-{unique.id}-small"
    await _topic_with_max_bytes(kafka_bootstrap, topic, 4096)
    async with Publisher(_settings(kafka_bootstrap, unique)) as pub:
        for i in range(5):
            await pub.send("inference", _event(i), topic=topic)
        await pub.flush(30)
        big = await pub.send("inference", _event(5, blob=20_000), topic=topic)
        with pytest.raises(DeliveryError) as info:
            await pub.flush(30)
        err = info.value
        assert (err.failed, len(err.failures)) == (1, 1)
        assert err.failures[0].event_id == "e-5" and err.failures[0].topic == topic
        assert "TooLarge" in type(err.failures[0].error).__name__
        assert big.done() and big.exception() is err.failures[0].error
        for i in range(6, 9):  # the producer goes on after a refusal
            await pub.send("inference", _event(i), topic=topic)
        await pub.flush(30)  # reported once: nothing new to raise
        assert (pub.stats.sent, pub.stats.delivered, pub.stats.failed) == (9, 8, 1)

    seen: list[DeliveryFailure] = []
    async with Publisher(_settings(kafka_bootstrap, unique),
                         on_delivery_error=seen.append) as pub:
        await pub.send("inference", _event(10, blob=20_000), topic=topic)
        await pub.flush(30)  # given to the callback: not raised
        # (Kafka refuses a batch as a whole: a record sent with the big one would fail too.)
        await pub.send("inference", _event(11), topic=topic)
        await pub.flush(30)
        assert [f.event_id for f in seen] == ["e-10"]
        assert (pub.stats.delivered, pub.stats.failed) == (1, 1)

    got = await consume(kafka_bootstrap, [topic], idle=3, timeout=30)
    assert [orjson.loads(m.value)["event_id"] for m in got] == [
        f"e-{i}" for i in (0, 1, 2, 3, 4, 6, 7, 8, 11)]


async def test_a_record_larger_than_the_producer_sends_fails_at_once(kafka_bootstrap, unique):
    async with Publisher(_settings(kafka_bootstrap, unique,
                                   SM_PUBLISH_MAX_REQUEST_BYTES=2048)) as pub:
        with pytest.raises(DeliveryError, match="not taken by the producer") as info:
            await pub.send("inference", _event(1, blob=5000))
        assert info.value.failures[0].event_id == "e-1"
        assert (pub.stats.sent, pub.stats.failed) == (1, 1)


def test_a_broker_that_never_answers_fails_the_records_and_close_keeps_its_deadline(
        kafka_bootstrap, unique) -> None:
    """Through a proxy that holds every Produce request: with a 2 s request timeout each record
    counts as not delivered, flush's deadline raises, and close returns within its deadline and
    reports every record, from the blocking wrapper too."""
    from stream_monitor.publish import FlushTimeoutError

    from .kafka_proxy import HoldingProxy

    with HoldingProxy() as proxy:
        settings = _settings(proxy.bootstrap, unique, SM_PUBLISH_REQUEST_TIMEOUT_SECONDS=2)

        async def run() -> None:
            pub = Publisher(settings)
            await pub.start()
            await pub.send("inference", _event(0))
            await pub.flush(10)  # answered: the proxy does not hold yet
            proxy.hold_produce = True
            for i in range(1, 21):
                await pub.send("inference", _event(i))
            with pytest.raises(FlushTimeoutError):
                await pub.flush(0.5)
            t0 = time.monotonic()
            with pytest.raises(DeliveryError) as info:
                await pub.close(timeout=8)
            assert time.monotonic() - t0 < 8 + 2
            assert info.value.failed == 20, info.value
            assert {f.event_id for f in info.value.failures} == {f"e-{i}" for i in range(1, 21)}
            assert (pub.stats.delivered, pub.stats.failed, pub.stats.in_flight) == (1, 20, 0)
            proxy.hold_produce = False

        asyncio.run(run())

        proxy.hold_produce = True
        pub = SyncPublisher(settings)
        fut = pub.publish_inference("s-1", "credit-risk", {"amount": 1.0}, 0.5)
        t0 = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            pub.close(timeout=8)
        assert time.monotonic() - t0 < 8 + 5
        assert info.value.failed == 1
        assert "deadline" in str(fut.exception(timeout=1))
        proxy.hold_produce = False
