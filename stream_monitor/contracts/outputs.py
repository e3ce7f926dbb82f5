"""Output records: what the worker publishes (topic, Kafka key, headers, JSON body), and how
one is kept in a state unit's outbox until Kafka confirmed it.

A batch's typed records are encoded here, once per batch (:func:`encode_batch`): each record
type's headers, its JSON body, and its outbox entry."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from .output_records import (
    DeadLetterRecord,
    DeploymentCheck,
    DriftAlert,
    DriftResolved,
    IncidentRecord,
    OutputBody,
    QualityAlert,
    RetrainRequest,
    decode_body,
    encode_record,
)

__all__ = ["SCHEMA_HEADERS", "EncodedBatch", "Outgoing", "OutputRecord", "decode_output",
           "encode_batch", "encode_output", "output_record"]

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


@dataclass(slots=True, frozen=True)
class Outgoing:
    """A typed record the core decided to publish, and where it goes: its topic, its Kafka key,
    and the state unit whose outbox keeps it until Kafka confirmed it (``unit`` None: kept in
    no outbox, as a dead letter, which its redelivered input makes again with the same id),
    saved at that unit's ``revision``."""

    topic: str
    key: bytes
    record: OutputBody
    unit: str | None = None
    revision: int = 0


@dataclass(slots=True)
class EncodedBatch:
    """A batch's records, encoded: ``records`` in publish order; ``outbox``, per state unit,
    the outbox fields to clear once Kafka confirmed them (those recovered from an earlier run,
    then this batch's); ``saved``, per state unit, this batch's new outbox entries (saved with
    its state); ``recovered``, how many records came from an earlier run's outbox."""

    records: list[OutputRecord] = field(default_factory=list)
    outbox: dict[str, list[str]] = field(default_factory=dict)
    saved: dict[str, dict[str, bytes]] = field(default_factory=dict)
    recovered: int = 0


def encode_batch(recovered: Mapping[str, Mapping[str, bytes]],
                 outgoing: Iterable[Outgoing]) -> EncodedBatch:
    """Every record of a batch, in publish order: first those an earlier run saved in an
    outbox but never saw confirmed (``recovered``: unit -> outbox field -> entry; in field
    order), then ``outgoing``."""
    out = EncodedBatch()
    for unit, box in recovered.items():
        for oid in sorted(box):
            out.records.append(decode_output(box[oid]))
            out.outbox.setdefault(unit, []).append(oid)
            out.recovered += 1
    for o in outgoing:
        rec = output_record(o.topic, o.key, o.record, _headers(o.record))
        out.records.append(rec)
        if o.unit is None:
            continue
        box = out.saved.setdefault(o.unit, {})
        # Outbox fields sort in publish order: the revision being saved, then the index.
        name = f"{o.revision:012d}.{len(box):05d}"
        box[name] = encode_output(rec)
        out.outbox.setdefault(o.unit, []).append(name)
    return out


def _headers(rec: OutputBody) -> tuple[tuple[str, bytes], ...]:
    """The headers of a record type beside ``content-type`` and ``schema``: its id and what a
    consumer routes on without parsing the body."""
    if isinstance(rec, DriftAlert):
        return (("alert-id", rec.alert_id.encode()), ("signal", rec.signal.encode()))
    if isinstance(rec, DriftResolved):
        return (("alert-id", rec.alert_id.encode()), ("signal", rec.signal.encode()),
                ("fingerprint", rec.fingerprint.encode()))
    if isinstance(rec, RetrainRequest):
        return (("request-id", rec.request_id.encode()),)
    if isinstance(rec, QualityAlert):
        return (("alert-id", rec.alert_id.encode()), ("signal", rec.signal.encode()),
                ("feature", rec.feature.encode()))
    if isinstance(rec, DeploymentCheck):
        return (("check-id", rec.check_id.encode()), ("verdict", rec.verdict.encode()))
    if isinstance(rec, IncidentRecord):
        return (("incident-id", rec.incident_id.encode()), ("status", rec.status.encode()))
    if isinstance(rec, DeadLetterRecord):
        return (("reason-code", rec.reason_code.encode()),)
    return ()
