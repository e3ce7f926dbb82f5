"""The JSON Schemas in contracts/schemas describe exactly what the code reads and writes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from jsonschema import Draft202012Validator

from stream_monitor.adapters.replay import replay_file
from stream_monitor.config import load_config
from stream_monitor.contracts import (
    SCHEMA_NAMES,
    DeadLetter,
    InferenceEvent,
    Position,
    RawRecord,
    decode_inference,
    load_schema,
    validate_record,
)
from stream_monitor.core.detectors import REGISTRY
from stream_monitor.synth import StreamSpec, generate

from ..helpers import DELETE, replaced

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "monitor.yaml"

# Lines that cannot be used, spliced into the synthetic stream: (line, reason_code).
MALFORMED_LINES: list[tuple[bytes, str]] = [
    (b'{"event_id": "e1", "model_id": "credit-risk", "feat', "undecodable"),
    (b"\xff\xfe\x00 not utf-8", "undecodable"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"event_id": "e2", "model_id": "credit-risk", "prediction": 0.5}', "missing_field"),
    (b'{"event_id": "", "model_id": "credit-risk", "features": {}, "prediction": 0.5}',
     "wrong_type"),
]


@pytest.fixture(scope="module")
def replay_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The synthetic stream with the malformed lines spliced in, replayed through the monitor."""
    lines = list(generate(StreamSpec()))
    for k, (bad, _) in enumerate(MALFORMED_LINES):
        lines.insert(500 + 977 * k, bad)
    path = tmp_path_factory.mktemp("replay") / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = io.BytesIO()
    total = replay_file(load_config(EXAMPLE_CONFIG), path, out, batch=700)
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return {"total": total, "records": records}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://stream-monitor.dev/schemas/{name}/v1"
    assert schema["title"] and schema["description"]
    for field, sub in schema["properties"].items():
        assert sub.get("description"), f"{name}: {field} has no description"


@pytest.mark.parametrize("name", ["drift-alert", "retrain-request", "dead-letter",
                                  "drift-resolved", "deployment-check"])
def test_output_schemas_are_closed_and_versioned(name: str) -> None:
    schema = load_schema(name)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["properties"]["schema_version"]["const"] == 1
    assert schema["properties"]["type"]["const"] == name.replace("-", "_")


def test_drift_alert_schema_lists_every_registered_detector() -> None:
    types = load_schema("drift-alert")["properties"]["detector"]["properties"]["type"]["enum"]
    assert sorted(types) == sorted(REGISTRY)


