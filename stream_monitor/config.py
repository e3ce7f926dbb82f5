"""Monitoring config (YAML) and 12-factor settings (environment).

The YAML file says *what* to watch: which models, which signals, which detectors. The
environment says *where* to run: Kafka, Redis, batch sizes, topic-name overrides. Both are
validated at start; every problem is reported with the field's dotted path and a fix.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .contracts.signals import PERFORMANCE_SIGNAL
from .contracts.wire import FieldMapping
from .errors import ConfigError

__all__ = [
    "INDICATORS",
    "AlertLifecycle",
    "Bounds",
    "ConnectionSettings",
    "DetectorSpec",
    "FalseAlarmBudget",
    "Input",
    "InputTopic",
    "LabelRule",
    "LearnedBounds",
    "MetricsRule",
    "ModelRule",
    "MonitorConfig",
    "Persistence",
    "Privacy",
    "Quality",
    "QualityRule",
    "RetrainRule",
    "Settings",
    "SignalRule",
    "VersionRule",
    "detector_kinds",
    "load_config",
    "parse_config",
    "quality_rule",
    "register_detector_kinds",
    "settings_problems",
    "signal_budget",
    "signal_detectors",
    "signal_rule",
    "watched_after",
]


class DetectorKindInfo(Protocol):
    """What the config reads of a detector kind (core/detectors.py ``DetectorKind``)."""

    @property
    def cls(self) -> type: ...

    @property
    def input(self) -> str: ...  # "standardized" or "binary"

    @property
    def param_names(self) -> tuple[str, ...]: ...

    def params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]: ...


# The detector kinds a config may name (``adwin``, ``cusum``, ...), by type name. The core owns
# them (core/detectors.py, which also knows their classes) and registers them here when it is
# imported: the config sits below the core and does not import it. ``import stream_monitor``
# imports the core, so the catalogue is in place before any config is parsed.
_DETECTOR_KINDS: dict[str, DetectorKindInfo] = {}


def register_detector_kinds(kinds: Mapping[str, DetectorKindInfo]) -> None:
    """Called by core/detectors.py with its catalogue (type name -> kind)."""
    _DETECTOR_KINDS.update(kinds)


def detector_kinds() -> Mapping[str, DetectorKindInfo]:
    """The registered detector kinds, by type name."""
    if not _DETECTOR_KINDS:
        raise RuntimeError("no detector kinds are registered: import stream_monitor (it imports "
                           "stream_monitor.core, which registers them) before parsing a config")
    return _DETECTOR_KINDS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSpec(_Strict):
    """A named detector instance: a registered type and its parameters."""

    type: str = Field(description="Registered detector type, e.g. adwin, page_hinkley, kswin, ddm.")
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of our defaults.")

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        kinds = detector_kinds()
        if v not in kinds:
            raise ValueError(f"unknown detector type {v!r}; use one of: {', '.join(kinds)}")
        return v

    def check_params(self) -> list[tuple[str, str]]:
        """Problems with the parameters, as (sub-path, message) pairs."""
        kind = detector_kinds()[self.type]
        allowed = kind.param_names
        problems = []
        for p in self.params:
            if p not in allowed:
                problems.append((f"params.{p}", f"{self.type} has no parameter {p!r}; it takes: "
                                 f"{', '.join(allowed)}"))
        if not problems:
            try:
                kind.cls(**kind.params(self.params))
            except Exception as exc:  # River validates in its constructors
                problems.append(("params", f"{self.type} rejected these parameters: {exc}"))
        return problems

    @property
    def effective_params(self) -> dict[str, Any]:
        return detector_kinds()[self.type].params(self.params)


WEEK = 7 * 86400.0


class FalseAlarmBudget(_Strict):
    """How many false alarms a user will live with (docs/detection.md "False-alarm budget").

    Either per signal, ``per_events: N`` (at most one false alarm per N values of each signal),
    or for the whole deployment, ``pages_per_week: B`` with ``values_per_second: R`` (the
    expected rate of monitored values of all models and signals together; `stream-monitor
    simulate` computes it from event rates). The deployment form gives every value the same
    false-alarm probability ``B / (R * 604800)``, so the weekly pages are split over the signals
    in proportion to their event rates. Detectors are calibrated to it per signal, each time a
    reference forms.
    """

    per_events: float | None = Field(None, description="At most 1 false alarm per this many "
                                     "values of a signal.")
    pages_per_week: float | None = Field(None, description="At most this many false alerts a "
                                         "week, all signals together.")
    values_per_second: float | None = Field(None, description="Expected monitored values per "
                                            "second, all signals (with pages_per_week).")

    def per_value(self) -> float:
        """False alarms allowed per value of a signal."""
        if self.per_events is not None:
            return 1.0 / self.per_events
        return float(self.pages_per_week) / (float(self.values_per_second) * WEEK)  # type: ignore[arg-type]

    def label(self) -> str:
        """One line for humans."""
        if self.per_events is not None:
            return f"1 false alarm per {self.per_events:,.0f} values of each signal"
        return (f"{self.pages_per_week:g} false alerts a week at {self.values_per_second:g} "
                "values/s")

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def problems(self) -> list[tuple[str, str]]:
        """(sub-path, message) pairs, each with its fix."""
        out: list[tuple[str, str]] = []
        if self.per_events is None and self.pages_per_week is None:
            return [("", "give either per_events (e.g. {per_events: 1000000}) or pages_per_week "
                     "with values_per_second (e.g. {pages_per_week: 1, values_per_second: 5000})")]
        if self.per_events is not None and (self.pages_per_week is not None
                                            or self.values_per_second is not None):
            out.append(("", "give per_events alone, or pages_per_week with values_per_second, "
                        "not both forms"))
        if self.per_events is not None and not self.per_events >= 100:
            out.append(("per_events", f"{self.per_events:g} allows a false alarm every few "
                        "values; write at least 100 (e.g. 1000000)"))
        if self.pages_per_week is not None:
            if not self.pages_per_week > 0:
                out.append(("pages_per_week", "must be > 0, e.g. 1"))
            if self.values_per_second is None:
                out.append(("values_per_second", "pages_per_week needs the deployment's "
                            "monitored values per second to split it over signals; add it "
                            "(`stream-monitor simulate` computes it from event rates)"))
            elif not self.values_per_second > 0:
                out.append(("values_per_second", "must be > 0: monitored values per second"))
        if not out and not 0 < self.per_value() <= 0.01:
            out.append(("", f"this allows {self.per_value():.3g} false alarms per value; a "
                        "budget must be at most 0.01 per value"))
        return out


class SignalRule(_Strict):
    """Which detectors watch the signals whose names match a glob."""

    match: str = Field(
        description="Glob over signal names: 'feature:*', 'feature:amount', 'prediction'.")
    detectors: list[str] = Field(min_length=1, description="Names from the top-level `detectors`.")
    false_alarm_budget: FalseAlarmBudget | None = Field(
        None, description="Overrides the model's and the top-level budget for these signals.")
    period: int | str | None = Field(
        None, description="Known period: a duration of event time ('1d', '7d', '12h', '30m'), "
        "each value compared with the reference at the same phase of its event's timestamp "
        "(exact for uneven event rates); or an integer, in values of the signal (a steady "
        "rate). cusum detectors only.")
    reference_min_size: int | None = Field(
        None, ge=0, description="Overrides the model rule's and windows.reference_min_size for "
        "these signals (watched from this many values on a short reference; 0: full).")
    kind: Literal["auto", "categorical"] = Field(
        "auto", description="auto: numbers (and booleans, as 0/1) are numeric signals, strings "
        "categorical (class labels; string features when quality.categorical is on). "
        "categorical: every value is a category, e.g. integer-coded classes "
        "(docs/detection.md \"Categories\").")

    @field_validator("period")
    @classmethod
    def _period(cls, v: int | str | None) -> int | str | None:
        if v is None:
            return None
        if isinstance(v, bool):
            raise ValueError("period must be a duration like '1d' or a number of values")
        if isinstance(v, int):
            if v < 2:
                raise ValueError(f"a period in values must be >= 2, got {v}")
            return v
        parse_duration(v)  # raises with the fix
        return v

    @property
    def period_values(self) -> int:
        """The period in values (0: none, or a duration)."""
        return self.period if isinstance(self.period, int) else 0

    @property
    def period_seconds(self) -> float:
        """The period in seconds of event time (0: none, or a period in values)."""
        return parse_duration(self.period) if isinstance(self.period, str) else 0.0


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``'1d'``, ``'12h'``, ``'30m'``, ``'90s'``, ``'1w'``.

    >>> parse_duration("1d"), parse_duration("12h"), parse_duration("1.5m")
    (86400.0, 43200.0, 90.0)
    """
    m = _DURATION.match(text)
    if m is None or not float(m.group(1)) > 0:
        raise ValueError(f"{text!r} is not a duration: write a positive number and a unit, "
                         "s, m, h, d or w (e.g. '1d', '12h'), or an integer number of values")
    return float(m.group(1)) * _DURATION_UNIT[m.group(2)]


