"""The pure monitoring core: a batch of decoded events and the state in, outputs out.

No I/O happens here. An adapter (the Kafka worker, the file replay) loads the state of the
models in a batch from a store, calls :meth:`Monitor.process`, persists what the batch changed
(:meth:`ModelState.dirty_signals`), publishes the outputs and only then acknowledges the input.

Per (model, signal) the core keeps:

* a **reference window**: the first ``reference_size`` values (again after each drift). Its mean
  and standard deviation standardize every later value, ``z = (x - mean) / std``, so detector
  thresholds are in reference standard deviations whatever the feature's units;
* a **recent window**: the last ``recent_size`` values, for evidence;
* the **detectors** (River objects), fed ``z`` (binary detectors get the raw 0/1 value).

When a detector fires, the core emits a drift alert with evidence, then *rebaselines* the
signal: all its detectors are dropped and a new reference is collected from the values that
follow. This keeps one shift from raising an alert storm against a stale reference.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import drift

from ..config import (
    DEFAULT_BUDGET,
    ModelRule,
    MonitorConfig,
    quality_rule,
    signal_budget,
    signal_detectors,
    signal_rule,
    watched_after,
)
from ..contracts.records import (
    SCHEMA_VERSION,
    InferenceEvent,
    Position,
    detected_at,
    iso_time,
    record_id,
)
from ..state.base import id_parts, unit_id
from .calibrate import calibrate, change_kind
from .deploy import DeployWatch, compare_performance, compare_signal, deployment_check
from .detectors import REGISTRY, build_detector, checkpoint, restore_detector
from .labels import PERFORMANCE_SIGNAL, JoinedPair, error_value, version_key
from .lifecycle import LifecycleState
from .localize import locate
from .privacy import redact_outputs
from .quality import ModelQuality, QualityCounters, check_features, rate_scale
from .retrain import RetrainState, decide, note_alert, retrain_request, tick
from .stats import summarize

__all__ = [
    "BatchResult",
    "ModelState",
    "Monitor",
    "MonitorState",
    "SignalState",
    "collecting",
    "reference_scale",
]

PREDICTION = "prediction"
_MISSING = object()
RING = 500  # default events of a model whose ids are kept for change localization


def reference_scale(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of a reference window, as used to standardize.

    A constant reference (std 0) only centers: the scale is then 1.

    >>> reference_scale([1.0, 2.0, 3.0])
    (2.0, 1.0)
    """
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return mean, (std if std > 0 and math.isfinite(std) else 1.0)


_GENERIC, _RAW, _PH, _ADWIN = 0, 1, 2, 3


def _plan(detectors: list[Any], binary: tuple[bool, ...]) -> tuple[tuple[int, Any], ...]:
    """How SignalState.update feeds each detector: inline for River's Page-Hinkley (mode
    "both") and ADWIN on the standardized value, through `update` otherwise (on the raw value
    for the binary detectors)."""
    plan = []
    for det, raw in zip(detectors, binary, strict=True):
        if raw:
            plan.append((_RAW, det))
        elif type(det) is drift.PageHinkley and det.mode == "both":
            plan.append((_PH, det))
        elif type(det) is drift.ADWIN:
            plan.append((_ADWIN, det))
        else:
            plan.append((_GENERIC, det))
    return tuple(plan)


def _over_feature_limit(model: ModelState, features: dict[str, Any], limit: int) -> bool:
    """Would these features take a model past ``limit`` distinct features? Counted on what
    its saved state holds (value rules' features, else its signals), so a model reloaded
    from the store decides the same as one that stayed cached."""
    mq = model.quality
    if mq is not None:
        known: Any = mq.features
        new = sum(1 for name in features if name not in known)
        return len(known) + new > limit
    signals = model.signals
    new = sum(1 for name in features if "feature:" + name not in signals)
    return len(signals) + new > limit


