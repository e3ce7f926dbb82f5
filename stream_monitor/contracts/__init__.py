"""Contracts: the records stream-monitor reads and writes, and their JSON Schemas."""

from .records import (
    SCHEMA_VERSION,
    DeadLetter,
    InferenceEvent,
    Position,
    RawRecord,
    decode_inference,
    encode_record,
    iso_time,
    record_id,
)
from .schemas import SCHEMA_NAMES, load_schema, validate_record

__all__ = [
    "SCHEMA_NAMES",
    "SCHEMA_VERSION",
    "DeadLetter",
    "InferenceEvent",
    "Position",
    "RawRecord",
    "decode_inference",
    "encode_record",
    "iso_time",
    "load_schema",
    "record_id",
    "validate_record",
]