class Persistence(_Strict):
    """When a drift counts as retrain evidence (README "Retraining decisions").

    A drift is *confirmed* once ``values`` more values of its signal have arrived and
    ``seconds`` of event time have passed since its alert, if then the mean of the signal's last
    ``values`` values (all values since the alert when ``values`` is 0; at most its recent
    window) is still at least ``min_shift`` standard deviations of the old reference away from
    the old reference mean. Otherwise it is dropped as transient. ``values`` counts effective
    values: times the long-run variance ratio of a dependent signal's reference
    (core/retrain.py ``persistence_values``). ``values: 0`` and
    ``seconds: 0`` confirm every drift at once. A categorical signal's check is the distance of
    the category mix of those values from the old reference mix, in the same unit
    (core/mixshift.py).
    """

    values: int = Field(0, ge=0, description="Values of the signal after the alert, at least.")
    seconds: float = Field(0.0, ge=0, description="Event time after the alert, at least.")
    min_shift: float = Field(0.5, ge=0, description="Post-drift mean shift, in old-reference std.")


class RetrainRule(_Strict):
    """When to ask for a retrain of a model (README "Retraining decisions")."""

    min_drifted_signals: int = Field(2, ge=1, description="k: distinct drifted signals needed.")
    signals: list[str] = Field(default_factory=lambda: ["*"], min_length=1,
                               description="Globs: signals that count as evidence (n of k-of-n).")
    any_performance_signal: bool = Field(
        True, description="A degraded performance signal alone is enough evidence.")
    performance_signals: list[str] = Field(default_factory=lambda: ["performance:*"],
                                           description="Globs naming the performance signals.")
    within_seconds: float | None = Field(
        3600.0, gt=0, description="Window (event time) confirmed evidence counts in; null: "
        "none (then within_events). Default 3600 unless within_events alone is set.")
    within_events: int | None = Field(
        None, ge=1, description="Window in the model's events: confirmed evidence counts for "
        "this many events; with within_seconds too, while it is within both.")
    persistence: Persistence = Field(default_factory=Persistence)  # type: ignore[arg-type]
    cooldown_seconds: float = Field(86400.0, ge=0,
                                    description="No new request for this long after one.")
    max_per_day: int | None = Field(None, ge=1,
                                    description="Budget: requests per UTC day (event time).")
    staleness_seconds: float | None = Field(
        None, gt=0, description="Request when performance degraded and no retrain for this long.")

    @model_validator(mode="before")
    @classmethod
    def _one_window(cls, data: Any) -> Any:
        # within_events alone is an event-count window: the default time window would otherwise
        # still cut it short (one event a day never pairs two alerts within an hour).
        if (isinstance(data, dict) and data.get("within_events") is not None
                and "within_seconds" not in data):
            return {**data, "within_seconds": None}
        return data

    @model_validator(mode="after")
    def _some_window(self) -> RetrainRule:
        if self.within_seconds is None and self.within_events is None:
            raise ValueError("retrain needs a window: set within_seconds (event time) or "
                             "within_events (the model's events), or both")
        return self

    @property
    def window(self) -> str:
        """Which window applies: ``seconds``, ``events`` or ``both`` (evidence counts while it
        is within both)."""
        if self.within_events is None:
            return "seconds"
        return "events" if self.within_seconds is None else "both"


class AlertLifecycle(_Strict):
    """Firing -> resolved, one alert per incident, flapping suppression (README "Alert lifecycle").

    An incident of a signal opens with its published drift alert. Further drifts of the signal
    within ``dedupe_seconds`` of the incident's last alert are folded into it (not published).
    Every ``resolve_values`` values the mean of the signal's last ``resolve_values`` values is
    compared with the reference the alert was measured against: within ``resolve_max_shift`` of
    its standard deviations, the signal is back; after ``hold_seconds`` of event time back (no
    drift meanwhile) a ``drift_resolved`` record is published. A categorical signal is back when
    the category mix of those values is within ``resolve_max_shift`` of the reference mix
    (core/mixshift.py).
    """

    resolve_values: int = Field(50, ge=5, description="Values per return check (and its mean).")
    resolve_max_shift: float = Field(0.5, gt=0, description="Back: |mean shift| in reference std.")
    hold_seconds: float = Field(300.0, ge=0, description="Back this long before resolving.")
    dedupe_seconds: float = Field(3600.0, ge=0, description="Fold repeat drifts this close.")


# ---------------------------------------------------------------------------------------------
# Data quality (README "Data quality"). Whole-event rules live in `quality`; value rules and the
# data-quality signals in `quality.defaults`, which a model rule's own `quality` overrides.

INDICATORS = ("missing", "out_of_bounds", "unseen_category")


class Bounds(_Strict):
    """Valid range of a numeric feature; a value outside is rejected (`out_of_bounds`)."""

    min: float | None = Field(None, description="Smallest valid value; null: no lower bound.")
    max: float | None = Field(None, description="Largest valid value; null: no upper bound.")


class LearnedBounds(_Strict):
    """Bounds learned from a feature's reference window: [q_low - k*IQR, q_high + k*IQR]."""

    quantiles: tuple[float, float] = Field((0.25, 0.75), description="q_low and q_high.")
    k: float = Field(3.0, ge=0, description="Widening, in interquartile ranges (p75 - p25).")


