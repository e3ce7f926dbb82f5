"""Record types that cross the service boundary, and the pure decoding of inference events.

Inference events arrive as JSON bytes (decoded with orjson; see :func:`_loads_non_finite` for
the one thing orjson refuses that is still read). Output records (drift alerts, retrain
requests, dead letters, ...) are the typed records of ``contracts/output_records.py``, whose
shapes the JSON Schema files in ``contracts/schemas`` match (checked in the tests).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import orjson

from .output_records import (
    SCHEMA_VERSION,
    DeadLetterRecord,
    EventRef,
    Json,
    JsonObject,
    SourcePosition,
    encode_record,
)
from .wire import REGISTRY_REASON_CODES, Fault, FieldMapping, apply_mapping

__all__ = [
    "PROBABILITY_SUM_TOLERANCE",
    "REASON_CODES",
    "SCHEMA_VERSION",
    "DeadLetter",
    "InferenceEvent",
    "LabelEvent",
    "Position",
    "RawRecord",
    "bytes_field",
    "decode_inference",
    "decode_label",
    "detected_at",
    "encode_record",
    "iso_time",
    "parse_time",
    "record_id",
]

# Every dead-letter reason code, in the order the checks run (README "Data quality"). Stable:
# consumers and dashboards key on them.
REASON_CODES = (
    "too_large",            # the value is over quality.max_message_bytes (checked before decoding)
    "undecodable",          # no value (tombstone), or not UTF-8 JSON
    "not_an_object",        # JSON, but not an object
    "missing_field",        # a required field is absent
    "wrong_type",           # a field has the wrong type or an impossible value
    "non_finite",           # the timestamp is NaN or +/-inf
    # An invalid `probabilities` map (class -> probability; docs/probabilities.md):
    "probability_not_numeric",       # a probability is not a finite number (or the map not one)
    "probability_out_of_range",      # a probability below 0 or above 1
    "probabilities_not_normalized",  # the probabilities do not sum to 1 within the tolerance
    # An invalid `embeddings` vector (docs/joint-drift.md):
    "embedding_not_numeric",  # not a list, or an element not a finite number
    "embedding_too_long",     # more elements than quality.max_embedding_length
    "unknown_model",        # no model rule matches (quality.unknown_model: dead_letter)
    "timestamp_in_future",  # event time beyond now + quality.timestamps.max_future_seconds
    "timestamp_too_old",    # event time before now - quality.timestamps.max_past_seconds
    "duplicate",            # same (model_id, event_id) at another position within the window
    "too_many_features",    # more features than quality.max_features_per_event
    "too_many_classes",     # more classes in `probabilities` than quality.max_classes_per_event
    "too_many_signals",     # would give its model more than quality.max_features_per_model
    "id_too_long",          # model_id, event_id or model_version over quality.max_id_length
    "internal_error",       # the decoder or the core raised on the event
    # A registry format (input.*.format avro/protobuf/json_schema; contracts/wire.py):
    *REGISTRY_REASON_CODES,
)

# How far the probabilities of an event may sum from 1 (rounded outputs: 20 classes printed to
# 4 decimals are off by at most 0.001; a softmax in float32 by far less).
PROBABILITY_SUM_TOLERANCE = 0.01

# How much of a bad record a dead letter keeps by default (quality.dead_letter_max_bytes). A
# dead letter must always fit the output topic: the value keeps a head of this many bytes, each
# header and the key a smaller one; what was cut is said by `truncated`, the whole length and
# the SHA-256 of the whole.
DEAD_LETTER_MAX_BYTES = 65_536
_HEADER_MAX_BYTES = 1024
_KEY_MAX_BYTES = 4096
_MAX_HEADERS = 64
_REASON_MAX_CHARS = 1000


class Position(NamedTuple):
    """Where a record came from: a Kafka topic/partition/offset, or a file and line."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


