"""The data-quality gate: pure checks of every event, before and inside the core.

No I/O happens here; the adapter passes the processing clock in, and the pipeline asks a
:class:`~stream_monitor.state.dedupe.DedupeStore` which event ids were claimed before. Two
layers (README "Data quality"):

* **Whole-event rules** (:class:`QualityGate`), in this order: size (``too_large``, on the raw
  bytes, before decoding), decoding (``undecodable``, ``not_an_object``, ``missing_field``,
  ``wrong_type``, ``non_finite`` timestamp), ``unknown_model`` (when the config says
  ``dead_letter``), ``timestamp_in_future`` / ``timestamp_too_old`` (against the processing
  clock), then ``duplicate``. A failing event becomes a :class:`DeadLetter` with its original
  bytes. Between the timestamp rules and ``duplicate``, a model's ``sample_rate`` below 1
  leaves out the events whose ``event_id`` hashes above it (core/sampling.py; counted, not
  dead-lettered).
* **Value rules** (:func:`check_features`, run by :meth:`Monitor.process` for models whose
  quality rule is active): a feature that is missing (absent or null), non-finite, out of bounds
  or an unseen category is rejected *alone*; the event's other values are used. Per feature,
  the fraction of events with each fault is a signal of its own (``quality:<fault>:<feature>``),
  computed once per *sample* of ``sample_events`` events of the model, standardized by the
  reference rate's binomial standard error (:func:`rate_scale`) and fed to the configured
  detectors; a change raises a ``data_quality_alert``. String features, when
  ``categorical`` is on, get one frequency signal per category (``feature:<name>=<category>``),
  watched by the feature's own drift detectors.

Every rejection is counted in one place, :class:`QualityCounters`, returned with the batch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import MonitorConfig, QualityRule
from ..contracts.records import (
    SCHEMA_VERSION,
    DeadLetter,
    InferenceEvent,
    RawRecord,
    decode_inference,
    detected_at,
    iso_time,
    record_id,
)
from ..state.base import id_parts
from .sampling import sampled

if TYPE_CHECKING:
    from .monitor import BatchResult, ModelState, Monitor, SignalState

__all__ = [
    "CategoryState",
    "Claim",
    "FeatureQuality",
    "ModelQuality",
    "QualityCounters",
    "QualityGate",
    "after_change",
    "check_features",
    "learned_bounds",
    "quality_signal",
    "rate_scale",
]

_MISSING = object()
_INF = math.inf
# Model label for dead letters that belong to no watched model (undecodable, unknown model):
# keeps the counters' cardinality bounded by the config.
NO_MODEL = ""


# ---------------------------------------------------------------------------------------------
# Counters


@dataclass(slots=True)
class QualityCounters:
    """What the gate rejected in one batch: the one place the observability exports read.

    ``dead_letters``: (model_id, reason_code) -> events; model_id is ``""`` when the event has
    no watched model (undecodable, unknown model). ``rejected_values``: (model_id, signal,
    reason) -> values, with signal ``feature:<name>`` or ``prediction`` and reason one of
    ``missing``, ``non_finite``, ``out_of_bounds``, ``unseen_category``.

    >>> c = QualityCounters()
    >>> c.dead_letter("", "undecodable"); c.reject("m", "feature:x", "missing")
    >>> c.total_dead_letters(), c.rejected_values[("m", "feature:x", "missing")]
    (1, 1)
    """

    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejected_values: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # (model_id, "inference" | "label") -> records left out by the model's sample_rate.
    sampled_out: Counter[tuple[str, str]] = field(default_factory=Counter)

    def dead_letter(self, model_id: str, reason_code: str) -> None:
        self.dead_letters[(model_id, reason_code)] += 1

    def reject(self, model_id: str, signal: str, reason: str) -> None:
        self.rejected_values[(model_id, signal, reason)] += 1

    def merge(self, other: QualityCounters) -> None:
        self.dead_letters.update(other.dead_letters)
        self.rejected_values.update(other.rejected_values)
        self.sampled_out.update(other.sampled_out)

    def total_dead_letters(self) -> int:
        return sum(self.dead_letters.values())

    def by_reason(self) -> Counter[str]:
        """Dead letters per reason code, all models together."""
        out: Counter[str] = Counter()
        for (_, reason), n in self.dead_letters.items():
            out[reason] += n
        return out


# ---------------------------------------------------------------------------------------------
# Whole-event rules


@dataclass(slots=True, frozen=True)
class Claim:
    """An event's claim on its id within the duplicate window: the (model, event id) and the
    position of the record that carries it, ``topic:partition:offset``. The same record
    redelivered after a crash makes the same claim, so it is not a duplicate of itself."""

    model_id: str
    event_id: str
    position: str


def position_key(ev: InferenceEvent) -> str:
    p = ev.position
    return f"{p.topic}:{p.partition}:{p.offset}"


class QualityGate:
    """Whole-event rules of the config's ``quality`` section. Pure: ``now`` is passed in.

    >>> from stream_monitor.config import parse_config
    >>> from stream_monitor.contracts import Position, RawRecord
    >>> cfg = parse_config({"quality": {"max_message_bytes": 64, "unknown_model": "dead_letter"},
    ...     "models": [{"match": "m", "signals": [{"match": "*", "detectors": ["adwin"]}]}]})
    >>> gate, counters = QualityGate(cfg), QualityCounters()
    >>> raws = [RawRecord(b'{"event_id":"1","model_id":"m","features":{},"prediction":1}',
    ...                   Position("t", 0, 0)),
    ...         RawRecord(b'{"event_id":"2","model_id":"other","features":{},"prediction":1}',
    ...                   Position("t", 0, 1)),
    ...         RawRecord(b"x" * 65, Position("t", 0, 2))]
    >>> events, dead = gate.admit(raws, now=0.0, counters=counters)
    >>> [e.event_id for e in events], [d.reason_code for d in dead]
    (['1'], ['unknown_model', 'too_large'])
    """

    def __init__(self, config: MonitorConfig) -> None:
        q = config.quality
        self.config = config
        self.max_bytes = q.max_message_bytes
        self.dead_letter_unknown = q.unknown_model == "dead_letter"
        self.max_future = q.timestamps.max_future_seconds
        self.max_past = q.timestamps.max_past_seconds
        self.duplicate_window = q.duplicates.window_seconds
        self.max_features = q.max_features_per_event
        self.max_id = q.max_id_length
        self._watched: dict[str, bool] = {}
        # Sample rates below 1 (docs/scaling.md "Sampling a hot model"): off, no cost.
        self.samples = any(r.sample_rate < 1.0 for r in config.models)
        self._rates: dict[str, float] = {}

    @property
    def checks_duplicates(self) -> bool:
        return self.duplicate_window > 0

    def watched(self, model_id: str) -> bool:
        w = self._watched.get(model_id)
        if w is None:
            if len(self._watched) > 100_000:  # ids of unknown models must not grow it forever
                self._watched.clear()
            w = self._watched[model_id] = self.config.model_rule(model_id) is not None
        return w

    def sample_rate(self, model_id: str) -> float:
        """The sample rate of a model's rule (1.0 for a model no rule matches)."""
        r = self._rates.get(model_id)
        if r is None:
            if len(self._rates) > 100_000:
                self._rates.clear()
            rule = self.config.model_rule(model_id)
            r = self._rates[model_id] = 1.0 if rule is None else rule.sample_rate
        return r

    def admit(self, raws: Sequence[RawRecord], now: float,
              counters: QualityCounters) -> tuple[list[InferenceEvent], list[DeadLetter]]:
        """Decode and check each record; never raises. Every record comes back exactly once:
        as an event or as a dead letter (both in input order), unless its model's
        ``sample_rate`` leaves it out (counted in ``counters.sampled_out``). Sampling comes
        after the whole-event rules and before the duplicate check."""
        events: list[InferenceEvent] = []
        dead: list[DeadLetter] = []
        max_bytes = self.max_bytes
        per_model = (self.dead_letter_unknown or self.max_future is not None
                     or self.max_past is not None)
        samples = self.samples
        for raw in raws:
            value = raw.value
            if value is not None and len(value) > max_bytes:
                dead.append(DeadLetter(raw, "too_large", (
                    f"the value is {len(value)} bytes, over quality.max_message_bytes = "
                    f"{max_bytes}; send fewer or shorter fields, or raise the limit")))
                counters.dead_letter(NO_MODEL, "too_large")
                continue
            ev = decode_inference(raw)
            if type(ev) is not InferenceEvent:
                dead.append(ev)  # type: ignore[arg-type]
                counters.dead_letter(NO_MODEL, ev.reason_code)  # type: ignore[union-attr]
                continue
            limit = self._limit_fault(ev)  # type: ignore[arg-type]
            if limit is not None:
                code, reason = limit
                dead.append(DeadLetter(raw, code, reason))
                counters.dead_letter(NO_MODEL, code)
                continue
            if per_model:
                fault = self._event_fault(ev, now)  # type: ignore[arg-type]
                if fault is not None:
                    code, reason = fault
                    dead.append(DeadLetter(raw, code, reason))
                    counters.dead_letter(NO_MODEL if code == "unknown_model" else ev.model_id,  # type: ignore[union-attr]
                                         code)
                    continue
            if samples:
                rate = self.sample_rate(ev.model_id)  # type: ignore[union-attr]
                if rate < 1.0 and not sampled(ev.event_id, rate):  # type: ignore[union-attr]
                    counters.sampled_out[(ev.model_id, "inference")] += 1  # type: ignore[union-attr]
                    continue
            events.append(ev)  # type: ignore[arg-type]
        return events, dead

    def _limit_fault(self, ev: InferenceEvent) -> tuple[str, str] | None:
        """Bounds on what one event may make the worker hold: its number of features and the
        length of its ids (which become Redis keys and output fields)."""
        n = len(ev.features)
        if n > self.max_features:
            return "too_many_features", (
                f"the event has {n} features, over quality.max_features_per_event = "
                f"{self.max_features}; send fewer features, or raise the limit")
        max_id = self.max_id
        if len(ev.model_id) > max_id or len(ev.event_id) > max_id or (
                ev.model_version is not None and len(ev.model_version) > max_id):
            return "id_too_long", (
                f"model_id, event_id or model_version is longer than quality.max_id_length = "
                f"{max_id} characters; use shorter ids, or raise the limit")
        return None

    def _event_fault(self, ev: InferenceEvent, now: float) -> tuple[str, str] | None:
        if not self.watched(ev.model_id):
            if self.dead_letter_unknown:
                return "unknown_model", (
                    f"no rule in `models` matches model_id {ev.model_id!r}; add a rule for it, "
                    "or set quality.unknown_model: ignore")
            return None  # ignored: the core counts it as unwatched and skips it
        t = ev.timestamp
        if t is None and ev.position.timestamp_ms is not None:
            t = ev.position.timestamp_ms / 1000.0
        if t is None:
            return None
        if self.max_future is not None and t > now + self.max_future:
            return "timestamp_in_future", (
                f"event time {_when(t)} is {t - now:.0f}s ahead of the processing clock "
                f"({_when(now)}); quality.timestamps.max_future_seconds is {self.max_future:g}. "
                "Fix the producer's clock or raise the limit")
        if self.max_past is not None and t < now - self.max_past:
            return "timestamp_too_old", (
                f"event time {_when(t)} is {now - t:.0f}s behind the processing clock "
                f"({_when(now)}); quality.timestamps.max_past_seconds is {self.max_past:g}. "
                "Replay old data with a config without this limit, or raise it")
        return None

    # -- duplicates: the claims go to a DedupeStore (I/O, in the pipeline) ------------------
    def claims(self, events: Sequence[InferenceEvent]) -> tuple[list[int], list[Claim]]:
        """The events whose id must be claimed (those of watched models), and their claims."""
        idx: list[int] = []
        claims: list[Claim] = []
        for i, ev in enumerate(events):
            if self.watched(ev.model_id):
                idx.append(i)
                claims.append(Claim(ev.model_id, ev.event_id, position_key(ev)))
        return idx, claims

    def drop_duplicates(self, raws: Sequence[RawRecord], events: Sequence[InferenceEvent],
                        idx: Sequence[int], first_seen: Sequence[str | None],
                        counters: QualityCounters) -> tuple[list[InferenceEvent], list[DeadLetter]]:
        """Split events by the store's answers: ``first_seen[k]`` is None when event
        ``idx[k]`` holds the claim (new, or the same record again), else the position of the
        record that claimed its id first. ``raws`` are the batch's records, for the original
        bytes of the duplicates."""
        dup: dict[int, str] = {i: p for i, p in zip(idx, first_seen, strict=True) if p is not None}
        if not dup:
            return list(events), []
        by_position = {r.position: r for r in raws}
        kept: list[InferenceEvent] = []
        dead: list[DeadLetter] = []
        window = self.duplicate_window
        for i, ev in enumerate(events):
            first = dup.get(i)
            if first is None:
                kept.append(ev)
                continue
            dead.append(DeadLetter(by_position[ev.position], "duplicate", (
                f"event_id {ev.event_id!r} of model {ev.model_id!r} was already seen at "
                f"{first} (topic:partition:offset) within quality.duplicates.window_seconds = "
                f"{window:g}; the first one was used. Make event ids unique, or stop the "
                "producer resending")))
            counters.dead_letter(ev.model_id, "duplicate")
        return kept, dead