class QualityRule(_Strict):
    """Value rules and data-quality signals of a model (README "Data quality")."""

    bounds: dict[str, Bounds] = Field(default_factory=dict,
                                      description="Feature name -> configured bounds.")
    learned_bounds: LearnedBounds | None = Field(
        None, description="Learn bounds from the reference.")
    categorical: bool = Field(False, description="Watch string features as categories.")
    max_categories: int = Field(20, ge=1, description="Most frequent categories given a signal.")
    indicators: list[Literal["missing", "out_of_bounds", "unseen_category"]] = Field(
        default_factory=list, description="0/1 fault rates fed to `detectors`.")
    detectors: list[str] = Field(default_factory=lambda: ["adwin"], min_length=1,
                                 description="Detectors (names from `detectors`) on fault rates.")
    sample_events: int = Field(20, ge=1, description="Events per rate sample.")
    reference_samples: int = Field(50, ge=5, description="Samples forming a rate's reference.")
    evidence_samples: int = Field(10, ge=1, description="Last samples shown as `current`.")

    @property
    def active(self) -> bool:
        """True when a value rule or a data-quality signal is on (else the core's fast path)."""
        return bool(self.bounds or self.learned_bounds or self.categorical or self.indicators)


class Duplicates(_Strict):
    window_seconds: float = Field(0.0, ge=0, description="Keep event ids this long; 0: off.")


class Timestamps(_Strict):
    max_future_seconds: float | None = Field(None, gt=0, description="Null: not checked.")
    max_past_seconds: float | None = Field(None, gt=0, description="Null: not checked.")


class Quality(_Strict):
    """Whole-event rules, and the defaults of the per-model value rules."""

    max_message_bytes: int = Field(1_048_576, ge=64, description="Larger values: `too_large`.")
    # Bounds on what one event or one model can make the worker hold (memory, Redis keys).
    max_features_per_event: int = Field(
        500, ge=1, description="More features in one event: `too_many_features`.")
    max_features_per_model: int = Field(
        2000, ge=1, description="An event that would give its model more distinct features: "
        "`too_many_signals` (a feature-name explosion must not grow state without bound).")
    max_id_length: int = Field(
        256, ge=8, description="Longer model_id, event_id or model_version: `id_too_long`.")
    dead_letter_max_bytes: int = Field(
        65_536, ge=256, le=262_144, description="Head of a bad record's value kept in its dead "
        "letter (the rest: length and SHA-256 only), so a dead letter always fits the topic.")
    unknown_model: Literal["ignore", "dead_letter"] = Field(
        "ignore", description="Events no model rule matches: skip, or dead-letter.")
    duplicates: Duplicates = Field(default_factory=Duplicates)  # type: ignore[arg-type]
    timestamps: Timestamps = Field(default_factory=Timestamps)  # type: ignore[arg-type]
    defaults: QualityRule = Field(default_factory=QualityRule)  # type: ignore[arg-type]


class LabelRule(_Strict):
    """Delayed labels of a model (README "Delayed labels"): how predictions meet their labels.

    Joined pairs feed the model's ``performance:error`` signal: 0/1 errors for classification,
    absolute errors for regression. Give that signal detectors with a signal rule such as
    ``{match: "performance:*", detectors: [ddm, adwin]}``.
    """

    task: Literal["classification", "regression"] = Field(
        description="classification: 0/1 error; regression: absolute error.")
    ttl_seconds: float = Field(86400.0, gt=0,
                               description="Event time a prediction waits for its label.")
    bucket_seconds: float = Field(60.0, gt=0, description="Expiry granularity (event time).")
    threshold: float = Field(
        0.5, ge=0, le=1,
        description="A score in [0, 1] against a 0/1 label: class 1 at or above.")


class VersionRule(_Strict):
    """Model versions (README "Model versions"): per-version state, the post-deploy watch, expiry.

    With ``separate`` on, every ``model_version`` of a model gets its own detectors, reference
    windows and retrain evidence. A version that appears after another starts a **post-deploy
    watch**: once it has ``watch_events`` events (and, for a model with labels, ``min_labeled``
    joined labels, or ``max_wait_seconds`` of event time later) a ``deployment_check`` record
    compares its first window of every signal with the previous version's reference (two-sample
    KS test and mean shift) and its error with the previous version's.
    The state of a version that is no longer the newest expires ``expire_seconds`` after its last
    event (a Redis TTL, refreshed by each save).
    """

    separate: bool = Field(True, description="Per-version detectors and windows; false: one state.")
    watch_events: int | None = Field(None, ge=10, description="First-window size of a new version "
                                     "(default: the model's reference_size).")
    min_labeled: int = Field(200, ge=1, description="Joined labels per side to compare errors.")
    max_wait_seconds: float | None = Field(
        3600.0, ge=0, description="Event time after the first window to wait for labels; null: "
        "wait for min_labeled however long.")
    expire_seconds: float = Field(7 * 86400.0, gt=0,
                                  description="TTL of a superseded version's state.")
    alpha: float = Field(0.01, gt=0, lt=1, description="Significance level of the tests.")
    min_shift: float = Field(0.5, ge=0,
                             description="|Mean shift| (previous std) for a signal to count.")
    max_error_increase: float = Field(0.02, ge=0,
                                      description="Largest error rise that is not a degradation.")
    min_values: int = Field(30, ge=5, description="Values per side needed to compare a signal.")


class ModelRule(_Strict):
    """Which models (id or glob) to watch, and how."""

    match: str = Field(description="Model id or glob, e.g. 'fraud-*'.")
    signals: list[SignalRule] = Field(min_length=1)
    reference_size: int | None = Field(None, ge=10, description="Overrides windows.reference_size.")
    reference_min_size: int | None = Field(
        None, ge=0, description="Overrides windows.reference_min_size.")
    recent_size: int | None = Field(None, ge=10, description="Overrides windows.recent_size.")
    sample_rate: float = Field(
        1.0, gt=0, le=1,
        description="Fraction of the model's events watched (0 < rate <= 1), chosen by a hash "
        "of event_id: the same events in every worker and in replay (docs/scaling.md "
        "\"Sampling a hot model\"). Every alert and record of the model states it.")
    retrain: RetrainRule = Field(default_factory=RetrainRule)  # type: ignore[arg-type]
    alerts: AlertLifecycle | None = Field(None, description="Alert lifecycle; null: off.")
    quality: QualityRule | None = Field(
        None, description="Overrides quality.defaults, field by field.")
    labels: LabelRule | None = Field(
        None, description="Delayed labels from the labels topic; null: off.")
    versions: VersionRule = Field(default_factory=VersionRule)  # type: ignore[arg-type]
    false_alarm_budget: FalseAlarmBudget | None = Field(
        None, description="Overrides the top-level false-alarm budget for this model's signals.")


class Topics(_Strict):
    inference: str = "inference-events"
    alerts: str = "drift-alerts"
    retrain: str = "retrain-requests"
    dead_letter: str = "inference-dead-letter"
    operations: str = "stream-monitor-ops"
    labels: str = "inference-labels"
    deployments: str = "model-deployment-checks"


InputFormat = Literal["json", "avro", "protobuf", "json_schema"]
_INFERENCE_FIELDS = ("event_id", "model_id", "model_version", "timestamp", "features",
                     "prediction", "label")
_LABEL_FIELDS = ("event_id", "model_id", "label", "timestamp")


class InputTopic(_Strict):
    """How one input topic's records are written (docs/contracts.md "Schema Registry formats")."""

    format: InputFormat = Field(
        "json", description="json (UTF-8 JSON, no registry), or avro, protobuf, json_schema in "
        "the Confluent wire format with the schema fetched by id from SCHEMA_REGISTRY_URL.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Contract field -> the record's field holding it "
        "(a dotted path for a nested record), for records whose names differ.")
    feature_fields: list[str] = Field(
        default_factory=list, description="The record's fields (dotted paths) taken as the "
        "features, instead of a `features` map.")

    def mapping(self) -> FieldMapping | None:
        """The field mapping, or None when the record already has the contract's names."""
        if not self.fields and not self.feature_fields:
            return None
        return FieldMapping(dict(self.fields), tuple(self.feature_fields))