class RawRecord(NamedTuple):
    """A record as the transport delivers it, before decoding.

    ``decoded``: for a topic in a Schema Registry format, what the adapter that fetched the
    schema made of the value: the record as plain values, or the :class:`Fault` that makes it
    a dead letter. None for JSON (decoded here). ``value`` stays the original bytes, which a
    dead letter keeps."""

    value: bytes | None
    position: Position
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    decoded: dict[str, Any] | Fault | None = None


@dataclass(slots=True)
class InferenceEvent:
    """One prediction, as published by the serving system. (``Any``: feature values, the
    prediction and the label are what the producer's JSON holds; the gate checks them.)"""

    event_id: str
    model_id: str
    features: dict[str, Any]
    prediction: Any
    position: Position
    model_version: str | None = None
    timestamp: float | None = None  # seconds since the epoch
    label: Any = None
    # Class -> probability (a classifier's output; validated by the decoder: each in [0, 1],
    # summing to 1). None: absent (an empty map is read as absent too).
    probabilities: dict[str, float] | None = None
    # An embedding of the input (a vector of finite numbers; docs/joint-drift.md). None: absent
    # (an empty list is read as absent too).
    embeddings: list[float] | None = None

    @property
    def event_time(self) -> float:
        """Event time in seconds: the event's own timestamp, else the Kafka record's."""
        return _event_time(self.timestamp, self.position)


def _event_time(timestamp: float | None, position: Position) -> float:
    if timestamp is not None:
        return timestamp
    if position.timestamp_ms is not None:
        return position.timestamp_ms / 1000.0
    return 0.0


@dataclass(slots=True)
class LabelEvent:
    """The true outcome of one prediction, published later on the labels topic."""

    event_id: str
    model_id: str
    label: Any
    position: Position
    timestamp: float | None = None

    @property
    def event_time(self) -> float:
        """When the outcome became known: the record's own timestamp, else Kafka's."""
        return _event_time(self.timestamp, self.position)


@dataclass(slots=True)
class DeadLetter:
    """A record that could not be used, with why. Built by the pure decoder."""

    raw: RawRecord
    reason_code: str
    reason: str

    @property
    def kafka_key(self) -> bytes:
        """The dead letter's Kafka key: the original key (a bounded head of it)."""
        return (self.raw.key or b"")[:_KEY_MAX_BYTES]

    def to_record(self, now: float, max_bytes: int = DEAD_LETTER_MAX_BYTES, *,
                  payload: str = "full", truncated_bytes: int = 256) -> DeadLetterRecord:
        """The dead-letter record. Its size is bounded whatever the input: the value keeps at
        most ``max_bytes`` bytes (base64 at worst: 4/3 of that), the key, each header and the
        reason less; see :func:`bytes_field`.

        ``payload`` (``privacy.dead_letter_payload``): ``full`` keeps that much; ``truncated``
        a head of ``truncated_bytes``; ``hash`` no bytes at all (value, key and header values
        give their length and SHA-256 only) and a reason that quotes nothing from the record.

        >>> rec = DeadLetter(RawRecord(b'{"ssn": "123-45-6789"}', Position("t", 0, 1), b"k"),
        ...                  "wrong_type", "features.ssn is '123-45-6789'").to_record(0.0,
        ...                  payload="hash")
        >>> rec.original["value"]["data"], rec.original["value"]["length"]
        ('', 22)
        >>> "123" in encode_record(rec).decode()
        False

        >>> big = RawRecord(b"\\xff" * 900_001, Position("t", 0, 1), b"k")
        >>> rec = DeadLetter(big, "undecodable", "not UTF-8").to_record(0.0, max_bytes=1000)
        >>> v = rec.original["value"]
        >>> v["truncated"], v["length"], len(base64.b64decode(v["data"]))
        (True, 900001, 1000)
        >>> len(encode_record(rec)) < 2000
        True
        """
        raw = self.raw
        pos = raw.position
        if payload == "truncated":
            max_bytes = min(max_bytes, truncated_bytes)
        elif payload == "hash":
            max_bytes = 0
        hmax = min(max_bytes, _HEADER_MAX_BYTES)
        original: dict[str, Json] = {
            "key": bytes_field(raw.key, min(max_bytes, _KEY_MAX_BYTES)),
            "value": bytes_field(raw.value, max_bytes),
            "headers": [{"key": k[:256], "value": bytes_field(v, hmax)}
                        for k, v in raw.headers[:_MAX_HEADERS]],
        }
        if len(raw.headers) > _MAX_HEADERS:
            original["headers_omitted"] = len(raw.headers) - _MAX_HEADERS
        reason = self.reason
        if payload == "hash":  # reasons quote values from the record (privacy)
            reason = f"{self.reason_code} (details withheld: privacy.dead_letter_payload is hash)"
        if len(reason) > _REASON_MAX_CHARS:
            reason = reason[:_REASON_MAX_CHARS - 1] + "…"
        return DeadLetterRecord(
            dead_letter_id=record_id("dl", pos.topic, pos.partition, pos.offset),
            reason_code=self.reason_code,
            reason=reason,
            source=SourcePosition(pos.topic, pos.partition, pos.offset, pos.timestamp_ms),
            original=original,
            dead_lettered_at=iso_time(now),
        )


