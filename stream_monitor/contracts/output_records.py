"""The typed records stream-monitor publishes: one frozen dataclass per record type.

The core builds them (core/alerts.py, core/lifecycle.py, core/retrain.py, core/deploy.py, the
decoder's :class:`~stream_monitor.contracts.records.DeadLetter`), the pipeline and the worker
read their attributes, and :func:`encode_record` is the one place that turns them into bytes.
orjson serialises a dataclass natively: its fields, in the order they are declared here, so
the declaration order *is* the key order on the wire (it is the order the records had when they
were dicts, which the outputs of a replay compare byte for byte). A field is always written,
``None`` as ``null``; parts whose keys vary (evidence, rules, a dead letter's original bytes)
are JSON objects (:data:`JsonObject`).

The shipped JSON Schemas (``contracts/schemas``) and these types are checked against each other
field by field in tests/unit/test_output_records.py: a field added to one and not the other
fails it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import Literal, TypeAlias

import orjson

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetterRecord",
    "DeploymentCheck",
    "DetectorRef",
    "DriftAlert",
    "DriftResolved",
    "EventRef",
    "FiredDetector",
    "IncidentRecord",
    "Json",
    "JsonObject",
    "OutputBody",
    "QualityAlert",
    "RequestTrigger",
    "RetrainRequest",
    "SourcePosition",
    "StateReset",
    "TriggerEvent",
    "WorkerRef",
    "decode_body",
    "encode_record",
]

SCHEMA_VERSION = 1

# A JSON value as the records hold it (orjson writes tuples as arrays too).
Json: TypeAlias = "bool | int | float | str | Sequence[Json] | Mapping[str, Json] | None"
JsonObject: TypeAlias = "Mapping[str, Json]"


@dataclass(frozen=True)
class EventRef:
    """The event a record is about: where a detector fired (``detected_at``), where a signal
    came back (``resolved_at``); ``signal_index`` is the signal's value count there."""

    event_id: str
    topic: str
    partition: int
    offset: int
    event_time: str
    signal_index: int


@dataclass(frozen=True)
class RequestTrigger:
    """What triggered a retrain request (``triggered_by``): the ``detected_at`` of the alert
    that decided it, or the event (``signal_index`` None) when the policy's clock did."""

    event_id: str
    topic: str
    partition: int
    offset: int
    event_time: str
    signal_index: int | None

    @classmethod
    def of(cls, at: EventRef) -> RequestTrigger:
        return cls(at.event_id, at.topic, at.partition, at.offset, at.event_time,
                   at.signal_index)


