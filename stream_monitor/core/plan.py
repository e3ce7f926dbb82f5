"""The monitoring plan: what the core watches and how, as frozen, typed parts.

The YAML config (``stream_monitor/config.py``, the schema) is validated and compiled once, at
load, into a :class:`MonitorPlan` (``config.compile_plan``). The core builds and updates its
signals from the plan alone and never reads the YAML schema: every choice a config leaves to
defaults or to a glob is made here, once.

* Per model rule (:class:`ModelPlan`): its signal rules (:class:`SignalPlan`), each with its
  detectors and their parameters, its false-alarm budget (the signal rule's, else the model
  rule's, else the top-level one, else the default when a calibrated CUSUM watches it), its
  period and the values it needs before it is watched; the reference and recent window sizes;
  the value rules (:class:`QualityPlan`, ``quality.defaults`` overlaid by the rule's own); the
  label, retrain, alert-lifecycle and version policies.
* Globs are matched by the plan: :meth:`MonitorPlan.model_rule` (per model id) and
  :meth:`ModelPlan.signal_rule` (per signal name) remember their answers, as do the retrain
  policy's signal globs.

``stream-monitor check-config`` prints this object (``stream_monitor/plan.py``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..contracts.signals import (
    CLASS_MIX,
    CONFIDENCE,
    EMBEDDING,
    ESTIMATE_GAP,
    ESTIMATED_ERROR,
    JOINT,
    PROBABILITY_PREFIX,
)
from ..contracts.wire import FieldMapping

__all__ = [
    "CALIBRATED_TYPES",
    "DEFAULT_BUDGET",
    "PHASE_BINS",
    "WEEK",
    "Bounds",
    "Budget",
    "DetectorSpec",
    "Duplicates",
    "EventRules",
    "IncidentPolicy",
    "InputPlan",
    "InputTopic",
    "JointPlan",
    "LabelPolicy",
    "LearnedBounds",
    "LifecyclePolicy",
    "MetricsPlan",
    "ModelPlan",
    "MonitorPlan",
    "PerformancePlan",
    "Persistence",
    "PrivacyPlan",
    "ProbabilityPlan",
    "QualityPlan",
    "RetrainPolicy",
    "SignalPlan",
    "Timestamps",
    "Topics",
    "VersionPolicy",
    "Windows",
    "effective_budget",
    "watched_after",
]

AlertEvidence = Literal["full", "aggregate", "none"]
DeadLetterPayload = Literal["full", "truncated", "hash"]
InputFormat = Literal["json", "avro", "protobuf", "json_schema"]
SignalKind = Literal["auto", "categorical"]
Task = Literal["classification", "regression"]
UnknownModel = Literal["ignore", "dead_letter"]

WEEK = 7 * 86400.0
# Phase bins of a known period (at most; a period of fewer values has one bin per value).
PHASE_BINS = 48
# Detector types whose thresholds come from the budget (core/calibrate.py, core/bernoulli.py).
CALIBRATED_TYPES = ("cusum", "bernoulli_cusum", "multinomial_cusum")
# Lookups remembered per model id or signal name; cleared past this many (ids of models no rule
# watches must not grow them without bound).
_CACHE_MAX = 100_000


def _glob(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


@dataclass(frozen=True, slots=True)
class Budget:
    """A false-alarm budget (docs/detection.md "False-alarm budget"): per signal,
    ``per_events`` (one false alarm per that many values), or for the deployment,
    ``pages_per_week`` at ``values_per_second``."""

    per_events: float | None = None
    pages_per_week: float | None = None
    values_per_second: float | None = None

    def per_value(self) -> float:
        """False alarms allowed per value of a signal."""
        if self.per_events is not None:
            return 1.0 / self.per_events
        assert self.pages_per_week is not None and self.values_per_second is not None
        return float(self.pages_per_week) / (float(self.values_per_second) * WEEK)

    def label(self) -> str:
        """One line for humans."""
        if self.per_events is not None:
            return f"1 false alarm per {self.per_events:,.0f} values of each signal"
        return (f"{self.pages_per_week:g} false alerts a week at {self.values_per_second:g} "
                "values/s")

    def describe(self) -> dict[str, float]:
        """The fields that are set, as configured (kept with a signal's calibration)."""
        out = {"per_events": self.per_events, "pages_per_week": self.pages_per_week,
               "values_per_second": self.values_per_second}
        return {k: v for k, v in out.items() if v is not None}


DEFAULT_BUDGET = Budget(per_events=1_000_000)


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """A named detector of the config: its registered type, the parameters the config sets
    (``params``) and those with our defaults under them (``effective_params``, validated by
    the type's constructor at load)."""

    name: str
    type: str
    input: str  # "standardized", "binary" or "categorical" (core/detectors.py)
    params: Mapping[str, Any]  # a detector's constructor arguments (River's or ours)
    effective_params: Mapping[str, Any]

    @property
    def build_params(self) -> dict[str, Any]:
        """What a signal keeps to build the detector: the type and the configured
        parameters (core/signals.py ``detector_params``)."""
        return {"__type__": self.type, **self.params}


@dataclass(frozen=True, slots=True)
class Windows:
    reference_size: int
    reference_min_size: int
    recent_size: int
    evidence_size: int


@dataclass(frozen=True, slots=True)
class SignalPlan:
    """One signal rule of a model rule, resolved: what watches the signals its glob matches."""

    match: str
    detectors: tuple[str, ...]
    # Per detector: the type and configured parameters, and whether it takes 0/1 values.
    detector_params: tuple[Mapping[str, Any], ...]
    binary: tuple[bool, ...]
    kind: SignalKind
    # Whether every value is a category (``kind: categorical`` or a multinomial_cusum).
    categorical: bool
    # A categorical signal is watched by one multinomial CUSUM in place of the rule's
    # detectors: the rule's cusum or multinomial_cusum (else its first detector) names it.
    category_detector: str
    category_params: Mapping[str, Any]
    period: int | str | None  # as configured
    period_values: int  # a period in values (0: none, or one of event time)
    period_seconds: float  # a period of event time (0: none, or one in values)
    budget: Budget | None  # None: not calibrated (detectors keep their parameters)
    reference_size: int
    # Values a numeric (or a categorical) signal needs before it is watched: the reference
    # minimum when budgeted and without a period, else the full reference.
    watched_after: int
    categorical_watched_after: int


@dataclass(frozen=True, slots=True)
class Bounds:
    min: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class LearnedBounds:
    quantiles: tuple[float, float]
    k: float


@dataclass(frozen=True, slots=True)
class QualityPlan:
    """A model's value rules (``quality.defaults`` overlaid field by field by the model
    rule's own ``quality``), and how its fault-rate signals are watched."""

    bounds: Mapping[str, Bounds]
    learned_bounds: LearnedBounds | None
    categorical: bool
    max_categories: int
    indicators: tuple[str, ...]
    detectors: tuple[str, ...]
    sample_events: int
    reference_samples: int
    evidence_samples: int
    # The fault-rate signals (``quality:<fault>:<feature>``).
    detector_params: tuple[Mapping[str, Any], ...]
    binary: tuple[bool, ...]
    budget: Budget | None
    watched_after: int

    @property
    def active(self) -> bool:
        """True when a value rule or a data-quality signal is on (else the core's fast path)."""
        return bool(self.bounds or self.learned_bounds or self.categorical or self.indicators)

    @property
    def reference_size(self) -> int:
        """Events that form a fault rate's reference."""
        return self.reference_samples * self.sample_events


@dataclass(frozen=True, slots=True)
class Persistence:
    values: int
    seconds: float
    min_shift: float


@dataclass(frozen=True, slots=True)
class RetrainPolicy:
    """When to ask for a retrain of a model (core/retrain.py; README "Retraining decisions")."""

    min_drifted_signals: int
    signals: tuple[str, ...]  # globs: the signals that count as evidence
    any_performance_signal: bool
    performance_signals: tuple[str, ...]  # globs naming the performance signals
    within_seconds: float | None
    within_events: int | None
    persistence: Persistence
    cooldown_seconds: float
    max_per_day: int | None
    staleness_seconds: float | None
    # What the k-of-n rule counts: distinct drifted signals (min_drifted_signals), or distinct
    # incidents (min_incidents; core/incidents.py), so one break over many features is one.
    count: Literal["signals", "incidents"] = "signals"
    min_incidents: int = 1
    _counts: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    _performance: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def window(self) -> str:
        """Which window applies: ``seconds``, ``events`` or ``both``."""
        if self.within_events is None:
            return "seconds"
        return "events" if self.within_seconds is None else "both"

    def counts(self, signal: str) -> bool:
        """Whether a drift of ``signal`` counts as evidence (one of the ``signals`` globs)."""
        return _memo(self._counts, signal, self.signals)

    def is_performance(self, signal: str) -> bool:
        """Whether ``signal`` is a performance signal (``performance_signals``)."""
        return _memo(self._performance, signal, self.performance_signals)


def _memo(cache: dict[str, bool], signal: str, globs: tuple[str, ...]) -> bool:
    hit = cache.get(signal)
    if hit is None:
        if len(cache) > _CACHE_MAX:
            cache.clear()
        hit = cache[signal] = any(_glob(signal, g) for g in globs)
    return hit


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """Firing -> resolved, one alert per incident (core/lifecycle.py)."""

    resolve_values: int
    resolve_max_shift: float
    hold_seconds: float
    dedupe_seconds: float


@dataclass(frozen=True, slots=True)
class IncidentPolicy:
    """Alerts of one model (and segment) detected within ``window_seconds`` of event time of an
    incident's first alert join that incident (core/incidents.py)."""

    window_seconds: float


@dataclass(frozen=True, slots=True)
class LabelPolicy:
    """How a model's predictions meet their delayed labels (core/label_join.py)."""

    task: Task
    ttl_seconds: float
    bucket_seconds: float
    threshold: float


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Per-version state, the post-deploy watch and expiry (core/deploy.py)."""

    separate: bool
    watch_events: int | None
    min_labeled: int
    max_wait_seconds: float | None
    expire_seconds: float
    alpha: float
    min_shift: float
    max_error_increase: float
    min_values: int


@dataclass(frozen=True, slots=True)
class ProbabilityPlan:
    """What a model rule watches of its events' class probabilities (docs/probabilities.md):
    ``probability:<class>`` per class (the first ``max_classes`` seen), ``confidence`` (the
    largest probability), ``predicted_class`` (the class mix, when the prediction itself is not
    a class label), and the confidence-based performance estimate
    (``performance:estimated_error`` and ``estimate_gap``, core/probabilities.py). A signal no
    signal rule of the model matches is watched by ``default_rule`` (a calibrated cusum under
    the model's budget, ``detector``: the config's cusum with default parameters, else one
    that is not in :attr:`MonitorPlan.detectors`, found by :meth:`MonitorPlan.detector`)."""

    classes: bool
    confidence: bool
    class_mix: bool
    max_classes: int
    estimate: bool
    calibration_size: int  # labelled events the estimate is calibrated on
    default_rule: SignalPlan
    detector: DetectorSpec  # what default_rule names (the config's plain cusum, or ours)

    def wants(self, signal: str) -> bool:
        """Whether ``signal`` is one of the probability signals this plan turns on."""
        if signal.startswith(PROBABILITY_PREFIX):
            return self.classes
        if signal == CONFIDENCE:
            return self.confidence
        if signal == CLASS_MIX:
            return self.class_mix
        return self.estimate and signal in (ESTIMATED_ERROR, ESTIMATE_GAP)


@dataclass(frozen=True, slots=True)
class JointPlan:
    """The model rule's joint signal (docs/joint-drift.md, core/joint.py): the Mahalanobis
    distance of its numeric features (``features``, or those of its first events, at most
    ``max_features``) against a fit on ``fit_size`` events, as the signal ``joint``, watched by
    ``default_rule`` when no signal rule of the model names it (a calibrated cusum under the
    model's budget; ``detector`` as in :class:`ProbabilityPlan`)."""

    features: tuple[str, ...]
    max_features: int
    fit_size: int
    default_rule: SignalPlan
    detector: DetectorSpec


@dataclass(frozen=True, slots=True)
class PerformancePlan:
    """Windowed performance metrics of a model's labelled events (core/performance.py,
    docs/metrics.md): over the last ``window`` of them, per-class figures for the
    ``max_classes`` classes with the most support, the calibration error over ``bins`` bins.
    ``watch``: the per-event contributions watched as signals (``performance:<name>``), by
    ``default_rule`` unless a signal rule of the model names them (as
    :class:`ProbabilityPlan`)."""

    window: int
    max_classes: int
    bins: int
    watch: frozenset[str]  # full signal names, e.g. "performance:brier"
    default_rule: SignalPlan
    detector: DetectorSpec

    def wants(self, signal: str) -> bool:
        return signal in self.watch


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """One model rule, resolved."""

    match: str
    signals: tuple[SignalPlan, ...]
    reference_size: int
    recent_size: int
    sample_rate: float
    retrain: RetrainPolicy
    alerts: LifecyclePolicy | None
    quality: QualityPlan
    labels: LabelPolicy | None
    versions: VersionPolicy
    probabilities: ProbabilityPlan | None = None
    incidents: IncidentPolicy | None = None
    joint: JointPlan | None = None
    # The embedding signal (docs/joint-drift.md): `features` empty, `max_features` the number
    # of random projections of the vector watched together.
    embedding: JointPlan | None = None
    performance: PerformancePlan | None = None
    _signal_rules: dict[str, SignalPlan | None] = field(default_factory=dict, compare=False,
                                                        repr=False)

    def signal_rule(self, signal: str) -> SignalPlan | None:
        """The first signal rule whose glob matches ``signal``; None: the signal is not
        watched."""
        try:
            return self._signal_rules[signal]
        except KeyError:
            pass
        if len(self._signal_rules) > _CACHE_MAX:
            self._signal_rules.clear()
        sr = next((s for s in self.signals if _glob(signal, s.match)), None)
        pp = self.probabilities
        if sr is None and pp is not None and pp.wants(signal):
            sr = pp.default_rule  # a probability signal no rule names: a calibrated cusum
        if sr is None and signal == JOINT and self.joint is not None:
            sr = self.joint.default_rule  # likewise the joint signal
        if sr is None and signal == EMBEDDING and self.embedding is not None:
            sr = self.embedding.default_rule
        mp = self.performance
        if sr is None and mp is not None and mp.wants(signal):
            sr = mp.default_rule  # a metric's contributions, watched the same way
        self._signal_rules[signal] = sr
        return sr


@dataclass(frozen=True, slots=True)
class Topics:
    inference: str
    alerts: str
    retrain: str
    dead_letter: str
    operations: str
    labels: str
    deployments: str
    incidents: str = "model-incidents"


@dataclass(frozen=True, slots=True)
class InputTopic:
    """How one input topic's records are written (docs/contracts.md)."""

    format: InputFormat
    fields: Mapping[str, str]
    feature_fields: tuple[str, ...]

    def mapping(self) -> FieldMapping | None:
        """The field mapping, or None when the record already has the contract's names."""
        if not self.fields and not self.feature_fields:
            return None
        return FieldMapping(dict(self.fields), tuple(self.feature_fields))


@dataclass(frozen=True, slots=True)
class InputPlan:
    inference: InputTopic
    labels: InputTopic

    @property
    def uses_registry(self) -> bool:
        return self.inference.format != "json" or self.labels.format != "json"


@dataclass(frozen=True, slots=True)
class Duplicates:
    window_seconds: float


@dataclass(frozen=True, slots=True)
class Timestamps:
    max_future_seconds: float | None
    max_past_seconds: float | None


@dataclass(frozen=True, slots=True)
class EventRules:
    """Whole-event rules (the config's ``quality`` section without its value-rule defaults)."""

    max_message_bytes: int
    max_features_per_event: int
    max_features_per_model: int
    max_id_length: int
    dead_letter_max_bytes: int
    unknown_model: UnknownModel
    duplicates: Duplicates
    timestamps: Timestamps
    max_classes_per_event: int = 100
    max_embedding_length: int = 1024


@dataclass(frozen=True, slots=True)
class PrivacyPlan:
    alert_evidence: AlertEvidence
    dead_letter_payload: DeadLetterPayload
    dead_letter_truncated_bytes: int


@dataclass(frozen=True, slots=True)
class MetricsPlan:
    signal_gauges: bool
    signals: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MonitorPlan:
    """The whole compiled config."""

    topics: Topics
    input: InputPlan
    windows: Windows
    detectors: Mapping[str, DetectorSpec]
    quality: EventRules
    false_alarm_budget: Budget | None
    models: tuple[ModelPlan, ...]
    privacy: PrivacyPlan
    metrics: MetricsPlan
    _model_rules: dict[str, ModelPlan | None] = field(default_factory=dict, compare=False,
                                                      repr=False)

    def model_rule(self, model_id: str) -> ModelPlan | None:
        """The first model rule whose ``match`` fits the model id, or None (not watched)."""
        try:
            return self._model_rules[model_id]
        except KeyError:
            pass
        if len(self._model_rules) > _CACHE_MAX:
            self._model_rules.clear()
        rule = next((r for r in self.models if _glob(model_id, r.match)), None)
        self._model_rules[model_id] = rule
        return rule

    def detector(self, name: str, rule: ModelPlan) -> DetectorSpec:
        """The detector a signal of ``rule`` names: one of the config's, or the default one of
        its probability signals (:class:`ProbabilityPlan`)."""
        spec = self.detectors.get(name)
        if spec is None:
            pp, mp = rule.probabilities, rule.performance
            if pp is not None and pp.detector.name == name:
                return pp.detector
            if mp is not None and mp.detector.name == name:
                return mp.detector
            for jp in (rule.joint, rule.embedding):
                if jp is not None and jp.detector.name == name:
                    return jp.detector
            raise KeyError(f"no detector named {name!r}")
        return spec

    def with_topics(self, **overrides: str | None) -> MonitorPlan:
        """The plan with some topic names replaced (empty or None: kept)."""
        given = {k: v for k, v in overrides.items() if v}
        if not given:
            return self
        return replace(self, topics=replace(self.topics, **given), _model_rules={})


def watched_after(reference_size: int, least: int, budgeted: bool, periodic: bool) -> int:
    """Values a signal needs before it is watched: ``least`` (its reference minimum) when it
    has a false-alarm budget (its calibration accounts for a short reference) and no period,
    else the full ``reference_size``."""
    return least if budgeted and not periodic and 0 < least < reference_size else reference_size


def effective_budget(own: Budget | None, detectors: tuple[DetectorSpec, ...]) -> Budget | None:
    """The budget signals are calibrated to: the configured one, else ``DEFAULT_BUDGET`` when a
    calibrated CUSUM (``cusum``, ``bernoulli_cusum``, ``multinomial_cusum``) watches them (it
    always needs thresholds); None: not calibrated."""
    if own is None and any(d.type in CALIBRATED_TYPES for d in detectors):
        return DEFAULT_BUDGET
    return own
