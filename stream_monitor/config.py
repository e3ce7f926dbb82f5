"""The monitoring config (YAML): its schema, its checks, and its compilation into the core's plan.

The YAML file says *what* to watch: which models, which signals, which detectors. It is
validated at start (every problem reported with the field's dotted path and a fix; detector
parameters against the core's catalogue, core/detectors.py) and compiled once into the frozen
:class:`~stream_monitor.core.plan.MonitorPlan` the core runs from (:func:`compile_plan`).
Where to run (Kafka, Redis, batch sizes, topic-name overrides) is the environment's:
stream_monitor/settings.py.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .contracts.signals import (
    BRIER_SIGNAL,
    CLASS_MIX,
    CONFIDENCE,
    EMBEDDING,
    ESTIMATE_GAP,
    ESTIMATED_ERROR,
    JOINT,
    PERCENTAGE_ERROR_SIGNAL,
    PERFORMANCE_SIGNAL,
    PREDICTION,
    PROBABILITY_PREFIX,
    SQUARED_ERROR_SIGNAL,
)
from .core import plan as cp
from .core.detectors import REGISTRY
from .core.plan import PHASE_BINS, WEEK, MonitorPlan
from .errors import ConfigError
from .schema_errors import explain
from .settings import Settings

__all__ = [
    "INDICATORS",
    "PHASE_BINS",
    "WEEK",
    "AlertLifecycle",
    "Bounds",
    "DetectorSpec",
    "EmbeddingRule",
    "FalseAlarmBudget",
    "IncidentRule",
    "Input",
    "InputTopic",
    "JointRule",
    "LabelRule",
    "LearnedBounds",
    "ModelRule",
    "MonitorConfig",
    "MonitorPlan",
    "PerformanceRule",
    "Persistence",
    "Privacy",
    "ProbabilityRule",
    "Quality",
    "QualityRule",
    "RetrainRule",
    "SignalRule",
    "VersionRule",
    "compile_plan",
    "compile_retrain",
    "load_config",
    "parse_config",
    "parse_duration",
    "read_config",
    "validate_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSpec(_Strict):
    """A named detector instance: a registered type and its parameters."""

    type: str = Field(description="Registered detector type, e.g. adwin, page_hinkley, kswin, ddm.")
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of our defaults.")

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in REGISTRY:
            raise ValueError(f"unknown detector type {v!r}; use one of: {', '.join(REGISTRY)}")
        return v

    def check_params(self) -> list[tuple[str, str]]:
        """Problems with the parameters, as (sub-path, message) pairs."""
        kind = REGISTRY[self.type]
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
        return REGISTRY[self.type].params(self.params)


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

    def compile(self) -> cp.Budget:
        return cp.Budget(self.per_events, self.pages_per_week, self.values_per_second)

    def per_value(self) -> float:
        """False alarms allowed per value of a signal."""
        return self.compile().per_value()

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
    persistence: Persistence = Field(default_factory=Persistence)
    cooldown_seconds: float = Field(86400.0, ge=0,
                                    description="No new request for this long after one.")
    max_per_day: int | None = Field(None, ge=1,
                                    description="Budget: requests per UTC day (event time).")
    staleness_seconds: float | None = Field(
        None, gt=0, description="Request when performance degraded and no retrain for this long.")
    count: Literal["signals", "incidents"] = Field(
        "signals", description="What the k-of-n rule counts: distinct drifted signals "
        "(min_drifted_signals), or distinct incidents (min_incidents; needs the model's "
        "`incidents`), so one upstream break over many features counts once.")
    min_incidents: int = Field(1, ge=1, description="k when count is incidents: distinct "
                               "incidents with confirmed evidence needed.")

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


class IncidentRule(_Strict):
    """Group a model's drift alerts into incidents (docs/incidents.md): an alert detected within
    ``window_seconds`` of event time of an open incident's first alert joins it; the incident
    resolves when every signal of it has come back (needs the alert lifecycle, ``alerts``)."""

    window_seconds: float = Field(900.0, gt=0, description="Alerts detected within this much "
                                  "event time of the incident's first alert join it.")


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
    max_classes_per_event: int = Field(
        100, ge=2, le=10_000, description="More classes in an event's `probabilities`: "
        "`too_many_classes` (docs/probabilities.md).")
    max_embedding_length: int = Field(
        1024, ge=2, le=65_536, description="More elements in an event's `embeddings`: "
        "`embedding_too_long` (docs/joint-drift.md).")
    max_id_length: int = Field(
        256, ge=8, description="Longer model_id, event_id or model_version: `id_too_long`.")
    dead_letter_max_bytes: int = Field(
        65_536, ge=256, le=262_144, description="Head of a bad record's value kept in its dead "
        "letter (the rest: length and SHA-256 only), so a dead letter always fits the topic.")
    unknown_model: Literal["ignore", "dead_letter"] = Field(
        "ignore", description="Events no model rule matches: skip, or dead-letter.")
    duplicates: Duplicates = Field(default_factory=Duplicates)
    timestamps: Timestamps = Field(default_factory=Timestamps)
    defaults: QualityRule = Field(default_factory=QualityRule)


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


class ProbabilityRule(_Strict):
    """What is watched of the events' class probabilities (docs/probabilities.md). Signals no
    signal rule of the model names are watched by a calibrated cusum under the model's budget."""

    classes: bool = Field(True, description="Each class's probability: `probability:<class>`.")
    confidence: bool = Field(True, description="The largest probability: `confidence`.")
    class_mix: bool = Field(
        True, description="The arg-max class as a categorical signal `predicted_class` (only "
        "when the prediction is not itself a class label, which `prediction` watches).")
    max_classes: int = Field(
        20, ge=1, le=1000, description="Classes per model given a `probability:<class>` signal "
        "(the first seen); the others count in `confidence` and `predicted_class` only.")
    estimate: bool = Field(
        True, description="Estimate the error from the confidence, calibrated on labelled "
        "events (inline labels or the labels topic): `performance:estimated_error`, and its "
        "gap to the realized error, `estimate_gap`.")
    calibration_size: int | None = Field(
        None, ge=50, le=100_000, description="Labelled events the estimate is calibrated on "
        "(default: the model's reference_size).")


