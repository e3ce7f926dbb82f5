"""Delayed labels: joining labels to their predictions, and the error values they give. Pure.

The worker reads a labels topic (records ``{"event_id", "model_id", "label", "timestamp"}``)
next to the inference topic, in the same batches. Every prediction of a model whose rule has a
``labels`` section waits for its label; a label waits for its prediction when it comes first.
Joined pairs become the model's ``performance:error`` signal (:func:`error_value`), which the
retrain policy treats as a performance signal.

This module is the reference implementation of the join: :class:`LabelBook` keeps one model's
join state in memory (the replay's store), and ``state/label_store.py`` runs the same algorithm in
one Redis Lua script per model and batch (the worker's store). A contract test feeds both the
same operations and compares pairs and counters.

The join, per model, in buckets of ``bucket_seconds`` of event time:

* a prediction waits for its label until the **label stream** is ``ttl_seconds`` of event time
  past it (the label clock: the latest label time seen); then its bucket's unlabelled
  predictions are counted as ``expired_predictions``;
* a label whose prediction is waiting joins it; a label that arrives *before* its prediction
  waits until the **prediction stream** is ``ttl_seconds`` past it (the prediction clock) and
  joins when the prediction comes (``labels_before_prediction``); one never joined is counted
  ``unmatched_labels`` when its bucket expires. Two clocks, because the two topics are read
  independently: after a backlog the (small) label records can run far ahead of the
  predictions, and one shared clock would then expire what is merely not read yet;
* **idempotent under redelivery**: the book keeps a watermark (last offset applied per topic
  and partition); operations at or below it are skipped, so a batch retried after a crash
  changes nothing twice;
* **exactly-once into the detectors**: a joined pair is appended to a log per model version
  with a sequence number and stays there until the model's state, saved with the detectors,
  records that it consumed it (its *cursor*). A batch that dies after the join but before the
  state save finds its pairs again in the log on retry.

Coverage is joined / predictions; delay is label time minus prediction time (0 when the label
came first).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..contracts.records import InferenceEvent, LabelEvent
from ..contracts.signals import PERFORMANCE_SIGNAL

if TYPE_CHECKING:  # annotations only: the model state imports the core's detectors
    from .model_state import ModelState
    from .plan import MonitorPlan

__all__ = ["PERFORMANCE_SIGNAL", "Join", "JoinedPair", "LabelBook", "LabelOp", "LabelStats",
           "error_value", "join_labels", "version_key"]

Task = Literal["classification", "regression"]


def version_key(version: str | None) -> str:
    """The pair log of a model version (``""`` for events without ``model_version``)."""
    return "" if version is None else "v:" + version


@dataclass(frozen=True, slots=True)
class LabelOp:
    """One prediction or label to apply to a model's book, at its source position."""

    kind: Literal["prediction", "label"]
    model_id: str
    event_id: str
    value: Any  # the prediction, or the label
    t: float  # event time
    topic: str
    partition: int
    offset: int
    version: str | None = None  # model_version of a prediction
    # A prediction's confidence (its largest class probability; core/probabilities.py), for
    # the performance estimate; None: none.
    confidence: float | None = None
    # Its class probabilities when it has at most JOIN_PROBABILITIES_MAX classes, for the
    # windowed AUC and Brier score (core/performance.py); None: none.
    probabilities: tuple[tuple[str, float], ...] | None = None


# A prediction's probability map waits with it for its label (in Redis) only up to this many
# classes: a larger map would cost its bytes per waiting prediction; its confidence still goes.
JOIN_PROBABILITIES_MAX = 20


@dataclass(frozen=True, slots=True)
class JoinedPair:
    """A prediction with its label; ``topic/partition/offset`` is the record that joined them
    (the label, or the prediction when its label came first)."""

    seq: int  # position in the model version's pair log (1, 2, ...)
    model_id: str
    version: str | None
    event_id: str
    prediction: Any
    prediction_time: float
    label: Any
    label_time: float
    label_first: bool
    topic: str
    partition: int
    offset: int
    confidence: float | None = None  # the prediction's (LabelOp.confidence)
    probabilities: tuple[tuple[str, float], ...] | None = None  # (LabelOp.probabilities)

    @property
    def delay(self) -> float:
        return max(0.0, self.label_time - self.prediction_time)