def _when(t: float) -> str:
    try:
        return iso_time(t)
    except (ValueError, OverflowError, OSError):
        return f"{t:.3f}"


# ---------------------------------------------------------------------------------------------
# Value rules and data-quality signals


def learned_bounds(reference: Sequence[float], quantiles: tuple[float, float],
                   k: float) -> tuple[float, float] | None:
    """Bounds learned from a reference window: ``[q_low - k*s, q_high + k*s]`` where ``s`` is
    the interquartile range (p75 - p25), or the range (max - min) when the IQR is 0 (a
    discrete feature). None when the reference is constant: it gives no scale to learn from.
    With the defaults (p25/p75, k = 3) these are Tukey's "far out" fences: for normal data about
    2 values in a million fall outside.

    >>> learned_bounds([float(i) for i in range(101)], (0.25, 0.75), 3.0)
    (-125.0, 225.0)
    >>> learned_bounds([0.0] * 90 + [1.0] * 10, (0.25, 0.75), 3.0)  # IQR 0: the range is used
    (-3.0, 3.0)
    >>> learned_bounds([5.0] * 50, (0.25, 0.75), 3.0) is None
    True
    """
    if not reference:
        return None
    a = np.asarray(reference, dtype=np.float64)
    p25, p75, q_lo, q_hi = np.quantile(a, (0.25, 0.75, quantiles[0], quantiles[1]))
    spread = float(p75 - p25)
    if not spread > 0:
        spread = float(a.max() - a.min())
    if not spread > 0 or not math.isfinite(spread):
        return None
    return float(q_lo) - k * spread, float(q_hi) + k * spread