class JointRule(_Strict):
    """The joint signal `joint` over the model's numeric features together (docs/joint-drift.md):
    the Mahalanobis distance of each event's standardized features against a fit on the first
    events, watched by a calibrated cusum under the model's budget unless a signal rule names it.
    """

    features: list[str] | None = Field(
        None, description="The features watched together (at least 2); default: the numeric "
        "features of the model's first event with two or more, sorted, at most max_features.")
    max_features: int = Field(
        32, ge=2, le=200, description="At most this many features (the fit's state grows as "
        "their square).")
    fit_size: int | None = Field(
        None, ge=50, le=100_000, description="Events (with every watched feature) the fit is "
        "made on; default: the model's reference_size. At least 5 per feature.")

    @model_validator(mode="after")
    def _check(self) -> JointRule:
        f = self.features
        if f is not None:
            if len(f) < 2:
                raise ValueError("features: name at least 2 features (a joint signal of one "
                                 "feature is its own signal), or leave it out to use the "
                                 "model's numeric features")
            if len(set(f)) != len(f):
                raise ValueError("features: a feature is named twice; name each once")
            if len(f) > self.max_features:
                raise ValueError(f"features: {len(f)} names, over max_features = "
                                 f"{self.max_features}; name fewer or raise max_features")
        if self.fit_size is not None:
            p = len(f) if f is not None else self.max_features
            if self.fit_size < 5 * p:
                raise ValueError(f"fit_size: {self.fit_size} events cannot fit {p} features "
                                 f"(at least 5 per feature: {5 * p}); raise fit_size or lower "
                                 "max_features / name fewer features")
        return self


class EmbeddingRule(_Strict):
    """The signal `embedding` over the events' `embeddings` vectors (docs/joint-drift.md): each
    vector's fixed random projections (the same in every worker), watched together as `joint`
    watches features."""

    components: int = Field(
        16, ge=2, le=64, description="Random projections of the vector watched together.")
    fit_size: int | None = Field(
        None, ge=50, le=100_000, description="Events with an embedding the fit is made on; "
        "default: the model's reference_size. At least 5 per component.")

    @model_validator(mode="after")
    def _check(self) -> EmbeddingRule:
        if self.fit_size is not None and self.fit_size < 5 * self.components:
            raise ValueError(f"fit_size: {self.fit_size} events cannot fit {self.components} "
                             f"components (at least 5 per component: {5 * self.components}); "
                             "raise fit_size or lower components")
        return self


