"""What the core remembers of a model between events, and how it is built from the plan.

* :class:`ModelState`: one state unit (a model, or a model version kept apart): its signals
  (core/signals.py), retrain evidence, open incidents, value-rule bookkeeping, post-deploy watch,
  and the per-partition watermark that makes a redelivered event a no-op.
* :class:`StateBuilder`: new units and signals from the plan's rules (core/plan.py), and units
  restored from a stored checkpoint (the adapters load and save them; this module does no I/O).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..contracts.units import unit_id
from ..errors import StateCorruptError
from .categories import CodeTable
from .detectors import REGISTRY, restore_detector
from .incidents import IncidentBook
from .joint import JointState
from .lifecycle import LifecycleState
from .performance import MetricsState
from .plan import ModelPlan, MonitorPlan, QualityPlan
from .probabilities import EstimateState
from .retrain import RetrainState
from .seasonal import TimedSignalState
from .signals import SignalState

__all__ = [
    "RING",
    "CategoryState",
    "DeployWatch",
    "FeatureRuleState",
    "ModelState",
    "MonitorState",
    "SignalTemplate",
    "StateBuilder",
    "ValueRuleState",
]

MISSING: Any = object()  # "not looked up yet" in the per-model caches
RING = 500  # default events of a model whose ids are kept for change localization
_INF = float("inf")
_TEMPLATES_MAX = 100_000  # signal templates kept (signal names can be unbounded)


@dataclass(frozen=True, slots=True)
class SignalTemplate:
    """What every new signal of one model rule and signal name gets, resolved from the plan
    once (:meth:`StateBuilder.new_signal` built it from the rule on each call: with 100,000
    models every event's model is new to the worker, and those lookups were 14% of its CPU).
    ``detector_params`` is shared by the signals built from it: nothing writes to it."""

    timed: float  # the period of event time in seconds, 0.0: none
    categorical: bool
    detector_names: tuple[str, ...]
    detector_params: tuple[dict[str, Any], ...]
    binary: tuple[bool, ...]
    reference_size: int
    reference_min: int  # 0: the full reference
    period: int
    budget: float | None
    budget_config: dict[str, Any] | None


@dataclass(slots=True)
class DeployWatch:
    """The post-deploy watch of a new model version (kept in its state, persisted)."""

    previous_version: str | None
    previous_unit: str  # the state unit the first window is compared with
    started_at: float  # event time of the new version's first event
    full_at: float | None = None  # event time its first window was complete
    done: bool = False

    def meta(self) -> list[Any]:
        return [self.previous_version, self.previous_unit, self.started_at, self.full_at,
                self.done]

    @classmethod
    def restore(cls, m: list[Any]) -> DeployWatch:
        return cls(m[0], str(m[1]), float(m[2]), None if m[3] is None else float(m[3]),
                   bool(m[4]))


@dataclass(slots=True, eq=False)
class CategoryState:
    """A string feature as categories: the known set, learned from its first
    ``reference_size`` values, for the ``unseen_category`` accounting (the categories themselves
    feed the categorical signal ``feature:<name>``, core/categories.py)."""

    known: frozenset[str] | None = None  # None while learning
    top: tuple[str, ...] = ()
    learning: dict[str, int] = field(default_factory=dict)
    learned_n: int = 0

    def finish(self, max_categories: int) -> None:
        ranked = sorted(self.learning.items(), key=lambda kv: (-kv[1], kv[0]))
        self.known = frozenset(self.learning)
        self.top = tuple(c for c, _ in ranked[:max_categories])
        self.learning = {}

    def meta(self) -> dict[str, Any]:
        return {"known": None if self.known is None else sorted(self.known), "top": list(self.top),
                "learning": dict(self.learning), "learned_n": self.learned_n}

    @classmethod
    def restore(cls, meta: dict[str, Any]) -> CategoryState:
        known = meta.get("known")
        return cls(known=None if known is None else frozenset(map(str, known)),
                   top=tuple(map(str, meta.get("top", ()))),
                   learning={str(k): int(v) for k, v in meta.get("learning", {}).items()},
                   learned_n=int(meta.get("learned_n", 0)))


@dataclass(slots=True, eq=False)
class FeatureRuleState:
    """Quality bookkeeping of one watched feature of one model."""

    name: str
    signal: str  # feature:<name>
    cfg_lo: float | None = None
    cfg_hi: float | None = None
    lo: float = -_INF  # effective bounds; +/-inf when unbounded (one compare on the hot path)
    hi: float = _INF
    learned: tuple[float, float] | None = None
    learned_gen: int | None = None  # generation of the reference the bounds were learned from
    missing: int = 0  # faults in the current sample (missing counts non-finite values too)
    oob: int = 0
    unseen: int = 0
    cat: CategoryState | None = None
    sig: Any = None  # the numeric SignalState (cache)
    indicators: dict[str, Any] = field(default_factory=dict)  # fault -> SignalState (cache)

    def apply_bounds(self) -> None:
        lo, hi = self.learned if self.learned is not None else (-_INF, _INF)
        self.lo = self.cfg_lo if self.cfg_lo is not None else lo
        self.hi = self.cfg_hi if self.cfg_hi is not None else hi

    @property
    def bounded(self) -> bool:
        return self.lo > -_INF or self.hi < _INF

    def meta(self) -> dict[str, Any]:
        return {"missing": self.missing, "oob": self.oob, "unseen": self.unseen,
                "learned": None if self.learned is None else list(self.learned),
                "learned_gen": self.learned_gen,
                "cat": None if self.cat is None else self.cat.meta()}


@dataclass(slots=True, eq=False)
class ValueRuleState:
    """Quality state of one model: its watched features in first-seen order (a feature is
    *expected* in every later event once it was seen) and the current sample."""

    rule: QualityPlan
    category_reference: int  # values that form a categorical feature's known set
    features: dict[str, FeatureRuleState | None] = field(default_factory=dict)  # None: unwatched
    expected: list[FeatureRuleState] = field(default_factory=list)
    sample_n: int = 0
    want_missing: bool = False
    want_oob: bool = False
    want_unseen: bool = False

    @classmethod
    def for_rule(cls, rule: QualityPlan, category_reference: int) -> ValueRuleState:
        ind = set(rule.indicators)
        return cls(rule, category_reference, want_missing="missing" in ind,
                   want_oob="out_of_bounds" in ind, want_unseen="unseen_category" in ind)

    def add_feature(self, name: str, watched: bool) -> FeatureRuleState | None:
        if not watched:
            self.features[name] = None
            return None
        b = self.rule.bounds.get(name)
        fq = FeatureRuleState(name, "feature:" + name,
                            cfg_lo=None if b is None else b.min,
                            cfg_hi=None if b is None else b.max,
                            cat=CategoryState() if self.rule.categorical else None)
        fq.apply_bounds()
        self.features[name] = fq
        self.expected.append(fq)
        return fq

    def meta(self) -> dict[str, Any]:
        return {"v": 1, "sample_n": self.sample_n,
                "features": [[fq.name, fq.meta()] for fq in self.expected]}

    def restore(self, meta: dict[str, Any], watched: Callable[[str], bool]) -> None:
        self.sample_n = int(meta.get("sample_n", 0))
        for name, fm in meta.get("features", []):
            fq = self.add_feature(str(name), watched(str(name)))
            if fq is None:
                continue
            fq.missing, fq.oob, fq.unseen = int(fm["missing"]), int(fm["oob"]), int(fm["unseen"])
            learned = fm.get("learned")
            if learned is not None and self.rule.learned_bounds is not None:
                fq.learned = (float(learned[0]), float(learned[1]))
                fq.learned_gen = fm.get("learned_gen")
                fq.apply_bounds()
            if fq.cat is not None and fm.get("cat") is not None:
                fq.cat = CategoryState.restore(fm["cat"])


@dataclass(slots=True, eq=False)
class ModelState:
    """State of one model: its signals and the evidence behind retrain decisions."""

    model_id: str
    rule: ModelPlan
    signals: dict[str, SignalState] = field(default_factory=dict)
    # feature name -> its SignalState, or None when the feature is not monitored.
    by_feature: dict[str, SignalState | None] = field(default_factory=dict)
    prediction: Any = MISSING
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
    # Saves of this state so far, as loaded from the store (kept by the adapter): a save names
    # the revision it was computed from, and the store refuses it if another worker saved since.
    revision: int = 0
    # Value rules and data-quality signals (core/value_rules.py); None when the model's quality
    # rule has none, and the per-value loop stays the plain one.
    value_rules: ValueRuleState | None = None
    # Delayed labels: the last joined pair fed to `performance:error`, per pair log (version
    # key, core/label_join.py). Saved with the detectors, so a pair counts exactly once.
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
    # Signals with a period of event time (core/seasonal.py): the monitor gives them each
    # event's time before its values.
    timed: list[TimedSignalState] = field(default_factory=list)
    # Class probabilities (core/probabilities.py): class -> its probability signal, or None
    # when not watched (a cache); the performance estimate, when the rule has one.
    by_class: dict[str, SignalState | None] = field(default_factory=dict)
    estimate: EstimateState | None = None
    # The joint signal's fit and recent rows (core/joint.py); None when the rule has no `joint`.
    joint: JointState | None = None
    embedding: JointState | None = None  # likewise of the events' `embeddings`
    # The last labelled events and their windowed metrics (core/performance.py); None when the
    # model rule has no `performance`.
    performance: MetricsState | None = None
    # Open incidents, alerts of several signals grouped (core/incidents.py); None when the
    # model rule has no `incidents`.
    incidents: IncidentBook | None = None

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
        if self.value_rules is not None:
            meta["quality"] = self.value_rules.meta()
        if self.lifecycle is not None:
            meta["lifecycle"] = self.lifecycle.meta()
        est = self.estimate
        if est is not None and (est.calibrations or est.confidence):
            meta["estimate"] = est.meta()
        if self.incidents is not None:
            meta["incidents"] = self.incidents.meta()
        if self.joint is not None:
            meta["joint"] = self.joint.meta()
        if self.embedding is not None:
            meta["embedding"] = self.embedding.meta()
        if self.performance is not None and self.performance.labelled:
            meta["performance"] = self.performance.meta()
        return meta


@dataclass(slots=True)
class MonitorState:
    """All model states an adapter holds in memory. Models are loaded lazily by the adapter."""

    models: dict[str, ModelState] = field(default_factory=dict)

    def missing(self, model_ids: Iterable[str]) -> set[str]:
        return {m for m in model_ids if m not in self.models}


class StateBuilder:
    """Model states and signals as the plan's rules shape them, new or restored from a
    checkpoint. :class:`~stream_monitor.core.monitor.Monitor` is one."""

    def __init__(self, config: MonitorPlan) -> None:
        self.config = config
        self._separate: dict[str, bool] = {}
        # (model rule, signal name, categorical asked) -> the rule and the signal's template,
        # None when no rule watches it (the rule kept to check the key's id still names it).
        self._templates: dict[tuple[int, str, bool],
                              tuple[ModelPlan, SignalTemplate | None]] = {}

    # -- state construction -------------------------------------------------------------
    def unit_of(self, model_id: str, model_version: str | None) -> str:
        """The state unit of an event: per (model, version) when the model's rule keeps
        versions apart (``versions.separate``), else per model."""
        if model_version is None:
            return model_id
        sep = self._separate.get(model_id)  # per event: no call
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
        if rule.incidents is not None:
            model.incidents = IncidentBook()
        ring = rule.recent_size
        if ring != RING:
            model.ring_ids = deque(maxlen=ring)
            model.ring_offsets = deque(maxlen=ring)
        if rule.quality.active:
            model.value_rules = ValueRuleState.for_rule(rule.quality, rule.reference_size)
        pp = rule.probabilities
        if pp is not None and pp.estimate:
            model.estimate = EstimateState(pp.calibration_size, rule.recent_size)
        jp = rule.joint
        if jp is not None:
            model.joint = JointState(jp.fit_size, jp.max_features, rule.recent_size,
                                     named=jp.features)
        ep = rule.embedding
        if ep is not None:
            model.embedding = JointState(ep.fit_size, ep.max_features, rule.recent_size,
                                         named=tuple(f"c{j}" for j in range(ep.max_features)))
        mp = rule.performance
        if mp is not None:
            model.performance = MetricsState(mp.window, mp.max_classes, mp.bins)
        return model

    def watches(self, model: ModelState, signal: str) -> bool:
        """Whether a rule of the model's config gives the signal detectors."""
        return model.rule.signal_rule(signal) is not None

    def categorical(self, model: ModelState, signal: str) -> bool:
        """Whether the signal's rule makes every value of it a category (``kind:
        categorical``, or a ``multinomial_cusum`` detector)."""
        sr = model.rule.signal_rule(signal)
        return sr is not None and sr.categorical

    def new_signal(self, model: ModelState, signal: str,
                   categorical: bool = False) -> SignalState | None:
        """A new signal of the model, None when no rule watches it. ``categorical``: its
        first value is a category (a string); a rule can make it one anyway
        (:meth:`categorical`)."""
        if signal.startswith("quality:"):
            return self._new_quality_signal(model, signal)
        rule = model.rule
        hit = self._templates.get((id(rule), signal, categorical))
        if hit is None or hit[0] is not rule:
            hit = (rule, self._template(rule, signal, categorical))
            if len(self._templates) >= _TEMPLATES_MAX:
                self._templates.clear()
            self._templates[(id(rule), signal, categorical)] = hit
        t = hit[1]
        if t is None:
            return None
        table = None
        if t.categorical:
            # One multinomial CUSUM (core/multinomial.py) watches the category mix.
            mq = model.value_rules
            top_k = mq.rule.max_categories if mq is not None else 20
            table = CodeTable(max(64, 4 * top_k))
        sig = (TimedSignalState if t.timed else SignalState)(
            signal=signal,
            detector_names=t.detector_names,
            detector_params=t.detector_params,
            binary=t.binary,
            reference_size=t.reference_size,
            recent=deque(maxlen=rule.recent_size),
            base_events=max(model.events - 1, 0),
            table=table,
            period=t.period,
            budget=t.budget,
            budget_config=None if t.budget_config is None else dict(t.budget_config),
            reference_min=t.reference_min,
        )
        if table is not None:
            sig.top_k = top_k
        if isinstance(sig, TimedSignalState):
            sig.period_seconds = t.timed
            model.timed.append(sig)
        model.signals[signal] = sig
        model.dirty = True
        return sig

    @staticmethod
    def _template(rule: ModelPlan, signal: str, categorical: bool) -> SignalTemplate | None:
        """The template of a new signal (None: no rule watches it)."""
        sr = rule.signal_rule(signal)
        if sr is None:
            return None
        if categorical or sr.categorical:
            # One multinomial CUSUM in place of the rule's cusum (or of River's detectors,
            # which take numbers).
            names: tuple[str, ...] = (sr.category_detector,)
            params: tuple[Mapping[str, Any], ...] = (sr.category_params,)
            binary: tuple[bool, ...] = (False,)
            least = sr.categorical_watched_after
            timed = 0.0
        else:
            names, params, binary = sr.detectors, sr.detector_params, sr.binary
            least = sr.watched_after
            timed = sr.period_seconds
        budget = sr.budget
        return SignalTemplate(
            timed=timed, categorical=categorical or sr.categorical, detector_names=names,
            detector_params=tuple(dict(p) for p in params), binary=binary,
            reference_size=sr.reference_size,
            reference_min=least if least < sr.reference_size else 0,
            period=sr.period_values,
            budget=None if budget is None else budget.per_value(),
            budget_config=None if budget is None else budget.describe())

    def _new_quality_signal(self, model: ModelState, signal: str) -> SignalState | None:
        """A fault rate (``quality:<fault>:<feature>``): one 0/1 value per event (1: the
        event has the fault), with a reference of ``reference_samples * sample_events`` events
        (watched from ``reference_min_size`` on when budgeted). A ``cusum`` watches it as a
        Bernoulli CUSUM (core/bernoulli.py); other detectors get the value standardized by the
        reference rate's binomial standard deviation
        (:func:`~stream_monitor.core.signals.rate_scale`)."""
        mq = model.value_rules
        if mq is None:
            return None  # the config no longer has value rules for this model
        q = mq.rule
        reference_size = q.reference_size
        sig = SignalState(
            signal=signal,
            detector_names=q.detectors,
            detector_params=tuple(dict(p) for p in q.detector_params),
            binary=q.binary,
            reference_size=reference_size,
            recent=deque(maxlen=max(model.rule.recent_size,
                                    q.evidence_samples * q.sample_events)),
            rate_sample=1,
            base_events=max(model.events - 1, 0),
        )
        if q.budget is not None:
            sig.budget = q.budget.per_value()
            sig.budget_config = q.budget.describe()
        if q.watched_after < reference_size:
            sig.reference_min = q.watched_after
        model.signals[signal] = sig
        model.dirty = True
        return sig

    def restore_signal(self, model: ModelState, meta: dict[str, Any], recent: list[float],
                       reference: list[float]) -> SignalState | None:
        """Rebuild a signal from its persisted parts. Returns None if it is no longer watched."""
        labels = meta.get("categories")
        if labels is None and _old_share(model, meta["signal"]):
            model.signals.pop(meta["signal"], None)
            return None
        sig = self.new_signal(model, meta["signal"], categorical=labels is not None)
        if sig is None:
            model.signals.pop(meta["signal"], None)
            return None
        if (sig.table is None) != (labels is None):
            return sig  # the config changed the signal's kind: it starts afresh
        if sig.table is not None and labels is not None:
            sig.table = CodeTable(sig.table.cap, [str(c) for c in labels])
        sig.recent.extend(recent)
        sig.reference = list(reference)
        sig.n = int(meta["n"])
        sig.generation = int(meta["generation"])
        sig.ref_mean = float(meta["ref_mean"])
        sig.ref_std = float(meta["ref_std"])
        base = meta.get("base")
        if base is not None:
            sig.base_n, sig.base_events = int(base[0]), int(base[1])
        watch = meta.get("watch")
        if watch is not None:
            sig.watch_next, sig.watch = int(watch[0]), watch[1]
        dets = meta.get("detectors")
        if isinstance(sig, TimedSignalState) and not sig.restore_timed(meta):
            dets, sig.reference = None, []  # saved without an event-time period: start over
        if dets is not None and tuple(meta["detector_names"]) == sig.detector_names:
            sig.calibration = meta.get("calibration")
            sig.overrides = meta.get("overrides")
            kinds = meta.get("kinds") or [p["__type__"] for p in sig.detector_params]
            if len(kinds) != len(dets) or any(k not in REGISTRY for k in kinds):
                raise StateCorruptError(f"{sig.signal}: bad detector kinds {kinds!r}")
            sig.set_kinds(tuple(str(k) for k in kinds))
            sig.detectors = [
                restore_detector(k, sig.own_params(i), d)
                for i, (k, d) in enumerate(zip(sig.kinds, dets, strict=True))
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
        if model.incidents is not None and meta.get("incidents"):
            model.incidents = IncidentBook.restore(meta["incidents"])
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
        if model.estimate is not None and meta.get("estimate") is not None:
            model.estimate.restore(meta["estimate"])
        if model.joint is not None and meta.get("joint") is not None:
            model.joint.restore(meta["joint"])
        if model.embedding is not None and meta.get("embedding") is not None:
            model.embedding.restore(meta["embedding"])
        if model.performance is not None and meta.get("performance") is not None:
            model.performance.restore(meta["performance"])
        if model.value_rules is not None and meta.get("quality") is not None:
            model.value_rules.restore(meta["quality"],
                                  lambda name: self.watches(model, "feature:" + name))
        model.dirty = False
        return model


def _old_share(model: ModelState, signal: str) -> bool:
    """A stored category share signal of earlier versions (``feature:<name>=<category>``, one
    per known category): the categorical signal ``feature:<name>`` replaces it."""
    mq = model.value_rules
    if mq is None or not signal.startswith("feature:") or "=" not in signal:
        return False
    name, _, category = signal[len("feature:"):].rpartition("=")
    fq = mq.features.get(name)
    return (fq is not None and fq.cat is not None and fq.cat.known is not None
            and category in fq.cat.known)
