"""The Schema Registry formats without a registry: the shipped Avro and Protobuf schemas agree with
the JSON Schemas, the framing and decoding of contracts/wire.py read what confluent-kafka's
serializers' libraries write (fastavro, the protobuf runtime), every fault has its own reason
code, and the field mapping and its config checks. The registry itself: tests/integration/
test_registry.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
import pytest
from google.protobuf import descriptor_pb2

from stream_monitor.config import parse_config
from stream_monitor.contracts import load_schema
from stream_monitor.contracts.proto import file_descriptor_proto, message_class, message_to_obj
from stream_monitor.contracts.records import (
    REASON_CODES,
    InferenceEvent,
    LabelEvent,
    Position,
    RawRecord,
    decode_inference,
    decode_label,
)
from stream_monitor.contracts.wire import (
    REGISTRY_REASON_CODES,
    Fault,
    FieldMapping,
    Framed,
    decode_payload,
    parse_frame,
    parse_schema,
)
from stream_monitor.core.gate import EventGate, QualityCounters
from stream_monitor.errors import ConfigError
from stream_monitor.publish.registry import _to_avro, _to_message

SCHEMAS = Path(resources.files("stream_monitor.contracts").joinpath("schemas"))  # type: ignore[arg-type]
POS = Position("t", 0, 7)

EVENT = {"event_id": "e1", "model_id": "m", "model_version": "v2", "timestamp": 1_700_000_000.25,
         "features": {"a": 1, "b": 2.5, "c": "x", "d": None, "e": True}, "prediction": 0.7}
LABEL = {"event_id": "e1", "model_id": "m", "label": "fraud",
         "timestamp": "2026-01-01T00:00:00Z"}


def _avsc(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.avsc").read_text())


# -- the shipped schemas agree with the JSON Schemas --------------------------------------------

_AVRO_TO_JSON = {"string": "string", "long": "integer", "double": "number", "boolean": "boolean",
                 "null": "null"}


def _json_types(prop: dict[str, Any]) -> set[str]:
    if "oneOf" in prop:
        return set().union(*(_json_types(p) for p in prop["oneOf"]))
    t = prop.get("type", [])
    types = {t} if isinstance(t, str) else set(t)
    if "integer" in types or "number" in types:
        types |= {"integer", "number"}  # JSON Schema's number holds integers
    return types


@pytest.mark.parametrize("name", ["inference-event", "label-event"])
def test_avro_schema_agrees_with_the_json_schema(name: str) -> None:
    js, avro = load_schema(name), _avsc(name)
    fields = {f["name"]: f for f in avro["fields"]}
    assert set(fields) == set(js["properties"]), "the same fields"
    for fname, f in fields.items():
        prop = js["properties"][fname]
        avro_types = f["type"] if isinstance(f["type"], list) else [f["type"]]
        nullable = "null" in avro_types
        assert nullable == (fname not in js["required"]), f"{fname}: optional iff nullable"
        if nullable:
            assert f.get("default", "absent") is None, f"{fname}: an optional field defaults null"
        if fname == "features":
            assert f["type"]["type"] == "map"
            values = {_AVRO_TO_JSON[t] for t in f["type"]["values"]}
            allowed = _json_types(prop["additionalProperties"])
            assert values <= allowed and {"string", "boolean", "null"} <= values
            continue
        if fname == "probabilities":  # an optional map of numbers
            (m,) = [t for t in avro_types if isinstance(t, dict)]
            assert m["type"] == "map", fname
            assert _AVRO_TO_JSON[m["values"]] in _json_types(prop["additionalProperties"])
            assert {"object", "null"} <= _json_types(prop), fname
            continue
        if fname == "embeddings":  # an optional array of numbers
            (m,) = [t for t in avro_types if isinstance(t, dict)]
            assert m["type"] == "array", fname
            assert _AVRO_TO_JSON[m["items"]] in _json_types(prop["items"])
            assert {"array", "null"} <= _json_types(prop), fname
            continue
        if "type" not in prop and "oneOf" not in prop:  # `label`: any JSON value
            continue
        mapped = {_AVRO_TO_JSON[t] for t in avro_types}
        assert mapped <= _json_types(prop), f"{fname}: Avro {avro_types} vs JSON {prop}"


def test_avro_schemas_parse() -> None:
    for name in ("inference-event", "label-event"):
        fastavro.parse_schema(_avsc(name))


def test_the_proto_file_is_the_descriptor_the_code_builds(tmp_path: Path) -> None:
    """The shipped .proto compiled by protoc (grpcio-tools) equals the runtime descriptor."""
    out = tmp_path / "set.pb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{SCHEMAS}",
                    f"--descriptor_set_out={out}", "stream_monitor.proto"], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    (compiled,) = fds.file
    ours = file_descriptor_proto()
    assert compiled == ours


@pytest.mark.parametrize(("message", "name"), [("InferenceEvent", "inference-event"),
                                               ("LabelEvent", "label-event")])
def test_proto_messages_have_the_json_schema_fields(message: str, name: str) -> None:
    desc = message_class(message).DESCRIPTOR
    assert {f.name for f in desc.fields} == set(load_schema(name)["properties"])


# -- framing ------------------------------------------------------------------------------------

def _frame(schema_id: int, payload: bytes, indexes: bytes = b"") -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + indexes + payload


def test_frames_that_are_not_the_wire_format_are_wrong_magic_byte() -> None:
    for value in (b'{"event_id": "e1"}', b"\x00\x00\x01", b"", None):
        f = parse_frame(value, "avro")
        assert isinstance(f, Fault) and f.code == "wrong_magic_byte", value


def test_protobuf_message_indexes_that_run_past_the_end_are_undecodable() -> None:
    f = parse_frame(_frame(3, b"", b"\x04\x02"), "protobuf")  # two indexes, one given
    assert isinstance(f, Fault) and f.code == "undecodable_payload"


# -- decoding with a schema, each format --------------------------------------------------------

def _avro_record(kind: str, event: dict[str, Any]) -> bytes:
    name = "inference-event" if kind == "inference" else "label-event"
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(_avsc(name)), _to_avro(kind, event))
    return buf.getvalue()


def _decoded(fmt: str, schema_str: str, value: bytes) -> dict[str, Any] | Fault:
    schema = parse_schema(fmt, {"avro": "AVRO", "protobuf": "PROTOBUF",
                                "json_schema": "JSON"}[fmt], schema_str)
    assert not isinstance(schema, Fault), schema
    framed = parse_frame(value, fmt)
    assert isinstance(framed, Framed)
    return decode_payload(schema, framed)


def _proto_schema_str() -> str:
    import base64

    return base64.b64encode(file_descriptor_proto().SerializeToString()).decode()


def _encoded(fmt: str, kind: str, event: dict[str, Any]) -> tuple[str, bytes]:
    name = "inference-event" if kind == "inference" else "label-event"
    if fmt == "avro":
        return json.dumps(_avsc(name)), _frame(1, _avro_record(kind, event))
    if fmt == "protobuf":
        index = b"\x00" if kind == "inference" else b"\x02\x02"  # [0] / [1]
        return _proto_schema_str(), _frame(1, _to_message(kind, event).SerializeToString(), index)
    return json.dumps(load_schema(name)), _frame(1, json.dumps(event).encode())


@pytest.mark.parametrize("fmt", ["avro", "protobuf", "json_schema"])
def test_each_format_decodes_to_the_event_json_gives(fmt: str) -> None:
    want = decode_inference(RawRecord(json.dumps(EVENT).encode(), POS))
    schema_str, value = _encoded(fmt, "inference", EVENT)
    got = decode_inference(RawRecord(value, POS, decoded=_decoded(fmt, schema_str, value)))
    assert isinstance(want, InferenceEvent) and isinstance(got, InferenceEvent)
    assert got == want
    assert list(got.features) == list(EVENT["features"]) or fmt == "protobuf"  # a map: no order
    want_l = decode_label(RawRecord(json.dumps(LABEL).encode(), POS))
    schema_str, value = _encoded(fmt, "label", LABEL)
    got_l = decode_label(RawRecord(value, POS, decoded=_decoded(fmt, schema_str, value)))
    assert isinstance(got_l, LabelEvent) and got_l == want_l


def test_avro_numbers_keep_their_type() -> None:
    ev = dict(EVENT, features={"i": 3, "f": 3.0, "t": True}, prediction=1)
    schema_str, value = _encoded("avro", "inference", ev)
    got = decode_inference(RawRecord(value, POS, decoded=_decoded("avro", schema_str, value)))
    assert isinstance(got, InferenceEvent)
    assert [type(v) for v in got.features.values()] == [int, float, bool]
    assert type(got.prediction) is int


def test_a_payload_that_does_not_decode_is_undecodable_payload() -> None:
    schema_str, value = _encoded("avro", "inference", EVENT)
    assert _decoded("avro", schema_str, value[:12]).code == "undecodable_payload"  # type: ignore[union-attr]
    assert _decoded("avro", schema_str, value + b"\x00").code == "undecodable_payload"  # type: ignore[union-attr]
    schema_str, value = _encoded("json_schema", "inference", dict(EVENT, prediction=None))
    assert _decoded("json_schema", schema_str, value).code == "undecodable_payload"  # type: ignore[union-attr]
    schema_str, value = _encoded("protobuf", "inference", EVENT)
    assert _decoded("protobuf", schema_str, value[:-3]).code == "undecodable_payload"  # type: ignore[union-attr]


def test_a_schema_of_another_type_or_without_the_fields_is_schema_mismatch() -> None:
    f = parse_schema("protobuf", "AVRO", json.dumps(_avsc("inference-event")))
    assert isinstance(f, Fault) and f.code == "schema_mismatch"
    f = parse_schema("avro", "AVRO", '{"type": "record", "name": "x"')
    assert isinstance(f, Fault) and f.code == "schema_mismatch"
    # A schema without `prediction`: the record decodes, the event misses a field it needs.
    schema = {"type": "record", "name": "Other", "fields": [
        {"name": "event_id", "type": "string"}, {"name": "model_id", "type": "string"},
        {"name": "features", "type": {"type": "map", "values": "double"}}]}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema),
                               {"event_id": "e", "model_id": "m", "features": {"x": 1.0}})
    value = _frame(9, buf.getvalue())
    dl = decode_inference(RawRecord(value, POS,
                                    decoded=_decoded("avro", json.dumps(schema), value)))
    assert dl.reason_code == "schema_mismatch" and "prediction" in dl.reason  # type: ignore[union-attr]
    # A schema whose record is not a record (a string).
    value = _frame(9, b"\x02x")
    assert _decoded("avro", '"string"', value).code == "schema_mismatch"  # type: ignore[union-attr]
    # A Protobuf message index the schema does not have.
    schema_str, value = _encoded("protobuf", "inference", EVENT)
    bad = value[:5] + b"\x02\x0e" + value[6:]  # [7]
    assert _decoded("protobuf", schema_str, bad).code == "schema_mismatch"  # type: ignore[union-attr]


def test_the_gate_dead_letters_each_fault_with_its_code_and_the_bytes() -> None:
    cfg = parse_config({"input": {"inference": {"format": "avro"}},
                        "models": [{"match": "*", "signals": [{"match": "*",
                                                               "detectors": ["adwin"]}]}]})
    raws = [RawRecord(b"\x01" + bytes(8), Position("t", 0, i), b"k", decoded=Fault(code, "why"))
            for i, code in enumerate(REGISTRY_REASON_CODES)]
    counters = QualityCounters()
    events, dead = EventGate(cfg).admit(raws, now=0.0, counters=counters)
    assert events == []
    assert [d.reason_code for d in dead] == list(REGISTRY_REASON_CODES)
    assert all(d.raw.value == b"\x01" + bytes(8) for d in dead)
    assert set(REGISTRY_REASON_CODES) <= set(REASON_CODES)


# -- field mapping ------------------------------------------------------------------------------

def test_a_record_with_other_names_is_mapped_onto_the_contract() -> None:
    cfg = parse_config({
        "input": {"inference": {"format": "avro",
                                "fields": {"event_id": "request.id", "model_id": "model",
                                           "prediction": "score", "timestamp": "ts"},
                                "feature_fields": ["age", "income"]}},
        "models": [{"match": "*", "signals": [{"match": "*", "detectors": ["adwin"]}]}]})
    record = {"request": {"id": "r1"}, "model": "credit", "score": 0.25, "ts": 12.0, "age": 40,
              "income": 1.5, "other": "kept"}
    ev = decode_inference(RawRecord(b"\x00", POS, decoded=record),
                          cfg.input.inference.mapping())
    assert isinstance(ev, InferenceEvent)
    assert (ev.event_id, ev.model_id, ev.prediction, ev.timestamp) == ("r1", "credit", 0.25, 12.0)
    assert ev.features == {"age": 40, "income": 1.5}
    # The same mapping reads a JSON record too.
    ev2 = decode_inference(RawRecord(json.dumps(record).encode(), POS),
                           cfg.input.inference.mapping())
    assert ev2 == ev
    # A mapped field the record lacks: its schema lacks it.
    dl = decode_inference(RawRecord(b"\x00", POS, decoded={"model": "m", "score": 1}),
                          FieldMapping({"event_id": "request.id"}))
    assert dl.reason_code == "schema_mismatch"  # type: ignore[union-attr]


@pytest.mark.parametrize(("section", "where"), [
    ({"inference": {"fields": {"evnt_id": "x"}}}, "input.inference.fields.evnt_id"),
    ({"inference": {"fields": {"event_id": "a..b"}}}, "input.inference.fields.event_id"),
    ({"labels": {"feature_fields": ["a"]}}, "input.labels.feature_fields"),
    ({"inference": {"fields": {"features": "f"}, "feature_fields": ["a"]}},
     "input.inference.feature_fields"),
    ({"inference": {"format": "xml"}}, "input.inference.format"),
])
def test_bad_input_sections_fail_naming_the_field(section: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"input": section, "models": [
            {"match": "*", "signals": [{"match": "*", "detectors": ["adwin"]}]}]})
    assert where in str(exc.value)


def test_message_to_obj_reads_any_message() -> None:
    msg = message_class("InferenceEvent")(event_id="e", model_id="m")
    assert message_to_obj(msg) == {"event_id": "e", "model_id": "m", "model_version": None,
                                   "timestamp": None, "features": {}, "prediction": None,
                                   "label": None, "probabilities": {}, "embeddings": []}


# -- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "var"), [
    ({"SCHEMA_REGISTRY_URL": "registry:8080"}, "SCHEMA_REGISTRY_URL"),
    ({"SCHEMA_REGISTRY_PASSWORD": "p"}, "SCHEMA_REGISTRY_USERNAME"),
    ({"SCHEMA_REGISTRY_USERNAME": "u", "SCHEMA_REGISTRY_PASSWORD": "p",
      "SCHEMA_REGISTRY_PASSWORD_FILE": "{tmp}/pw"}, "SCHEMA_REGISTRY_PASSWORD"),
    ({"SCHEMA_REGISTRY_URL": "http://r:8080", "SCHEMA_REGISTRY_SSL_CA_LOCATION": "{tmp}/pw"},
     "SCHEMA_REGISTRY_URL"),
    ({"SCHEMA_REGISTRY_SSL_CA_LOCATION": "{tmp}/absent.pem"}, "SCHEMA_REGISTRY_SSL_CA_LOCATION"),
    ({"SCHEMA_REGISTRY_URL": "https://r", "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION": "{tmp}/pw"},
     "SCHEMA_REGISTRY_SSL_KEY_LOCATION"),
])
def test_contradictory_registry_settings_fail_naming_the_variable(
        env: dict[str, str], var: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from stream_monitor.settings import Settings, settings_problems

    (tmp_path / "pw").write_text("secret\n")
    for k, v in env.items():
        monkeypatch.setenv(k, v.replace("{tmp}", str(tmp_path)))
    with pytest.raises(ValidationError) as exc:
        Settings()
    problems = settings_problems(exc.value)
    assert var in [v for v, _ in problems], problems
    assert "secret" not in str(problems)


def test_the_registry_password_comes_from_its_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_monitor.adapters.registry import registry_client_conf
    from stream_monitor.settings import Settings

    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "https://r:8081")
    monkeypatch.setenv("SCHEMA_REGISTRY_USERNAME", "u")
    monkeypatch.setenv("SCHEMA_REGISTRY_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("SCHEMA_REGISTRY_SSL_CA_LOCATION", str(tmp_path / "pw"))
    conf = registry_client_conf(Settings())
    assert conf["basic.auth.user.info"] == "u:s3cret"
    assert conf["ssl.ca.location"] == str(tmp_path / "pw")
    assert conf["max.retries"] == 0


def test_the_worker_refuses_a_registry_format_without_a_registry_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One line naming SCHEMA_REGISTRY_URL and exit code 2, before any connection."""
    import yaml

    from .test_cli import one_line, run

    monkeypatch.delenv("SCHEMA_REGISTRY_URL", raising=False)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(yaml.safe_dump({"input": {"labels": {"format": "protobuf"}}, "models": [
        {"match": "*", "signals": [{"match": "*", "detectors": ["adwin"]}]}]}))
    code, _, err = run("worker", "-c", str(cfg))
    assert code == 2
    line = one_line(err)
    assert "SCHEMA_REGISTRY_URL" in line and "input.labels.format: protobuf" in line