class Input(_Strict):
    """The input topics' formats and field mappings."""

    inference: InputTopic = Field(default_factory=InputTopic)  # type: ignore[arg-type]
    labels: InputTopic = Field(default_factory=InputTopic)  # type: ignore[arg-type]

    @property
    def uses_registry(self) -> bool:
        return self.inference.format != "json" or self.labels.format != "json"


class Windows(_Strict):
    reference_size: int = Field(1000, ge=10, description="Values that form a signal's reference.")
    reference_min_size: int = Field(
        200, ge=0,
        description="A signal with a false-alarm budget is watched from this many values on, "
        "calibrated for so short a reference (the budget holds); its reference keeps growing to "
        "reference_size, and the signal is then re-based on the full reference "
        "(docs/detection.md \"Short series\"). 0, or at least reference_size: watched only on a "
        "full reference. Signals with a period always wait for the full reference.")
    recent_size: int = Field(500, ge=10, description="Most recent values kept for evidence.")
    evidence_size: int = Field(50, ge=5,
                               description="Last values summarized as `current` in alerts.")


class Privacy(_Strict):
    """How much of the input leaves the worker (docs/security.md "Privacy").

    ``alert_evidence``: what drift alerts, resolutions, retrain requests and deployment checks
    say about the values. ``full``: count, mean, std, min, max and quantiles of each window
    (min and max of as few as ``windows.evidence_size`` values can be raw input values);
    ``aggregate``: count, mean and std only; ``none``: the shift in reference standard
    deviations (and counts) only. ``dead_letter_payload``: what a dead letter keeps of the
    rejected record (value, key and headers). ``full``: up to ``quality.dead_letter_max_bytes``;
    ``truncated``: a head of ``dead_letter_truncated_bytes``; ``hash``: no bytes, only the
    length and the SHA-256, and a reason that quotes nothing from the record.
    """

    alert_evidence: Literal["full", "aggregate", "none"] = Field(
        "full", description="full | aggregate (count, mean, std) | none (shift only).")
    dead_letter_payload: Literal["full", "truncated", "hash"] = Field(
        "full", description="full | truncated (a head) | hash (length + SHA-256, no bytes).")
    dead_letter_truncated_bytes: int = Field(
        256, ge=0, le=65_536, description="Head kept with dead_letter_payload: truncated.")


class MetricsRule(_Strict):
    """What the worker's /metrics shows per signal (docs/security.md "Metrics")."""

    signal_gauges: bool = Field(
        True, description="Per-signal gauges (window sizes, reference/current means, detecting); "
        "off: none, so /metrics shows no statistic of any feature.")
    signals: list[str] = Field(
        default_factory=lambda: ["*"], description="Globs: signals that get their own `signal` "
        "label; others are counted as `other` and get no gauges (bounds label cardinality).")


def _default_detectors() -> dict[str, DetectorSpec]:
    return {"adwin": DetectorSpec(type="adwin"), "page_hinkley": DetectorSpec(type="page_hinkley")}


class MonitorConfig(_Strict):
    """The whole monitoring config. See ``examples/monitor.yaml`` for every field documented."""

    version: Literal[1] = 1
    topics: Topics = Field(default_factory=Topics)
    input: Input = Field(default_factory=Input)  # type: ignore[arg-type]
    windows: Windows = Field(default_factory=Windows)  # type: ignore[arg-type]
    detectors: dict[str, DetectorSpec] = Field(default_factory=_default_detectors)
    quality: Quality = Field(default_factory=Quality)  # type: ignore[arg-type]
    false_alarm_budget: FalseAlarmBudget | None = Field(
        None, description="Default false-alarm budget of every signal; null: detectors keep "
        "their configured parameters (cusum detectors then use 1 per 1,000,000 values).")
    models: list[ModelRule] = Field(min_length=1)
    privacy: Privacy = Field(default_factory=Privacy)  # type: ignore[arg-type]
    metrics: MetricsRule = Field(default_factory=MetricsRule)  # type: ignore[arg-type]

    def model_rule(self, model_id: str) -> ModelRule | None:
        """The first rule whose `match` fits the model id, or None (model not watched)."""
        return _model_rule(self, model_id)

    def with_topics(self, **overrides: str | None) -> MonitorConfig:
        given = {k: v for k, v in overrides.items() if v}
        if not given:
            return self
        return self.model_copy(update={"topics": self.topics.model_copy(update=given)})


