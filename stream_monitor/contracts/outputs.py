"""Output records: what the worker publishes (topic, Kafka key, headers, JSON body), and how
one is kept in a state unit's outbox until Kafka confirmed it."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from .output_records import OutputBody, decode_body, encode_record

__all__ = ["SCHEMA_HEADERS", "OutputRecord", "decode_output", "encode_output", "output_record"]

# The `schema` header of each record type (consumers route on it without parsing the body).
SCHEMA_HEADERS = {"drift_alert": b"drift-alert/v1", "retrain_request": b"retrain-request/v1",
                  "dead_letter": b"dead-letter/v1", "state_reset": b"state-reset/v1",
                  "data_quality_alert": b"data-quality-alert/v1",
                  "drift_resolved": b"drift-resolved/v1",
                  "deployment_check": b"deployment-check/v1",
                  "incident": b"incident/v1"}


@dataclass(slots=True, frozen=True)
class OutputRecord:
    """A record to publish: topic, Kafka key and headers, and the JSON body."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    record: OutputBody


def output_record(topic: str, key: bytes, rec: OutputBody,
                  extra: tuple[tuple[str, bytes], ...]) -> OutputRecord:
    """A record with the standard headers (``content-type``, ``schema``) and ``extra`` ones."""
    headers = (("content-type", b"application/json"), ("schema", SCHEMA_HEADERS[rec.type]),
               *extra)
    return OutputRecord(topic, key, encode_record(rec), headers, rec)


def encode_output(rec: OutputRecord) -> bytes:
    """An output record as stored in the outbox (JSON; bytes as base64)."""
    b64 = base64.b64encode
    return orjson.dumps({"topic": rec.topic, "key": b64(rec.key).decode(),
                         "value": b64(rec.value).decode(),
                         "headers": [[k, b64(v).decode()] for k, v in rec.headers]})


def decode_output(raw: bytes) -> OutputRecord:
    """The output record an outbox entry holds."""
    d = orjson.loads(raw)
    b64d = base64.b64decode
    value = b64d(d["value"])
    return OutputRecord(d["topic"], b64d(d["key"]), value,
                        tuple((k, b64d(v)) for k, v in d["headers"]),
                        decode_body(orjson.loads(value)))