def bytes_field(b: bytes | None, limit: int | None = None) -> JsonObject | None:
    """Original bytes: as text where they are UTF-8, base64 otherwise. With ``limit``, at most
    that many bytes are kept (a head); a cut field says ``truncated`` and gives the whole
    ``length`` and ``sha256``. Text whose JSON escapes (control characters as ``\\u00XX``)
    would outgrow base64 is kept as base64, so the encoded size is at most about 4/3 of the
    bytes kept.

    >>> bytes_field(b"abc")
    {'encoding': 'utf-8', 'data': 'abc'}
    >>> bytes_field(b"\\x01" * 10)["encoding"]
    'base64'
    >>> f = bytes_field("é".encode() * 3, limit=4)   # cut inside a character: whole ones kept
    >>> f["data"], f["length"], f["truncated"]
    ('éé', 6, True)
    """
    if b is None:
        return None
    head = b if limit is None or len(b) <= limit else b[:limit]
    try:
        text: str | None = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = None
        if len(head) < len(b) and exc.start >= len(head) - 3 and exc.end == len(head):
            try:  # the cut split a character: keep the whole ones before it
                text = head[:exc.start].decode("utf-8")
                head = head[:exc.start]
            except UnicodeDecodeError:
                text = None
    if text is not None and _json_growth(text) > len(head) * 4 // 3 + 4:
        text = None
    out: dict[str, Json] = (
        {"encoding": "utf-8", "data": text} if text is not None
        else {"encoding": "base64", "data": base64.b64encode(head).decode("ascii")})
    if len(head) < len(b):
        out["truncated"] = True
        out["length"] = len(b)
        out["sha256"] = hashlib.sha256(b).hexdigest()
    return out


def _json_growth(text: str) -> int:
    """Length of ``text`` as a JSON string (orjson escapes control characters, quotes and
    backslashes); cheap for the common case of plain text."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return len(text.encode("utf-8")) + 2
    return len(orjson.dumps(text))


def detected_at(ev: InferenceEvent, signal_index: int) -> EventRef:
    """Where an alert fired: the event, its position, and the signal's value count."""
    pos = ev.position
    return EventRef(ev.event_id, pos.topic, pos.partition, pos.offset, iso_time(ev.event_time),
                    signal_index)


def record_id(*parts: object) -> str:
    """A deterministic id: the same inputs always give the same id (32 hex chars)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode())
    return h.hexdigest()[:32]


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(v: Any) -> float | None:
    """Epoch seconds from an ISO 8601 string or a number; None when absent or unreadable."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    return None


_SCALAR = (int, float, str, bool)
_SCALAR_TYPES = frozenset(_SCALAR)  # exact types, the fast check (subclasses: isinstance)