def error_value(task: Task, prediction: Any, label: Any, threshold: float = 0.5) -> float | None:
    """The performance value of one (prediction, label) pair, or None when they do not compare.

    Classification: 0/1 (prediction != label); a score in [0, 1] against a 0/1 label is
    thresholded at ``threshold``. Regression: ``|prediction - label|``.

    >>> error_value("classification", 0.8, 1), error_value("classification", "cat", "dog")
    (0.0, 1.0)
    >>> error_value("regression", 2.5, 4)
    1.5
    """
    if task == "regression":
        p, y = _num(prediction), _num(label)
        return None if p is None or y is None else abs(p - y)
    if prediction is None or label is None:
        return None
    if isinstance(label, bool | int) and not isinstance(prediction, str):
        p = _num(prediction)
        if p is None:
            return None
        y = int(label)
        if y in (0, 1) and 0.0 <= p <= 1.0:
            return float((p >= threshold) != bool(y))
        return float(p != y)
    return float(prediction != label)


def _num(v: Any) -> float | None:
    if isinstance(v, bool | int | float) and math.isfinite(float(v)):
        return float(v)
    return None


STAT_FIELDS = ("predictions", "labels", "joined", "labels_before_prediction",
               "unmatched_labels", "expired_predictions", "delay_sum", "delay_max")


@dataclass(slots=True)
class LabelStats:
    """Counters of one model's join (all time, as the store keeps them)."""

    predictions: int = 0
    labels: int = 0
    joined: int = 0
    labels_before_prediction: int = 0
    unmatched_labels: int = 0
    expired_predictions: int = 0
    delay_sum: float = 0.0
    delay_max: float = 0.0

    @property
    def coverage(self) -> float | None:
        """Share of the predictions seen that got their label so far."""
        return self.joined / self.predictions if self.predictions else None

    @property
    def mean_delay(self) -> float | None:
        return self.delay_sum / self.joined if self.joined else None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> LabelStats:
        s = cls()
        for f in STAT_FIELDS:
            if f in m:
                setattr(s, f, float(m[f]) if f.startswith("delay") else int(float(m[f])))
        return s


@dataclass(slots=True)
class LabelBook:
    """One model's waiting predictions and labels, watermark and pair logs (in memory)."""

    model_id: str
    # bucket -> event_id -> (prediction, event time, version, confidence); labels: (label,
    # label time).
    predictions: dict[int, dict[str, tuple[Any, float, str | None, float | None,
                                           tuple[tuple[str, float], ...] | None]]] = field(
        default_factory=dict)
    early_labels: dict[int, dict[str, tuple[Any, float]]] = field(default_factory=dict)
    stats: LabelStats = field(default_factory=LabelStats)
    pred_clock: float = -math.inf  # latest prediction time seen: expires early labels
    label_clock: float = -math.inf  # latest label time seen: expires waiting predictions
    applied: dict[tuple[str, int], int] = field(default_factory=dict)
    logs: dict[str, dict[int, JoinedPair]] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)

    def apply(self, ops: Iterable[LabelOp], *, ttl_seconds: float, bucket_seconds: float,
              cursors: Mapping[str, int]) -> list[JoinedPair]:
        """Apply the operations in order; return every logged pair not yet consumed.

        ``cursors`` (version key -> last consumed seq) trims the logs first; a version missing
        from it keeps its whole log, and its pairs are all returned (the caller skips those at
        or below its own cursor)."""
        for vk, cur in cursors.items():
            log = self.logs.get(vk)
            if log:
                for seq in [s for s in log if s <= cur]:
                    del log[seq]
        for op in ops:
            tp = (op.topic, op.partition)
            if op.offset <= self.applied.get(tp, -1):
                continue  # applied before this batch was retried
            self.applied[tp] = op.offset
            oldest = math.floor((op.t - ttl_seconds) / bucket_seconds)
            if op.kind == "prediction" and op.t > self.pred_clock:
                self.pred_clock = op.t
                for b in [b for b in self.early_labels if b < oldest]:
                    self.stats.unmatched_labels += len(self.early_labels.pop(b))
            elif op.kind == "label" and op.t > self.label_clock:
                self.label_clock = op.t
                for b in [b for b in self.predictions if b < oldest]:
                    self.stats.expired_predictions += len(self.predictions.pop(b))
            b = math.floor(op.t / bucket_seconds)
            if op.kind == "prediction":
                self.stats.predictions += 1
                hit = _take(self.early_labels, op.event_id)
                if hit is not None:
                    self.stats.labels_before_prediction += 1
                    self._log(op, op.value, op.t, op.version, hit[0], hit[1], True,
                              op.confidence, op.probabilities)
                else:
                    self.predictions.setdefault(b, {})[op.event_id] = (
                        op.value, op.t, op.version, op.confidence, op.probabilities)
            else:
                self.stats.labels += 1
                hit = _take(self.predictions, op.event_id)
                if hit is not None:
                    self._log(op, hit[0], hit[1], hit[2], op.value, op.t, False, hit[3],
                              hit[4])
                else:
                    self.early_labels.setdefault(b, {})[op.event_id] = (op.value, op.t)
        out: list[Any] = []
        for vk in sorted(self.logs):
            out.extend(self.logs[vk][s] for s in sorted(self.logs[vk]))
        return out

    def _log(self, op: LabelOp, pred: Any, pt: float, version: str | None, label: Any,
             lt: float, label_first: bool, confidence: float | None,
             probabilities: tuple[tuple[str, float], ...] | None = None) -> None:
        vk = version_key(version)
        seq = self.seqs.get(vk, 0) + 1
        self.seqs[vk] = seq
        pair = JoinedPair(seq, self.model_id, version, op.event_id, pred, pt, label, lt,
                          label_first, op.topic, op.partition, op.offset, confidence,
                          probabilities)
        self.logs.setdefault(vk, {})[seq] = pair
        s = self.stats
        s.joined += 1
        s.delay_sum += pair.delay
        s.delay_max = max(s.delay_max, pair.delay)