@dataclass(slots=True, eq=False)
class SignalState:
    """State of one monitored signal of one model."""

    signal: str
    detector_names: tuple[str, ...]
    detector_params: tuple[dict[str, Any], ...]
    reference_size: int
    recent: deque[float]
    reference: list[float] = field(default_factory=list)
    ref_mean: float = 0.0
    ref_std: float = 1.0
    # Per detector: True when it takes the raw 0/1 value instead of the standardized one.
    binary: tuple[bool, ...] = ()
    detectors: list[Any] | None = None  # None while the reference is being collected
    n: int = 0  # values seen on this signal, all time
    generation: int = 0  # rebaselines so far
    # Persistence bookkeeping: what changed since the last save.
    saved_n: int = 0  # n at the last save
    ref_saved: int = 0  # reference length at the last save
    ref_reset: bool = False
    # Fault-rate signals (quality:<fault>:<feature>): events per sample. Their values are
    # standardized by the binomial standard error of the reference rate (rate_scale).
    rate_sample: int = 0
    # How `update` feeds each detector, built from `detectors` when they change (see _plan).
    plan: tuple[tuple[int, Any], ...] = ()
    plan_for: list[Any] | None = None
    # False-alarm budget (false alarms per value; None: detectors keep their configured
    # parameters) and what the calibration of the current reference chose (core/calibrate.py).
    budget: float | None = None
    budget_config: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    overrides: list[dict[str, Any]] | None = None
    # Value count and model event count when the current reference started (change
    # localization maps values back to events with them).
    base_n: int = 0
    base_events: int = 0
    period: int = 0  # known period in values (signals[].period; cusum detectors only)
    # Short references (windows.reference_min_size): the signal is watched from `reference_min`
    # values on, calibrated for that short reference; while `growing`, later values still join
    # the reference, and at `reference_size` the signal is re-based on the full reference.
    # `ref_used`: the length of the reference the detectors were calibrated on.
    reference_min: int = 0
    growing: bool = False
    ref_used: int = 0

    # -- the hot path -------------------------------------------------------------------
    def update(self, x: float) -> int:
        """Feed one value. Returns the index of the detector that fired, or -1."""
        self.n += 1
        self.recent.append(x)
        dets = self.detectors
        if dets is None or self.growing:
            ref = self.reference
            ref.append(x)
            if dets is None:
                if len(ref) >= (self.reference_min or self.reference_size):
                    self._activate()
                return -1
            if len(ref) >= self.reference_size:
                self._activate()  # re-based on the full reference: scale, thresholds, sums
                return -1
        if self.plan_for is not dets:
            self.plan = _plan(dets, self.binary)
            self.plan_for = dets
        z = (x - self.ref_mean) / self.ref_std
        fired = -1
        i = 0
        # This loop runs twice per value for the default detectors and dominates the core.
        # Page-Hinkley and ADWIN are updated inline: the same arithmetic, in the same order, on
        # the same River objects' attributes as their own `update` (so checkpoints are River's
        # and results bit-identical: tests/unit/test_detectors.py runs both side by side), less
        # five Python calls per update. `_drift_detected` is what River's `drift_detected`
        # property returns (a contract test guards it for every detector).
        for kind, det in self.plan:
            if kind == _PH:
                if det._drift_detected:
                    det._reset()
                m = det._x_mean
                n = m.n + 1.0
                m.n = n
                mean = m._mean + (1.0 / n) * (z - m._mean)
                m._mean = mean
                dev = z - mean
                up = det.alpha * det._sum_increase + dev - det.delta
                down = det.alpha * det._sum_decrease + dev + det.delta
                det._sum_increase = up
                det._sum_decrease = down
                if up < det._min_increase:
                    det._min_increase = up
                if down > det._max_decrease:
                    det._max_decrease = down
                if n >= det.min_instances:
                    thr = det.threshold
                    if up - det._min_increase > thr or det._max_decrease - down > thr:
                        det._drift_detected = True
                        if fired < 0:
                            fired = i
                    else:
                        det._drift_detected = False
            elif kind == _ADWIN:
                if det._drift_detected:
                    det._reset()
                if det._helper.update(z):
                    det._drift_detected = True
                    if fired < 0:
                        fired = i
                else:
                    det._drift_detected = False
            else:
                det.update(x if kind == _RAW else z)
                if det._drift_detected and fired < 0:
                    fired = i
            i += 1
        return fired

    @property
    def watched_after(self) -> int:
        """Values the signal needs before it is watched."""
        return self.reference_min or self.reference_size

    @property
    def watched_reference(self) -> list[float]:
        """The reference the detectors compare with (a short reference's values up to its
        calibration; later values that joined it are watched values)."""
        ref = self.reference
        return ref if self.ref_used >= len(ref) else ref[:self.ref_used]

    def _activate(self) -> None:
        self.ref_used = len(self.reference)
        self.growing = self.ref_used < self.reference_size
        if self.rate_sample:
            self.ref_mean, self.ref_std = rate_scale(self.reference, self.rate_sample)
        else:
            self.ref_mean, self.ref_std = reference_scale(self.reference)
        if self.budget is not None:
            # Once per reference: thresholds for this signal's budget (core/calibrate.py).
            self.overrides, self.calibration = calibrate(
                self.reference, self.ref_mean, self.ref_std, self.detector_params, self.budget,
                self.period, self.base_n % self.period if self.period else 0)
            self.calibration["budget"] = self.budget_config
            self.detectors = [build_detector(p["__type__"], {**_user_params(p), **o})
                              for p, o in zip(self.detector_params, self.overrides, strict=True)]
            return
        self.detectors = [build_detector(p["__type__"], _user_params(p)) for p in self.detector_params]

    def rebaseline(self) -> None:
        """Forget the reference and the detectors; collect a new reference from now on."""
        self.reference = []
        self.detectors = None
        self.growing = False
        self.ref_used = 0
        self.ref_mean, self.ref_std = 0.0, 1.0
        self.calibration = self.overrides = None
        self.base_n = self.n
        self.generation += 1
        self.ref_saved = 0
        self.ref_reset = True

    # -- persistence --------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """Everything but the two windows, as JSON-able data (detectors without pickle)."""
        return {
            "v": 1,
            "signal": self.signal,
            "n": self.n,
            "generation": self.generation,
            "ref_mean": self.ref_mean,
            "ref_std": self.ref_std,
            "detector_names": list(self.detector_names),
            "detectors": None if self.detectors is None else [checkpoint(d) for d in self.detectors],
            "calibration": self.calibration,
            "overrides": self.overrides,
            "base": [self.base_n, self.base_events],
            "ref_used": self.ref_used,
        }

    @property
    def dirty(self) -> bool:
        return self.n != self.saved_n or self.ref_reset

    @property
    def reference_changed(self) -> bool:
        return self.ref_reset or len(self.reference) != self.ref_saved

    def mark_saved(self) -> None:
        self.saved_n = self.n
        self.ref_saved = len(self.reference)
        self.ref_reset = False


def _user_params(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if k != "__type__"}


