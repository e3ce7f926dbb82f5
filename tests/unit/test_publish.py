"""The publisher SDK without a broker: events are checked against the contract (the JSON Schema
and the worker's decoder) before anything is sent, keys and headers are the documented ones,
an unreachable broker fails fast and says where, and nothing in the package needs Faust except
``stream_monitor.publish.faust``."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from stream_monitor.contracts import Position, RawRecord, decode_inference, validate_record
from stream_monitor.contracts.records import REASON_CODES, LabelEvent, decode_label
from stream_monitor.publish import (
    InvalidEventError,
    Publisher,
    PublishError,
    PublisherSettings,
    SyncPublisher,
    headers,
    inference_event,
    json_serializer,
    kafka_key,
    label_event,
    validate_event,
)
from stream_monitor.synth import StreamSpec, generate

from ..helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _decoded(event: dict) -> object:
    return decode_inference(RawRecord(json_serializer("t", event), Position("t", 0, 0)))


def test_every_synthetic_event_rebuilt_by_the_sdk_is_what_the_worker_reads() -> None:
    for raw in generate(StreamSpec(events_per_model=300, seed=3)):
        src = orjson.loads(raw)
        ev = inference_event(src["event_id"], src["model_id"], src["features"],
                             src["prediction"], model_version=src.get("model_version"),
                             timestamp=src.get("timestamp"))
        validate_record(ev, "inference-event")
        got = _decoded(ev)
        assert not hasattr(got, "reason_code"), got
        assert (got.event_id, got.model_id, got.features, got.prediction) == (
            src["event_id"], src["model_id"], src["features"], src["prediction"])
        assert kafka_key(ev) == src["model_id"].encode()


def test_label_events_decode_as_labels() -> None:
    ev = label_event("e-7", "churn-model", 1, timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    got = decode_label(RawRecord(json_serializer("l", ev), Position("l", 0, 0)))
    assert isinstance(got, LabelEvent)
    assert (got.event_id, got.model_id, got.label, got.timestamp) == (
        "e-7", "churn-model", 1, datetime(2026, 1, 1, tzinfo=UTC).timestamp())


def test_a_naive_datetime_is_utc_as_the_worker_reads_it() -> None:
    ev = inference_event("e", "m", {}, 0.1, timestamp=datetime(2026, 1, 1))
    assert ev["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("build", "code", "field"), [
    (lambda: inference_event("", "m", {}, 0.1), "schema", "event_id"),
    (lambda: inference_event("e", "m", {"x": {"nested": 1}}, 0.1), "schema", "features.x"),
    (lambda: inference_event("e", "m", {"x": 1.0}, None), "schema", "prediction"),  # type: ignore[arg-type]
    (lambda: inference_event("e", "m", {"x": 1.0}, [0.1, 0.9]), "schema", "prediction"),  # type: ignore[arg-type]
    (lambda: inference_event("e", "m", {}, 0.1, timestamp="yesterday"), "schema", "timestamp"),
    (lambda: inference_event("e", "m", {}, 0.1, timestamp=1e13), "schema", "timestamp"),
    (lambda: inference_event("e", "m", {"x": math.nan}, 0.1), "non_finite", "features.x"),
    (lambda: inference_event("e", "m", {}, math.inf), "non_finite", "prediction"),
    (lambda: inference_event("e", "m\x1fx", {}, 0.1), "wrong_type", None),
    (lambda: label_event("e", "m", None), "schema", "label"),  # type: ignore[arg-type]
    (lambda: label_event("e", "m", math.nan), "non_finite", "label"),
    (lambda: inference_event("e", "m", {}, 0.1, tags={1, 2}), "undecodable", None),
])
def test_an_invalid_event_is_refused_with_the_reason(build, code, field) -> None:
    with pytest.raises(InvalidEventError) as info:
        build()
    err = info.value
    assert err.reason_code == code
    assert err.field == field
    assert code == "schema" or code in REASON_CODES
    assert err.reason in str(err)


def test_what_the_schema_refuses_the_worker_would_dead_letter() -> None:
    """The check is not stricter than the worker by accident: every refused event above, as
    JSON, is a dead letter of the decoder too (those that can be JSON at all)."""
    bad = [{"event_id": "", "model_id": "m", "features": {}, "prediction": 0.1},
           {"event_id": "e", "model_id": "m", "features": {"x": {"n": 1}}, "prediction": 0.1},
           {"event_id": "e", "model_id": "m", "features": {}, "prediction": None},
           {"event_id": "e", "model_id": "m", "features": {}},
           {"event_id": "e", "model_id": "m", "features": {}, "prediction": 1,
            "timestamp": "yesterday"}]
    for ev in bad:
        with pytest.raises(InvalidEventError):
            validate_event("inference", ev)
        assert getattr(_decoded(ev), "reason_code", None) is not None, ev


def test_headers_name_the_schema_and_the_serializers_content_type() -> None:
    assert headers("inference") == [("content-type", b"application/json"),
                                    ("schema", b"inference-event/v1")]
    assert headers("label") == [("content-type", b"application/json"),
                                ("schema", b"label-event/v1")]

    async def avro_like(topic: str, event: dict) -> bytes:
        return b"\x00\x00\x00\x00\x01" + orjson.dumps(event)

    avro_like.content_type = "application/vnd.apache.avro"  # type: ignore[attr-defined]
    assert headers("label", avro_like)[0] == ("content-type", b"application/vnd.apache.avro")


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        validate_event("prediction", {})  # type: ignore[arg-type]


def test_settings_come_from_the_worker_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("SM_TOPIC_INFERENCE", "preds")
    monkeypatch.setenv("SM_PUBLISH_ACKS", "1")
    s = PublisherSettings()  # type: ignore[call-arg]
    assert (s.kafka_bootstrap_servers, s.topic_inference, s.acks_value()) == (
        "broker-1:9092,broker-2:9092", "preds", 1)
    assert Publisher(bootstrap_servers="x:1").settings.kafka_bootstrap_servers == "x:1"
    with pytest.raises(ValueError, match="KAFKA_SASL_MECHANISM"):
        PublisherSettings(KAFKA_SECURITY_PROTOCOL="SASL_SSL")  # type: ignore[call-arg]


async def test_an_unreachable_broker_fails_the_start_fast_and_names_it() -> None:
    port = free_port()  # nothing listens there
    pub = Publisher(bootstrap_servers=f"127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(PublishError, match=f"127.0.0.1:{port}.*KAFKA_BOOTSTRAP_SERVERS"):
        await pub.start(timeout=3)
    assert time.monotonic() - t0 < 10
    with pytest.raises(PublishError, match="not started"):
        await pub.publish_inference("e", "m", {}, 0.1)


async def test_an_invalid_event_raises_before_the_publisher_is_even_needed() -> None:
    pub = Publisher(bootstrap_servers="127.0.0.1:1")
    with pytest.raises(InvalidEventError):
        await pub.publish_inference("e", "m", {"x": [1]}, 0.1)
    assert pub.stats.sent == 0


def test_the_sync_publisher_reports_an_unreachable_broker_and_leaves_no_thread() -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(PublishError, match="KAFKA_BOOTSTRAP_SERVERS"):
        SyncPublisher(bootstrap_servers=f"127.0.0.1:{free_port()}", start_timeout=3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "stream-monitor-publisher" in {
            t.name for t in threading.enumerate()} - before:
        time.sleep(0.05)
    assert "stream-monitor-publisher" not in {t.name for t in threading.enumerate()} - before


def test_nothing_imports_faust_but_its_extra_module() -> None:
    """Every module of the package imports with faust unavailable (as after `pip install
    stream-monitor` without the extra), except stream_monitor.publish.faust, which says which
    extra to install."""
    script = """
