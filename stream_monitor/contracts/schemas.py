"""Load the shipped JSON Schemas and validate records against them (tests, tooling)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import orjson

from .output_records import OutputBody, encode_record

__all__ = ["SCHEMA_NAMES", "load_schema", "schema_validator", "validate_record"]

SCHEMA_NAMES = ("inference-event", "drift-alert", "retrain-request", "dead-letter", "state-reset",
                "data-quality-alert", "drift-resolved", "label-event", "deployment-check",
                "incident")
_BY_TYPE = {"drift_alert": "drift-alert", "retrain_request": "retrain-request",
            "dead_letter": "dead-letter", "state_reset": "state-reset",
            "data_quality_alert": "data-quality-alert", "drift_resolved": "drift-resolved",
            "deployment_check": "deployment-check", "incident": "incident"}


@cache
def load_schema(name: str) -> dict[str, Any]:  # Any: a JSON Schema document, as json reads it
    text = resources.files(__package__).joinpath("schemas", f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def schema_validator(name: str) -> Any:  # Any: jsonschema_rs ships no type stubs
    """A compiled validator of one shipped schema (jsonschema-rs, built once): the publisher
    checks every event it sends with it, in microseconds where ``jsonschema`` takes
    hundreds. ``iter_errors(instance)`` yields errors with ``message`` and ``instance_path``."""
    import jsonschema_rs

    return jsonschema_rs.validator_for(load_schema(name))


def validate_record(record: OutputBody | Mapping[str, Any], name: str | None = None) -> None:
    """Raise ``jsonschema.ValidationError`` when the record breaks its schema. A typed record
    is checked as it goes out: its JSON encoding (:func:`encode_record`), read back."""
    import jsonschema

    obj: Mapping[str, Any] = (record if isinstance(record, Mapping)
                              else orjson.loads(encode_record(record)))
    schema = load_schema(name or _BY_TYPE[obj["type"]])
    jsonschema.validate(obj, schema, cls=jsonschema.Draft202012Validator,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