@dataclass(slots=True, eq=False)
class ModelState:
    """State of one model: its signals and the evidence behind retrain decisions."""

    model_id: str
    rule: ModelRule
    signals: dict[str, SignalState] = field(default_factory=dict)
    # feature name -> its SignalState, or None when the feature is not monitored.
    by_feature: dict[str, SignalState | None] = field(default_factory=dict)
    prediction: Any = _MISSING
    # Retrain evidence, persistence, budget (core/retrain.py).
    retrain: RetrainState = field(default_factory=RetrainState)
    # Open alert incidents (core/lifecycle.py); None when the model rule has no `alerts`.
    lifecycle: LifecycleState | None = None
    last_retrain_at: float | None = None
    retrain_requests: int = 0
    events: int = 0
    # Watermark: the last offset applied to this state, per (topic, partition). Events at or
    # below it are redeliveries of events whose effects are already stored: skipped.
    applied: dict[tuple[str, int], int] = field(default_factory=dict)
    dirty: bool = False
    version: int = 0  # the stored version this state was loaded at (kept by the adapter)
    # Value rules and data-quality signals (core/quality.py); None when the model's quality
    # rule has none, and the per-value loop stays the plain one.
    quality: ModelQuality | None = None
    # Delayed labels: the last joined pair fed to `performance:error`, per pair log (version
    # key, core/labels.py). Saved with the detectors, so a pair counts exactly once.
    pairs_applied: dict[str, int] = field(default_factory=dict)
    # Model versions (README "Model versions"): this state's unit (model id, or model id and
    # version when versions are kept apart), its version, and its post-deploy watch.
    unit: str = ""
    model_version: str | None = None
    deploy: DeployWatch | None = None
    # Ids and offsets of the model's last `recent_size` events (saved with the meta): an alert's
    # estimated change start is mapped back to its event with them (core/localize.py). A
    # model's events share a partition (Kafka key = model id).
    ring_ids: deque[str] = field(default_factory=lambda: deque(maxlen=RING))
    ring_offsets: deque[int] = field(default_factory=lambda: deque(maxlen=RING))

    def dirty_signals(self) -> list[SignalState]:
        return [s for s in self.signals.values() if s.dirty]

    def meta(self) -> dict[str, Any]:
        meta = {
            "v": 1,
            "model_id": self.model_id,
            "signals": sorted(self.signals),
            "retrain": self.retrain.meta(),
            "last_retrain_at": self.last_retrain_at,
            "retrain_requests": self.retrain_requests,
            "events": self.events,
            "applied": [[t, p, o] for (t, p), o in sorted(self.applied.items())],
        }
        if self.pairs_applied:
            meta["pairs_applied"] = dict(sorted(self.pairs_applied.items()))
        if self.ring_ids:
            meta["ring"] = [list(self.ring_ids), list(self.ring_offsets)]
        if self.model_version is not None:
            meta["model_version"] = self.model_version
        if self.deploy is not None:
            meta["deploy"] = self.deploy.meta()
        if self.quality is not None:
            meta["quality"] = self.quality.meta()
        if self.lifecycle is not None:
            meta["lifecycle"] = self.lifecycle.meta()
        return meta


@dataclass(slots=True)
class MonitorState:
    """All model states an adapter holds in memory. Models are loaded lazily by the adapter."""

    models: dict[str, ModelState] = field(default_factory=dict)

    def missing(self, model_ids: Iterable[str]) -> set[str]:
        return {m for m in model_ids if m not in self.models}


@dataclass(slots=True)
class BatchResult:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    retrain_requests: list[dict[str, Any]] = field(default_factory=list)
    dirty_models: list[ModelState] = field(default_factory=list)
    events: int = 0
    unwatched: int = 0
    values: int = 0
    redelivered: int = 0  # events skipped because their effects were already stored
    quality_alerts: list[dict[str, Any]] = field(default_factory=list)  # data_quality_alert
    quality: QualityCounters = field(default_factory=QualityCounters)  # rejected values
    resolved: list[dict[str, Any]] = field(default_factory=list)  # drift_resolved (lifecycle)
    deployment_checks: list[dict[str, Any]] = field(default_factory=list)  # core/deploy.py
    # Watches waiting for labels: unit -> the latest event seen, for the timeout check made
    # once the whole batch (its labels included) is in.
    watch_pending: dict[str, InferenceEvent] = field(default_factory=dict)
    pairs: int = 0  # joined (prediction, label) pairs fed to performance signals
    # State units the batch changed, in first-touched order (dirty_models once finished).
    touched: dict[str, ModelState] = field(default_factory=dict)
    # Events refused whole by a per-model limit (event, reason code, reason): dead letters.
    rejected: list[tuple[InferenceEvent, str, str]] = field(default_factory=list)
    pairs_redelivered: int = 0  # pairs already consumed by the stored state: skipped
    # Label delays (seconds) of the pairs fed, per model (for the label metrics).
    pair_delays: dict[str, list[float]] = field(default_factory=dict)