# Event times must stay within what ``iso_time`` can render (years 1 to 9999): an event whose
# timestamp is outside would pass decoding and then crash the batch that alerts on it.
_MIN_TS = -62_135_596_800.0  # 0001-01-01T00:00:00Z
_MAX_TS = 253_402_300_799.0  # 9999-12-31T23:59:59Z


def _parse_timestamp(v: Any) -> float | None:
    if v is None:
        return None
    if type(v) is int or type(v) is float:
        ts = float(v)
        if not math.isfinite(ts):
            raise _Reject("non_finite", f"timestamp is {v!r}; send epoch seconds or ISO 8601")
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            why = f"timestamp {v!r} is not ISO 8601 or epoch seconds"
            raise _Reject("wrong_type", why) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
    else:
        raise _Reject("wrong_type",
                      "timestamp must be epoch seconds (number) or an ISO 8601 string")
    if not _MIN_TS <= ts <= _MAX_TS:
        raise _Reject("wrong_type", f"timestamp {v!r} is outside the years 1 to 9999")
    return ts


_UNREADABLE = object()
_INT64 = (-(2**63), 2**64)


def _loads_non_finite(value: bytes) -> Any:
    """Read JSON that orjson refused when its only fault is non-finite numbers.

    Python's ``json.dumps`` writes ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, which
    orjson rejects), and a literal like ``1e999`` overflows to infinity. Such an event is not
    thrown away: it is parsed again with the standard library, its non-finite numbers become
    float NaN/inf, and the gate rejects just those values (``non_finite``) and keeps the event.
    Anything else orjson refuses (bad UTF-8, lone surrogates, syntax errors, nesting deeper
    than orjson writes) stays ``undecodable``. Returns ``_UNREADABLE`` then.

    >>> _loads_non_finite(b'{"x": NaN, "y": -Infinity, "z": 1e999}')
    {'x': nan, 'y': -inf, 'z': inf}
    >>> _loads_non_finite(b'{"x": 1') is _UNREADABLE
    True
    """
    found = False

    def constant(name: str) -> float:
        nonlocal found
        found = True
        return float(name)  # NaN, Infinity, -Infinity

    def number(text: str) -> float:
        nonlocal found
        f = float(text)
        if not math.isfinite(f):
            found = True
        return f

    def integer(text: str) -> int | float:
        nonlocal found
        i = int(text)
        if _INT64[0] <= i < _INT64[1]:
            return i
        try:
            return float(i)  # as orjson reads an integer beyond 64 bits
        except OverflowError:
            found = True
            return math.inf if i > 0 else -math.inf

    try:
        obj = json.loads(value.decode("utf-8"), parse_constant=constant, parse_float=number,
                         parse_int=integer)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return _UNREADABLE
    if not found:
        return _UNREADABLE
    try:
        orjson.dumps(obj)  # whatever else orjson cannot hold stays unreadable
    except (orjson.JSONEncodeError, TypeError):
        return _UNREADABLE
    return obj


_E = TypeVar("_E")


class _Reject(Exception):
    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason


def _json_object(raw: RawRecord, mapping: FieldMapping | None = None) -> dict[str, Any]:
    """A record's value as a JSON object (non-finite numbers read, see _loads_non_finite), or
    the record a registry adapter decoded; in the contract's shape by the field ``mapping``."""
    decoded = raw.decoded
    if decoded is not None:
        if isinstance(decoded, Fault):
            raise _Reject(decoded.code, decoded.reason)
        return apply_mapping(decoded, mapping) if mapping is not None else decoded
    value = _json_value(raw)
    return apply_mapping(value, mapping) if mapping is not None else value