def rate_scale(reference: Sequence[float], sample_events: int) -> tuple[float, float]:
    """Mean and scale of a fault-rate reference (one rate per sample of ``sample_events``).

    The scale is the binomial standard error of one sample's rate, ``sqrt(p(1-p)/n)``, with
    ``p`` estimated from all the reference's events with Laplace's rule, ``(k+1)/(N+2)``, so a
    reference without a single fault still has a scale. Detectors then see each sample's rate
    in standard errors: the same thresholds work for a 0.1% and a 30% rate. (Standardizing by
    the samples' own spread fails there: it is 0 for a fault-free reference; and raw rates leave
    ADWIN's bound for values in [0, 1] so wide that a jump from 1% to 30% took ~1,000 events.)

    >>> mean, scale = rate_scale([0.0] * 50, 20)  # 1000 events, no fault: p = 1/1002
    >>> mean, round(scale, 5)
    (0.0, 0.00706)
    """
    n = len(reference) * sample_events
    mean = math.fsum(reference) / len(reference) if reference else 0.0
    p = (mean * n + 1.0) / (n + 2.0)
    return mean, math.sqrt(p * (1.0 - p) / sample_events)


@dataclass(slots=True, eq=False)
class CategoryState:
    """A string feature as categories. The known set is learned from its first
    ``reference_size`` values; the ``top`` most frequent of them each get a frequency signal."""

    known: frozenset[str] | None = None  # None while learning
    top: tuple[str, ...] = ()
    learning: dict[str, int] = field(default_factory=dict)
    learned_n: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # known categories in this sample
    signals: dict[str, Any] = field(default_factory=dict)  # category -> SignalState (cache)

    def finish(self, max_categories: int) -> None:
        ranked = sorted(self.learning.items(), key=lambda kv: (-kv[1], kv[0]))
        self.known = frozenset(self.learning)
        self.top = tuple(c for c, _ in ranked[:max_categories])
        self.learning = {}

    def meta(self) -> dict[str, Any]:
        return {"known": None if self.known is None else sorted(self.known), "top": list(self.top),
                "learning": dict(self.learning), "learned_n": self.learned_n,
                "counts": dict(self.counts)}

    @classmethod
    def restore(cls, meta: dict[str, Any]) -> CategoryState:
        known = meta.get("known")
        return cls(known=None if known is None else frozenset(map(str, known)),
                   top=tuple(map(str, meta.get("top", ()))),
                   learning={str(k): int(v) for k, v in meta.get("learning", {}).items()},
                   learned_n=int(meta.get("learned_n", 0)),
                   counts={str(k): int(v) for k, v in meta.get("counts", {}).items()})


