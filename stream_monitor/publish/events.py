"""Build inference and label events, check them against the contract, and give each its Kafka
key and headers.

An event is checked twice, by what already defines the contract: the shipped JSON Schema
(``contracts/schemas/``) and the worker's own decoder (``contracts.records``) run on the JSON
bytes the event becomes. Whatever would come out of the worker as a dead letter is refused
here, before it is sent, with the same reason code.

>>> ev = inference_event("e-1", "credit-risk", {"amount": 151.2, "segment": "smb"}, 0.42,
...                      model_version="3", timestamp=1767225901.25)
>>> ev["model_id"], sorted(ev)
('credit-risk', ['event_id', 'features', 'model_id', 'model_version', 'prediction', 'timestamp'])
>>> kafka_key(ev), headers("inference")
(b'credit-risk', [('content-type', b'application/json'), ('schema', b'inference-event/v1')])
>>> try:
...     inference_event("e-2", "credit-risk", {"amount": [1, 2]}, 0.4)
... except InvalidEventError as exc:
...     print(exc.reason_code, exc.field)
schema features.amount
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from ..contracts.records import DeadLetter, Position, RawRecord, decode_inference, decode_label
from ..contracts.schemas import schema_validator
from .errors import InvalidEventError

__all__ = ["CONTENT_TYPE", "SCHEMAS", "EventKind", "ValueSerializer", "headers",
           "inference_event", "json_serializer", "kafka_key", "label_event", "validate_event"]

EventKind = Literal["inference", "label"]

# The schema of each event kind; its `schema` header is `<name>/v1`, as on the outputs.
SCHEMAS: dict[str, str] = {"inference": "inference-event", "label": "label-event"}
CONTENT_TYPE = b"application/json"

ValueSerializer = Callable[[str, dict[str, Any]], bytes | Awaitable[bytes]]
"""How an event becomes the record's value: ``(topic, event) -> bytes``, or a coroutine
function giving bytes (a Schema Registry serializer looks the schema id up). A serializer may
carry a ``content_type`` attribute (str or bytes) for the ``content-type`` header."""

_DECODERS = {"inference": decode_inference, "label": decode_label}
_WHERE = Position("publish", 0, 0)


def json_serializer(topic: str, event: dict[str, Any]) -> bytes:
    """The default serializer: the event as one JSON object (orjson, UTF-8), as the worker
    reads it by default.

    >>> json_serializer("inference-events", {"event_id": "e", "model_id": "m"})
    b'{"event_id":"e","model_id":"m"}'
    """
    return orjson.dumps(event)


def content_type(serializer: ValueSerializer) -> bytes:
    """The ``content-type`` header for a serializer's records: its ``content_type`` attribute,
    else ``application/json``."""
    ct = getattr(serializer, "content_type", None)
    if ct is None:
        return CONTENT_TYPE
    return ct.encode() if isinstance(ct, str) else bytes(ct)


def headers(kind: EventKind, serializer: ValueSerializer = json_serializer
            ) -> list[tuple[str, bytes]]:
    """The headers of an event record: ``content-type`` and ``schema`` (``<schema>/v1``), as
    every record stream-monitor writes carries (docs/asyncapi.yaml)."""
    return [("content-type", content_type(serializer)),
            ("schema", f"{SCHEMAS[kind]}/v1".encode())]


def kafka_key(event: Mapping[str, Any]) -> bytes:
    """The Kafka key: the ``model_id``, so a model's predictions and labels keep their order
    on one partition."""
    return str(event["model_id"]).encode()


def _timestamp(ts: float | int | str | datetime | None) -> float | str | None:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:  # as the worker reads an ISO time without an offset
            ts = ts.replace(tzinfo=UTC)
        return ts.timestamp()
    return ts


def inference_event(event_id: str, model_id: str, features: Mapping[str, Any],
                    prediction: float | int | str | bool, *, model_version: str | None = None,
                    timestamp: float | int | str | datetime | None = None,
                    label: Any = None, **extra: Any) -> dict[str, Any]:
    """A checked inference event (``inference-event`` schema): raises
    :class:`InvalidEventError` when the worker would dead-letter it. ``timestamp``: epoch
    seconds, an ISO 8601 string or a ``datetime`` (naive is UTC); ``None`` leaves it out (the
    worker then uses the Kafka record's time). ``extra`` fields are carried and ignored by the
    worker."""
    event: dict[str, Any] = {"event_id": event_id, "model_id": model_id,
                             "features": dict(features), "prediction": prediction}
    if model_version is not None:
        event["model_version"] = model_version
    if timestamp is not None:
        event["timestamp"] = _timestamp(timestamp)
    if label is not None:
        event["label"] = label
    event.update(extra)
    validate_event("inference", event)
    return event


def label_event(event_id: str, model_id: str, label: float | int | str | bool, *,
                timestamp: float | int | str | datetime | None = None,
                **extra: Any) -> dict[str, Any]:
    """A checked label event (``label-event`` schema): the true outcome of the prediction
    ``event_id`` of ``model_id``. ``timestamp``: when the outcome became known."""
    event: dict[str, Any] = {"event_id": event_id, "model_id": model_id, "label": label}
    if timestamp is not None:
        event["timestamp"] = _timestamp(timestamp)
    event.update(extra)
    validate_event("label", event)
    return event


def validate_event(kind: EventKind, event: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidEventError` unless the worker would accept ``event`` as a ``kind``
    event: the JSON Schema, then the worker's decoder on the event's JSON bytes.

    >>> def why(kind: EventKind, event: dict[str, Any]) -> str:
    ...     try:
    ...         validate_event(kind, event)
    ...     except InvalidEventError as exc:
    ...         return f"{exc.reason_code} at {exc.field}: {exc.reason}"
    ...     return "valid"
    >>> why("label", {"event_id": "e", "model_id": "m", "label": None}).split(":")[0]
    'schema at label'
    >>> why("inference", {"event_id": "e", "model_id": "m\\x1fx", "features": {},
    ...                   "prediction": 1})    # the decoder's rule, beyond the schema
    'wrong_type at None: model_id must be a non-empty string (without U+001F)'
    """
    if kind not in SCHEMAS:
        raise ValueError(f"kind must be one of {sorted(SCHEMAS)}, not {kind!r}")
    event_id = event.get("event_id") if isinstance(event, Mapping) else None
    if not isinstance(event, Mapping):
        raise InvalidEventError(kind, "not_an_object",
                                f"an event is a mapping, not {type(event).__name__}")
    _finite(kind, event)
    error = next(iter(schema_validator(SCHEMAS[kind]).iter_errors(dict(event))), None)
    if error is not None:
        field = ".".join(str(p) for p in error.instance_path) or None
        raise InvalidEventError(kind, "schema", error.message, field, event_id)
    try:
        value = orjson.dumps(event)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise InvalidEventError(kind, "undecodable", f"not JSON-serializable: {exc}",
                                None, event_id) from None
    decoded = _DECODERS[kind](RawRecord(value, _WHERE, kafka_key(event)))
    if isinstance(decoded, DeadLetter):
        raise InvalidEventError(kind, decoded.reason_code, decoded.reason, None, event_id)


def _finite(kind: str, event: Mapping[str, Any]) -> None:
    """JSON has no NaN or infinity: orjson would write them as null, turning a value into a
    missing one without a word. Refuse them instead."""
    checks: list[tuple[str, Any]] = [("prediction", event.get("prediction")),
                                     ("label", event.get("label")),
                                     ("timestamp", event.get("timestamp"))]
    features = event.get("features")
    if isinstance(features, Mapping):
        checks += [(f"features.{k}", v) for k, v in features.items()]
    for field, v in checks:
        if type(v) is float and not math.isfinite(v):
            raise InvalidEventError(
                kind, "non_finite", f"{v!r} cannot be sent as JSON; send null for a missing "
                "feature value", field, event.get("event_id"))