def _json_value(raw: RawRecord) -> dict[str, Any]:
    value = raw.value
    if value is None:
        raise _Reject("undecodable", "the record has no value (tombstone)")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        obj = _loads_non_finite(value)
        if obj is _UNREADABLE:
            raise _Reject("undecodable", f"not valid UTF-8 JSON: {exc}") from None
    if type(obj) is not dict:
        raise _Reject("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _required(raw: RawRecord, obj: dict[str, Any], *names: str) -> tuple[Any, ...]:
    """The required fields of a record, in order; event_id and model_id (the first two)
    checked. A record decoded with a registry schema that lacks one: its schema does not have
    the field (``schema_mismatch``)."""
    try:
        values = tuple([obj[n] for n in names])  # a list comprehension: no generator frame
    except KeyError as exc:
        if raw.decoded is not None:
            raise _Reject("schema_mismatch", (
                f"the record's schema has no field {exc.args[0]!r} (required); add it to the "
                "schema, or name the field that holds it in input.*.fields")) from None
        raise _Reject("missing_field", f"required field {exc.args[0]!r} is missing") from None
    event_id, model_id = values[0], values[1]
    if type(event_id) is not str or not event_id:
        raise _Reject("wrong_type", "event_id must be a non-empty string")
    if type(model_id) is not str or not model_id or "\x1f" in model_id:
        raise _Reject("wrong_type", "model_id must be a non-empty string (without U+001F)")
    return values


def _decode(raw: RawRecord, mapping: FieldMapping | None = None) -> InferenceEvent:
    obj = _json_object(raw, mapping)
    event_id, model_id, features, prediction = _required(
        raw, obj, "event_id", "model_id", "features", "prediction")
    if type(features) is not dict:
        raise _Reject("wrong_type", "features must be an object of name -> number/string/bool/null")
    scalar = _SCALAR_TYPES
    for name, fv in features.items():
        if type(fv) not in scalar and fv is not None and not isinstance(fv, _SCALAR):
            raise _Reject("wrong_type", f"feature {name!r} must be a number, string, bool or null")
    if prediction is None or not isinstance(prediction, _SCALAR):
        raise _Reject("wrong_type", "prediction must be a number or a class label (string/bool)")
    version = obj.get("model_version")
    if version is not None and type(version) is not str:
        version = str(version) if type(version) is int else None
        if version is None:
            raise _Reject("wrong_type", "model_version must be a string")
    return InferenceEvent(
        event_id=event_id,
        model_id=model_id,
        features=features,
        prediction=prediction,
        position=raw.position,
        model_version=version,
        timestamp=_parse_timestamp(obj.get("timestamp")),
        label=obj.get("label"),
        probabilities=_probabilities(obj.get("probabilities")),
        embeddings=_embeddings(obj.get("embeddings")),
    )


def _embeddings(v: Any) -> list[float] | None:
    """An ``embeddings`` vector checked (docs/joint-drift.md): a list of finite numbers (an
    int is a number, a bool is not). Null or an empty list: absent. The cap on its length is
    the gate's (``embedding_too_long``, quality.max_embedding_length).

    >>> _embeddings([0.5, 1, -2.0])
    [0.5, 1.0, -2.0]
    >>> _embeddings([]) is None
    True
    """
    if v is None:
        return None
    if type(v) is not list:
        raise _Reject("embedding_not_numeric", "embeddings must be a list of numbers")
    out: list[float] = []
    for i, x in enumerate(v):
        t = type(x)
        if t is float:
            if not math.isfinite(x):
                raise _Reject("embedding_not_numeric",
                              f"embeddings[{i}] is {x!r}, not a finite number")
            out.append(x)
        elif t is int:
            out.append(float(x))
        else:
            raise _Reject("embedding_not_numeric", (
                f"embeddings[{i}] is a {t.__name__}, not a number; send the vector as numbers"))
    return out or None


def _probabilities(v: Any) -> dict[str, float] | None:
    """A ``probabilities`` map checked (docs/probabilities.md): class -> a finite number in
    [0, 1], the numbers summing to 1 within :data:`PROBABILITY_SUM_TOLERANCE`. Integers and
    booleans' look-alikes: an int (0 or 1) is a number, a bool is not. Null or an empty map:
    absent (a Protobuf map cannot say "absent"). The cap on the number of classes is the
    gate's (``too_many_classes``, quality.max_classes_per_event).

    >>> _probabilities({"a": 0.25, "b": 0.75})
    {'a': 0.25, 'b': 0.75}
    >>> _probabilities({}) is None
    True
    """
    if v is None:
        return None
    if type(v) is not dict:
        raise _Reject("probability_not_numeric",
                      "probabilities must be an object of class -> probability (a number)")
    if not v:
        return None
    out: dict[str, float] = {}
    total = 0.0
    for cls, p in v.items():
        t = type(p)
        if t is float:
            x = p
        elif t is int:
            x = float(p)
        else:
            raise _Reject("probability_not_numeric", (
                f"probabilities[{str(cls)[:100]!r}] is a {t.__name__}, not a number; send each "
                "class's probability as a number in [0, 1]"))
        if not math.isfinite(x):
            raise _Reject("probability_not_numeric",
                          f"probabilities[{str(cls)[:100]!r}] is {x!r}, not a finite number")
        if not 0.0 <= x <= 1.0:
            raise _Reject("probability_out_of_range", (
                f"probabilities[{str(cls)[:100]!r}] is {x!r}, outside [0, 1]; send "
                "probabilities (a softmax), not logits or scores"))
        out[str(cls)] = x
        total += x
    if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
        raise _Reject("probabilities_not_normalized", (
            f"the {len(out)} probabilities sum to {total:.6g}, not 1 (tolerance "
            f"{PROBABILITY_SUM_TOLERANCE:g}); send every class's probability, normalized"))
    return out


def decode_inference(raw: RawRecord,
                     mapping: FieldMapping | None = None) -> InferenceEvent | DeadLetter:
    """Decode one record; never raises. A bad record comes back as a :class:`DeadLetter`.

    >>> ok = decode_inference(RawRecord(b'{"event_id":"e1","model_id":"m","features":{"x":1},'
    ...                                  b'"prediction":0.3}', Position("t", 0, 7)))
    >>> ok.model_id, ok.features
    ('m', {'x': 1})
    >>> decode_inference(RawRecord(b'{"oops', Position("t", 0, 8))).reason_code
    'undecodable'
    """
    return _or_dead_letter(_decode, raw, mapping)


def _or_dead_letter(decode: Callable[[RawRecord, FieldMapping | None], _E], raw: RawRecord,
                    mapping: FieldMapping | None = None) -> _E | DeadLetter:
    try:
        return decode(raw, mapping)
    except _Reject as rej:
        return DeadLetter(raw, rej.code, rej.reason)
    except Exception as exc:  # a decoder bug must not take the worker down
        return DeadLetter(raw, "internal_error", f"{type(exc).__name__}: {exc}")


def _decode_label(raw: RawRecord, mapping: FieldMapping | None = None) -> LabelEvent:
    obj = _json_object(raw, mapping)
    event_id, model_id, label = _required(raw, obj, "event_id", "model_id", "label")
    if label is None or not isinstance(label, _SCALAR):
        raise _Reject("wrong_type", "label must be a number, string or bool (the true outcome)")
    if type(label) is float and not math.isfinite(label):
        raise _Reject("non_finite", f"label is {label!r}")
    return LabelEvent(event_id, model_id, label, raw.position,
                      _parse_timestamp(obj.get("timestamp")))


def decode_label(raw: RawRecord, mapping: FieldMapping | None = None) -> LabelEvent | DeadLetter:
    """Decode one labels-topic record; never raises (a bad one is a :class:`DeadLetter`).

    >>> decode_label(RawRecord(b'{"event_id":"e1","model_id":"m","label":1,"timestamp":5}',
    ...                        Position("labels", 0, 3))).event_time
    5.0
    >>> decode_label(RawRecord(b'{"event_id":"e1","model_id":"m"}', Position("l", 0, 4))).reason
    "required field 'label' is missing"
    """
    return _or_dead_letter(_decode_label, raw, mapping)