def _take(buckets: dict[int, dict[str, Any]], event_id: str) -> Any:
    for b in sorted(buckets):
        hit = buckets[b].pop(event_id, None)
        if hit is not None:
            return hit
    return None



# ---------------------------------------------------------------------------------------------
# A batch's join


@dataclass(slots=True)
class Join:
    """What a batch asks of the join store (state/label_store.py): apply ``ops`` (predictions
    and labels, in source order) under each model's ``rules`` (ttl, bucket seconds); drop the
    pairs at or below ``cursors`` (what the models' stored states consumed, per version). The
    answer: the ``pairs`` not yet consumed, and the models' ``stats``."""

    ops: list[LabelOp]
    rules: dict[str, tuple[float, float]]
    cursors: dict[str, dict[str, int]]
    pairs: list[JoinedPair] = field(default_factory=list)
    stats: dict[str, LabelStats] = field(default_factory=dict)


def join_labels(plan: MonitorPlan, events: Sequence[InferenceEvent],
                labels: Sequence[LabelEvent], models: Mapping[str, ModelState],
                ) -> Generator[Join, None, Join]:
    """Predictions of models that take labels, and the labels, through the join store (one
    :class:`Join`, when there is anything to join). Returns the join, answered."""
    ops: list[tuple[tuple[str, int, int], LabelOp]] = []
    rules: dict[str, tuple[float, float]] = {}
    takes: dict[str, bool] = {}  # model id -> its rule takes labels
    for ev in events if any(r.labels is not None for r in plan.models) else ():
        mid = ev.model_id
        t = takes.get(mid)
        if t is None:
            rule = plan.model_rule(mid)
            policy = rule.labels if rule is not None else None
            t = takes[mid] = policy is not None
            if policy is not None:
                rules[mid] = (policy.ttl_seconds, policy.bucket_seconds)
        if not t:
            continue
        p = ev.position
        probs = ev.probabilities  # (its confidence: for the performance estimate)
        ops.append(((p.topic, p.partition, p.offset), LabelOp(
            "prediction", ev.model_id, ev.event_id, ev.prediction, ev.event_time, p.topic,
            p.partition, p.offset, ev.model_version,
            max(probs.values()) if probs else None,
            tuple(probs.items()) if probs and len(probs) <= JOIN_PROBABILITIES_MAX else None)))
    for lab in labels:
        if lab.model_id not in rules:
            rule = plan.model_rule(lab.model_id)
            assert rule is not None and rule.labels is not None  # the gate kept these only
            rules[lab.model_id] = (rule.labels.ttl_seconds, rule.labels.bucket_seconds)
        p = lab.position
        ops.append(((p.topic, p.partition, p.offset), LabelOp(
            "label", lab.model_id, lab.event_id, lab.label, lab.event_time, p.topic,
            p.partition, p.offset)))
    if not ops:
        return Join([], {}, {})
    if labels and events:
        ops.sort(key=lambda o: o[0])  # a fixed order whatever the interleaving delivered
    # What the cached states consumed, per model (each version's unit its own log), so the
    # join store can drop those pairs from its logs.
    cursors: dict[str, dict[str, int]] = {}
    for m in models.values():
        if m.model_id in rules and m.pairs_applied:
            cursors.setdefault(m.model_id, {}).update(m.pairs_applied)
    join = Join([o for _, o in ops], rules, cursors)
    yield join
    return join
