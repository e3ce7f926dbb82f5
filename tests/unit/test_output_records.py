"""The typed output records (contracts/output_records.py) against the shipped JSON Schemas, field
by field: the same field names, every field required (a record writes all of its fields), and
the same JSON types, down into the typed parts (detected_at, detector, source, ...). A field
added to a record type and not to its schema, or the other way round, fails here."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from stream_monitor.contracts import output_records as orec
from stream_monitor.contracts.outputs import SCHEMA_HEADERS, decode_output, output_record
from stream_monitor.contracts.schemas import _BY_TYPE, load_schema

# Record type -> schema file.
SCHEMAS = {cls: _BY_TYPE[kind] for kind, cls in orec.RECORD_TYPES.items()}

_SCALARS = {"int": {"integer"}, "float": {"number"}, "str": {"string"}, "bool": {"boolean"},
            "None": {"null"}}


def _split_union(annotation: str) -> list[str]:
    """``a | b[c | d] | None`` -> ``["a", "b[c | d]", "None"]`` (top-level ``|`` only)."""
    parts, depth, cur = [], 0, ""
    for ch in annotation:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _json_types(annotation: str) -> set[str]:
    """The JSON types a field of this annotation (a string: the module uses postponed
    annotations) is written as."""
    out: set[str] = set()
    for part in _split_union(annotation):
        if part in _SCALARS:
            out |= _SCALARS[part]
        elif part.startswith("Literal["):
            out.add("string")
        elif part.startswith("list[") or part.startswith("Sequence["):
            out.add("array")
        elif part == "JsonObject" or part in orec._PARTS:
            out.add("object")
        else:
            raise AssertionError(f"no JSON type known for annotation part {part!r}")
    return out


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    assert ref.startswith("#/$defs/"), ref
    return _resolve(schema, schema["$defs"][ref.removeprefix("#/$defs/")])


def _schema_types(schema: dict[str, Any], node: dict[str, Any]) -> set[str]:
    """The JSON types a schema node allows (``type``, ``const``, ``enum``, ``$ref``,
    ``oneOf``/``anyOf`` of those)."""
    node = _resolve(schema, node)
    for key in ("oneOf", "anyOf"):
        if key in node:
            return set().union(*(_schema_types(schema, n) for n in node[key]))
    if "type" in node:
        t = node["type"]
        return set(t) if isinstance(t, list) else {t}
    values = [node["const"]] if "const" in node else node.get("enum")
    assert values is not None, f"schema node gives no type: {node}"
    names = {bool: "boolean", int: "integer", float: "number", str: "string",
             type(None): "null"}
    return {names[type(v)] for v in values}


def _object_node(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The object alternative of a node (a ``oneOf`` of null and an object: the object)."""
    node = _resolve(schema, node)
    for key in ("oneOf", "anyOf"):
        for alt in node.get(key, ()):
            alt = _resolve(schema, alt)
            if alt.get("type") == "object" or "properties" in alt:
                return alt
    return node


def mismatches(cls: type, schema: dict[str, Any], node: dict[str, Any],
               where: str = "") -> list[str]:
    """Every difference between a record type and its schema object node."""
    node = _object_node(schema, node)
    out = []
    fields = {f.name: f for f in dataclasses.fields(cls)}
    props = node.get("properties", {})
    for name in sorted(fields.keys() - props.keys()):
        out.append(f"{where}{name}: a field of {cls.__name__}, not in the schema")
    for name in sorted(props.keys() - fields.keys()):
        out.append(f"{where}{name}: in the schema, not a field of {cls.__name__}")
    required = set(node.get("required", ()))
    for name in sorted(fields.keys() - required):
        out.append(f"{where}{name}: always written, but the schema does not require it")
    if node.get("additionalProperties") is not False:
        out.append(f"{where or 'record'}: the schema allows other properties")
    for name in sorted(fields.keys() & props.keys()):
        annotation = str(fields[name].type)
        want, got = _json_types(annotation), _schema_types(schema, props[name])
        if want != got:
            out.append(f"{where}{name}: {annotation} is written as {sorted(want)}, "
                       f"the schema says {sorted(got)}")
        part = orec._PARTS.get(annotation)
        if part is not None:
            out += mismatches(part, schema, props[name], f"{where}{name}.")
        prop = _resolve(schema, props[name])
        if "const" in prop and fields[name].default is not dataclasses.MISSING:
            if fields[name].default != prop["const"]:
                out.append(f"{where}{name}: default {fields[name].default!r}, "
                           f"schema const {prop['const']!r}")
    return out


