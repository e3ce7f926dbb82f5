"""Avro, Protobuf and JSON Schema input through a real Schema Registry (Apicurio, started by
scripts/services-registry.sh), the real Kafka and Redis, and the worker process.

- Each format, inference events and labels end to end: the outputs equal those of the same events
  as JSON (replayed through the same pipeline), no dead letter; the Avro run switches to a new
  compatible schema version mid-stream.
- Every bad input has its own reason code on the dead-letter topic, with the original bytes.
- A registry restart mid-stream: the batch waits uncommitted, nothing is lost, the worker commits
  within seconds of the registry's return and logs a few lines while it is down.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import yaml

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.contracts.wire import REGISTRY_REASON_CODES
from stream_monitor.publish.registry import _to_avro, registry_serializer
from stream_monitor.synth import Drift, LabelledSpec, StreamSpec, generate, labelled
from tests.helpers import record_json

from .conftest import Unique, _need, committed, wait_committed

pytestmark = [pytest.mark.integration, pytest.mark.registry]

ROOT = Path(__file__).resolve().parents[2]

CONFIG: dict[str, Any] = {
    "windows": {"reference_size": 300, "recent_size": 200, "evidence_size": 30},
    "models": [
        {"match": "credit-*",
         "signals": [{"match": "*", "detectors": ["adwin", "page_hinkley"]}],
         "retrain": {"min_drifted_signals": 2, "within_seconds": 600, "cooldown_seconds": 3600}},
        {"match": "churn-*",
         "labels": {"task": "classification"},
         "signals": [{"match": "performance:*", "detectors": ["adwin"]},
                     {"match": "feature:*", "detectors": ["page_hinkley"]}]},
    ],
}


CREDIT = 1000  # events of the credit model; its features and prediction drift at half way


@pytest.fixture(scope="session")
def registry_url() -> str:
    return _need("SCHEMA_REGISTRY_URL")


def _events() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded inference events (a drifting credit model and a labelled churn model) and the
    churn model's labels."""
    spec = StreamSpec(models=("credit-risk",), events_per_model=CREDIT, n_features=4,
                      drifts=(Drift(CREDIT // 2, "amount", 1.5),
                              Drift(CREDIT // 2, "utilization", -1.5),
                              Drift(CREDIT // 2, "prediction", 1.0)), seed=11)
    credit = [orjson.loads(v) for v in generate(spec)]
    churn = labelled(LabelledSpec(events=800, concept_drift_at=400, early_labels=0,
                                  bogus_labels=0, missing_every=0, delay_events=(5, 20), seed=3))
    inference = credit + [orjson.loads(v) for v in churn.inference]
    return inference, [orjson.loads(v) for v in churn.labels]


def _config(tmp_path: Path, fmt: str) -> Path:
    cfg = dict(CONFIG, input={"inference": {"format": fmt}, "labels": {"format": fmt}})
    p = tmp_path / f"monitor-{fmt}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _replay(unique: Unique, phases: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    """The same events as JSON through the in-memory pipeline, phase by phase: the ids of the
    outputs a worker must publish (sorted)."""
    from stream_monitor.config import parse_config
    from stream_monitor.pipeline import BatchPipeline
    from stream_monitor.state.memory import MemoryStore

    async def go() -> list[str]:
        cfg = parse_config(CONFIG).with_topics(inference=unique.topics["inference"],
                                               labels=unique.topics["labels"])
        pipe = BatchPipeline(cfg, MemoryStore(), clock=time.time)
        off = {"inference": 0, "labels": 0}
        ids = []
        for kind, events in phases:
            raws = []
            for e in events:
                raws.append(RawRecord(orjson.dumps(e), Position(unique.topics[kind], 0,
                                                                off[kind])))
                off[kind] += 1
            for k in range(0, len(raws), 500):
                out = await pipe.run(raws[k:k + 500])
                await pipe.store.clear_outbox(out.outbox)
                ids += [_output_id(record_json(r.record)) for r in out.records]
        return sorted(ids)

    return asyncio.run(go())


def _output_id(rec: dict[str, Any]) -> str:
    for k in ("alert_id", "request_id", "check_id", "dead_letter_id"):
        if k in rec:
            return f"{rec['type']}:{rec[k]}"
    raise AssertionError(rec)


def _published(kafka: str, unique: Unique, expected: int) -> list[dict[str, Any]]:
    topics = [unique.topics[k] for k in ("alerts", "retrain", "dead_letter", "deployments")]
    msgs = asyncio.run(consume(kafka, topics, until=lambda m: len(m) >= expected, timeout=30,
                               idle=3.0))
    return [orjson.loads(m.value) for m in msgs]


async def _serialize_all(fmt: str, url: str, topic: str, events: list[dict[str, Any]],
                         ) -> list[bytes]:
    ser = await registry_serializer(fmt, url=url)
    try:
        return [await ser(topic, e) for e in events]
    finally:
        await ser.close()


def _send(kafka: str, topic: str, events: list[dict[str, Any]], values: list[bytes]) -> None:
    asyncio.run(produce(kafka, topic, [(e["model_id"].encode(), v)
                                       for e, v in zip(events, values, strict=True)]))


async def _evolved_avro(url: str, topic: str, events: list[dict[str, Any]]) -> list[bytes]:
    """The events under a second, backward-compatible version of the shipped Avro schema (a new
    optional field), registered under the topic's subject with BACKWARD compatibility on."""
    from confluent_kafka.schema_registry import (
        AsyncSchemaRegistryClient,
        topic_subject_name_strategy,
    )
    from confluent_kafka.schema_registry.avro import AsyncAvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    schema = json.loads((ROOT / "stream_monitor/contracts/schemas/inference-event.avsc")
                        .read_text())
    schema["fields"].append({"name": "region", "type": ["null", "string"], "default": None})
    client = AsyncSchemaRegistryClient({"url": url})
    await client.set_compatibility(f"{topic}-value", "BACKWARD")
    ser = await AsyncAvroSerializer(client, json.dumps(schema), conf={
        "auto.register.schemas": True, "subject.name.strategy": topic_subject_name_strategy})
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [await ser({**_to_avro("inference", e), "region": "eu"}, ctx) for e in events]


def _schema_id(value: bytes) -> int:
    return int.from_bytes(value[1:5], "big")


@pytest.mark.parametrize("fmt", ["avro", "protobuf", "json_schema"])
def test_each_format_end_to_end_equals_the_json_run(fmt: str, kafka_bootstrap: str,
                                                    registry_url: str, unique: Unique,
                                                    start_worker: Any, tmp_path: Path) -> None:
    inference, labels = _events()
    t_inf, t_lab = unique.topics["inference"], unique.topics["labels"]
    values = asyncio.run(_serialize_all(fmt, registry_url, t_inf, inference))
    label_values = asyncio.run(_serialize_all(fmt, registry_url, t_lab, labels))
    if fmt == "avro":  # schema evolution: the second half under a new compatible version
        half = len(inference) // 2
        values[half:] = asyncio.run(_evolved_avro(registry_url, t_inf, inference[half:]))
        assert _schema_id(values[0]) != _schema_id(values[-1])
    assert all(v[0] == 0 for v in values + label_values)  # the wire format, not JSON
    worker = start_worker(_config(tmp_path, fmt), unique, SCHEMA_REGISTRY_URL=registry_url)
    _send(kafka_bootstrap, t_inf, inference, values)
    wait_committed(kafka_bootstrap, unique.app_id, t_inf, len(inference), worker)
    _send(kafka_bootstrap, t_lab, labels, label_values)
    wait_committed(kafka_bootstrap, unique.app_id, t_lab, len(labels), worker)

    expected = _replay(unique, [("inference", inference), ("labels", labels)])
    assert any(i.startswith("drift_alert:") for i in expected)
    assert any(i.startswith("retrain_request:") for i in expected)
    got = _published(kafka_bootstrap, unique, len(expected))
    assert [r for r in got if r["type"] == "dead_letter"] == []
    assert sorted(_output_id(r) for r in got) == expected


def test_a_batch_fetches_each_new_schema_id_once(registry_url: str, unique: Unique) -> None:
    """Two schema ids in a batch of 200 records: two requests; the next batch, none."""
    from stream_monitor.adapters.registry import RegistryDecoder
    from stream_monitor.config import parse_config
    from stream_monitor.settings import Settings

    inference, _ = _events()
    topic = unique.topics["inference"]
    values = asyncio.run(_serialize_all("avro", registry_url, topic, inference[:100]))
    values += asyncio.run(_evolved_avro(registry_url, topic, inference[100:200]))
    cfg = parse_config(dict(CONFIG, input={"inference": {"format": "avro"}})).with_topics(
        inference=topic)

    async def go() -> tuple[int, int, list[Any]]:
        decoder = RegistryDecoder(cfg, Settings(SCHEMA_REGISTRY_URL=registry_url))
        raws = [RawRecord(v, Position(topic, 0, i)) for i, v in enumerate(values)]
        first = await decoder.decode(raws)
        n1 = decoder.fetches
        await decoder.decode(raws)
        await decoder.close()
        return n1, decoder.fetches, list(first)

    n1, n2, decoded = asyncio.run(go())
    assert (n1, n2) == (2, 2)
    assert all(isinstance(r.decoded, dict) for r in decoded)
    assert decoded[150].decoded["region"] == "eu"


@pytest.mark.parametrize("fmt", ["protobuf"])
def test_the_publisher_sdk_with_the_registry_serializer_feeds_the_worker(
        fmt: str, kafka_bootstrap: str, registry_url: str, unique: Unique, start_worker: Any,
        tmp_path: Path) -> None:
    """stream_monitor.publish's Publisher with registry_serializer as its value serializer:
    what it sends, the worker reads with no dead letter and alerts on as on JSON."""
    from stream_monitor.publish import Publisher

    inference, _ = _events()
    inference = inference[:CREDIT]
    t_inf = unique.topics["inference"]

    async def publish() -> None:
        ser = await registry_serializer(fmt, url=registry_url)
        try:
            async with Publisher(bootstrap_servers=kafka_bootstrap, value_serializer=ser) as pub:
                for e in inference:
                    await pub.publish_inference(e["event_id"], e["model_id"], e["features"],
                                                e["prediction"],
                                                model_version=e["model_version"],
                                                timestamp=e["timestamp"], topic=t_inf)
                await pub.flush(timeout=60)
        finally:
            await ser.close()

    worker = start_worker(_config(tmp_path, fmt), unique, SCHEMA_REGISTRY_URL=registry_url)
    asyncio.run(publish())
    wait_committed(kafka_bootstrap, unique.app_id, t_inf, len(inference), worker)
    expected = _replay(unique, [("inference", inference)])
    assert any(i.startswith("drift_alert:") for i in expected)
    got = _published(kafka_bootstrap, unique, len(expected))
    assert [r for r in got if r["type"] == "dead_letter"] == []
    assert sorted(_output_id(r) for r in got) == expected


# -- bad input ----------------------------------------------------------------------------------

class RefusingProxy:
    """An HTTP proxy in front of the real registry that answers 403 for one schema id (a
    registry refusing a request: permissions) and forwards everything else."""

    def __init__(self, upstream: str, refused_id: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.refused = f"/schemas/ids/{refused_id}"
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def _run(self, started: threading.Event) -> None:
        from aiohttp import ClientSession, web

        async def handle(request: web.Request) -> web.Response:
            path = request.path_qs.removeprefix("/proxy")
            if request.path.endswith(self.refused):
                return web.json_response({"error_code": 40301, "message": "forbidden"},
                                         status=403)
            async with ClientSession() as s, s.request(
                    request.method, self.upstream + path, data=await request.read(),
                    headers={"Content-Type": request.headers.get("Content-Type",
                                                                 "application/json")}) as r:
                return web.Response(body=await r.read(), status=r.status,
                                    content_type="application/json")

        async def main() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.runner = runner
            started.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/proxy"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def refusing_proxy(registry_url: str) -> Iterator[RefusingProxy]:
    p = RefusingProxy(registry_url, refused_id=1_999_999_999)
    yield p
    p.close()


def _register(url: str, subject: str, schema: str, schema_type: str) -> int:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": url})
    return client.register_schema(subject, Schema(schema, schema_type))


def test_every_bad_input_is_a_dead_letter_with_its_own_reason(
        kafka_bootstrap: str, registry_url: str, unique: Unique, start_worker: Any,
        tmp_path: Path, refusing_proxy: RefusingProxy) -> None:
    inference, _ = _events()
    good = inference[:50]
    t_inf = unique.topics["inference"]
    values = asyncio.run(_serialize_all("avro", registry_url, t_inf, good))
    sample = values[0]
    payload = sample[5:]
    proto_id = _register(registry_url, f"{unique.id}-proto-value",
                         'syntax = "proto3"; message A { string x = 1; }', "PROTOBUF")
    other = {"type": "record", "name": "Other", "fields": [
        {"name": "event_id", "type": "string"}, {"name": "model_id", "type": "string"}]}
    other_id = _register(registry_url, f"{unique.id}-other-value", json.dumps(other), "AVRO")
    bad = {
        "wrong_magic_byte": orjson.dumps(good[0]),
        "unknown_schema": b"\x00" + (2_000_000_000).to_bytes(4, "big") + payload,
        "registry_refused": b"\x00" + (1_999_999_999).to_bytes(4, "big") + payload,
        "schema_mismatch": b"\x00" + proto_id.to_bytes(4, "big") + payload,
        "undecodable_payload": sample[:9],
    }
    # A schema without the event's fields: decodes, then lacks `features` and `prediction`.
    other_value = b"\x00" + other_id.to_bytes(4, "big") + b"\x04e9\x02m"
    assert set(bad) == set(REGISTRY_REASON_CODES)
    stream = ([(e["model_id"].encode(), v) for e, v in zip(good[:25], values[:25], strict=True)]
              + [(b"k-" + c.encode(), v) for c, v in bad.items()]
              + [(b"k-other", other_value)]
              + [(e["model_id"].encode(), v) for e, v in zip(good[25:], values[25:],
                                                           strict=True)])
    worker = start_worker(_config(tmp_path, "avro"), unique,
                          SCHEMA_REGISTRY_URL=refusing_proxy.url)
    asyncio.run(produce(kafka_bootstrap, t_inf, stream))
    wait_committed(kafka_bootstrap, unique.app_id, t_inf, len(stream), worker)
    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["dead_letter"]],
                               until=lambda m: len(m) >= len(bad) + 1, timeout=30))
    dead = [orjson.loads(m.value) for m in msgs]
    by_code = {d["reason_code"]: d for d in dead if d["original"]["key"]["data"] != "k-other"}
    assert set(by_code) == set(bad), [d["reason_code"] for d in dead]
    for code, value in bad.items():
        orig = by_code[code]["original"]["value"]
        kept = (orig["data"].encode() if orig["encoding"] == "utf-8"
                else base64.b64decode(orig["data"]))
        assert kept == value, code
    (other_dl,) = [d for d in dead if d["original"]["key"]["data"] == "k-other"]
    assert other_dl["reason_code"] == "schema_mismatch"
    assert "features" in other_dl["reason"]
    assert worker.proc.poll() is None, worker.tail()


# -- a registry restart mid-stream -------------------------------------------------------------

def _registry_script(registry_url: str, action: str) -> subprocess.CompletedProcess[str]:
    port = urlsplit(registry_url).port
    env = dict(os.environ, SM_REGISTRY_PORT=str(port),
               SM_REGISTRY_MGMT_PORT=os.environ.get("SM_REGISTRY_MGMT_PORT", str(port + 1)))
    return subprocess.run(["bash", str(ROOT / "scripts/services-registry.sh"), action], env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_registry_restart_mid_stream_loses_nothing(kafka_bootstrap: str, registry_url: str,
                                                     unique: Unique, start_worker: Any,
                                                     tmp_path: Path) -> None:
    if _registry_script(registry_url, "status").returncode != 0:
        pytest.skip("SCHEMA_REGISTRY_URL is not the local registry of scripts/services-registry"
                    ".sh, which this test restarts")
    inference, _ = _events()
    inference = inference[:CREDIT]  # the credit model: it drifts at half way
    half = CREDIT // 2
    t_inf = unique.topics["inference"]
    first = asyncio.run(_serialize_all("avro", registry_url, t_inf, inference[:half]))
    # The second half under a schema id the worker has not seen: it must ask the registry.
    second = asyncio.run(_evolved_avro(registry_url, t_inf, inference[half:]))
    worker = start_worker(_config(tmp_path, "avro"), unique, SCHEMA_REGISTRY_URL=registry_url)
    _send(kafka_bootstrap, t_inf, inference[:half], first)
    wait_committed(kafka_bootstrap, unique.app_id, t_inf, half, worker)

    stop = _registry_script(registry_url, "stop")
    assert stop.returncode == 0, stop.stderr
    try:
        log_before = worker.log.stat().st_size
        _send(kafka_bootstrap, t_inf, inference[half:], second)
        time.sleep(6.0)  # the worker reads the batch and waits for the registry
        assert asyncio.run(committed(kafka_bootstrap, unique.app_id, t_inf)) == half
        assert worker.proc.poll() is None, worker.tail()
    finally:
        start = _registry_script(registry_url, "start")
        assert start.returncode == 0, start.stderr
    back = time.monotonic()
    wait_committed(kafka_bootstrap, unique.app_id, t_inf, len(inference), worker, timeout=60)
    recovery = time.monotonic() - back
    print(f"first commit {recovery:.1f}s after the registry answered again")
    assert recovery < 10.0
    outage_log = worker.log.read_bytes()[log_before:].decode(errors="replace")
    lines = [ln for ln in outage_log.splitlines() if "schema registry" in ln]
    assert 1 <= len(lines) <= 6, lines

    expected = _replay(unique, [("inference", inference)])
    assert any(i.startswith("drift_alert:") for i in expected)
    got = _published(kafka_bootstrap, unique, len(expected))
    assert [r for r in got if r["type"] == "dead_letter"] == []
    assert sorted(_output_id(r) for r in got) == expected