import importlib, pkgutil, sys
sys.modules["faust"] = None  # an import of faust now raises ImportError
import stream_monitor
bad = []
for m in pkgutil.walk_packages(stream_monitor.__path__, "stream_monitor."):
    if m.name in ("stream_monitor.publish.faust", "stream_monitor.__main__"):
        continue
    try:
        importlib.import_module(m.name)
    except ImportError as exc:
        bad.append(f"{m.name}: {exc}")
print("\\n".join(bad))
try:
    import stream_monitor.publish.faust
except ImportError as exc:
    print("EXTRA:", type(exc).__name__, exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True).stdout.strip().splitlines()
    assert out[:-1] == [], "\n".join(out)
    assert out[-1].startswith("EXTRA: MissingExtraError"), out
    assert "pip install 'stream-monitor[faust]'" in out[-1]


def test_faust_is_not_a_core_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("faust") for d in project["dependencies"])
    extras = project["optional-dependencies"]
    assert any(d.startswith("faust-streaming") for d in extras["faust"])
    assert any(d.startswith("faust-streaming") for d in extras["dev"])



async def test_faust_records_are_checked_before_the_apps_producer_is_touched() -> None:
    """A real Faust app whose broker does not exist: an invalid record raises before the topic
    is sent to (a send would need the broker); a valid one gives the SDK's event dict."""
    faust = pytest.importorskip("faust", reason="needs the [faust] extra")
    from stream_monitor.publish.faust import (
        InferenceRecord,
        LabelRecord,
        _topic_name,
        event_of,
        send_inference,
        send_label,
    )

    app = faust.App("sm-unit-faust", broker=f"kafka://127.0.0.1:{free_port()}",
                    store="memory://", web_enabled=False)
    topic = app.topic("inference-events")
    assert _topic_name(topic) == "inference-events"
    with pytest.raises(InvalidEventError) as info:
        await send_inference(topic, InferenceRecord(event_id="e", model_id="m",
                                                    features={"x": [1]}, prediction=0.1))
    assert info.value.field == "features.x"
    with pytest.raises(InvalidEventError):
        await send_label(topic, LabelRecord(event_id="e", model_id="m", label=None))
    rec = InferenceRecord(event_id="e", model_id="m", features={"x": 1.5}, prediction="yes",
                          model_version="2", timestamp="2026-01-01T00:00:00Z")
    assert event_of(rec) == inference_event("e", "m", {"x": 1.5}, "yes", model_version="2",
                                            timestamp="2026-01-01T00:00:00Z")
    assert event_of(LabelRecord(event_id="e", model_id="m", label=0)) == label_event("e", "m", 0)