@lru_cache(maxsize=4096)
def _match(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def _model_rule(cfg: MonitorConfig, model_id: str) -> ModelRule | None:
    for rule in cfg.models:
        if _match(rule.match, model_id):
            return rule
    return None


def signal_detectors(cfg: MonitorConfig, rule: ModelRule, signal: str) -> list[str] | None:
    """Detector names configured for a signal of a model, or None when it is not watched."""
    sr = signal_rule(cfg, rule, signal)
    return None if sr is None else sr.detectors


def signal_rule(cfg: MonitorConfig, rule: ModelRule, signal: str) -> SignalRule | None:
    """The first signal rule of a model rule whose glob matches the signal."""
    for sr in rule.signals:
        if _match(sr.match, signal):
            return sr
    return None


DEFAULT_BUDGET = FalseAlarmBudget(per_events=1_000_000)
# Detector types whose thresholds come from the budget (core/calibrate.py, core/bernoulli.py).
CALIBRATED_TYPES = ("cusum", "bernoulli_cusum", "multinomial_cusum")

# Phase bins of a known period (at most; a period of fewer values has one bin per value).
PHASE_BINS = 48


def watched_after(config: MonitorConfig, rule: ModelRule, budget: bool = True,
                  period: int | None = 0, sr: SignalRule | None = None) -> int:
    """Values a signal of ``rule`` (and of its signal rule ``sr``) needs before it is watched:
    ``reference_min_size`` (the signal rule's, else the model rule's, else ``windows``') when
    the signal has a false-alarm budget (its calibration accounts for a short reference) and no
    period, else the full ``reference_size``."""
    full = rule.reference_size or config.windows.reference_size
    least = sr.reference_min_size if sr is not None else None
    if least is None:
        least = rule.reference_min_size
    if least is None:
        least = config.windows.reference_min_size
    return least if budget and not period and 0 < least < full else full


def signal_budget(cfg: MonitorConfig, rule: ModelRule, signal: str) -> FalseAlarmBudget | None:
    """The false-alarm budget of a signal: its signal rule's, else its model rule's, else the
    top-level one; None when none is set."""
    return _own_budget(cfg, rule, signal_rule(cfg, rule, signal))


def _own_budget(cfg: MonitorConfig, rule: ModelRule,
                sr: SignalRule | None) -> FalseAlarmBudget | None:
    if sr is not None and sr.false_alarm_budget is not None:
        return sr.false_alarm_budget
    return rule.false_alarm_budget or cfg.false_alarm_budget


def effective_budget(cfg: MonitorConfig, rule: ModelRule, sr: SignalRule | None,
                     detectors: Sequence[str] | None = None) -> FalseAlarmBudget | None:
    """The budget the signals of a signal rule are calibrated to: the configured one (as
    :func:`signal_budget`), else ``DEFAULT_BUDGET`` when a calibrated CUSUM (``cusum``,
    ``bernoulli_cusum``) watches them (it always needs thresholds); None: not calibrated.
    ``detectors``: the names watching the signals when no signal rule gives them (the fault
    rates of the quality rule)."""
    budget = _own_budget(cfg, rule, sr)
    names = detectors if detectors is not None else (sr.detectors if sr is not None else ())
    if budget is None and any(
            cfg.detectors[d].type in CALIBRATED_TYPES for d in names if d in cfg.detectors):
        return DEFAULT_BUDGET
    return budget


def quality_rule(cfg: MonitorConfig, rule: ModelRule) -> QualityRule:
    """The effective value rules of a model: ``quality.defaults``, overridden field by field by
    the fields the model rule's own ``quality`` sets.

    >>> cfg = parse_config({"quality": {"defaults": {"indicators": ["missing"]}},
    ...     "models": [{"match": "m", "signals": [{"match": "*", "detectors": ["adwin"]}],
    ...                 "quality": {"categorical": True}}]})
    >>> q = quality_rule(cfg, cfg.models[0])
    >>> q.indicators, q.categorical
    (['missing'], True)
    """
    own = rule.quality
    if own is None:
        return cfg.quality.defaults
    update = {k: getattr(own, k) for k in own.model_fields_set}
    return cfg.quality.defaults.model_copy(update=update)


# ---------------------------------------------------------------------------------------------
# Loading with errors that name the field and the fix.

_HINTS = {
    "missing": "this field is required; add it",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
    "greater_than_equal": None,
    "literal_error": None,
}


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _problems(exc: ValidationError, raw: Any) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = sorted(model.model_fields) if model else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
            if allowed:
                msg += f" (allowed here: {', '.join(allowed)})"
        else:
            hint = _HINTS.get(err["type"])
            if hint:
                msg = f"{msg}; {hint}"
        problems.append((_path(loc), msg))
    return problems


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = MonitorConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            if model is MonitorConfig or model is None:
                return None
            # dict values (detectors.<name>)
            continue
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        inner = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[-1] if inner else None
    return model


def _can_match_a_signal(pattern: str) -> bool:
    """False when a glob can match neither `prediction` nor any `feature:<name>`: the text
    before its first wildcard must then be a prefix of `feature:` or start with it."""
    if _match(pattern, "prediction") or _match(pattern, "performance:error"):
        return True
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return literal.startswith("feature:") or "feature:".startswith(literal)


def _cross_check(cfg: MonitorConfig) -> list[tuple[str, str]]:
    problems = []
    for name, spec in cfg.detectors.items():
        problems += [(f"detectors.{name}.{sub}", msg) for sub, msg in spec.check_params()]
    for i, rule in enumerate(cfg.models):
        for j, sr in enumerate(rule.signals):
            if not _can_match_a_signal(sr.match):
                problems.append((f"models[{i}].signals[{j}].match",
                                 f"{sr.match!r} can match no signal; signals are named "
                                 "'feature:<name>', 'prediction' or 'performance:error'"))
            for k, det in enumerate(sr.detectors):
                if det not in cfg.detectors:
                    close = difflib.get_close_matches(det, list(cfg.detectors), n=1)
                    problems.append((f"models[{i}].signals[{j}].detectors[{k}]",
                                     f"no detector named {det!r} in `detectors`"
                                     + _detector_hint(close, cfg)))
    return (problems + _check_quality(cfg) + _check_labels(cfg) + _check_budgets(cfg)
            + _check_periods(cfg) + _check_input(cfg))


def _check_input(cfg: MonitorConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for topic, names in (("inference", _INFERENCE_FIELDS), ("labels", _LABEL_FIELDS)):
        t: InputTopic = getattr(cfg.input, topic)
        for name, path in t.fields.items():
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append((f"input.{topic}.fields.{name}", f"not a field of the {topic} "
                                 f"contract; map one of: {', '.join(names)}{hint}"))
            if not path or any(not p for p in path.split(".")):
                problems.append((f"input.{topic}.fields.{name}",
                                 f"{path!r} is not a field path; write e.g. 'request.id'"))
        if t.feature_fields and topic == "labels":
            problems.append(("input.labels.feature_fields", "labels have no features; remove it"))
        elif t.feature_fields and "features" in t.fields:
            problems.append((f"input.{topic}.feature_fields", "both feature_fields and "
                             "fields.features say where the features are; keep one"))
    return problems


def _check_periods(cfg: MonitorConfig) -> list[tuple[str, str]]:
    problems = []
    for i, rule in enumerate(cfg.models):
        ref = rule.reference_size or cfg.windows.reference_size
        for j, sr in enumerate(rule.signals):
            if not sr.period:
                continue
            where = f"models[{i}].signals[{j}].period"
            others = [d for d in sr.detectors if d in cfg.detectors
                      and cfg.detectors[d].type != "cusum"]
            if others:
                problems.append((where, f"a period is followed by cusum detectors only, not "
                                 f"{', '.join(others)}; use detectors: [cusum] here"))
            if sr.period_seconds:
                # Event time: the values a period spans depend on the event rate; the signal
                # waits until its reference spans two periods (see plan.py / check-config).
                if ref < 10 * PHASE_BINS:
                    problems.append((where, f"the reference ({ref} values) needs at least 10 "
                                     f"values per phase bin ({PHASE_BINS} bins); set the "
                                     f"model's reference_size to at least {10 * PHASE_BINS}"))
                continue
            bins = min(sr.period_values, PHASE_BINS)
            if ref < 2 * sr.period_values or ref < 10 * bins:
                need = max(2 * sr.period_values, 10 * bins)
                problems.append((where, f"the reference ({ref} values) must span at least two "
                                 f"periods and 10 values per phase bin; set the model's "
                                 f"reference_size to at least {need}"))
    return problems


def _check_budgets(cfg: MonitorConfig) -> list[tuple[str, str]]:
    where: list[tuple[str, FalseAlarmBudget | None]] = [("false_alarm_budget",
                                                          cfg.false_alarm_budget)]
    for i, rule in enumerate(cfg.models):
        where.append((f"models[{i}].false_alarm_budget", rule.false_alarm_budget))
        where += [(f"models[{i}].signals[{j}].false_alarm_budget", sr.false_alarm_budget)
                  for j, sr in enumerate(rule.signals)]
    problems = []
    for path, budget in where:
        if budget is not None:
            problems += [(f"{path}.{sub}" if sub else path, msg) for sub, msg in budget.problems()]
    return problems


def _check_labels(cfg: MonitorConfig) -> list[tuple[str, str]]:
    """A model with labels needs detectors on its performance signal, and binary detectors
    only where the error is 0/1 (classification)."""
    problems = []
    for i, rule in enumerate(cfg.models):
        if rule.labels is None:
            continue
        names = signal_detectors(cfg, rule, PERFORMANCE_SIGNAL)
        if names is None:
            problems.append((f"models[{i}].labels", "no signal rule matches "
                             f"'{PERFORMANCE_SIGNAL}', so joined labels would be watched by no "
                             "detector; add to its signals: {match: 'performance:*', "
                             "detectors: [ddm, adwin]}"))
            continue
        if rule.labels.task == "regression":
            for name in names:
                spec = cfg.detectors.get(name)
                if spec is not None and detector_kinds()[spec.type].input == "binary":
                    problems.append((f"models[{i}].labels.task", f"regression errors are not "
                                     f"0/1, but detector {name!r} ({spec.type}) on "
                                     f"'{PERFORMANCE_SIGNAL}' takes only 0/1 values; use adwin, "
                                     "page_hinkley or kswin there"))
    return problems


def _check_quality(cfg: MonitorConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    rules: list[tuple[str, QualityRule | None]] = [("quality.defaults", cfg.quality.defaults)]
    rules += [(f"models[{i}].quality", r.quality) for i, r in enumerate(cfg.models)]
    for where, q in rules:
        if q is None:
            continue
        for name, b in q.bounds.items():
            for side in ("min", "max"):
                v = getattr(b, side)
                if v is not None and v != v:
                    problems.append((f"{where}.bounds.{name}.{side}", "must be a number, not NaN"))
            if b.min is not None and b.max is not None and b.min > b.max:
                problems.append((f"{where}.bounds.{name}",
                                 f"min {b.min:g} is above max {b.max:g}; swap them"))
        lb = q.learned_bounds
        if lb is not None and not 0.0 <= lb.quantiles[0] < lb.quantiles[1] <= 1.0:
            problems.append((f"{where}.learned_bounds.quantiles",
                             "write [q_low, q_high] with 0 <= q_low < q_high <= 1, "
                             "e.g. [0.25, 0.75]"))
    # Detectors on fault rates must exist where indicators are on (a config without an `adwin`
    # detector and without indicators is fine).
    seen: set[str] = set()
    for i, rule in enumerate(cfg.models):
        eff = quality_rule(cfg, rule)
        if not eff.indicators:
            continue
        own = rule.quality is not None and "detectors" in rule.quality.model_fields_set
        where = f"models[{i}].quality.detectors" if own else "quality.defaults.detectors"
        for k, det in enumerate(eff.detectors):
            if det not in cfg.detectors and f"{where}[{k}]" not in seen:
                seen.add(f"{where}[{k}]")
                close = difflib.get_close_matches(det, list(cfg.detectors), n=1)
                problems.append((f"{where}[{k}]", f"no detector named {det!r} in `detectors`"
                                 + _detector_hint(close, cfg)))
    return problems


def _detector_hint(close: list[str], cfg: MonitorConfig) -> str:
    """The fix for an unknown detector name: the closest defined one, or the defined ones."""
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; define it there or use one of: {', '.join(cfg.detectors)}"


def parse_config(raw: Any, source: str = "config") -> MonitorConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(
            [("(top level)", "the config must be a YAML mapping with at least `models`")], source)
    try:
        cfg = MonitorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, raw), source) from None
    problems = _cross_check(cfg)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def load_config(path: str | os.PathLike[str], settings: Settings | None = None) -> MonitorConfig:
    """Read, validate and return a monitoring config; topic names may be overridden by env."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([("--config", f"cannot read {p}: {exc.strerror}; pass an existing file")],
                          str(p)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = f"not valid YAML: {getattr(exc, 'problem', exc)}"
        raise ConfigError([(where, problem)], str(p)) from None
    cfg = parse_config(raw, str(p))
    s = settings or Settings()
    return cfg.with_topics(inference=s.topic_inference, alerts=s.topic_alerts,
                           retrain=s.topic_retrain, dead_letter=s.topic_dead_letter,
                           operations=s.topic_operations, labels=s.topic_labels,
                           deployments=s.topic_deployments)


# ---------------------------------------------------------------------------------------------
# Connection security (docs/security.md). Names follow the Kafka client properties
# (security.protocol -> KAFKA_SECURITY_PROTOCOL, ssl.ca.location -> KAFKA_SSL_CA_LOCATION, ...).

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def read_secret_file(path: Path) -> str:
    """A secret from a mounted file (Docker/Kubernetes secrets): its text without the final
    newline that editors and ``echo`` add."""
    return path.read_text().rstrip("\r\n")


class ConnectionSettings(BaseSettings):
    """How to reach Kafka and Redis securely: TLS, SASL, ACL users, secrets from files.

    Shared by the worker's :class:`Settings` and the notifier's settings. Secrets are
    ``SecretStr`` (shown as ``**********``) and each can come from a ``…_FILE`` instead.
    Contradictory combinations fail at start, naming the variable and the fix.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="host:port[,host:port...] of the brokers.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL",
                           description="redis:// or rediss:// (TLS) URL; may hold user:password.")
    kafka_security_protocol: KafkaProtocol = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL",
        description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (login, no TLS) or SASL_SSL.")
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, validation_alias="KAFKA_SASL_MECHANISM",
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_*.")
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME",
                                            description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD",
                                                  description="SASL password (secret).")
    kafka_sasl_password_file: Path | None = Field(
        None, validation_alias="KAFKA_SASL_PASSWORD_FILE",
        description="File holding the SASL password (instead of KAFKA_SASL_PASSWORD).")
    kafka_ssl_ca_location: Path | None = Field(
        None, validation_alias="KAFKA_SSL_CA_LOCATION",
        description="PEM file of the CA(s) that signed the brokers' certificates; default: the "
        "system's trust store.")
    kafka_ssl_certificate_location: Path | None = Field(
        None, validation_alias="KAFKA_SSL_CERTIFICATE_LOCATION",
        description="Client certificate (PEM) for mutual TLS.")
    kafka_ssl_key_location: Path | None = Field(
        None, validation_alias="KAFKA_SSL_KEY_LOCATION",
        description="Private key (PEM) of the client certificate.")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, validation_alias="KAFKA_SSL_KEY_PASSWORD",
        description="Password of an encrypted client key (secret).")
    kafka_ssl_key_password_file: Path | None = Field(
        None, validation_alias="KAFKA_SSL_KEY_PASSWORD_FILE",
        description="File holding the client key's password.")
    kafka_ssl_check_hostname: bool = Field(
        True, validation_alias="KAFKA_SSL_CHECK_HOSTNAME",
        description="Check that the broker certificate names the host connected to.")
    redis_username: str | None = Field(
        None, validation_alias="REDIS_USERNAME",
        description="Redis ACL user (instead of a user in REDIS_URL).")
    redis_password: SecretStr | None = Field(
        None, validation_alias="REDIS_PASSWORD",
        description="Redis password (secret; instead of one in REDIS_URL).")
    redis_password_file: Path | None = Field(
        None, validation_alias="REDIS_PASSWORD_FILE",
        description="File holding the Redis password.")
    redis_ssl_ca_certs: Path | None = Field(
        None, validation_alias="REDIS_SSL_CA_CERTS",
        description="CA (PEM) of the Redis server certificate; needs a rediss:// URL.")
    redis_ssl_certfile: Path | None = Field(
        None, validation_alias="REDIS_SSL_CERTFILE",
        description="Client certificate (PEM) for Redis mutual TLS.")
    redis_ssl_keyfile: Path | None = Field(
        None, validation_alias="REDIS_SSL_KEYFILE", description="Its private key (PEM).")

    # -- secrets, read when a client is built (a rotated secret file is picked up on restart) --
    def kafka_sasl_password_value(self) -> str | None:
        return _secret(self.kafka_sasl_password, self.kafka_sasl_password_file)

    def kafka_ssl_key_password_value(self) -> str | None:
        return _secret(self.kafka_ssl_key_password, self.kafka_ssl_key_password_file)

    def redis_password_value(self) -> str | None:
        return _secret(self.redis_password, self.redis_password_file)

    @model_validator(mode="after")
    def _consistent(self) -> ConnectionSettings:
        problems = _connection_problems(self)
        if problems:
            raise ValueError("\n".join(f"{var}: {msg}" for var, msg in problems))
        return self


