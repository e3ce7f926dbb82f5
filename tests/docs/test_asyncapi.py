"""docs/asyncapi.yaml is a valid AsyncAPI 3 document (the official parser, from npm) and says what
the code does: every topic setting is a channel named after its env var, every payload is the
shipped JSON Schema, and every message's headers are the ones the worker and notifier write."""

from __future__ import annotations

import asyncio
import collections
import io
import json
import random
import subprocess
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import TopicPartition

from stream_monitor.adapters.replay import replay_file
from stream_monitor.adapters.worker import MonitorWorker
from stream_monitor.config import Topics, load_config
from stream_monitor.contracts import load_schema
from stream_monitor.contracts.outputs import SCHEMA_HEADERS
from stream_monitor.notify.config import NotifySettings, NotifyTopics, parse_notify_config
from stream_monitor.notify.notification import ALERTNAMES
from stream_monitor.notify.service import HandledRecord, Notifier, dead_letter_record
from stream_monitor.settings import Settings
from stream_monitor.state.memory import MemoryStore
from stream_monitor.synth import Drift, LabelledSpec, StreamSpec, generate, labelled

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.yaml"
SCHEMAS = ROOT / "stream_monitor" / "contracts" / "schemas"


@cache
def _doc() -> dict[str, Any]:
    return yaml.safe_load(DOC.read_text())


def _resolve(ref: str) -> Any:
    """A local ``#/...`` reference of the document."""
    node: Any = _doc()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _messages() -> dict[str, dict[str, Any]]:
    """Every message of the document by its `name` (the record's `type`)."""
    out = {}
    for key, msg in _doc()["components"]["messages"].items():
        assert msg["name"] not in out, f"two messages named {msg['name']}"
        out[msg["name"]] = msg | {"_key": key}
    return out


@pytest.mark.timeout(900)  # the first run installs the parser with npm (1-2 minutes)
def test_the_asyncapi_parser_reports_no_error() -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "asyncapi.sh"), str(DOC)],
                          capture_output=True, text=True, timeout=850, check=False)
    diagnostics = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    errors = [d for d in diagnostics if d["severity"] == "error"]
    assert proc.returncode == 0 and not errors, (
        f"scripts/asyncapi.sh exited {proc.returncode}\n{proc.stderr[-3000:]}\n"
        + "\n".join(json.dumps(d) for d in diagnostics))
    assert "valid AsyncAPI 3." in proc.stderr, proc.stderr[-3000:]


def test_every_topic_setting_is_a_channel() -> None:
    """Each topic of the monitoring config (Topics) and the notifier's dead-letter topic is a
    channel at its default name that names its config key and env var; no other channel."""
    channels = _doc()["channels"]
    by_config = {c.get("x-config"): (name, c) for name, c in channels.items()}
    expected: dict[str, tuple[str, str]] = {}  # config key -> (default topic, env var)
    for key, field in Topics.model_fields.items():
        env = Settings.model_fields[f"topic_{key}"].validation_alias
        expected[f"topics.{key}"] = (str(field.default), str(env))
    env = NotifySettings.model_fields["topic_dead_letter"].validation_alias
    expected["topics.dead_letter of the notify config"] = (
        str(NotifyTopics.model_fields["dead_letter"].default), str(env))
    topic_vars = {str(f.validation_alias) for n, f in Settings.model_fields.items()
                  if n.startswith("topic_") and n != "topic_partitions"}
    assert topic_vars <= {env for _, env in expected.values()}, "a topic setting with no channel"
    assert set(by_config) == set(expected), (
        f"channels missing: {sorted(set(expected) - set(by_config))}; "
        f"channels for no setting: {sorted(set(by_config) - set(expected))}")
    for key, (topic, env) in expected.items():
        name, channel = by_config[key]
        assert channel["address"] == topic, f"channel {name}: the default topic is {topic}"
        assert channel["x-env"] == env, f"channel {name}: x-env should be {env}"
        assert env in channel["description"], f"channel {name}: its description must name {env}"
    # The notifier reads the worker's topics under the same defaults.
    for key in ("alerts", "retrain", "deployments", "incidents"):
        assert NotifyTopics.model_fields[key].default == Topics.model_fields[key].default


def test_every_channel_has_an_operation() -> None:
    used = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in _doc()["operations"].values()}
    unused = set(_doc()["channels"]) - used
    assert not unused, f"channels no operation uses: {sorted(unused)}"


def test_the_notifier_reads_what_it_forwards() -> None:
    """The notifier's receive operations carry exactly the record types it forwards."""
    read = set()
    for op_id, op in _doc()["operations"].items():
        if op_id.startswith("notifier") and op["action"] == "receive":
            read |= {_resolve(m["$ref"])["$ref"].rsplit("/", 1)[1] for m in op["messages"]}
    names = {_doc()["components"]["messages"][key]["name"] for key in read}
    assert names == set(ALERTNAMES), f"documented {sorted(names)}, forwarded {sorted(ALERTNAMES)}"