class Monitor:
    """Turns batches of inference events into drift alerts and retrain requests.

    >>> from stream_monitor.config import parse_config
    >>> from stream_monitor.contracts import InferenceEvent, Position
    >>> cfg = parse_config({"windows": {"reference_size": 50, "recent_size": 50},
    ...     "models": [{"match": "m", "signals": [{"match": "feature:*",
    ...                                             "detectors": ["page_hinkley"]}]}]})
    >>> mon, state = Monitor(cfg), MonitorState()
    >>> events = [InferenceEvent(f"e{i}", "m", {"x": float(i % 5 + (20 if i >= 300 else 0))},
    ...           0.0, Position("t", 0, i)) for i in range(400)]
    >>> out = mon.process(events, state)
    >>> [(a["signal"], a["detected_at"]["offset"]) for a in out.alerts]
    [('feature:x', 302)]
    >>> mon.process(events[390:], state).redelivered  # already applied: no effect twice
    10
    """

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self._separate: dict[str, bool] = {}

    # -- state construction -------------------------------------------------------------
    def unit_of(self, model_id: str, model_version: str | None) -> str:
        """The state unit of an event: per (model, version) when the model's rule keeps
        versions apart (``versions.separate``), else per model."""
        if model_version is None:
            return model_id
        sep = self._separate.get(model_id)
        if sep is None:
            rule = self.config.model_rule(model_id)
            sep = self._separate[model_id] = rule is not None and rule.versions.separate
        return unit_id(model_id, model_version) if sep else model_id

    def new_model(self, model_id: str, model_version: str | None = None) -> ModelState | None:
        rule = self.config.model_rule(model_id)
        if rule is None:
            return None
        if not rule.versions.separate:
            model_version = None
        model = ModelState(model_id, rule, unit=unit_id(model_id, model_version),
                           model_version=model_version)
        if rule.alerts is not None:
            model.lifecycle = LifecycleState()
        ring = rule.recent_size or self.config.windows.recent_size
        if ring != RING:
            model.ring_ids = deque(maxlen=ring)
            model.ring_offsets = deque(maxlen=ring)
        q = quality_rule(self.config, rule)
        if q.active:
            model.quality = ModelQuality.for_rule(
                q, rule.reference_size or self.config.windows.reference_size)
        return model

    def _detector_params(self, names: Sequence[str]) -> tuple[dict[str, Any], ...]:
        specs = self.config.detectors
        return tuple({"__type__": specs[n].type, **specs[n].params} for n in names)

    def watches(self, model: ModelState, signal: str) -> bool:
        """Whether a rule of the model's config gives the signal detectors."""
        return signal_detectors(self.config, model.rule, signal) is not None

    def new_signal(self, model: ModelState, signal: str) -> SignalState | None:
        if signal.startswith("quality:"):
            return self._new_quality_signal(model, signal)
        names = signal_detectors(self.config, model.rule, signal)
        windows = self.config.windows
        reference_size = model.rule.reference_size or windows.reference_size
        mq = model.quality
        rule_signal = signal
        if (mq is not None and mq.rule.categorical and signal.startswith("feature:")
                and "=" in signal):
            # A category's frequency (feature:<name>=<category>), one value per sample: watched
            # like its feature, with a reference of `reference_samples` samples.
            if names is None:
                rule_signal = signal.split("=", 1)[0]
                names = signal_detectors(self.config, model.rule, rule_signal)
            reference_size = mq.rule.reference_samples
        if names is None:
            return None
        recent_size = model.rule.recent_size or windows.recent_size
        sig = SignalState(
            signal=signal,
            detector_names=tuple(names),
            detector_params=(params := self._detector_params(names)),
            binary=tuple(REGISTRY[p["__type__"]].input == "binary" for p in params),
            reference_size=reference_size,
            recent=deque(maxlen=recent_size),
            base_events=max(model.events - 1, 0),
        )
        self._set_budget(model, sig, rule_signal)
        least = watched_after(self.config, model.rule, sig.budget is not None, sig.period)
        if least < reference_size:  # a category share's reference of samples can be shorter
            sig.reference_min = least
        model.signals[signal] = sig
        model.dirty = True
        return sig

    def _set_budget(self, model: ModelState, sig: SignalState, rule_signal: str) -> None:
        sr = signal_rule(self.config, model.rule, rule_signal)
        if sr is not None and sr.period:
            sig.period = sr.period
        budget = signal_budget(self.config, model.rule, rule_signal)
        if budget is None and any(p["__type__"] == "cusum" for p in sig.detector_params):
            budget = DEFAULT_BUDGET  # a cusum always needs thresholds for its reference
        if budget is not None:
            sig.budget = budget.per_value()
            sig.budget_config = budget.describe()

    def _new_quality_signal(self, model: ModelState, signal: str) -> SignalState | None:
        """A fault rate (``quality:<fault>:<feature>``): one value per sample of
        ``sample_events`` events, standardized by the reference rate's binomial standard error
        (:func:`~stream_monitor.core.quality.rate_scale`) for the quality rule's detectors."""
        mq = model.quality
        if mq is None:
            return None  # the config no longer has value rules for this model
        names = mq.rule.detectors
        sig = SignalState(
            signal=signal,
            detector_names=tuple(names),
            detector_params=(params := self._detector_params(names)),
            binary=tuple(REGISTRY[p["__type__"]].input == "binary" for p in params),
            reference_size=mq.rule.reference_samples,
            recent=deque(maxlen=mq.rule.evidence_samples),
            rate_sample=mq.rule.sample_events,
        )
        model.signals[signal] = sig
        model.dirty = True
        return sig

    def restore_signal(self, model: ModelState, meta: dict[str, Any], recent: list[float],
                       reference: list[float]) -> SignalState | None:
        """Rebuild a signal from its persisted parts. Returns None if it is no longer watched."""
        sig = self.new_signal(model, meta["signal"])
        if sig is None:
            model.signals.pop(meta["signal"], None)
            return None
        sig.recent.extend(recent)
        sig.reference = list(reference)
        sig.n = int(meta["n"])
        sig.generation = int(meta["generation"])
        sig.ref_mean = float(meta["ref_mean"])
        sig.ref_std = float(meta["ref_std"])
        base = meta.get("base")
        if base is not None:
            sig.base_n, sig.base_events = int(base[0]), int(base[1])
        dets = meta.get("detectors")
        if dets is not None and tuple(meta["detector_names"]) == sig.detector_names:
            sig.calibration = meta.get("calibration")
            sig.overrides = meta.get("overrides")
            sig.detectors = [
                restore_detector(p["__type__"], _user_params(p), d)
                for p, d in zip(sig.detector_params, dets, strict=True)
            ]
            sig.ref_used = int(meta.get("ref_used") or len(sig.reference))
            sig.growing = sig.ref_used < sig.reference_size
        elif len(sig.reference) >= sig.watched_after:
            # The config changed the detectors: start them fresh on the stored reference.
            sig._activate()
        sig.ref_saved = len(sig.reference)
        sig.saved_n = sig.n
        return sig

    def restore_model(self, meta: dict[str, Any]) -> ModelState | None:
        model = self.new_model(meta["model_id"], meta.get("model_version"))
        if model is None:
            return None
        if meta.get("deploy") is not None:
            model.deploy = DeployWatch.restore(meta["deploy"])
        if "retrain" in meta:
            model.retrain = RetrainState.restore(meta["retrain"])
        if model.lifecycle is not None and meta.get("lifecycle"):
            model.lifecycle = LifecycleState.restore(meta["lifecycle"])
        # (A meta written before core/retrain.py has `recent_drifts` only: that evidence lacks
        # the statistics a request now carries, so it is dropped; new drifts rebuild it.)
        model.last_retrain_at = meta["last_retrain_at"]
        model.retrain_requests = int(meta["retrain_requests"])
        model.events = int(meta["events"])
        model.applied = {(str(t), int(p)): int(o) for t, p, o in meta.get("applied", [])}
        model.pairs_applied = {str(k): int(v) for k, v in meta.get("pairs_applied", {}).items()}
        ring = meta.get("ring")
        if ring is not None:
            model.ring_ids.extend(str(i) for i in ring[0])
            model.ring_offsets.extend(int(o) for o in ring[1])
        if model.quality is not None and meta.get("quality") is not None:
            model.quality.restore(meta["quality"],
                                  lambda name: self.watches(model, "feature:" + name))
        model.dirty = False
        return model

    # -- the batch ------------------------------------------------------------------------
    def process(self, events: Sequence[InferenceEvent], state: MonitorState,
                quality: QualityCounters | None = None,
                pairs: Sequence[JoinedPair] = (), *, result: BatchResult | None = None,
                finish: bool = True) -> BatchResult:
        """Run a batch through the detectors. Events of one model are processed in order.

        ``state`` must already hold every model of the batch that the store knows; a model
        not in it starts fresh. The state is updated in place; ``result.dirty_models`` says
        what to persist. Rejected values are counted in ``quality`` (the batch's counters,
        also returned as ``result.quality``). ``pairs`` are joined delayed labels
        (core/labels.py), fed to each model's ``performance:error`` signal after the events;
        pairs at or below the model's stored cursor are skipped.

        A batch may be fed in parts (an adapter that keeps its event loop responsive): pass
        the part's ``result`` back in with each further part, and ``finish=False`` for all but
        the last, whose call then feeds ``pairs`` and ends the batch (the deployment watch's
        end-of-batch checks). The outcome is the same as one call with all the events.
        """
        if result is None:
            result = BatchResult()
        if quality is not None:
            result.quality = quality
        counters = result.quality
        models = state.models
        unwatched: set[str] = set()
        touched = result.touched
        values = 0
        unit_of = self.unit_of
        max_features = self.config.quality.max_features_per_model
        for ev in events:
            mid = ev.model_id
            ver = ev.model_version
            uid = mid if ver is None else unit_of(mid, ver)
            model = models.get(uid)
            if model is None:
                if mid in unwatched:
                    result.unwatched += 1
                    continue
                model = self.new_model(mid, ver)
                if model is None:
                    unwatched.add(mid)
                    result.unwatched += 1
                    continue
                models[uid] = model
            if model.retrain.first_seen is None:
                model.retrain.first_seen = ev.event_time  # the staleness fallback's origin
            pos = ev.position
            tp = (pos.topic, pos.partition)
            if pos.offset <= model.applied.get(tp, -1):
                result.redelivered += 1
                continue
            mq = model.quality
            known = mq.features if mq is not None else model.signals
            if len(known) + len(ev.features) > max_features and _over_feature_limit(
                    model, ev.features, max_features):
                result.rejected.append((ev, "too_many_signals", (
                    f"the event would give model {mid!r} more than quality.max_features_per_model "
                    f"= {max_features} distinct features; fix the producer's feature names, or "
                    "raise the limit")))
                continue
            model.applied[tp] = pos.offset
            touched[uid] = model
            model.events += 1
            model.ring_ids.append(ev.event_id)
            model.ring_offsets.append(pos.offset)
            model.dirty = True
            if model.quality is not None:
                # Value rules: missing, bounds, categories, fault-rate signals (core/quality.py).
                values += check_features(self, model, model.quality, ev, result)
            else:
                by_feature = model.by_feature
                for name, value in ev.features.items():
                    sig = by_feature.get(name, _MISSING)
                    if sig is _MISSING:
                        signal = "feature:" + name
                        sig = model.signals.get(signal) or self.new_signal(model, signal)
                        if len(by_feature) >= 2 * max_features:
                            by_feature.clear()  # a cache: unwatched names must not grow it
                        by_feature[name] = sig
                    if sig is None:
                        continue
                    # Inlined _number(): this loop runs once per value and dominates the core.
                    t = type(value)
                    if t is float:
                        if value - value != 0.0:  # NaN or +/-inf: this value only is rejected
                            counters.reject(mid, sig.signal,  # type: ignore[attr-defined]
                                            "non_finite")
                            continue
                        x = value
                    elif t is int or t is bool:
                        x = float(value)
                    else:
                        continue
                    values += 1
                    fired = sig.update(x)  # type: ignore[union-attr]
                    if fired >= 0:
                        self._on_drift(model, sig, fired, ev, result)  # type: ignore[arg-type]
            sig = model.prediction
            if sig is _MISSING:
                sig = model.prediction = model.signals.get(PREDICTION) or self.new_signal(model, PREDICTION)
            if sig is not None:
                x = _number(ev.prediction)
                if x is not None:
                    values += 1
                    fired = sig.update(x)
                    if fired >= 0:
                        self._on_drift(model, sig, fired, ev, result)
                elif type(ev.prediction) is float:
                    counters.reject(mid, PREDICTION, "non_finite")
            if ev.label is not None and model.rule.labels is None:
                self._inline_label(model, ev, result)
            rs = model.retrain
            lc = model.lifecycle
            dw = model.deploy
            if (rs.evidence or rs.degraded or (lc is not None and lc.incidents)
                    or (dw is not None and not dw.done)):
                self._after_event(model, ev, result, models)
        result.events += len(events)
        result.values += values
        if not finish:
            return result
        if pairs:
            self._process_pairs(pairs, models, touched, result)
        for uid, ev in result.watch_pending.items():
            model = models[uid]
            if model.deploy is not None and not model.deploy.done:
                self._watch(model, model.deploy, ev, result, models, final=True)
        result.dirty_models = list(touched.values())
        # What leaves the worker (privacy.alert_evidence); the state above kept the full
        # evidence it needs.
        redact_outputs(result, self.config.privacy.alert_evidence)
        return result

    def _inline_label(self, model: ModelState, ev: InferenceEvent, result: BatchResult) -> None:
        """An event that carries its own true outcome (``label``) feeds ``performance:error``
        at once, with no labels topic: 0/1 errors when the label is a class (bool, string, or
        0/1 against a score), absolute errors when it is any other number. (A model rule with
        ``labels`` takes its labels from the labels topic instead.)"""
        label = ev.label
        classification = (isinstance(label, bool | str)
                          or (type(label) is int and label in (0, 1)))
        err = error_value("classification" if classification else "regression",
                          ev.prediction, label)
        if err is None:
            result.quality.reject(ev.model_id, PERFORMANCE_SIGNAL, "incomparable")
            return
        sig = (model.signals.get(PERFORMANCE_SIGNAL)
               or self.new_signal(model, PERFORMANCE_SIGNAL))
        if sig is None:
            return
        fired = sig.update(err)
        if fired >= 0:
            self._on_drift(model, sig, fired, ev, result)

    def _after_event(self, model: ModelState, ev: InferenceEvent, result: BatchResult,
                     models: dict[str, ModelState]) -> None:
        rs = model.retrain
        if (rs.evidence or rs.degraded) and rs.watching(model.rule.retrain):
            # Pending persistence checks, or the staleness fallback (core/retrain.py).
            tick(model.rule.retrain, rs, model.signals, ev.event_time)
            self._decide(model, ev, result, None)
        lc = model.lifecycle
        if lc is not None and lc.incidents:
            result.resolved += [_rated(model, z) for z in lc.tick(
                model.rule.alerts, model.signals, ev, model.model_id)]  # type: ignore[arg-type]
        dw = model.deploy
        if dw is not None and not dw.done:
            self._watch(model, dw, ev, result, models)

    # -- model versions ---------------------------------------------------------------------
    def start_watch(self, model: ModelState, previous: ModelState | None,
                    previous_version: str | None, started_at: float) -> None:
        """A new version of a model appeared: watch it, and carry over its predecessor's last
        retrain request and today's count, so that cooldown and budget hold across a deploy."""
        model.deploy = DeployWatch(previous_version, unit_id(model.model_id, previous_version),
                                   started_at)
        model.dirty = True
        if previous is not None:
            model.last_retrain_at = previous.last_retrain_at
            model.retrain.day = previous.retrain.day
            model.retrain.day_count = previous.retrain.day_count

    def _watch(self, model: ModelState, dw: DeployWatch, ev: InferenceEvent,
               result: BatchResult, models: dict[str, ModelState], final: bool = False) -> None:
        """End the post-deploy watch with a deployment check once the first window is complete
        (and, with labels, enough of them joined or ``max_wait_seconds`` passed). The timeout is
        decided only at the end of a batch (``final``), after the batch's labels were fed, so it
        does not depend on how events and labels were split into batches."""
        vr = model.rule.versions
        need = vr.watch_events or model.rule.reference_size or self.config.windows.reference_size
        if model.events < need:
            return
        t = ev.event_time
        if dw.full_at is None:
            dw.full_at = t
            model.dirty = True
        reason = "watch_complete"
        perf = model.signals.get(PERFORMANCE_SIGNAL)
        if model.rule.labels is not None and (perf is None or perf.n < vr.min_labeled):
            if not final:
                pending = result.watch_pending.get(model.unit)
                if pending is None or t >= pending.event_time:
                    result.watch_pending[model.unit] = ev
                return
            if vr.max_wait_seconds is None or t - dw.full_at < vr.max_wait_seconds:
                return
            reason = "timeout"
        prev = models.get(dw.previous_unit)  # the pipeline keeps it loaded during the watch
        signals = []
        for name in sorted(model.signals):
            if not (name.startswith("feature:") or name == PREDICTION):
                continue
            sig = model.signals[name]
            old = prev.signals.get(name) if prev is not None else None
            signals.append(compare_signal(
                name, old.reference if old is not None else [], sig.reference,
                alpha=vr.alpha, min_shift=vr.min_shift, min_values=vr.min_values))
        performance = None
        if model.rule.labels is not None:
            old = prev.signals.get(PERFORMANCE_SIGNAL) if prev is not None else None
            performance = compare_performance(
                PERFORMANCE_SIGNAL, list(old.recent) if old is not None else [],
                list(perf.recent) if perf is not None else [],
                binary=model.rule.labels.task == "classification", alpha=vr.alpha,
                max_increase=vr.max_error_increase, min_values=min(vr.min_labeled, 30))
        pos = ev.position
        result.deployment_checks.append(deployment_check(
            model_id=model.model_id, model_version=model.model_version,
            sample_rate=model.rule.sample_rate,
            previous_version=dw.previous_version, started_at=dw.started_at, completed_at=t,
            reason=reason, trigger={"event_id": ev.event_id, "topic": pos.topic,
                                    "partition": pos.partition, "offset": pos.offset},
            signals=signals, performance=performance,
            rule={"alpha": vr.alpha, "min_shift": vr.min_shift,
                  "max_error_increase": vr.max_error_increase, "watch_events": need,
                  "min_labeled": vr.min_labeled, "max_wait_seconds": vr.max_wait_seconds}))
        dw.done = True
        model.dirty = True

    def _process_pairs(self, pairs: Sequence[JoinedPair], models: dict[str, ModelState],
                       touched: dict[str, ModelState], result: BatchResult) -> None:
        """Feed joined (prediction, label) pairs to the models' performance signals, in log
        order. An alert on one names the record that completed the pair (the label, or the
        prediction when its label came first) and the prediction's event id."""
        for p in pairs:
            mid = p.model_id
            uid = self.unit_of(mid, p.version)
            model = models.get(uid)
            if model is None:
                model = self.new_model(mid, p.version)
                if model is None:
                    continue
                models[uid] = model
            rule = model.rule.labels
            if rule is None:
                continue  # the config no longer takes labels for this model
            vk = version_key(p.version)
            if p.seq <= model.pairs_applied.get(vk, 0):
                result.pairs_redelivered += 1
                continue
            model.pairs_applied[vk] = p.seq
            touched[uid] = model
            model.dirty = True
            err = error_value(rule.task, p.prediction, p.label, rule.threshold)
            if err is None:
                result.quality.reject(mid, PERFORMANCE_SIGNAL, "incomparable")
                continue
            sig = model.signals.get(PERFORMANCE_SIGNAL) or self.new_signal(model, PERFORMANCE_SIGNAL)
            if sig is None:
                continue
            result.pairs += 1
            result.pair_delays.setdefault(mid, []).append(p.delay)
            ev = InferenceEvent(p.event_id, mid, {}, p.prediction,
                                Position(p.topic, p.partition, p.offset), p.version, p.label_time)
            fired = sig.update(err)
            if fired >= 0:
                self._on_drift(model, sig, fired, ev, result)
            self._after_event(model, ev, result, models)

    def _on_drift(self, model: ModelState, sig: SignalState, i: int, ev: InferenceEvent,
                  result: BatchResult) -> None:
        alert = _rated(model, self._alert(model, sig, i, ev))
        lc = model.lifecycle
        if lc is not None and not lc.on_drift(model.rule.alerts,  # type: ignore[arg-type]
                                              alert, sig.n, ev.event_time):
            sig.rebaseline()  # folded into the signal's open incident: not published
            sig.base_events = model.events
            return
        result.alerts.append(alert)
        # Evidence against the reference the drift was measured on, so before the rebaseline.
        note_alert(model.rule.retrain, model.retrain, alert, sig.n, ev.event_time)
        sig.rebaseline()
        sig.base_events = model.events
        self._decide(model, ev, result, alert)

    def _decide(self, model: ModelState, ev: InferenceEvent, result: BatchResult,
                alert: dict[str, Any] | None) -> None:
        """Apply the model's retrain policy (core/retrain.py) at this event."""
        rule = model.rule.retrain
        t = ev.event_time
        d = decide(rule, model.retrain, t, model.last_retrain_at, list(model.signals))
        if d is None:
            return
        pos = ev.position
        trigger = alert["detected_at"] if alert is not None else {
            "event_id": ev.event_id, "topic": pos.topic, "partition": pos.partition,
            "offset": pos.offset, "event_time": iso_time(t), "signal_index": None}
        result.retrain_requests.append(_rated(
            model, retrain_request(rule, d, model.model_id, ev.model_version, trigger, t)))
        model.last_retrain_at = t
        model.retrain_requests += 1

    def _alert(self, model: ModelState, sig: SignalState, i: int, ev: InferenceEvent) -> dict[str, Any]:
        name = sig.detector_names[i]
        spec = self.config.detectors[name]
        pos = ev.position
        watched_ref = sig.watched_reference
        reference = summarize(watched_ref)
        recent = list(sig.recent)
        # The values since the reference formed (all in `recent`, or its tail), split at the
        # estimated change start (core/localize.py): `before` follows the reference, `current`
        # is the change.
        since = sig.n - sig.base_n - len(watched_ref)
        window = recent[max(len(recent) - since, 0):] if since > 0 else recent[-1:]
        z = (np.asarray(window, dtype=np.float64) - sig.ref_mean) / sig.ref_std
        tau = 1.0
        if sig.calibration is not None:
            tau = float(sig.calibration.get("long_run_variance_ratio", 1.0))
        kind = _kind_of(sig)
        if kind is None and _binary_values(watched_ref):
            kind = "rate"  # a 0/1 flag's level is its rate
        loc = locate(z, tau, kind="mean" if kind is not None else None)
        if kind is None and loc is not None:
            # Level or spread: which robust statistic moved more after the estimated start (a
            # shift also raises a spread statistic, so which sum fired first does not tell);
            # then the start of that kind of change.
            kind = change_kind(watched_ref, window[loc["start"]:])
            if kind != loc["kind"]:
                loc = locate(z, tau, kind=kind)
            if (spec.type == "kswin" and loc is not None
                    and loc["llr"] < 3.0):  # type: ignore[index]
                kind = "shape"  # KSWIN fired and neither level nor spread explains it
        start = loc["start"] if loc is not None else len(window) - 1
        after = window[start:]
        evidence_n = min(len(after), self.config.windows.evidence_size)
        current = summarize(after[len(after) - evidence_n:])
        before = summarize(window[:start])
        shift = None
        if reference["mean"] is not None and current["mean"] is not None:
            shift = (current["mean"] - sig.ref_mean) / sig.ref_std
        if kind is None:
            kind = "mean"
        change_start = self._change_start(model, sig, len(window), loc, pos)
        params = dict(spec.effective_params)
        if sig.overrides is not None:
            params.update(sig.overrides[i])
        evidence: dict[str, Any] = {
            "reference": reference,
            "current": current,
            "before": before,
            "recent": summarize(recent),
            "mean_shift_in_reference_std": shift,
            "standardization": {"mean": sig.ref_mean, "std": sig.ref_std},
            "change": {"kind": kind, "start": change_start},
        }
        if sig.calibration is not None:
            evidence["calibration"] = sig.calibration
        return {
            "schema_version": SCHEMA_VERSION,
            "type": "drift_alert",
            "alert_id": record_id("alert", *id_parts(model.model_id, model.model_version), sig.signal, name, sig.generation,
                                  sig.n),
            "model_id": model.model_id,
            "model_version": ev.model_version,
            "signal": sig.signal,
            "detector": {"name": name, "type": spec.type, "params": params},
            "detected_at": detected_at(ev, sig.n),
            "evidence": evidence,
            "summary": _summary(model.model_id, sig, kind, reference, current, shift, evidence_n,
                                name, pos.offset, change_start),
        }

    def _change_start(self, model: ModelState, sig: SignalState, window: int,
                      loc: dict[str, Any] | None, pos: Position) -> dict[str, Any]:
        """The estimated first changed value: its signal index, and its event when every event
        of the model since the reference began carried a value of this signal (then value
        ``j`` is event ``j``); ``low``/``high`` bound it (profile-likelihood interval)."""
        start = loc["start"] if loc is not None else window - 1
        low = loc["low"] if loc is not None else start
        high = loc["high"] if loc is not None else start
        values_back = window - start  # values from the start to the detection, inclusive
        out: dict[str, Any] = {
            "signal_index": sig.n - values_back + 1,
            "signal_index_low": sig.n - (window - low) + 1,
            "signal_index_high": sig.n - (window - high) + 1,
            "values_before_detection": values_back - 1,
            "event_id": None, "topic": None, "partition": None, "offset": None,
            "method": "profile_likelihood",
        }
        exact = model.events - sig.base_events == sig.n - sig.base_n
        if exact and values_back <= len(model.ring_ids):
            out.update(event_id=model.ring_ids[-values_back], topic=pos.topic,
                       partition=pos.partition, offset=model.ring_offsets[-values_back])
        return out


