"""Serialize inference and label events for a Schema Registry topic: Avro, Protobuf or JSON
Schema in the Confluent wire format, with the schemas stream-monitor ships
(``contracts/schemas/``), registered under the subject of the topic (``<topic>-value``) on first
use. What this writes, the worker reads with ``input.*.format`` set to the same format.

In an async service::

    serialize = await registry_serializer("avro", url="http://registry:8080/apis/ccompat/v7")
    value = await serialize("inference-events", {"event_id": "e1", "model_id": "fraud",
                                                 "features": {"amount": 12.5},
                                                 "prediction": 0.1})
    await producer.send("inference-events", value, key=b"fraud")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["FORMATS", "RegistrySerializer", "registry_serializer"]

FORMATS = ("avro", "protobuf", "json_schema")
_KINDS = ("inference", "label")
_CONTENT_TYPES = {"avro": "application/vnd.apache.avro+binary",
                  "protobuf": "application/x-protobuf", "json_schema": "application/json"}
_TLS_KEYS = {"ca_location": "ssl.ca.location", "certificate_location": "ssl.certificate.location",
             "key_location": "ssl.key.location"}


@cache
def _validator(kind: str) -> Any:
    """The JSON Schema validator of an event kind, built once (building one per event costs
    more than serializing it)."""
    import jsonschema

    from ..contracts.schemas import load_schema

    schema = load_schema("inference-event" if kind == "inference" else "label-event")
    cls = jsonschema.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _schema_text(name: str) -> str:
    return resources.files("stream_monitor.contracts").joinpath("schemas", name).read_text()


def event_kind(event: Mapping[str, Any]) -> str:
    """``inference`` for a prediction (it has ``features`` or ``prediction``), else ``label``.

    >>> event_kind({"event_id": "e", "model_id": "m", "label": 1})
    'label'
    """
    return "inference" if "features" in event or "prediction" in event else "label"


class RegistrySerializer:
    """Serializes one event dict (the JSON contract's shape) for a topic; see the module
    docstring. Built by :func:`registry_serializer`."""

    def __init__(self, fmt: str, client: Any, serializers: dict[str, Any]) -> None:
        self.format = fmt
        # The records' content-type header (the publisher SDK reads this attribute).
        self.content_type = _CONTENT_TYPES[fmt]
        self.client = client
        self._serializers = serializers

    async def __call__(self, topic: str, event: dict[str, Any]) -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        kind = event_kind(event)
        # The JSON contract first: a bad event fails here, naming the field, not in the worker.
        _validator(kind).validate(event)
        ctx = SerializationContext(topic, MessageField.VALUE)
        ser = self._serializers[kind]
        if self.format == "protobuf":
            value = await ser(_to_message(kind, event), ctx)
        elif self.format == "avro":
            value = await ser(_to_avro(kind, event), ctx)
        else:
            value = await ser(event, ctx)
        assert isinstance(value, bytes)
        return value

    async def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            res = close()
            if hasattr(res, "__await__"):
                await res


async def registry_serializer(format: str, *, url: str,
                              auth: tuple[str, str] | None = None,
                              tls: Mapping[str, str] | None = None,
                              subject_name_strategy: Callable[..., Any] | None = None,
                              ) -> RegistrySerializer:
    """A serializer of inference and label events in ``format`` (``avro``, ``protobuf`` or
    ``json_schema``) through the registry at ``url`` (its Confluent-compatible API; Apicurio:
    ``http://host:port/apis/ccompat/v7``).

    ``auth``: (user, password) for basic auth. ``tls``: ``ca_location``,
    ``certificate_location``, ``key_location`` (PEM files). ``subject_name_strategy``:
    confluent-kafka's strategy callable; default the topic's (``<topic>-value``)."""
    if format not in FORMATS:
        raise ValueError(f"format {format!r}: use one of {', '.join(FORMATS)}")
    from confluent_kafka.schema_registry import (
        AsyncSchemaRegistryClient,
        topic_subject_name_strategy,
    )

    conf: dict[str, Any] = {"url": url}
    if auth is not None:
        conf["basic.auth.user.info"] = f"{auth[0]}:{auth[1]}"
    for k, v in (tls or {}).items():
        if k not in _TLS_KEYS:
            raise ValueError(f"tls key {k!r}: use {', '.join(_TLS_KEYS)}")
        conf[_TLS_KEYS[k]] = str(v)
    client = AsyncSchemaRegistryClient(conf)
    ser_conf = {"auto.register.schemas": True,
                "subject.name.strategy": subject_name_strategy or topic_subject_name_strategy}
    serializers: dict[str, Any] = {}
    for kind in _KINDS:
        serializers[kind] = await _serializer(format, kind, client, ser_conf)
    return RegistrySerializer(format, client, serializers)


async def _serializer(fmt: str, kind: str, client: Any, conf: dict[str, Any]) -> Any:
    name = "inference-event" if kind == "inference" else "label-event"
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AsyncAvroSerializer

        return await AsyncAvroSerializer(client, _schema_text(f"{name}.avsc"), conf=conf)
    if fmt == "json_schema":
        from confluent_kafka.schema_registry.json_schema import AsyncJSONSerializer

        return await AsyncJSONSerializer(_schema_text(f"{name}.schema.json"), client, conf=conf)
    from confluent_kafka.schema_registry.protobuf import AsyncProtobufSerializer

    from ..contracts.proto import message_class

    cls = message_class("InferenceEvent" if kind == "inference" else "LabelEvent")
    return await AsyncProtobufSerializer(cls, client, conf=conf)


# -- the event dict in each format's terms ---------------------------------------------------

def _to_avro(kind: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of the Avro schema (absent optional fields as null; others dropped: the
    JSON contract allows extra fields, the Avro record has none)."""
    if kind == "inference":
        return {"event_id": event["event_id"], "model_id": event["model_id"],
                "model_version": event.get("model_version"),
                "timestamp": event.get("timestamp"), "features": dict(event["features"]),
                "prediction": event["prediction"], "label": _scalar_or_none(event.get("label"))}
    return {"event_id": event["event_id"], "model_id": event["model_id"],
            "label": event["label"], "timestamp": event.get("timestamp")}


def _scalar_or_none(v: Any) -> Any:
    return v if v is None or isinstance(v, bool | int | float | str) else None


def _set_value(msg: Any, v: Any) -> None:
    """A JSON scalar into our ``Value`` message (None leaves it unset: null)."""
    if v is None:
        return
    if isinstance(v, bool):
        msg.flag = v
    elif isinstance(v, int):
        msg.integer = v
    elif isinstance(v, float):
        msg.number = v
    else:
        msg.text = str(v)


def _set_time(msg: Any, v: Any) -> None:
    if v is None:
        return
    if isinstance(v, str):
        msg.iso8601 = v
    else:
        msg.epoch_seconds = float(v)


def _to_message(kind: str, event: Mapping[str, Any]) -> Any:
    from ..contracts.proto import message_class

    if kind == "inference":
        msg = message_class("InferenceEvent")(event_id=event["event_id"],
                                              model_id=event["model_id"])
        version = event.get("model_version")
        if version is not None:
            msg.model_version.text = str(version)
        _set_time(msg.timestamp, event.get("timestamp"))
        if event.get("timestamp") is None:
            msg.ClearField("timestamp")
        for name, v in event["features"].items():
            _set_value(msg.features[name], v)
        _set_value(msg.prediction, event["prediction"])
        label = _scalar_or_none(event.get("label"))
        if label is not None:
            _set_value(msg.label, label)
        return msg
    msg = message_class("LabelEvent")(event_id=event["event_id"], model_id=event["model_id"])
    _set_value(msg.label, event["label"])
    if event.get("timestamp") is not None:
        _set_time(msg.timestamp, event["timestamp"])
    return msg