@dataclass(slots=True, eq=False)
class FeatureQuality:
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
class ModelQuality:
    """Quality state of one model: its watched features in first-seen order (a feature is
    *expected* in every later event once it was seen) and the current sample."""

    rule: QualityRule
    category_reference: int  # values that form a categorical feature's known set
    features: dict[str, FeatureQuality | None] = field(default_factory=dict)  # None: unwatched
    expected: list[FeatureQuality] = field(default_factory=list)
    sample_n: int = 0
    want_missing: bool = False
    want_oob: bool = False
    want_unseen: bool = False

    @classmethod
    def for_rule(cls, rule: QualityRule, category_reference: int) -> ModelQuality:
        ind = set(rule.indicators)
        return cls(rule, category_reference, want_missing="missing" in ind,
                   want_oob="out_of_bounds" in ind, want_unseen="unseen_category" in ind)

    def add_feature(self, name: str, watched: bool) -> FeatureQuality | None:
        if not watched:
            self.features[name] = None
            return None
        b = self.rule.bounds.get(name)
        fq = FeatureQuality(name, "feature:" + name,
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


def quality_signal(fault: str, feature: str) -> str:
    """Name of the signal of a fault rate: ``quality:missing:amount``."""
    return f"quality:{fault}:{feature}"


def check_features(mon: Monitor, model: ModelState, mq: ModelQuality, ev: InferenceEvent,
                   result: BatchResult) -> int:
    """The features of one event under the model's value rules. Returns the number of values
    fed to numeric signals. A faulty value is rejected alone and counted; the others are used."""
    feats = ev.features
    fqs = mq.features
    counters = result.quality
    mid = model.model_id
    seen = 0
    values = 0
    for name, value in feats.items():
        fq: Any = fqs.get(name, _MISSING)  # a FeatureQuality, None (unwatched) or _MISSING
        if fq is _MISSING:
            fq = mq.add_feature(name, mon.watches(model, "feature:" + name))
        if fq is None:
            continue
        t = type(value)
        if t is float:
            seen += 1
            if value - value != 0.0:  # NaN or +/-inf
                fq.missing += 1
                counters.reject(mid, fq.signal, "non_finite")
                continue
            x = value
        elif t is int or t is bool:
            seen += 1
            x = float(value)
        elif t is str:
            seen += 1
            cat = fq.cat
            if cat is not None:
                known = cat.known
                if known is None:
                    cat.learning[value] = cat.learning.get(value, 0) + 1
                    cat.learned_n += 1
                    if cat.learned_n >= mq.category_reference:
                        cat.finish(mq.rule.max_categories)
                elif value in known:
                    cat.counts[value] = cat.counts.get(value, 0) + 1
                else:
                    fq.unseen += 1
                    counters.reject(mid, fq.signal, "unseen_category")
            continue
        else:  # null: counted as missing below, with the absent ones
            continue
        if x < fq.lo or x > fq.hi:
            fq.oob += 1
            counters.reject(mid, fq.signal, "out_of_bounds")
            continue
        sig = fq.sig
        if sig is None:
            sig = fq.sig = model.signals.get(fq.signal) or mon.new_signal(model, fq.signal)
        values += 1
        fired = sig.update(x)
        if fired >= 0:
            mon._on_drift(model, sig, fired, ev, result)
    if seen < len(mq.expected):
        for fq in mq.expected:
            if feats.get(fq.name) is None:
                fq.missing += 1
                counters.reject(mid, fq.signal, "missing")
    mq.sample_n += 1
    if mq.sample_n >= mq.rule.sample_events:
        _close_sample(mon, model, mq, ev, result)
    return values


def _close_sample(mon: Monitor, model: ModelState, mq: ModelQuality, ev: InferenceEvent,
                  result: BatchResult) -> None:
    """Every ``sample_events`` events of a model: feed each fault rate and each category
    frequency of the sample to its signal, learn bounds where a reference just completed."""
    n = mq.sample_n
    learn = mq.rule.learned_bounds
    for fq in mq.expected:
        if mq.want_missing:
            _feed(mon, model, mq, fq, "missing", fq.missing / n, ev, result)
        if mq.want_oob and fq.bounded:
            _feed(mon, model, mq, fq, "out_of_bounds", fq.oob / n, ev, result)
        cat = fq.cat
        if cat is not None and cat.known is not None:
            if mq.want_unseen:
                _feed(mon, model, mq, fq, "unseen_category", fq.unseen / n, ev, result)
            total = sum(cat.counts.values())
            if total:
                for c in cat.top:
                    sig = cat.signals.get(c, _MISSING)
                    if sig is _MISSING:
                        name = f"{fq.signal}={c}"
                        sig = model.signals.get(name) or mon.new_signal(model, name)
                        cat.signals[c] = sig
                    if sig is None:
                        continue
                    fired = sig.update(cat.counts.get(c, 0) / total)
                    if fired >= 0:
                        mon._on_drift(model, sig, fired, ev, result)
                cat.counts = {}
        fq.missing = fq.oob = fq.unseen = 0
        if learn is not None:
            _learn(model, fq, learn.quantiles, learn.k)
    mq.sample_n = 0


def _learn(model: ModelState, fq: FeatureQuality, quantiles: tuple[float, float], k: float) -> None:
    sig = fq.sig or model.signals.get(fq.signal)
    if sig is None or sig.detectors is None or sig.growing or fq.learned_gen == sig.generation:
        return  # no complete reference yet (a short one still grows), or already learned
    fq.learned = learned_bounds(sig.reference, quantiles, k)
    fq.learned_gen = sig.generation
    fq.apply_bounds()


def _feed(mon: Monitor, model: ModelState, mq: ModelQuality, fq: FeatureQuality, fault: str,
          rate: float, ev: InferenceEvent, result: BatchResult) -> None:
    sig = fq.indicators.get(fault)
    if sig is None:
        name = quality_signal(fault, fq.name)
        sig = fq.indicators[fault] = model.signals.get(name) or mon.new_signal(model, name)
        if sig is None:
            return
    fired = sig.update(rate)
    if fired >= 0:
        result.quality_alerts.append(_quality_alert(mon, model, mq, sig, fq.name, fault, fired, ev))
        sig.rebaseline()
        sig.base_events = model.events


_FAULT_WORDS = {"missing": "missing", "out_of_bounds": "out-of-bounds",
                "unseen_category": "unseen-category"}


def _quality_alert(mon: Monitor, model: ModelState, mq: ModelQuality, sig: SignalState,
                   feature: str, fault: str, i: int, ev: InferenceEvent) -> dict[str, Any]:
    name = sig.detector_names[i]
    spec = mon.config.detectors[name]
    pos = ev.position
    before = _mean(sig.reference)
    recent = list(sig.recent)
    k = min(len(recent), mq.rule.evidence_samples)
    current = _mean(recent[len(recent) - k:])
    after = _mean(after_change(recent, before))
    word = _FAULT_WORDS[fault]
    direction = "rose" if after > before else "fell"
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "data_quality_alert",
        "alert_id": record_id("dq", *id_parts(model.model_id, model.model_version), sig.signal,
                              name, sig.generation, sig.n),
        "model_id": model.model_id,
        "model_version": ev.model_version,
        "feature": feature,
        "indicator": fault,
        "signal": sig.signal,
        "detector": {"name": name, "type": spec.type, "params": spec.effective_params},
        "detected_at": detected_at(ev, sig.n),
        "rate_before": before,
        "rate_after": after,
        "sample_rate": model.rule.sample_rate,
        "evidence": {
            "sample_events": mq.rule.sample_events,
            "reference": {"samples": len(sig.reference), "rate": before},
            "current": {"samples": k, "rate": current},
        },
        "summary": (
            f"{model.model_id} feature {feature!r}: {word} rate {direction} from {before:.1%} "
            f"(reference, {len(sig.reference) * mq.rule.sample_events} events) to {after:.1%}; "
            f"{name} fired at offset {pos.offset}"
        ),
    }


def after_change(recent: Sequence[float], before: float) -> Sequence[float]:
    """The recent samples after the most likely change point: the split ``t`` maximizing
    ``|sum(recent[t:] - before)| / sqrt(len(recent) - t)`` (the likelihood-ratio estimate of
    where a mean shift from a known level began). A detector fires a few samples after a
    change, so the recent samples still hold some from before it; their plain mean would
    understate the new rate.

    >>> after_change([0.0, 0.05, 0.0, 0.3, 0.25, 0.35], 0.01)
    [0.3, 0.25, 0.35]
    """
    best, best_t, s = -1.0, 0, 0.0
    for t in range(len(recent) - 1, -1, -1):
        s += recent[t] - before
        score = abs(s) / math.sqrt(len(recent) - t)
        if score > best:
            best, best_t = score, t
    return list(recent[best_t:])


def _mean(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    m = math.fsum(values) / len(values)
    return min(1.0, max(0.0, m))
