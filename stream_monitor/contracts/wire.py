"""Schema Registry formats: the Confluent wire format's framing, the decoding of a payload with
its writer schema (fastavro, the protobuf runtime, jsonschema), and the field mapping that puts
a decoded record into the shape of the JSON contract. Pure: the schema text is handed in (the
Kafka worker fetches it by id, adapters/registry.py).

A framed value is: byte 0 the magic byte ``0``, bytes 1-4 the schema id (big-endian), then for
Protobuf a list of message indexes (zig-zag varints: a count, then the indexes; a lone ``0``
means ``[0]``, the file's first message), then the payload (Avro binary without a header, a
Protobuf message, or JSON text).

Each way a record can fail here has its own dead-letter reason code
(:data:`REGISTRY_REASON_CODES`), carried to the gate in :class:`Fault`.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

__all__ = [
    "FORMATS",
    "REGISTRY_FORMATS",
    "REGISTRY_REASON_CODES",
    "Fault",
    "FieldMapping",
    "Framed",
    "ParsedSchema",
    "apply_mapping",
    "decode_payload",
    "parse_frame",
    "parse_schema",
]

FORMATS = ("json", "avro", "protobuf", "json_schema")
REGISTRY_FORMATS = ("avro", "protobuf", "json_schema")
# The registry's names of the schema types (GET /schemas/ids/N -> schemaType; absent = AVRO).
SCHEMA_TYPES = {"avro": "AVRO", "protobuf": "PROTOBUF", "json_schema": "JSON"}

# Dead-letter reason codes of the registry formats, in the order the checks run.
REGISTRY_REASON_CODES = (
    "wrong_magic_byte",     # not framed: first byte not 0, or shorter than the 5-byte header
    "unknown_schema",       # the registry has no schema with the record's id (404)
    "registry_refused",     # the registry refused the schema request (another 4xx: auth, ...)
    "schema_mismatch",      # the schema is not of the topic's format or lacks a needed field
    "undecodable_payload",  # the payload does not decode with (or validate against) its schema
)

_MAGIC = 0
_HEADER = 5


class Fault(NamedTuple):
    """Why a framed record cannot be used: a reason code and a reason naming the fix."""

    code: str
    reason: str


class Framed(NamedTuple):
    schema_id: int
    message_indexes: tuple[int, ...]
    payload: bytes


def parse_frame(value: bytes | None, fmt: str) -> Framed | Fault:
    """The schema id, the Protobuf message indexes and the payload of a framed value.

    >>> parse_frame(b"\\x00\\x00\\x00\\x00\\x07rest", "avro")
    Framed(schema_id=7, message_indexes=(), payload=b'rest')
    >>> parse_frame(b"\\x00\\x00\\x00\\x00\\x07\\x00msg", "protobuf").message_indexes
    (0,)
    >>> parse_frame(b"\\x00\\x00\\x00\\x00\\x07\\x04\\x02\\x06msg", "protobuf").message_indexes
    (1, 3)
    >>> parse_frame(b'{"event_id": "e1"}', "avro").code
    'wrong_magic_byte'
    """
    if value is None:
        return Fault("wrong_magic_byte", "the record has no value (tombstone)")
    if len(value) < _HEADER or value[0] != _MAGIC:
        first = f"0x{value[0]:02x}" if value else "nothing"
        return Fault("wrong_magic_byte", (
            f"not in the Schema Registry wire format (magic byte 0, 4-byte schema id): the "
            f"value starts with {first} and is {len(value)} bytes; the topic's format is {fmt} "
            "(input.*.format), so publish with a registry serializer, or set the format to "
            "json"))
    schema_id = int.from_bytes(value[1:_HEADER], "big")
    if fmt != "protobuf":
        return Framed(schema_id, (), value[_HEADER:])
    pos = _HEADER
    try:
        count, pos = _zigzag(value, pos)
        if count == 0:
            indexes: tuple[int, ...] = (0,)
        else:
            if not 0 < count <= 100:
                raise ValueError(f"{count} message indexes")
            idx = []
            for _ in range(count):
                i, pos = _zigzag(value, pos)
                idx.append(i)
            indexes = tuple(idx)
    except ValueError as exc:
        return Fault("undecodable_payload", f"the Protobuf message indexes do not read: {exc}")
    return Framed(schema_id, indexes, value[pos:])


def _zigzag(b: bytes, pos: int) -> tuple[int, int]:
    """One zig-zag varint (the framing's message indexes) and the position after it."""
    shift = result = 0
    while True:
        if pos >= len(b) or shift > 63:
            raise ValueError("a varint runs past the end")
        byte = b[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


# ---------------------------------------------------------------------------------------------
# Schemas and payloads


class ParsedSchema(NamedTuple):
    """A writer schema, parsed once per id: the format and what its library needs."""

    fmt: str
    parsed: Any


def parse_schema(fmt: str, schema_type: str | None, schema_str: str) -> ParsedSchema | Fault:
    """Parse a schema fetched from the registry for the topic's format; a schema of another
    type, or one that does not parse, is ``schema_mismatch``."""
    got = (schema_type or "AVRO").upper()
    want = SCHEMA_TYPES[fmt]
    if got != want:
        return Fault("schema_mismatch", (
            f"the record's schema is {got}, the topic's format is {fmt} ({want}); set "
            "input.*.format to the format its producer uses"))
    try:
        if fmt == "avro":
            import fastavro

            return ParsedSchema(fmt, fastavro.parse_schema(orjson.loads(schema_str)))
        if fmt == "json_schema":
            import jsonschema

            schema = orjson.loads(schema_str)
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            return ParsedSchema(fmt, cls(schema))
        return ParsedSchema(fmt, _proto_file(schema_str))
    except Exception as exc:  # a schema the library cannot read: not this record's fault alone
        return Fault("schema_mismatch", f"the {want} schema does not parse: "
                     f"{type(exc).__name__}: {exc}"[:500])


def _proto_file(schema_str: str) -> Any:
    """A Protobuf schema as the registry returns it to the Python clients: the base64 of a
    serialized ``FileDescriptorProto`` (a schema stored as ``.proto`` text cannot be read
    without ``protoc``), in a pool holding the well-known types it may import."""
    from google.protobuf import (
        any_pb2,
        descriptor_pb2,
        descriptor_pool,
        duration_pb2,
        empty_pb2,
        struct_pb2,
        timestamp_pb2,
        wrappers_pb2,
    )

    try:
        raw = base64.b64decode(schema_str.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not a serialized descriptor (base64); the Python client reads "
                         "Protobuf schemas only in that form (register it from a "
                         "serializer, or ask the registry for format=serialized)") from None
    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.ParseFromString(raw)
    pool = descriptor_pool.DescriptorPool()
    for mod in (any_pb2, duration_pb2, empty_pb2, struct_pb2, timestamp_pb2, wrappers_pb2):
        pool.AddSerializedFile(mod.DESCRIPTOR.serialized_pb)
    if not fdp.name:
        fdp.name = "registry.proto"
    return pool.Add(fdp)


def decode_payload(schema: ParsedSchema, framed: Framed) -> dict[str, Any] | Fault:
    """The payload as a record of plain values; ``undecodable_payload`` when it does not read
    with its schema, ``schema_mismatch`` when the schema's record is not a record."""
    try:
        obj = _decode(schema, framed)
    except _Mismatch as exc:
        return Fault("schema_mismatch", str(exc))
    except Exception as exc:
        return Fault("undecodable_payload", (
            f"the {schema.fmt} payload does not decode with schema id {framed.schema_id}: "
            f"{type(exc).__name__}: {exc}")[:800])
    if not isinstance(obj, dict):
        return Fault("schema_mismatch", (
            f"schema id {framed.schema_id} describes a {type(obj).__name__}, not a record of "
            "the event's fields"))
    return obj


class _Mismatch(Exception):
    pass


def _decode(schema: ParsedSchema, framed: Framed) -> Any:
    if schema.fmt == "avro":
        import fastavro

        buf = io.BytesIO(framed.payload)
        obj = fastavro.schemaless_reader(buf, schema.parsed, None)
        if buf.tell() != len(framed.payload):
            raise ValueError(f"{len(framed.payload) - buf.tell()} bytes left after the record")
        return _plain(obj)
    if schema.fmt == "json_schema":
        obj = orjson.loads(framed.payload)
        err = next(iter(schema.parsed.iter_errors(obj)), None)
        if err is not None:
            where = "/".join(str(p) for p in err.absolute_path) or "(the record)"
            raise ValueError(f"does not validate against its JSON Schema at {where}: "
                             f"{err.message[:300]}")
        return obj
    from google.protobuf import message_factory

    from .proto import message_to_obj

    fd = schema.parsed
    msgs = list(fd.message_types_by_name.values())
    desc: Any = None
    for depth, i in enumerate(framed.message_indexes):
        if not 0 <= i < len(msgs):
            raise _Mismatch(f"message index {i} (level {depth}) is not in schema id "
                            f"{framed.schema_id}, which has {len(msgs)} messages there")
        desc = msgs[i]
        msgs = list(desc.nested_types)
    msg = message_factory.GetMessageClass(desc)()
    msg.ParseFromString(framed.payload)
    return message_to_obj(msg)


def _plain(v: Any) -> Any:
    """Avro logical types as the JSON contract's values: times as epoch seconds, decimals as
    floats, uuids as strings (what a JSON producer would have written)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp()
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp()
    if isinstance(v, Decimal):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, bytes | str | int | float | bool) or v is None:
        return v
    return str(v)  # uuid.UUID, time


# ---------------------------------------------------------------------------------------------
# Field mapping


class FieldMapping(NamedTuple):
    """Where the contract's fields are in a record whose names differ (input.*.fields): contract
    field -> dotted path in the record; ``feature_fields``: record fields taken as the features
    (instead of a ``features`` map)."""

    fields: Mapping[str, str] = {}
    feature_fields: Sequence[str] = ()


_ABSENT = object()


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return _ABSENT
        obj = obj[part]
    return obj


def apply_mapping(obj: dict[str, Any], mapping: FieldMapping) -> dict[str, Any]:
    """The record in the contract's shape: each mapped field read from its path (absent stays
    absent, so the usual ``missing_field`` / ``schema_mismatch`` names it), features from
    ``feature_fields`` when given; other fields kept.

    >>> m = FieldMapping({"event_id": "request.id", "prediction": "score"}, ["age", "city"])
    >>> apply_mapping({"request": {"id": "r1"}, "model_id": "m", "score": 0.5, "age": 3,
    ...                "city": "x"}, m)  # doctest: +NORMALIZE_WHITESPACE
    {'request': {'id': 'r1'}, 'model_id': 'm', 'event_id': 'r1', 'prediction': 0.5,
     'features': {'age': 3, 'city': 'x'}}
    """
    if not mapping.fields and not mapping.feature_fields:
        return obj
    sources = set(mapping.fields.values()) | set(mapping.feature_fields)
    out = {k: v for k, v in obj.items() if k not in sources}
    for name, path in mapping.fields.items():
        out.pop(name, None)
        v = _get(obj, path)
        if v is not _ABSENT:
            out[name] = v
    if mapping.feature_fields:
        feats = {}
        for path in mapping.feature_fields:
            v = _get(obj, path)
            if v is not _ABSENT:
                feats[path] = v
        out["features"] = feats
    return out