def _secret(value: SecretStr | None, file: Path | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    return read_secret_file(file) if file is not None else None


def _connection_problems(s: ConnectionSettings) -> list[tuple[str, str]]:
    """(variable, problem and fix) for every contradiction; never shows a secret."""
    problems: list[tuple[str, str]] = []
    proto = s.kafka_security_protocol
    sasl, tls = proto.startswith("SASL_"), proto in ("SSL", "SASL_SSL")

    def readable(var: str, path: Path | None) -> None:
        if path is None:
            return
        try:
            path.open("rb").close()
        except OSError as exc:
            problems.append((var, f"cannot read {path}: {exc.strerror}; mount the file there "
                             "or fix the path"))

    for var, value, file in (
            ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password, s.kafka_sasl_password_file),
            ("KAFKA_SSL_KEY_PASSWORD", s.kafka_ssl_key_password, s.kafka_ssl_key_password_file),
            ("REDIS_PASSWORD", s.redis_password, s.redis_password_file)):
        if value is not None and file is not None:
            problems.append((var, f"both {var} and {var}_FILE are set; keep one"))
        readable(f"{var}_FILE", file)
    if sasl:
        if s.kafka_sasl_mechanism is None:
            problems.append(("KAFKA_SASL_MECHANISM", f"KAFKA_SECURITY_PROTOCOL={proto} needs a "
                             "mechanism; set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
        if not s.kafka_sasl_username:
            problems.append(("KAFKA_SASL_USERNAME", f"KAFKA_SECURITY_PROTOCOL={proto} logs in; "
                             "set the user name"))
        if s.kafka_sasl_password is None and s.kafka_sasl_password_file is None:
            problems.append(("KAFKA_SASL_PASSWORD", f"KAFKA_SECURITY_PROTOCOL={proto} logs in; "
                             "set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE"))
    else:
        given = [v for v, x in (("KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
                                ("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
                                ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password),
                                ("KAFKA_SASL_PASSWORD_FILE", s.kafka_sasl_password_file))
                 if x is not None]
        if given:
            problems.append(("KAFKA_SECURITY_PROTOCOL", f"{', '.join(given)} set, but {proto} "
                             "sends no login; set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or "
                             "SASL_PLAINTEXT), or unset them"))
    tls_files = [("KAFKA_SSL_CA_LOCATION", s.kafka_ssl_ca_location),
                 ("KAFKA_SSL_CERTIFICATE_LOCATION", s.kafka_ssl_certificate_location),
                 ("KAFKA_SSL_KEY_LOCATION", s.kafka_ssl_key_location)]
    if not tls:
        given = [v for v, x in tls_files if x is not None]
        if given:
            problems.append(("KAFKA_SECURITY_PROTOCOL", f"{', '.join(given)} set, but {proto} "
                             "does not use TLS; set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, or "
                             "unset them"))
    for var, path in tls_files:
        readable(var, path)
    if (s.kafka_ssl_certificate_location is None) != (s.kafka_ssl_key_location is None):
        problems.append(("KAFKA_SSL_KEY_LOCATION", "mutual TLS needs both "
                         "KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"))
    url = s.redis_url
    redis_tls = [("REDIS_SSL_CA_CERTS", s.redis_ssl_ca_certs),
                 ("REDIS_SSL_CERTFILE", s.redis_ssl_certfile),
                 ("REDIS_SSL_KEYFILE", s.redis_ssl_keyfile)]
    given = [v for v, x in redis_tls if x is not None]
    if given and url is not None and not url.startswith(("rediss://", "rediss+")):
        problems.append(("REDIS_URL", f"{', '.join(given)} set, but REDIS_URL does not use TLS; "
                         "write it as rediss://host:port/db"))
    for var, path in redis_tls:
        readable(var, path)
    if (s.redis_ssl_certfile is None) != (s.redis_ssl_keyfile is None):
        problems.append(("REDIS_SSL_KEYFILE", "mutual TLS needs both REDIS_SSL_CERTFILE and "
                         "REDIS_SSL_KEYFILE"))
    if (s.redis_password is not None or s.redis_password_file is not None) and url:
        from urllib.parse import urlsplit

        try:
            in_url = urlsplit(url).password
        except ValueError:
            in_url = None
        if in_url:
            problems.append(("REDIS_PASSWORD", "REDIS_URL holds a password too; keep one "
                             "(REDIS_PASSWORD_FILE keeps it out of the environment)"))
    return problems


def settings_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(variable, message) for each error of a settings class, without the input values (they
    may hold secrets)."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if not loc and err["type"] == "value_error":
            for line in msg.removeprefix("Value error, ").splitlines():
                var, _, text = line.partition(": ")
                problems.append((var, text))
            continue
        problems.append((loc or "(settings)", msg))
    return problems

class Settings(ConnectionSettings):
    """Where and how to run, from the environment (12-factor). Each field's env var is listed."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092",
                                         validation_alias="KAFKA_BOOTSTRAP_SERVERS",
                                         description="host:port[,host:port...] of the brokers.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL",
                           description="redis:// or rediss:// (TLS) URL; may hold user:password.")
    redis_cluster: bool = Field(
        False, validation_alias="REDIS_CLUSTER",
        description="REDIS_URL names a node of a Redis Cluster (the scheme redis+cluster:// "
        "says the same); every store then uses a cluster client (docs/scaling.md).")
    redis_wait_replicas: int = Field(
        1, ge=0, validation_alias="SM_REDIS_WAIT_REPLICAS",
        description="On a Redis Cluster, a batch's state save waits (WAIT) until this many "
        "replicas of each master it wrote to have it, before its outputs are published, so a "
        "failover does not lose it; 0 turns this off. A single Redis ignores it.")
    app_id: str = Field("stream-monitor", validation_alias="SM_APP_ID",
                        description="Kafka consumer group id and Faust app id.")
    key_prefix: str = Field("sm", validation_alias="SM_KEY_PREFIX", description="Redis key prefix.")
    batch_max: int = Field(5000, ge=1, validation_alias="SM_BATCH_MAX",
                           description="Most events per batch.")
    batch_within_seconds: float = Field(0.2, gt=0, validation_alias="SM_BATCH_WITHIN_SECONDS",
                                        description="Longest wait to fill a batch.")
    topic_partitions: int = Field(1, ge=1, validation_alias="SM_TOPIC_PARTITIONS",
                                  description="Partitions for topics the worker creates.")
    topic_inference: str | None = Field(None, validation_alias="SM_TOPIC_INFERENCE",
                                        description="Overrides topics.inference of the config.")
    topic_alerts: str | None = Field(None, validation_alias="SM_TOPIC_ALERTS",
                                     description="Overrides topics.alerts of the config.")
    topic_retrain: str | None = Field(None, validation_alias="SM_TOPIC_RETRAIN",
                                      description="Overrides topics.retrain of the config.")
    topic_dead_letter: str | None = Field(
        None, validation_alias="SM_TOPIC_DEAD_LETTER",
        description="Overrides topics.dead_letter of the config.")
    topic_operations: str | None = Field(
        None, validation_alias="SM_TOPIC_OPERATIONS",
        description="Overrides topics.operations of the config.")
    topic_labels: str | None = Field(None, validation_alias="SM_TOPIC_LABELS",
                                     description="Overrides topics.labels of the config.")
    topic_deployments: str | None = Field(
        None, validation_alias="SM_TOPIC_DEPLOYMENTS",
        description="Overrides topics.deployments of the config.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, validation_alias="SM_METRICS_PORT",
        description="Port of /metrics, /healthz and /readyz; 0 turns them off.")
    metrics_host: str = Field(
        "0.0.0.0", validation_alias="SM_METRICS_HOST",
        description="Bind address of /metrics, /healthz and /readyz: 0.0.0.0 (all interfaces, "
        "what a Kubernetes probe and scrape need), or 127.0.0.1 behind a local auth proxy.")
    metrics_max_models: int = Field(
        1000, ge=1, validation_alias="SM_METRICS_MAX_MODELS",
        description="Models with their own `model` label on /metrics; the rest share "
        "model=\"__other__\" (bounds memory and Prometheus cardinality).")
    metrics_max_signal_series: int = Field(
        5000, ge=0, validation_alias="SM_METRICS_MAX_SIGNAL_SERIES",
        description="(model, signal) pairs with per-signal gauges (window sizes, means).")
    log_format: Literal["text", "json"] = Field("text", validation_alias="SM_LOG_FORMAT",
                                                description="json: one JSON object per log line.")
    session_timeout_seconds: float = Field(
        10.0, ge=6, validation_alias="SM_SESSION_TIMEOUT_SECONDS",
        description="Kafka group session timeout: how long a crashed worker's partitions wait "
        "before another worker takes them over (Faust's default is 60 s).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="SM_LOG_LEVEL", description="DEBUG, INFO, WARNING or ERROR.")
    data_dir: str | None = Field(None, validation_alias="SM_DATA_DIR",
                                 description="Faust's data directory (default: a temp folder).")
    fetch_max_wait_ms: int = Field(
        100, ge=1, le=1500, validation_alias="SM_FETCH_MAX_WAIT_MS",
        description="How long the broker may hold a fetch for partitions without new records "
        "(Faust's own value is 1500 ms, which stalls a busy partition next to an idle one).")
    client_id: str | None = Field(
        None, validation_alias="SM_CLIENT_ID",
        description="Kafka client id of the worker's consumer and producer (shown by "
        "kafka-consumer-groups --describe); default <SM_APP_ID>-<host>-<pid>.")
    shutdown_timeout_seconds: float = Field(
        30.0, gt=0, validation_alias="SM_SHUTDOWN_TIMEOUT_SECONDS",
        description="On SIGTERM/SIGINT the worker exits within this many seconds, whatever is "
        "stuck: the batch in flight is finished or left uncommitted for redelivery.")
    model_cache_size: int = Field(
        5000, ge=1, validation_alias="SM_MODEL_CACHE_SIZE",
        description="Model states (units) kept in memory, least recently used evicted first; "
        "an evicted model is reloaded from Redis on its next event.")
    max_output_bytes: int = Field(
        1_000_000, ge=10_000, validation_alias="SM_MAX_OUTPUT_BYTES",
        description="Largest output record (key + value + headers) the worker sends; the "
        "producer's max_request_size is set above it. Keep it at or below the output topics' "
        "max.message.bytes.")
    store_retry_max_seconds: float = Field(
        2.0, gt=0, validation_alias="SM_STORE_RETRY_MAX_SECONDS",
        description="Cap on the backoff while Redis is down (the worker tries again within "
        "this long of its return).")

    # -- Schema Registry (input.*.format avro/protobuf/json_schema; docs/contracts.md) ---------
    schema_registry_url: str | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_URL",
        description="Base URL of a Confluent-compatible Schema Registry API (Apicurio: "
        "http(s)://host:port/apis/ccompat/v7); needed when an input format is not json.")
    schema_registry_username: str | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_USERNAME",
        description="Basic-auth user of the registry.")
    schema_registry_password: SecretStr | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_PASSWORD",
        description="Basic-auth password of the registry (secret).")
    schema_registry_password_file: Path | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_PASSWORD_FILE",
        description="File holding the registry password.")
    schema_registry_ssl_ca_location: Path | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_SSL_CA_LOCATION",
        description="CA (PEM) of the registry's https certificate; default: the system's.")
    schema_registry_ssl_certificate_location: Path | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION",
        description="Client certificate (PEM) for mutual TLS with the registry.")
    schema_registry_ssl_key_location: Path | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_SSL_KEY_LOCATION",
        description="Its private key (PEM).")
    schema_registry_timeout_seconds: float = Field(
        10.0, gt=0, validation_alias="SCHEMA_REGISTRY_TIMEOUT_SECONDS",
        description="Timeout of one registry request; a timeout counts as the registry down.")
    schema_registry_retry_max_seconds: float = Field(
        5.0, gt=0, validation_alias="SCHEMA_REGISTRY_RETRY_MAX_SECONDS",
        description="Cap on the backoff while the registry is down (the batch waits, "
        "uncommitted).")

    def schema_registry_password_value(self) -> str | None:
        return _secret(self.schema_registry_password, self.schema_registry_password_file)

    @model_validator(mode="after")
    def _registry_consistent(self) -> Settings:
        problems = _registry_problems(self)
        if problems:
            raise ValueError("\n".join(f"{var}: {msg}" for var, msg in problems))
        return self


def _registry_problems(s: Settings) -> list[tuple[str, str]]:
    """(variable, problem and fix) of the Schema Registry settings; never shows a secret."""
    problems: list[tuple[str, str]] = []
    url = s.schema_registry_url
    if url is not None and not url.startswith(("http://", "https://")):
        problems.append(("SCHEMA_REGISTRY_URL", "write it as http(s)://host:port[/path], e.g. "
                         "http://registry:8080/apis/ccompat/v7"))
    password = s.schema_registry_password is not None or s.schema_registry_password_file is not None
    if s.schema_registry_password is not None and s.schema_registry_password_file is not None:
        problems.append(("SCHEMA_REGISTRY_PASSWORD", "both SCHEMA_REGISTRY_PASSWORD and "
                         "SCHEMA_REGISTRY_PASSWORD_FILE are set; keep one"))
    if password != (s.schema_registry_username is not None):
        problems.append(("SCHEMA_REGISTRY_USERNAME", "basic auth needs both "
                         "SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD(_FILE)"))
    files = [("SCHEMA_REGISTRY_PASSWORD_FILE", s.schema_registry_password_file),
             ("SCHEMA_REGISTRY_SSL_CA_LOCATION", s.schema_registry_ssl_ca_location),
             ("SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION",
              s.schema_registry_ssl_certificate_location),
             ("SCHEMA_REGISTRY_SSL_KEY_LOCATION", s.schema_registry_ssl_key_location)]
    for var, path in files:
        if path is None:
            continue
        try:
            path.open("rb").close()
        except OSError as exc:
            problems.append((var, f"cannot read {path}: {exc.strerror}; mount the file there "
                             "or fix the path"))
    tls = [v for v, p in files[1:] if p is not None]
    if tls and url is not None and not url.startswith("https://"):
        problems.append(("SCHEMA_REGISTRY_URL", f"{', '.join(tls)} set, but the URL is not "
                         "https://; use https, or unset them"))
    if ((s.schema_registry_ssl_certificate_location is None)
            != (s.schema_registry_ssl_key_location is None)):
        problems.append(("SCHEMA_REGISTRY_SSL_KEY_LOCATION", "mutual TLS needs both "
                         "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION and "
                         "SCHEMA_REGISTRY_SSL_KEY_LOCATION"))
    return problems