class PerformanceRule(_Strict):
    """Windowed performance metrics of the model's labelled events (docs/metrics.md): accuracy,
    per-class precision/recall/F1, AUC, Brier score and calibration error for classifiers;
    RMSE, MAE and MAPE for regressors. In alert evidence, replay's summary and `/metrics`."""

    window: int = Field(
        500, ge=10, le=100_000, description="Labelled events the metrics are computed over (the "
        "last ones). Saved with the model's state: each costs about 100 bytes there (more with "
        "many class probabilities).")
    max_classes: int = Field(
        20, ge=1, le=1000, description="Classes given per-class precision/recall/F1 (those with "
        "the most labels in the window); the macro averages count them all.")
    calibration_bins: int = Field(
        10, ge=2, le=100, description="Equal-width confidence bins of the expected calibration "
        "error.")
    watch: list[Literal["brier", "squared_error", "percentage_error"]] = Field(
        default_factory=list, description="Per-event contributions watched as signals under the "
        "budget: `performance:brier`, `performance:squared_error`, `performance:percentage_error` "
        "(the windowed metrics themselves are autocorrelated; docs/metrics.md says why their "
        "contributions are watched instead).")


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
    retrain: RetrainRule = Field(default_factory=RetrainRule)
    alerts: AlertLifecycle | None = Field(None, description="Alert lifecycle; null: off.")
    quality: QualityRule | None = Field(
        None, description="Overrides quality.defaults, field by field.")
    labels: LabelRule | None = Field(
        None, description="Delayed labels from the labels topic; null: off.")
    versions: VersionRule = Field(default_factory=VersionRule)
    false_alarm_budget: FalseAlarmBudget | None = Field(
        None, description="Overrides the top-level false-alarm budget for this model's signals.")
    probabilities: ProbabilityRule | None = Field(
        default_factory=ProbabilityRule, description="Watching the events' `probabilities` "
        "(docs/probabilities.md); null: not watched.")
    performance: PerformanceRule | None = Field(
        default_factory=PerformanceRule, description="Windowed performance metrics of the labelled "
        "events (docs/metrics.md); null: none.")
    incidents: IncidentRule | None = Field(
        None, description="Group the model's alerts into incidents (docs/incidents.md); null: off.")
    joint: JointRule | None = Field(
        None, description="Watch the numeric features together, signal `joint` "
        "(docs/joint-drift.md); null: off.")
    embeddings: EmbeddingRule | None = Field(
        None, description="Watch the events' `embeddings` vectors, signal `embedding` "
        "(docs/joint-drift.md); null: off.")

    @model_validator(mode="after")
    def _incidents_need(self) -> ModelRule:
        if self.incidents is not None and self.alerts is None:
            raise ValueError("incidents needs the alert lifecycle, which resolves the incident's "
                             "signals: add `alerts: {}` (or its settings) to this model rule")
        if self.retrain.count == "incidents" and self.incidents is None:
            raise ValueError("retrain.count: incidents needs the model's incidents: add "
                             "`incidents: {window_seconds: 900}` (and `alerts: {}`) to this model "
                             "rule, or use retrain.count: signals")
        return self


class Topics(_Strict):
    inference: str = "inference-events"
    alerts: str = "drift-alerts"
    retrain: str = "retrain-requests"
    dead_letter: str = "inference-dead-letter"
    operations: str = "stream-monitor-ops"
    labels: str = "inference-labels"
    deployments: str = "model-deployment-checks"
    incidents: str = "model-incidents"


InputFormat = Literal["json", "avro", "protobuf", "json_schema"]
_INFERENCE_FIELDS = ("event_id", "model_id", "model_version", "timestamp", "features",
                     "prediction", "label", "probabilities")
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