def test_payloads_are_the_shipped_schemas() -> None:
    """Each message's payload is its record type's schema file, unchanged, and every schema file
    is some message's payload."""
    seen = set()
    for name, msg in _messages().items():
        if _registry_format(name):
            continue  # test_registry_payloads_are_the_shipped_schemas
        schema_name = name.replace("_", "-")
        payload = msg["payload"]
        if "$ref" in payload:
            ref = (DOC.parent / payload["$ref"]).resolve()
            assert ref == SCHEMAS / f"{schema_name}.schema.json", f"{name}: {payload['$ref']}"
            payload = json.loads(ref.read_text())
        assert payload == load_schema(schema_name), f"{name}: not {schema_name}.schema.json"
        seen.add(f"{schema_name}.schema.json")
    files = {p.name for p in SCHEMAS.glob("*.schema.json")}
    assert files == seen, f"schemas with no message: {sorted(files - seen)}"


def _registry_format(name: str) -> str | None:
    for fmt in ("avro", "protobuf", "json_schema"):
        if name.endswith(f"_{fmt}"):
            return fmt
    return None


def test_registry_payloads_are_the_shipped_schemas() -> None:
    """The Schema Registry formats of the inference and label events (docs/contracts.md): each
    message's payload is the shipped .avsc, .proto or JSON Schema, unchanged."""
    seen = set()
    for name, msg in _messages().items():
        fmt = _registry_format(name)
        if fmt is None:
            continue
        base = name.removesuffix(f"_{fmt}")
        assert base in ("inference_event", "label_event"), name
        payload = msg["payload"]
        if fmt == "json_schema":
            ref = (DOC.parent / payload["$ref"]).resolve()
            assert ref == SCHEMAS / f"{base.replace('_', '-')}.schema.json", name
        elif fmt == "avro":
            assert payload["schemaFormat"].startswith("application/vnd.apache.avro+json")
            ref = (DOC.parent / payload["schema"]["$ref"]).resolve()
            assert ref == SCHEMAS / f"{base.replace('_', '-')}.avsc", name
        else:
            assert payload["schemaFormat"].startswith("application/vnd.google.protobuf")
            assert payload["schema"] == (SCHEMAS / "stream_monitor.proto").read_text(), name
        seen.add(name)
    assert seen == {f"{b}_{f}" for b in ("inference_event", "label_event")
                    for f in ("avro", "protobuf", "json_schema")}


def _documented_headers(name: str) -> tuple[set[str], set[str], dict[str, Any]]:
    headers = _messages()[name].get("headers") or {"properties": {}, "required": []}
    props = headers["properties"]
    return set(props), set(headers.get("required", ())), props


def test_schema_headers_are_the_codes() -> None:
    """The `schema` header of every output type, as the pipeline's constant has it."""
    for rtype, value in SCHEMA_HEADERS.items():
        _, required, props = _documented_headers(rtype)
        assert {"content-type", "schema"} <= required, rtype
        assert props["schema"]["const"] == value.decode(), rtype
        assert props["content-type"]["const"] == "application/json", rtype


def _replayed_headers(tmp: Path) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Run the pipeline (in-memory replay) over a seeded stream that gives every output of the
    pipeline: a drift that goes back (alert, resolution, incident, retrain request), a missing
    rate that jumps (data-quality alert), a bad record (dead letter), a second model version
    with labels (deployment check). Returns each record type's headers."""
    cfg = tmp / "monitor.yaml"
    cfg.write_text("""
version: 1
models:
  - match: "credit-*"
    signals: [{match: "*", detectors: [adwin, page_hinkley]}]
    retrain: {min_drifted_signals: 1}
    alerts: {resolve_values: 50, resolve_max_shift: 0.5, hold_seconds: 10, dedupe_seconds: 20}
    quality: {indicators: [missing], detectors: [adwin]}
    incidents: {window_seconds: 600}
  - match: "churn-*"
    labels: {task: classification, ttl_seconds: 3600, bucket_seconds: 60}
    reference_size: 500
    signals: [{match: "*", detectors: [adwin]}]
    versions: {watch_events: 500, min_labeled: 200}
""")
    rng = random.Random(3)
    lines = []
    for i, raw in enumerate(generate(StreamSpec(
            models=("credit-risk",), events_per_model=4000,
            drifts=(Drift(1500, "age", 3.0), Drift(2000, "age", -3.0))))):
        event = orjson.loads(raw)
        if i >= 2500 and rng.random() < 0.3:
            del event["features"]["utilization"]
        lines.append(orjson.dumps(event))
    lines.insert(100, b"this is not json")
    churn = [labelled(LabelledSpec(model="churn-model", events=1500, concept_drift_at=10**9,
                                   seed=11)),
             labelled(LabelledSpec(model="churn-model", events=1000, concept_drift_at=10**9,
                                   model_version="2", first_index=1500, early_labels=0,
                                   bogus_labels=0, seed=9))]
    events, labels = tmp / "events.jsonl", tmp / "labels.jsonl"
    events.write_bytes(b"\n".join(lines + [x for c in churn for x in c.inference]) + b"\n")
    labels.write_bytes(b"\n".join(x for c in churn for x in c.early + c.labels) + b"\n")
    seen: dict[str, set[tuple[tuple[str, str], ...]]] = collections.defaultdict(set)

    def collect(_: int, res: Any) -> None:
        for r in res.records:
            seen[r.record.type].add(tuple((k, v.decode()) for k, v in r.headers))

    replay_file(load_config(cfg), events, io.BytesIO(), labels=labels, on_batch=collect)
    return seen