def test_replayed_outputs_validate(replay_output: dict[str, Any]) -> None:
    records, total = replay_output["records"], replay_output["total"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        validate_record(rec)
        by_type.setdefault(rec["type"], []).append(rec)
    # Every kind of output was produced (otherwise this test would check nothing).
    assert len(by_type.get("drift_alert", [])) == total.alerts >= 2
    assert len(by_type.get("retrain_request", [])) == total.retrain_requests >= 1
    dead = by_type.get("dead_letter", [])
    assert [d["reason_code"] for d in dead] == [code for _, code in MALFORMED_LINES]
    assert {d["original"]["value"]["encoding"] for d in dead} == {"utf-8", "base64"}
    # A retrain request names alerts that were published.
    alert_ids = {a["alert_id"] for a in by_type["drift_alert"]}
    for req in by_type["retrain_request"]:
        assert set(req["alert_ids"]) <= alert_ids


def test_dead_letter_with_key_headers_and_tombstone_validates() -> None:
    pos = Position("inference-events", 3, 41, timestamp_ms=1_767_225_600_123)
    cases = [
        RawRecord(b"\x00\xff", pos, key=b"credit-risk",
                  headers=(("trace", b"abc"), ("bin", b"\xff\x00"))),
        RawRecord(None, pos, key=b"\xfe"),  # tombstone, binary key
    ]
    for raw in cases:
        dl = decode_inference(raw)
        assert isinstance(dl, DeadLetter)
        validate_record(dl.to_record(1_767_225_600.5), "dead-letter")


def test_schemas_reject_broken_output_records(replay_output: dict[str, Any]) -> None:
    """The output schemas are not vacuous: small breakages of real records are rejected."""
    first: dict[str, dict[str, Any]] = {}
    for rec in replay_output["records"]:
        first.setdefault(rec["type"], rec)

    cases = [
        ("drift_alert", ("unexpected",), 1),
        ("drift_alert", ("alert_id",), DELETE),
        ("drift_alert", ("alert_id",), "not-hex"),
        ("drift_alert", ("schema_version",), 2),
        ("drift_alert", ("signal",), "amount"),
        ("drift_alert", ("detected_at", "offset"), -1),
        ("drift_alert", ("detected_at", "event_time"), "2026-01-01 00:00:00"),
        ("drift_alert", ("evidence", "reference", "mean"), None),
        ("drift_alert", ("evidence", "standardization", "std"), 0),
        ("drift_alert", ("detector", "type"), "cumsum"),
        ("drift_alert", ("evidence", "change", "kind"), "level"),
        ("drift_alert", ("evidence", "change", "start", "signal_index"), "12"),
        ("drift_alert", ("evidence", "change", "start", "extra"), 1),
        ("drift_alert", ("evidence", "before", "count"), -1),
        ("retrain_request", ("alert_ids",), []),
        ("retrain_request", ("rule", "name"), "other"),
        ("retrain_request", ("triggered_by", "extra"), 1),
        ("dead_letter", ("reason_code",), "bad"),
        ("dead_letter", ("original", "value"), {"encoding": "base64", "data": "%%%"}),
        ("dead_letter", ("source", "partition"), "0"),
    ]
    for kind, path, value in cases:
        bad = replaced(first[kind], path, value)
        with pytest.raises(jsonschema.ValidationError):
            validate_record(bad)



def test_synthetic_events_validate_and_decode() -> None:
    validator = Draft202012Validator(load_schema("inference-event"))
    spec = StreamSpec(models=("credit-risk", "churn"), events_per_model=500)
    n = 0
    for i, line in enumerate(generate(spec)):
        validator.validate(orjson.loads(line))
        assert isinstance(decode_inference(RawRecord(line, Position("t", 0, i))), InferenceEvent)
        n += 1
    assert n == 1000


def _event(**changes: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event_id": "e-1", "model_id": "credit-risk", "model_version": "3",
                          "timestamp": 1_767_225_600.25, "features": {"amount": 12.5},
                          "prediction": 0.3}
    for k, v in changes.items():
        if v is DELETE:
            ev.pop(k)
        else:
            ev[k] = v
    return ev


# Hand-written events: (event, reason_code) where reason_code None means valid.
CASES: list[tuple[Any, str | None]] = [
    # accepted by both
    (_event(), None),
    (_event(model_version=DELETE, timestamp=DELETE), None),
    (_event(model_version=None, timestamp=None), None),
    (_event(model_version=7), None),
    (_event(timestamp=1_767_225_600), None),
    (_event(timestamp="2026-01-01T00:00:00Z"), None),
    (_event(timestamp="2026-01-01T01:00:00.250+01:00"), None),
    (_event(timestamp="2026-01-01T00:00:00"), None),  # no offset: read as UTC
    (_event(features={}), None),
    (_event(features={"a": 1, "b": -2.5e-3, "c": "gold", "d": True, "e": None}), None),
    (_event(prediction="approve"), None),
    (_event(prediction=False), None),
    (_event(prediction=3), None),
    (_event(label={"any": ["json", 1]}), None),
    (_event(extra_field="allowed", trace={"id": 1}), None),
    # rejected by both
    ([_event()], "not_an_object"),
    ("event", "not_an_object"),
    (None, "not_an_object"),
    (_event(event_id=DELETE), "missing_field"),
    (_event(model_id=DELETE), "missing_field"),
    (_event(features=DELETE), "missing_field"),
    (_event(prediction=DELETE), "missing_field"),
    (_event(event_id=""), "wrong_type"),
    (_event(event_id=17), "wrong_type"),
    (_event(model_id=""), "wrong_type"),
    (_event(model_id=None), "wrong_type"),
    (_event(features=[1.0, 2.0]), "wrong_type"),
    (_event(features=None), "wrong_type"),
    (_event(features={"amount": [1.0]}), "wrong_type"),
    (_event(features={"amount": {"value": 1.0}}), "wrong_type"),
    (_event(prediction=None), "wrong_type"),
    (_event(prediction=[0.3]), "wrong_type"),
    (_event(prediction={"p": 0.3}), "wrong_type"),
    (_event(model_version=1.5), "wrong_type"),
    (_event(model_version=True), "wrong_type"),
    (_event(model_version={"v": 1}), "wrong_type"),
    (_event(timestamp=True), "wrong_type"),
    (_event(timestamp="yesterday"), "wrong_type"),
    (_event(timestamp="01/02/2026 10:00"), "wrong_type"),
    (_event(timestamp=[1_767_225_600]), "wrong_type"),
    (_event(timestamp=1e20), "wrong_type"),  # beyond year 9999
    (_event(timestamp=-1e12), "wrong_type"),  # before year 1
]


@pytest.mark.parametrize(("event", "reason_code"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_schema_and_decoder_agree(event: Any, reason_code: str | None) -> None:
    schema_ok = Draft202012Validator(load_schema("inference-event")).is_valid(event)
    decoded = decode_inference(RawRecord(orjson.dumps(event), Position("t", 0, 0)))
    if reason_code is None:
        assert schema_ok, "the schema rejects an event the decoder accepts"
        assert isinstance(decoded, InferenceEvent), decoded
    else:
        assert not schema_ok, "the schema accepts an event the decoder rejects"
        assert isinstance(decoded, DeadLetter)
        assert decoded.reason_code == reason_code, decoded.reason


def test_out_of_range_timestamp_is_dead_lettered_not_fatal() -> None:
    """An event the decoder accepts must not crash the core when a drift fires on it."""
    from stream_monitor.config import parse_config
    from stream_monitor.core import Monitor, MonitorState

    cfg = parse_config({"windows": {"reference_size": 50, "recent_size": 50},
                        "models": [{"match": "m", "signals": [
                            {"match": "feature:*", "detectors": ["page_hinkley"]}]}]})
    decoded = [decode_inference(RawRecord(orjson.dumps(
        {"event_id": f"e{i}", "model_id": "m", "features": {"x": float(i % 5 + 20 * (i >= 300))},
         "prediction": 0.0, "timestamp": 1e20 if i >= 290 else 1_767_225_600.0 + i}),
        Position("t", 0, i))) for i in range(400)]
    events = [e for e in decoded if isinstance(e, InferenceEvent)]
    assert len(events) == 290
    out = Monitor(cfg).process(events, MonitorState())
    assert out.alerts == []  # the drift is in the rejected events