class Input(_Strict):
    """The input topics' formats and field mappings."""

    inference: InputTopic = Field(default_factory=InputTopic)
    labels: InputTopic = Field(default_factory=InputTopic)


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
    input: Input = Field(default_factory=Input)
    windows: Windows = Field(default_factory=Windows)
    detectors: dict[str, DetectorSpec] = Field(default_factory=_default_detectors)
    quality: Quality = Field(default_factory=Quality)
    false_alarm_budget: FalseAlarmBudget | None = Field(
        None, description="Default false-alarm budget of every signal; null: detectors keep "
        "their configured parameters (cusum detectors then use 1 per 1,000,000 values).")
    models: list[ModelRule] = Field(min_length=1)
    privacy: Privacy = Field(default_factory=Privacy)
    metrics: MetricsRule = Field(default_factory=MetricsRule)

    def with_topics(self, **overrides: str | None) -> MonitorConfig:
        given = {k: v for k, v in overrides.items() if v}
        if not given:
            return self
        return self.model_copy(update={"topics": self.topics.model_copy(update=given)})


def _match(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def _signal_rule(rule: ModelRule, signal: str) -> SignalRule | None:
    """The first signal rule of a model rule whose glob matches the signal."""
    return next((sr for sr in rule.signals if _match(sr.match, signal)), None)


def _quality_rule(cfg: MonitorConfig, rule: ModelRule) -> QualityRule:
    """The effective value rules of a model: ``quality.defaults``, overridden field by field by
    the fields the model rule's own ``quality`` sets.

    >>> cfg = validate_config({"quality": {"defaults": {"indicators": ["missing"]}},
    ...     "models": [{"match": "m", "signals": [{"match": "*", "detectors": ["adwin"]}],
    ...                 "quality": {"categorical": True}}]})
    >>> q = _quality_rule(cfg, cfg.models[0])
    >>> q.indicators, q.categorical
    (['missing'], True)
    """
    own = rule.quality
    if own is None:
        return cfg.quality.defaults
    update = {k: getattr(own, k) for k in own.model_fields_set}
    return cfg.quality.defaults.model_copy(update=update)


# ---------------------------------------------------------------------------------------------
# Checks across fields, each problem with the field's path and the fix.

# Signal names that are not a prefix and a name (docs/probabilities.md for the last four).
_FIXED_SIGNALS = (PREDICTION, PERFORMANCE_SIGNAL, CONFIDENCE, CLASS_MIX, ESTIMATED_ERROR,
                  ESTIMATE_GAP, JOINT, EMBEDDING, BRIER_SIGNAL, SQUARED_ERROR_SIGNAL,
                  PERCENTAGE_ERROR_SIGNAL)


def _can_match_a_signal(pattern: str) -> bool:
    """False when a glob can match none of the fixed signal names (`prediction`, ...) nor any
    `feature:<name>` or `probability:<class>`: the text before its first wildcard must then
    be a prefix of one of those prefixes or start with it."""
    if any(_match(pattern, name) for name in _FIXED_SIGNALS):
        return True
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return any(literal.startswith(p) or p.startswith(literal)
               for p in ("feature:", PROBABILITY_PREFIX))


def _cross_check(cfg: MonitorConfig) -> list[tuple[str, str]]:
    problems = []
    for name, spec in cfg.detectors.items():
        problems += [(f"detectors.{name}.{sub}", msg) for sub, msg in spec.check_params()]
    for i, rule in enumerate(cfg.models):
        for j, sr in enumerate(rule.signals):
            if not _can_match_a_signal(sr.match):
                problems.append((f"models[{i}].signals[{j}].match",
                                 f"{sr.match!r} can match no signal; signals are named "
                                 "'feature:<name>', 'prediction' or 'performance:error' (with "
                                 "class probabilities also 'probability:<class>', "
                                 "'confidence', 'predicted_class', "
                                 "'performance:estimated_error', 'estimate_gap'; with a "
                                 "joint rule 'joint', with embeddings 'embedding')"))
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
        sr = _signal_rule(rule, PERFORMANCE_SIGNAL)
        if sr is None:
            problems.append((f"models[{i}].labels", "no signal rule matches "
                             f"'{PERFORMANCE_SIGNAL}', so joined labels would be watched by no "
                             "detector; add to its signals: {match: 'performance:*', "
                             "detectors: [ddm, adwin]}"))
            continue
        if rule.labels.task == "regression":
            for name in sr.detectors:
                spec = cfg.detectors.get(name)
                if spec is not None and REGISTRY[spec.type].input == "binary":
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
        eff = _quality_rule(cfg, rule)
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


def validate_config(raw: Any, source: str = "config") -> MonitorConfig:
    """The config's schema, checked field by field and across fields; raises
    :class:`ConfigError` naming every problem and its fix."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            [("(top level)", "the config must be a YAML mapping with at least `models`")], source)
    try:
        cfg = MonitorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain(exc, MonitorConfig), source) from None
    problems = _cross_check(cfg)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def parse_config(raw: Any, source: str = "config") -> MonitorPlan:
    """Validate a parsed YAML document and compile it into the core's plan."""
    return compile_plan(validate_config(raw, source))


def read_config(path: str | os.PathLike[str], settings: Settings | None = None) -> MonitorConfig:
    """Read and validate a monitoring config file; topic names may be overridden by env."""
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
    cfg = validate_config(raw, str(p))
    s = settings or Settings()
    return cfg.with_topics(inference=s.topic_inference, alerts=s.topic_alerts,
                           retrain=s.topic_retrain, dead_letter=s.topic_dead_letter,
                           operations=s.topic_operations, labels=s.topic_labels,
                           deployments=s.topic_deployments, incidents=s.topic_incidents)


def load_config(path: str | os.PathLike[str], settings: Settings | None = None) -> MonitorPlan:
    """Read, validate and compile a monitoring config file (:func:`read_config`)."""
    return compile_plan(read_config(path, settings))


# ---------------------------------------------------------------------------------------------
# Compilation into the core's plan (core/plan.py): every default and glob resolved once.

def compile_plan(cfg: MonitorConfig) -> MonitorPlan:
    """The frozen plan the core runs from, for a validated config."""
    detectors = {name: _detector(name, spec) for name, spec in cfg.detectors.items()}
    q = cfg.quality
    return MonitorPlan(
        topics=cp.Topics(**cfg.topics.model_dump()),
        input=cp.InputPlan(_input_topic(cfg.input.inference), _input_topic(cfg.input.labels)),
        windows=cp.Windows(**cfg.windows.model_dump()),
        detectors=MappingProxyType(detectors),
        quality=cp.EventRules(
            max_message_bytes=q.max_message_bytes,
            max_features_per_event=q.max_features_per_event,
            max_features_per_model=q.max_features_per_model,
            max_id_length=q.max_id_length, dead_letter_max_bytes=q.dead_letter_max_bytes,
            max_classes_per_event=q.max_classes_per_event,
            max_embedding_length=q.max_embedding_length,
            unknown_model=q.unknown_model,
            duplicates=cp.Duplicates(q.duplicates.window_seconds),
            timestamps=cp.Timestamps(q.timestamps.max_future_seconds,
                                     q.timestamps.max_past_seconds)),
        false_alarm_budget=_budget(cfg.false_alarm_budget),
        models=tuple(_model(cfg, rule, detectors) for rule in cfg.models),
        privacy=cp.PrivacyPlan(**cfg.privacy.model_dump()),
        metrics=cp.MetricsPlan(cfg.metrics.signal_gauges, tuple(cfg.metrics.signals)),
    )


def _detector(name: str, spec: DetectorSpec) -> cp.DetectorSpec:
    return cp.DetectorSpec(name, spec.type, REGISTRY[spec.type].input,
                           MappingProxyType(dict(spec.params)),
                           MappingProxyType(spec.effective_params))


# The detector that watches a probability signal no signal rule names (core/plan.py
# ProbabilityPlan.default_rule): a calibrated cusum, under this name unless the config has a
# cusum of its own with our default parameters.
_PROBABILITY_DETECTOR = "cusum"


def _probability_detector(detectors: Mapping[str, cp.DetectorSpec]) -> cp.DetectorSpec:
    """The probability signals' default detector: the config's cusum with our default
    parameters, else one of our own (not in the plan's ``detectors``, which stay the
    config's), named so that it shadows no detector of the config."""
    plain = REGISTRY["cusum"].params({})
    for spec in detectors.values():
        if spec.type == "cusum" and dict(spec.effective_params) == plain:
            return spec
    name = _PROBABILITY_DETECTOR
    while name in detectors:
        name = "_" + name
    return _detector(name, DetectorSpec(type="cusum"))


def _default_watch(detectors: Mapping[str, cp.DetectorSpec], reference_size: int,
                   model_least: int, own: FalseAlarmBudget | None,
                   ) -> tuple[cp.DetectorSpec, cp.SignalPlan]:
    """The detector and signal rule that watch a derived signal (probabilities, joint,
    embedding, metric contributions) no signal rule of the model names: a plain cusum
    calibrated to the model's budget."""
    det = _probability_detector(detectors)
    default = _signal(SignalRule(match="*", detectors=[det.name]), {**detectors, det.name: det},
                      reference_size, model_least, own)
    return det, default


def _probabilities(rule: ModelRule, detectors: Mapping[str, cp.DetectorSpec],
                   reference_size: int, model_least: int,
                   own: FalseAlarmBudget | None) -> cp.ProbabilityPlan | None:
    p = rule.probabilities
    if p is None:
        return None
    det, default = _default_watch(detectors, reference_size, model_least, own)
    return cp.ProbabilityPlan(
        classes=p.classes, confidence=p.confidence, class_mix=p.class_mix,
        max_classes=p.max_classes, estimate=p.estimate,
        calibration_size=p.calibration_size or reference_size, default_rule=default,
        detector=det)


def _joint(rule: ModelRule, detectors: Mapping[str, cp.DetectorSpec], reference_size: int,
           model_least: int, own: FalseAlarmBudget | None) -> cp.JointPlan | None:
    j = rule.joint
    if j is None:
        return None
    det, default = _default_watch(detectors, reference_size, model_least, own)
    fit_size = j.fit_size or reference_size
    return cp.JointPlan(features=tuple(j.features or ()), max_features=j.max_features,
                        fit_size=fit_size, default_rule=default, detector=det)


def _embedding(rule: ModelRule, detectors: Mapping[str, cp.DetectorSpec], reference_size: int,
               model_least: int, own: FalseAlarmBudget | None) -> cp.JointPlan | None:
    e = rule.embeddings
    if e is None:
        return None
    det, default = _default_watch(detectors, reference_size, model_least, own)
    return cp.JointPlan(features=(), max_features=e.components,
                        fit_size=e.fit_size or reference_size, default_rule=default,
                        detector=det)


def _performance(rule: ModelRule, detectors: Mapping[str, cp.DetectorSpec],
                 reference_size: int, model_least: int,
                 own: FalseAlarmBudget | None) -> cp.PerformancePlan | None:
    m = rule.performance
    if m is None:
        return None
    det, default = _default_watch(detectors, reference_size, model_least, own)
    return cp.PerformancePlan(window=m.window, max_classes=m.max_classes, bins=m.calibration_bins,
                              watch=frozenset("performance:" + w for w in m.watch),
                              default_rule=default, detector=det)


def _budget(b: FalseAlarmBudget | None) -> cp.Budget | None:
    return None if b is None else b.compile()


def _input_topic(t: InputTopic) -> cp.InputTopic:
    return cp.InputTopic(t.format, MappingProxyType(dict(t.fields)), tuple(t.feature_fields))


def _model(cfg: MonitorConfig, rule: ModelRule,
           detectors: Mapping[str, cp.DetectorSpec]) -> cp.ModelPlan:
    windows = cfg.windows
    reference_size = rule.reference_size or windows.reference_size
    own = rule.false_alarm_budget or cfg.false_alarm_budget
    model_least = (rule.reference_min_size if rule.reference_min_size is not None
                   else windows.reference_min_size)
    signals = tuple(_signal(sr, detectors, reference_size, model_least, own)
                    for sr in rule.signals)
    q = _quality_rule(cfg, rule)
    fault_dets = tuple(detectors[d] for d in q.detectors if d in detectors)
    fault_budget = cp.effective_budget(_budget(own), fault_dets)
    quality = cp.QualityPlan(
        bounds=MappingProxyType({f: cp.Bounds(b.min, b.max) for f, b in q.bounds.items()}),
        learned_bounds=(None if q.learned_bounds is None else
                        cp.LearnedBounds(q.learned_bounds.quantiles, q.learned_bounds.k)),
        categorical=q.categorical, max_categories=q.max_categories,
        indicators=tuple(q.indicators), detectors=tuple(q.detectors),
        sample_events=q.sample_events, reference_samples=q.reference_samples,
        evidence_samples=q.evidence_samples,
        detector_params=tuple(d.build_params for d in fault_dets),
        binary=tuple(d.input == "binary" for d in fault_dets),
        budget=fault_budget,
        watched_after=cp.watched_after(reference_size, model_least, fault_budget is not None,
                                       False))
    a, lab, v = rule.alerts, rule.labels, rule.versions
    return cp.ModelPlan(
        match=rule.match, signals=signals, reference_size=reference_size,
        recent_size=rule.recent_size or windows.recent_size, sample_rate=rule.sample_rate,
        retrain=compile_retrain(rule.retrain),
        alerts=None if a is None else cp.LifecyclePolicy(**a.model_dump()),
        quality=quality,
        labels=None if lab is None else cp.LabelPolicy(**lab.model_dump()),
        versions=cp.VersionPolicy(**v.model_dump()),
        probabilities=_probabilities(rule, detectors, reference_size, model_least, own),
        performance=_performance(rule, detectors, reference_size, model_least, own),
        incidents=(None if rule.incidents is None
                   else cp.IncidentPolicy(rule.incidents.window_seconds)),
        joint=_joint(rule, detectors, reference_size, model_least, own),
        embedding=_embedding(rule, detectors, reference_size, model_least, own))


def _signal(sr: SignalRule, detectors: Mapping[str, cp.DetectorSpec], reference_size: int,
            model_least: int, model_budget: FalseAlarmBudget | None) -> cp.SignalPlan:
    dets = tuple(detectors[d] for d in sr.detectors)
    budget = cp.effective_budget(_budget(sr.false_alarm_budget or model_budget), dets)
    # A categorical signal: one multinomial CUSUM, named by the rule's cusum (or
    # multinomial_cusum), else by its first detector; a multinomial_cusum keeps its parameters.
    cat = next((d for d in dets if d.type in ("cusum", "multinomial_cusum")), dets[0])
    cat_params = dict(cat.params) if cat.type == "multinomial_cusum" else {}
    least = sr.reference_min_size if sr.reference_min_size is not None else model_least
    budgeted = budget is not None
    return cp.SignalPlan(
        match=sr.match, detectors=tuple(sr.detectors),
        detector_params=tuple(d.build_params for d in dets),
        binary=tuple(d.input == "binary" for d in dets),
        kind=sr.kind,
        categorical=sr.kind == "categorical" or any(
            d.type == "multinomial_cusum" for d in dets),
        category_detector=cat.name,
        category_params=MappingProxyType({"__type__": "multinomial_cusum", **cat_params}),
        period=sr.period, period_values=sr.period_values, period_seconds=sr.period_seconds,
        budget=budget, reference_size=reference_size,
        watched_after=cp.watched_after(reference_size, least, budgeted, bool(sr.period)),
        categorical_watched_after=cp.watched_after(reference_size, least, budgeted,
                                                   bool(sr.period_values)))


def compile_retrain(r: RetrainRule) -> cp.RetrainPolicy:
    """A model rule's retrain policy (core/retrain.py)."""
    return cp.RetrainPolicy(
        min_drifted_signals=r.min_drifted_signals, signals=tuple(r.signals),
        any_performance_signal=r.any_performance_signal,
        performance_signals=tuple(r.performance_signals), within_seconds=r.within_seconds,
        within_events=r.within_events,
        persistence=cp.Persistence(r.persistence.values, r.persistence.seconds,
                                   r.persistence.min_shift),
        cooldown_seconds=r.cooldown_seconds, max_per_day=r.max_per_day,
        staleness_seconds=r.staleness_seconds, count=r.count, min_incidents=r.min_incidents)