_KIND_WORDS = {"mean": "level", "spread": "spread", "shape": "shape", "rate": "rate",
               "category_mix": "category mix"}


def _kind_of(sig: SignalState) -> str | None:
    """The kind of change an alert reports when the signal tells it (fault rates, category
    shares, 0/1 errors under binary detectors); None: decided from the values."""
    name = sig.signal
    if name.startswith("quality:"):
        return "rate"
    if name.startswith("feature:") and "=" in name:
        return "category_mix"
    if any(sig.binary):
        return "rate"
    return None


def _binary_values(values: Sequence[float]) -> bool:
    return bool(values) and all(v == 0.0 or v == 1.0 for v in values)


def _summary(model_id: str, sig: SignalState, kind: str, reference: dict[str, Any],
             current: dict[str, Any], shift: float | None, n: int, name: str, offset: int,
             start: dict[str, Any]) -> str:
    where = (f"; change began at offset {start['offset']}" if start["offset"] is not None
             else f"; change began {start['values_before_detection']} values earlier")
    head = f"{model_id} {sig.signal}: "
    if kind == "spread":
        r_sd, c_sd = reference["std"] or 0.0, current["std"] or 0.0
        ratio = c_sd / r_sd if r_sd else float("inf")
        what = (f"spread {'rose' if ratio >= 1 else 'fell'} from std {r_sd:.4g} to {c_sd:.4g} "
                f"(x{ratio:.2f}); mean {reference['mean']:.4g} -> {current['mean']:.4g}")
    else:
        direction = "rose" if (shift or 0) > 0 else "fell"
        noun = {"rate": "rate", "category_mix": "share", "shape": "distribution shape; mean"}.get(
            kind, "mean")
        what = (f"{noun} {direction} from {reference['mean']:.4g} to {current['mean']:.4g} "
                f"({shift:+.2f} reference std)")
    return (f"{head}{what} over the last {n} values{where}; {name} fired at offset {offset}")


def collecting(state: MonitorState) -> list[dict[str, Any]]:
    """Signals not yet watched: still collecting their reference, with the values they have
    and the values they need (replay's summary, ``check-config``, the metrics)."""
    out = []
    for model in state.models.values():
        for sig in model.signals.values():
            if sig.detectors is None:
                out.append({"model_id": model.model_id, "model_version": model.model_version,
                            "signal": sig.signal, "have": len(sig.reference),
                            "need": sig.watched_after})
    return sorted(out, key=lambda r: (r["model_id"], str(r["model_version"]), r["signal"]))


def _rated(model: ModelState, record: dict[str, Any]) -> dict[str, Any]:
    """A record of the model, stating the sample rate its events were watched at."""
    record["sample_rate"] = model.rule.sample_rate
    return record


def _number(v: Any) -> float | None:
    """A finite float from a JSON value, or None (missing, text, non-finite)."""
    t = type(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is int or t is bool:
        return float(v)
    return None
