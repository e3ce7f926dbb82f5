"""Delayed labels (issue 5, part "Delayed labels"): joining labels to predictions. Pure.

NOT WIRED YET: nothing consumes a labels topic so far; this module is the I/O-free core of
that feature, tested on its own (tests/unit/test_labels.py). The plan: the worker reads the
labels topic (records ``{"event_id", "model_id", "label", "timestamp"}``), keeps predictions in
Redis under the model's hash tag with a TTL (``p:{m}:pred:<bucket>``, one hash per time bucket,
written in one pipelined round trip a batch), and feeds the joined pairs' errors to the model's
``performance:error`` signal, which the retrain policy treats as a performance signal.

The join, per model, in buckets of ``bucket_seconds`` of event time (like the duplicate claims):

* a prediction waits for its label at most ``ttl_seconds``; when its bucket leaves the TTL its
  unlabelled predictions are counted as ``expired_predictions``;
* a label whose prediction is waiting joins it: the pair gives one **error value**, 0/1 for
  classification (prediction != label; a score in [0, 1] against a 0/1 label is thresholded at
  ``threshold``), ``|prediction - label|`` for regression; its **delay** is label time minus
  prediction time;
* a label that arrives *before* its prediction waits the same way; the prediction then joins it
  (counted as ``labels_before_prediction``); one never joined is counted ``unmatched_labels``
  when its bucket expires.

**Coverage** is joined / predictions seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["PERFORMANCE_SIGNAL", "JoinedPair", "LabelEvent", "LabelJoin", "LabelStats",
           "error_value"]

PERFORMANCE_SIGNAL = "performance:error"
Task = Literal["classification", "regression"]


@dataclass(frozen=True, slots=True)
class LabelEvent:
    event_id: str
    model_id: str
    label: Any
    timestamp: float  # event time of the label (when the outcome became known)


@dataclass(frozen=True, slots=True)
class JoinedPair:
    event_id: str
    error: float
    delay: float  # label time - prediction time, seconds
    prediction_time: float


def error_value(task: Task, prediction: Any, label: Any, threshold: float = 0.5) -> float | None:
    """The performance value of one (prediction, label) pair, or None when they do not compare.

    >>> error_value("classification", 0.8, 1), error_value("classification", "cat", "dog")
    (0.0, 1.0)
    >>> error_value("regression", 2.5, 4)
    1.5
    """
    if task == "regression":
        p, y = _num(prediction), _num(label)
        return None if p is None or y is None else abs(p - y)
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


@dataclass(slots=True)
class LabelStats:
    """Counters of one model's join (all time)."""

    predictions: int = 0
    labels: int = 0
    joined: int = 0
    labels_before_prediction: int = 0
    unmatched_labels: int = 0
    expired_predictions: int = 0
    incomparable: int = 0  # joined pairs whose prediction and label do not compare
    delay_sum: float = 0.0
    delay_max: float = 0.0

    @property
    def coverage(self) -> float | None:
        """Share of the predictions seen that got their label so far."""
        return self.joined / self.predictions if self.predictions else None

    @property
    def mean_delay(self) -> float | None:
        return self.delay_sum / self.joined if self.joined else None


@dataclass(slots=True)
class LabelJoin:
    """One model's waiting predictions and labels, by event-time bucket."""

    task: Task
    ttl_seconds: float
    bucket_seconds: float
    threshold: float = 0.5
    # bucket -> event_id -> (prediction, event time); labels likewise (label, label time).
    predictions: dict[int, dict[str, tuple[Any, float]]] = field(default_factory=dict)
    early_labels: dict[int, dict[str, tuple[Any, float]]] = field(default_factory=dict)
    stats: LabelStats = field(default_factory=LabelStats)
    clock: float = -math.inf  # the latest event time seen (predictions and labels)

    def _bucket(self, t: float) -> int:
        return int(t // self.bucket_seconds)

    def add_prediction(self, event_id: str, prediction: Any, t: float) -> JoinedPair | None:
        self.stats.predictions += 1
        self._advance(t)
        for labels in self.early_labels.values():
            hit = labels.pop(event_id, None)
            if hit is not None:
                self.stats.labels_before_prediction += 1
                return self._join(event_id, prediction, t, hit[0], hit[1])
        self.predictions.setdefault(self._bucket(t), {})[event_id] = (prediction, t)
        return None

    def add_label(self, label: LabelEvent) -> JoinedPair | None:
        self.stats.labels += 1
        self._advance(label.timestamp)
        for waiting in self.predictions.values():
            hit = waiting.pop(label.event_id, None)
            if hit is not None:
                return self._join(label.event_id, hit[0], hit[1], label.label, label.timestamp)
        self.early_labels.setdefault(self._bucket(label.timestamp), {})[label.event_id] = (
            label.label, label.timestamp)
        return None

    def add_labels(self, labels: Iterable[LabelEvent]) -> list[JoinedPair]:
        return [p for p in map(self.add_label, labels) if p is not None]

    def _join(self, event_id: str, prediction: Any, pt: float, label: Any,
              lt: float) -> JoinedPair | None:
        err = error_value(self.task, prediction, label, self.threshold)
        if err is None:
            self.stats.incomparable += 1
            return None
        s = self.stats
        s.joined += 1
        delay = max(0.0, lt - pt)
        s.delay_sum += delay
        s.delay_max = max(s.delay_max, delay)
        return JoinedPair(event_id, err, delay, pt)

    def _advance(self, t: float) -> None:
        """Expire the buckets that left the TTL (event time only moves forward here)."""
        if t <= self.clock:
            return
        self.clock = t
        oldest = self._bucket(t - self.ttl_seconds)
        for b in [b for b in self.predictions if b < oldest]:
            self.stats.expired_predictions += len(self.predictions.pop(b))
        for b in [b for b in self.early_labels if b < oldest]:
            self.stats.unmatched_labels += len(self.early_labels.pop(b))