def test_the_compiled_schema_check_agrees_with_jsonschema() -> None:
    """The publisher's compiled validator (jsonschema-rs) and the reference jsonschema give the
    same verdict on the same shipped schema, for valid events and for each kind of break."""
    import jsonschema

    from stream_monitor.contracts import load_schema
    from stream_monitor.contracts.schemas import schema_validator

    base = {"event_id": "e", "model_id": "m", "features": {"x": 1.5, "s": "a", "b": True,
                                                          "n": None}, "prediction": 0.2}
    cases = [base, {**base, "model_version": 3}, {**base, "model_version": 3.5},
             {**base, "timestamp": "2026-01-01T00:00:00Z"}, {**base, "timestamp": "2026-01-01"},
             {**base, "timestamp": "2026-01-01 10:00:00.5+01:00"}, {**base, "timestamp": "soon"},
             {**base, "timestamp": -7e10}, {**base, "timestamp": None}, {**base, "label": [1]},
             {**base, "event_id": ""}, {**base, "prediction": None}, {**base, "features": []},
             {**base, "features": {"x": {"y": 1}}}, {"event_id": "e", "model_id": "m"},
             {**base, "extra": {"any": "thing"}}]
    for name, events in (("inference-event", cases),
                         ("label-event", [{"event_id": "e", "model_id": "m", "label": v}
                                          for v in (1, "yes", True, None, [1], 0.5)])):
        reference = jsonschema.Draft202012Validator(load_schema(name))
        compiled = schema_validator(name)
        for ev in events:
            assert compiled.is_valid(ev) == reference.is_valid(ev), (name, ev)
