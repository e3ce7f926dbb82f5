"""Windowed performance metrics from labelled events (inline labels, or predictions joined to
the labels topic). Pure. docs/metrics.md says what each metric means and how it is watched.

A model keeps its last ``window`` labelled events (:class:`MetricsState`); the metrics are
computed from them on demand (alert evidence, replay's summary, the worker's gauges), never
per event, and never from running sums (so a restored window gives the very same figures as
one that never left memory):

* classifiers: accuracy; precision, recall and F1 per class (the ``max_classes`` classes with
  the most support, ties by name) and their macro averages; with probabilities, the Brier
  score (half the squared distance between the probability vector and the one-hot label:
  for two classes exactly sklearn's ``brier_score_loss``), the expected calibration error
  (top-label confidence against correctness in ``bins`` equal-width bins, weighted by count)
  and the AUC (one-vs-rest, macro over the classes with both outcomes in the window; for two
  classes the binary AUC);
* regressors: RMSE, MAE and MAPE (over the labels whose magnitude is above
  :data:`MAPE_EPSILON`; the others are counted, not divided by).

**Watching them.** A windowed metric moves by one event's share at each event: consecutive
values are almost the same number (autocorrelated), and a detector calibrated for independent
values would raise many more false alarms than its budget. What is watched instead are the
*per-event contributions* whose window mean is the metric: the Brier score of each event
(``performance:brier``), the squared error (``performance:squared_error``, RMSE's square) and
the absolute percentage error (``performance:percentage_error``). Those are independent from
one event to the next while nothing changes, so the calibrated detectors keep the budget; a
shift of the windowed metric is exactly a shift of their mean. (Accuracy's contribution is the
0/1 error, already ``performance:error``; AUC, F1 and the calibration error are not means of
per-event values and are reported, not watched.)
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..contracts.signals import BRIER_SIGNAL, PERCENTAGE_ERROR_SIGNAL, SQUARED_ERROR_SIGNAL
from .categories import label_of

__all__ = [
    "BRIER_SIGNAL",
    "MAPE_EPSILON",
    "PERCENTAGE_ERROR_SIGNAL",
    "SQUARED_ERROR_SIGNAL",
    "Labelled",
    "MetricsState",
    "auc_ovr",
    "brier",
    "classes_of",
    "expected_calibration_error",
    "metrics_rows",
]

# Labels of smaller magnitude are left out of MAPE (a percentage of almost nothing).
MAPE_EPSILON = 1e-9


class Labelled(NamedTuple):
    """One labelled event as the window keeps it (a tuple: one is made per labelled event).
    Classification: the predicted and true class, the top-label confidence (None without
    probabilities) and the class probabilities (None without them), or for a score against a
    0/1 label the ``score`` (the probability of ``"1"``, read as ``{"0": 1 - s, "1": s}`` by
    :meth:`probs`). Regression: the prediction and the label (``predicted``/``true`` unused)."""

    predicted: str = ""
    true: str = ""
    confidence: float | None = None
    probabilities: Mapping[str, float] | None = None
    prediction: float = 0.0
    label: float = 0.0
    score: float | None = None

    def probs(self) -> Mapping[str, float] | None:
        s = self.score
        if s is not None and self.probabilities is None:
            return {"0": 1.0 - s, "1": s}
        return self.probabilities

    def conf(self) -> float | None:
        s = self.score
        if s is not None and self.confidence is None:
            return max(s, 1.0 - s)
        return self.confidence

    def meta(self) -> list[Any]:
        return [self.predicted, self.true, self.confidence,
                None if self.probabilities is None else dict(self.probabilities),
                self.prediction, self.label, self.score]

    @classmethod
    def restore(cls, m: Sequence[Any]) -> Labelled:
        probs = m[3]
        return cls(str(m[0]), str(m[1]), None if m[2] is None else float(m[2]),
                   None if probs is None else {str(k): float(v) for k, v in probs.items()},
                   float(m[4]), float(m[5]), None if len(m) < 7 or m[6] is None else float(m[6]))


def _num(v: Any) -> float | None:
    if isinstance(v, bool | int | float) and math.isfinite(float(v)):
        return float(v)
    return None


def classes_of(prediction: Any, label: Any, threshold: float,
               probabilities: Mapping[str, float] | None) -> Labelled | None:
    """A classification pair as the window keeps it, as core/label_join.py ``error_value``
    reads it: a score in [0, 1] against a 0/1 (or boolean) label is the class ``"1"`` at or
    above ``threshold`` (the score is then the probability of ``"1"``); else both are classes
    (core/categories.py ``label_of``). None when they do not compare.

    >>> classes_of(0.8, 1, 0.5, None).probs()
    {'0': 0.19999999999999996, '1': 0.8}
    >>> classes_of("cat", "dog", 0.5, {"cat": 0.7, "dog": 0.3}).confidence
    0.7
    """
    if prediction is None or label is None:
        return None
    if isinstance(label, bool | int) and not isinstance(prediction, str):
        p = _num(prediction)
        y = int(label)
        if p is not None and y in (0, 1) and 0.0 <= p <= 1.0:
            cls = "1" if p >= threshold else "0"
            if probabilities is not None:
                return Labelled(cls, str(y), max(probabilities.values()), dict(probabilities))
            return Labelled(cls, "1" if y else "0", score=p)
    pred, true = label_of(prediction), label_of(label)
    if pred is None or true is None:
        return None
    conf = None if probabilities is None else max(probabilities.values(), default=None)
    return Labelled(pred, true, conf,
                    None if probabilities is None else dict(probabilities))


def brier(probabilities: Mapping[str, float], true: str) -> float:
    """Half the squared distance between the probabilities and the one-hot label (in [0, 1];
    for two classes the squared error of either class's probability).

    >>> round(brier({"a": 0.8, "b": 0.2}, "a"), 6), round(brier({"a": 0.8, "b": 0.2}, "c"), 6)
    (0.04, 0.84)
    """
    s = sum((p - (1.0 if c == true else 0.0)) ** 2 for c, p in probabilities.items())
    if true not in probabilities:
        s += 1.0
    return 0.5 * s


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[float],
                               bins: int) -> float:
    """Top-label expected calibration error: confidences in ``bins`` equal-width bins of
    [0, 1] (the last one closed), sum over bins of count/n * |accuracy - mean confidence|.

    >>> expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1], 10)   # .5*.4 + .5*.4
    0.4
    """
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    n = len(c)
    if not n:
        return 0.0
    idx = np.minimum((c * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += float(m.sum()) / n * abs(float(y[m].mean()) - float(c[m].mean()))
    return round(total, 12)


def _auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """Binary AUC (Mann-Whitney U with tied scores sharing their ranks); None without both
    outcomes."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if not n1 or not n0:
        return None
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = np.empty_like(ranks)
    r[order] = ranks
    return (float(r[positive].sum()) - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def auc_ovr(rows: Sequence[Labelled]) -> float | None:
    """One-vs-rest AUC, macro over the classes (of the probability maps) that have both
    outcomes in ``rows``; a class missing from an event's map has probability 0 there. None
    when no class has both. For two classes it is the binary AUC."""
    probs = [(p, r.true) for r in rows if (p := r.probs()) is not None]
    if not probs:
        return None
    classes = sorted({c for p, _ in probs for c in p})
    true = np.array([t for _, t in probs])
    aucs = []
    for c in classes:
        score = np.array([p.get(c, 0.0) for p, _ in probs])
        a = _auc(score, true == c)
        if a is not None:
            aucs.append(a)
    return float(np.mean(aucs)) if aucs else None


@dataclass(slots=True, eq=False)
class MetricsState:
    """One model's last ``window`` labelled events and the metrics computed from them."""

    window: int
    max_classes: int
    bins: int
    task: str = ""  # "classification" or "regression", the last labelled event's
    rows: deque[Labelled] = field(default_factory=deque)
    labelled: int = 0  # all time
    # The last values() and the `labelled` count they were computed at (read several times a
    # batch: evidence, gauges), not saved.
    _cache: tuple[int, dict[str, Any]] | None = field(default=None, repr=False)

    def add(self, task: str, row: Labelled) -> None:
        if task != self.task:
            self.rows.clear()  # a model does not switch tasks; if its labels do, start over
            self.task = task
        self.rows.append(row)
        if len(self.rows) > self.window:
            self.rows.popleft()
        self.labelled += 1
        self._cache = None

    def values(self) -> dict[str, Any]:
        """The metrics over the window: ``{"task", "window", <metric>: value, ...,
        "classes": {class: {"precision", "recall", "f1", "support"}}}`` (classifiers), a
        metric absent when the window cannot give it. (A copy: the caller may keep it.)"""
        c = self._cache
        if c is None or c[0] != self.labelled:
            c = self._cache = (self.labelled, self._values())
        return copy.deepcopy(c[1])

    def _values(self) -> dict[str, Any]:
        rows = list(self.rows)
        n = len(rows)
        out: dict[str, Any] = {"task": self.task, "window": n}
        if not n:
            return out
        if self.task == "regression":
            p = np.array([r.prediction for r in rows])
            y = np.array([r.label for r in rows])
            e = p - y
            out["rmse"] = float(np.sqrt(np.mean(e * e)))
            out["mae"] = float(np.mean(np.abs(e)))
            ok = np.abs(y) > MAPE_EPSILON
            if ok.any():
                out["mape"] = float(np.mean(np.abs(e[ok]) / np.abs(y[ok])))
            out["mape_left_out"] = int(n - ok.sum())
            return out
        correct = [1.0 if r.predicted == r.true else 0.0 for r in rows]
        out["accuracy"] = sum(correct) / n
        tp: dict[str, int] = {}
        npred: dict[str, int] = {}
        ntrue: dict[str, int] = {}
        for r in rows:
            npred[r.predicted] = npred.get(r.predicted, 0) + 1
            ntrue[r.true] = ntrue.get(r.true, 0) + 1
            if r.predicted == r.true:
                tp[r.true] = tp.get(r.true, 0) + 1
        per: dict[str, dict[str, float]] = {}
        f1s, precs, recs = [], [], []
        for c in sorted(set(npred) | set(ntrue)):
            t = tp.get(c, 0)
            prec = t / npred[c] if npred.get(c) else 0.0
            rec = t / ntrue[c] if ntrue.get(c) else 0.0
            f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
            precs.append(prec)
            recs.append(rec)
            f1s.append(f1)
            per[c] = {"precision": prec, "recall": rec, "f1": f1, "support": ntrue.get(c, 0)}
        out["precision_macro"] = sum(precs) / len(precs)
        out["recall_macro"] = sum(recs) / len(recs)
        out["f1_macro"] = sum(f1s) / len(f1s)
        top = sorted(per, key=lambda c: (-per[c]["support"], c))[: self.max_classes]
        out["classes"] = {c: per[c] for c in sorted(top)}
        out["classes_left_out"] = len(per) - len(top)
        with_p = [(pm, r.true) for r in rows if (pm := r.probs()) is not None]
        if with_p:
            out["brier"] = sum(brier(pm, t) for pm, t in with_p) / len(with_p)
            auc = auc_ovr(rows)
            if auc is not None:
                out["auc"] = auc
        with_c = [(cf, ok) for r, ok in zip(rows, correct, strict=True)
                  if (cf := r.conf()) is not None]
        if with_c:
            out["ece"] = expected_calibration_error([c for c, _ in with_c],
                                                    [ok for _, ok in with_c], self.bins)
        return out

    def scalars(self) -> dict[str, float]:
        """The metrics that are one number each (the gauges), by name."""
        v = self.values()
        return {k: float(x) for k, x in v.items()
                if k in SCALAR_METRICS and x is not None}

    def meta(self) -> dict[str, Any]:
        return {"v": 1, "task": self.task, "labelled": self.labelled,
                "rows": [r.meta() for r in self.rows]}

    def restore(self, m: Mapping[str, Any]) -> None:
        self.task = str(m.get("task", ""))
        self.labelled = int(m.get("labelled", 0))
        rows = [Labelled.restore(r) for r in m.get("rows", ())]
        self.rows = deque(rows[-self.window:] if self.window else [])
        self._cache = None


# The metrics that are one number per model (gauges, alert evidence).
SCALAR_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auc", "brier",
                  "ece", "rmse", "mae", "mape")


def metrics_rows(models: Sequence[tuple[str, str | None, MetricsState]]) -> list[dict[str, Any]]:
    """Replay's summary: per state unit (model id, version) with labelled events, its window's
    metrics (:meth:`MetricsState.values`), sorted by model and version."""
    out = [{"model_id": mid, "model_version": ver, "labelled": st.labelled, **st.values()}
           for mid, ver, st in models if st.rows]
    return sorted(out, key=lambda r: (r["model_id"], str(r["model_version"])))