@pytest.mark.parametrize("cls", list(SCHEMAS), ids=lambda c: c.__name__)
def test_record_types_and_schemas_agree_field_by_field(cls: type) -> None:
    schema = load_schema(SCHEMAS[cls])
    assert mismatches(cls, schema, schema) == []


def test_every_record_type_has_a_schema_and_a_header() -> None:
    assert set(orec.RECORD_TYPES) == set(SCHEMA_HEADERS)
    for kind, cls in orec.RECORD_TYPES.items():
        [t] = [f for f in dataclasses.fields(cls) if f.name == "type"]
        assert t.default == kind


def test_the_check_fails_on_a_field_added_to_one_side_only() -> None:
    """The comparison can fail: a record type with one more field, a schema with one more
    property, a field of another type, and a typed part with a field its schema lacks."""
    schema = load_schema("drift-alert")
    more = dataclasses.make_dataclass(
        "DriftAlert", [("extra", "int")], bases=(orec.DriftAlert,), frozen=True, kw_only=True)
    assert mismatches(more, schema, schema) == [
        "extra: a field of DriftAlert, not in the schema",
        "extra: always written, but the schema does not require it"]

    wider = {**schema, "properties": {**schema["properties"], "note": {"type": "string"}}}
    assert mismatches(orec.DriftAlert, wider, wider) == [
        "note: in the schema, not a field of DriftAlert"]

    other = {**schema, "properties": {**schema["properties"],
                                      "sample_rate": {"type": "string"}}}
    assert mismatches(orec.DriftAlert, other, other) == [
        "sample_rate: float is written as ['number'], the schema says ['string']"]

    pos = schema["$defs"]["position"]
    short = {**schema, "$defs": {**schema["$defs"], "position": {
        **pos, "properties": {k: v for k, v in pos["properties"].items() if k != "event_time"},
        "required": [k for k in pos["required"] if k != "event_time"]}}}
    assert mismatches(orec.DriftAlert, short, short) == [
        "detected_at.event_time: a field of EventRef, not in the schema",
        "detected_at.event_time: always written, but the schema does not require it"]


def _alert() -> orec.DriftAlert:
    return orec.DriftAlert(
        alert_id="a", model_id="m", model_version=None, signal="feature:x",
        detector=orec.FiredDetector("cusum", "cusum", {"h": 5.0}),
        detected_at=orec.EventRef("e1", "in", 0, 7, "2026-01-01T00:00:00.000Z", 12),
        evidence={"mean_shift_in_reference_std": 2.5,
                  "standardization": {"mean": 1.0, "std": 0.5}},
        summary="s", sample_rate=1.0)


def test_keys_come_out_in_field_order_with_none_as_null() -> None:
    """The declaration order is the wire order (what the records had as dicts)."""
    body = orec.encode_record(_alert())
    assert body.startswith(b'{"schema_version":1,"type":"drift_alert","alert_id":"a",'
                           b'"model_id":"m","model_version":null,"signal":"feature:x",'
                           b'"detector":{"name":"cusum","type":"cusum","params":{"h":5.0}},'
                           b'"detected_at":{"event_id":"e1","topic":"in","partition":0,')
    # (incident_id, added with incidents, comes last: the keys before it keep their order.)
    assert body.endswith(b'"summary":"s","sample_rate":1.0,"incident_id":null}')
    assert list(orjson.loads(body)) == [f.name for f in dataclasses.fields(orec.DriftAlert)]


def test_an_outbox_entry_reads_back_as_the_typed_record() -> None:
    from stream_monitor.contracts.outputs import encode_output

    rec = output_record("alerts", b"m", _alert(), (("alert-id", b"a"),))
    back = decode_output(encode_output(rec))
    assert back == rec
    assert back.record.detected_at.offset == 7  # type: ignore[union-attr]


def test_a_record_written_before_incident_id_reads_back() -> None:
    """An outbox entry of an earlier version (no incident_id) is re-sent after an upgrade."""
    old = orjson.loads(orec.encode_record(_alert()))
    del old["incident_id"]
    rec = orec.decode_body(old)
    assert isinstance(rec, orec.DriftAlert) and rec.incident_id is None
    with pytest.raises(KeyError):  # a field without a default is still required
        orec.decode_body({k: v for k, v in old.items() if k != "summary"})


def test_typed_readers_of_an_alert() -> None:
    a = _alert()
    assert a.standardization == (1.0, 0.5) and a.shift == 2.5 and a.calibration is None