@dataclass(frozen=True)
class TriggerEvent:
    """The event that ended a post-deploy watch (a deployment check's ``trigger``)."""

    event_id: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class SourcePosition:
    """Where a dead-lettered record was read."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


@dataclass(frozen=True)
class DetectorRef:
    """A detector by name and type (a resolution's)."""

    name: str
    type: str


@dataclass(frozen=True)
class FiredDetector:
    """The detector that fired, with the parameters it ran with (configured and calibrated)."""

    name: str
    type: str
    params: JsonObject


@dataclass(frozen=True)
class WorkerRef:
    """The worker that wrote an operations record."""

    app_id: str
    host: str
    pid: int


def _number(v: Json) -> float:
    if isinstance(v, int | float):  # (bool is an int: never in these places)
        return float(v)
    raise TypeError(f"expected a number, got {v!r}")


@dataclass(frozen=True, kw_only=True)
class DriftAlert:
    """A detector fired on a signal's values (schema ``drift-alert``)."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["drift_alert"] = "drift_alert"
    alert_id: str
    model_id: str
    model_version: str | None
    signal: str
    detector: FiredDetector
    detected_at: EventRef
    evidence: JsonObject
    summary: str
    sample_rate: float
    # The incident the alert belongs to (core/incidents.py); None when the model groups none.
    incident_id: str | None = None

    @property
    def standardization(self) -> tuple[float, float]:
        """The reference mean and std the drift was measured against."""
        std = self.evidence["standardization"]
        assert isinstance(std, Mapping)
        return _number(std["mean"]), _number(std["std"])

    @property
    def shift(self) -> float | None:
        """``evidence.mean_shift_in_reference_std``."""
        v = self.evidence.get("mean_shift_in_reference_std")
        return None if v is None else _number(v)

    @property
    def calibration(self) -> JsonObject | None:
        """The calibration the detector ran with (None: configured parameters)."""
        cal = self.evidence.get("calibration")
        return cal if isinstance(cal, Mapping) else None

    @property
    def performance(self) -> JsonObject | None:
        """``evidence.performance``: the model's windowed metrics when the alert is on a
        performance signal (docs/metrics.md); None otherwise."""
        perf = self.evidence.get("performance")
        return perf if isinstance(perf, Mapping) else None


@dataclass(frozen=True, kw_only=True)
class QualityAlert:
    """A detector fired on a fault rate (schema ``data-quality-alert``)."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["data_quality_alert"] = "data_quality_alert"
    alert_id: str
    model_id: str
    model_version: str | None
    feature: str
    indicator: str
    signal: str
    detector: FiredDetector
    detected_at: EventRef
    rate_before: float
    rate_after: float
    sample_rate: float
    evidence: JsonObject
    summary: str


@dataclass(frozen=True, kw_only=True)
class DriftResolved:
    """An incident's signal came back to its reference (schema ``drift-resolved``)."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["drift_resolved"] = "drift_resolved"
    resolution_id: str
    fingerprint: str
    model_id: str
    model_version: str | None
    signal: str
    detector: DetectorRef
    alert_id: str
    fired_at: str
    resolved_at: EventRef
    folded_alerts: int
    evidence: JsonObject
    rule: JsonObject
    summary: str
    sample_rate: float
    incident_id: str | None = None  # the incident of the alert it resolves (core/incidents.py)


@dataclass(frozen=True, kw_only=True)
class IncidentRecord:
    """Alerts of one model (and segment) that started within a window, as one incident (schema
    ``incident``; core/incidents.py): opened by its first alert, updated as signals join or
    come back, resolved when all of them came back."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["incident"] = "incident"
    record_id: str
    incident_id: str
    status: Literal["opened", "updated", "resolved"]
    model_id: str
    model_version: str | None
    segment: str | None
    opened_at: str
    resolved_at: str | None
    window_seconds: float
    at: EventRef
    signals: list[JsonObject]
    moved: JsonObject
    alert_ids: list[str]
    summary: str
    sample_rate: float


@dataclass(frozen=True, kw_only=True)
class RetrainRequest:
    """A retrain policy decided that a model needs retraining (schema ``retrain-request``)."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["retrain_request"] = "retrain_request"
    request_id: str
    model_id: str
    model_version: str | None
    rule: JsonObject
    reason: str
    signals: list[str]
    alert_ids: list[str]
    evidence: list[JsonObject]
    budget: JsonObject
    triggered_by: RequestTrigger
    requested_at: str
    sample_rate: float


@dataclass(frozen=True, kw_only=True)
class DeploymentCheck:
    """A new model version compared with the previous one (schema ``deployment-check``)."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["deployment_check"] = "deployment_check"
    check_id: str
    model_id: str
    model_version: str | None
    sample_rate: float
    previous_version: str | None
    verdict: str
    reasons: list[str]
    started_at: str
    completed_at: str
    reason: str
    trigger: TriggerEvent
    signals: list[JsonObject]
    performance: JsonObject | None
    rule: JsonObject
    summary: str


@dataclass(frozen=True, kw_only=True)
class DeadLetterRecord:
    """An input record that could not be used, with why (schema ``dead-letter``)."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["dead_letter"] = "dead_letter"
    dead_letter_id: str
    reason_code: str
    reason: str
    source: SourcePosition
    original: JsonObject
    dead_lettered_at: str


@dataclass(frozen=True, kw_only=True)
class StateReset:
    """The worker found its state gone (schema ``state-reset``; operations topic)."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["state_reset"] = "state_reset"
    reset_id: str
    detected_at: str
    reason: str
    models: list[str]
    worker: WorkerRef
    action: str


OutputBody: TypeAlias = (DriftAlert | QualityAlert | DriftResolved | RetrainRequest
                         | DeploymentCheck | DeadLetterRecord | StateReset | IncidentRecord)

RECORD_TYPES: dict[str, type[OutputBody]] = {
    "drift_alert": DriftAlert, "data_quality_alert": QualityAlert,
    "drift_resolved": DriftResolved, "retrain_request": RetrainRequest,
    "deployment_check": DeploymentCheck, "dead_letter": DeadLetterRecord,
    "state_reset": StateReset, "incident": IncidentRecord,
}


def encode_record(record: OutputBody) -> bytes:
    """The JSON body of an output record: the one place records become bytes."""
    return orjson.dumps(record)


_PARTS: dict[str, type] = {c.__name__: c for c in (EventRef, RequestTrigger, TriggerEvent,
                                                    SourcePosition, DetectorRef, FiredDetector,
                                                    WorkerRef)}


@cache
def _nested(cls: type) -> dict[str, type]:
    """The fields of a record type that are records themselves (by name). (The annotations
    are strings, ``from __future__ import annotations``: a part's is its class name.)"""
    return {f.name: _PARTS[str(f.type)] for f in fields(cls) if str(f.type) in _PARTS}


def _build(cls: type, obj: Mapping[str, Json]) -> object:
    nested = _nested(cls)
    kwargs: dict[str, object] = {}
    for f in fields(cls):
        # A field with a default may be absent: a record written before the field existed
        # (an outbox entry of an earlier version, re-sent after an upgrade).
        v = obj[f.name] if f.name in obj or f.default is MISSING else f.default
        sub = nested.get(f.name)
        kwargs[f.name] = _build(sub, v) if sub is not None and isinstance(v, Mapping) else v
    return cls(**kwargs)


def decode_body(obj: Mapping[str, Json]) -> OutputBody:
    """The typed record of a JSON body :func:`encode_record` wrote (an outbox entry read back).

    >>> from stream_monitor.contracts.output_records import StateReset, WorkerRef
    >>> r = StateReset(reset_id="r", detected_at="t", reason="why", models=["m"],
    ...                worker=WorkerRef("app", "h", 1), action="go on")
    >>> decode_body(orjson.loads(encode_record(r))) == r
    True
    """
    kind = obj["type"]
    cls = RECORD_TYPES[kind] if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"not an output record type: {kind!r}")
    rec = _build(cls, obj)
    assert isinstance(rec, cls)
    return rec