def test_headers_are_the_ones_the_pipeline_writes(tmp_path: Path) -> None:
    seen = _replayed_headers(tmp_path)
    # state_reset is written by the worker when Redis lost its data, not by the pipeline.
    expected_types = set(SCHEMA_HEADERS) - {"state_reset"}
    assert set(seen) == expected_types, f"the stream gave {sorted(seen)}, not every output type"
    for rtype, variants in seen.items():
        names, required, props = _documented_headers(rtype)
        for headers in variants:
            keys = [k for k, _ in headers]
            assert set(keys) == names == required, (
                f"{rtype}: the pipeline writes headers {keys}; docs/asyncapi.yaml documents "
                f"{sorted(names)} (required {sorted(required)})")
            for k, v in headers:
                if "const" in props[k]:
                    assert v == props[k]["const"], f"{rtype}: header {k} is {v!r}"
                if "enum" in props[k]:
                    assert v in props[k]["enum"], f"{rtype}: header {k} is {v!r}"


Sent = list[tuple[str, list[tuple[str, bytes]]]]


class _RecordingProducer:
    """Stands in for the Kafka producer: keeps what was sent, acknowledges at once."""

    def __init__(self) -> None:
        self.sent: Sent = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[None]:
        self.sent.append((topic, list(headers or ())))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _assert_documented(rtype: str, channel: str, sent: Sent) -> None:
    assert sent, f"nothing was sent for {rtype}"
    names, required, props = _documented_headers(rtype)
    for topic, headers in sent:
        assert topic == _doc()["channels"][channel]["address"], (rtype, topic)
        keys = [k for k, _ in headers]
        assert set(keys) == names == required, (
            f"{rtype}: the code writes headers {keys}; docs/asyncapi.yaml: {sorted(names)}")
        for k, v in headers:
            if "const" in props[k]:
                assert v.decode() == props[k]["const"], f"{rtype}: header {k} is {v!r}"


async def test_state_reset_headers() -> None:
    """The worker's own output (Redis lost its data), outside the pipeline."""
    producer = _RecordingProducer()
    worker = MonitorWorker(load_config(ROOT / "examples" / "monitor.yaml"), Settings(),
                           MemoryStore(), producer=producer)
    await worker.state_reset("docs test", ["credit-risk"])
    _assert_documented("state_reset", "operations", producer.sent)


async def test_notifier_dead_letter_headers() -> None:
    config = parse_notify_config({"targets": [{"type": "webhook", "name": "hook",
                                               "url": "http://127.0.0.1:9/hook",
                                               "secret_env": "SM_DOCS_TEST_SECRET"}]})
    notifier = Notifier(config, [], "127.0.0.1:9")
    producer = _RecordingProducer()
    notifier.producer = producer
    msg = SimpleNamespace(topic="drift-alerts", partition=0, offset=1, key=b"credit-risk",
                          value=b"not json", headers=[], timestamp=0)
    record = dead_letter_record(msg, "undecodable", "docs test", 0.0)
    await notifier._dead_letter(HandledRecord(TopicPartition("drift-alerts", 0), 1), [record])
    _assert_documented("notification_dead_letter", "notifyDeadLetter", producer.sent)


def test_publisher_headers_are_the_documented_ones() -> None:
    """The SDK (stream_monitor.publish) writes the headers the input messages document."""
    from stream_monitor.publish import headers

    for kind, message in (("inference", "inference_event"), ("label", "label_event")):
        names, _, props = _documented_headers(message)
        written = headers(kind)  # type: ignore[arg-type]
        assert {k for k, _ in written} == names, (kind, written)
        for k, v in written:
            if "const" in props[k]:
                assert v.decode() == props[k]["const"], (kind, k, v)
    assert dict(headers("inference"))["content-type"] == b"application/json"
