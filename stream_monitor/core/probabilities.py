"""Class probabilities: the values they give to signals, and the confidence-based performance
estimate (CBPE-style). Pure. docs/probabilities.md says what is watched and what the estimate
assumes.

An event's ``probabilities`` (class -> probability, checked by the decoder) give:

* ``probability:<class>``: each class's probability (the first ``max_classes`` classes a model
  shows; numeric signals);
* ``confidence``: the largest probability (numeric);
* ``predicted_class``: the arg-max class (a categorical signal, when the prediction is not
  itself a class label, which the categorical ``prediction`` signal already watches).

**The estimate.** Labelled events (inline labels, or predictions joined to the labels topic)
carry a confidence and a 0/1 error. The first ``calibration_size`` of them form the
*calibration reference*. When it shows the model miscalibrated (a likelihood-ratio test of a
logistic recalibration against the identity, :func:`calibrate`), the probability of a correct
prediction is the fitted logistic function of the confidence's logit; else the confidence is
taken as it is. From then on every event
with probabilities gives ``performance:estimated_error`` = 1 - that fitted accuracy at its
confidence, watched like any numeric signal (so a drop of confidence, hence of expected
accuracy, is seen before labels arrive). Each later labelled event gives ``estimate_gap``:
its 0/1 error scored against its estimated error ``e`` by a randomized probability integral
transform (:func:`gap_score`), a standard normal value *whatever* ``e`` is, as long as the
error happens with probability ``e``. So while the estimate holds (under covariate shift,
p(y | x) fixed, a calibrated model's confidence keeps meaning what it meant) the signal's
distribution does not move even when the confidence mix does, and its calibrated detectors
keep the budget; when errors come more (or less) often than estimated (concept drift) its
mean moves, and its alert says the estimate is no longer trustworthy. The calibration is then
learned again from the next labelled events. The raw gap (realized - estimated error, over
the last labelled events) is in replay's summary.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from ..contracts.signals import (
    CLASS_MIX,
    CONFIDENCE,
    ESTIMATE_GAP,
    ESTIMATED_ERROR,
    PROBABILITY_PREFIX,
)

__all__ = [
    "CALIBRATED_LR",
    "CLASS_MIX",
    "CONFIDENCE",
    "ESTIMATED_ERROR",
    "ESTIMATE_GAP",
    "PROBABILITY_PREFIX",
    "Calibration",
    "EstimateState",
    "arg_max",
    "calibrate",
    "estimates",
    "fit_logistic",
    "gap_score",
    "uniform_of",
]

_NORMAL = NormalDist()
_U_EDGE = 1e-9  # keeps the normal score finite (|score| <= 6)


def arg_max(probabilities: Mapping[str, float]) -> tuple[str, float]:
    """The most probable class and its probability (the first of equals, in the map's order).

    >>> arg_max({"a": 0.2, "b": 0.5, "c": 0.3})
    ('b', 0.5)
    """
    best_cls, best = "", -1.0
    for cls, p in probabilities.items():
        if p > best:
            best_cls, best = cls, p
    return best_cls, best


def uniform_of(event_id: str) -> float:
    """A uniform number in (0, 1) from an event id: the randomization of :func:`gap_score`,
    the same in every worker and in replay.

    >>> 0 < uniform_of("e1") < 1, uniform_of("e1") == uniform_of("e1")
    (True, True)
    """
    h = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return (int.from_bytes(h, "big") + 0.5) / 2.0**64


def gap_score(error: float, estimated: float, uniform: float) -> float:
    """The normal score of a 0/1 ``error`` under its estimated probability ``estimated``
    (randomized probability integral transform): ``u = uniform * (1 - e)`` for a correct
    prediction, ``1 - e + uniform * e`` for an error. ``u`` is uniform on (0, 1), and the score
    standard normal, exactly when the error happens with probability ``e``; errors more
    frequent than estimated push it up.

    >>> round(gap_score(0.0, 0.1, 0.5), 3), round(gap_score(1.0, 0.1, 0.5), 3)
    (-0.126, 1.645)
    """
    e = min(max(estimated, 0.0), 1.0)
    u = uniform * e + (1.0 - e) if error else uniform * (1.0 - e)
    return _NORMAL.inv_cdf(min(max(u, _U_EDGE), 1.0 - _U_EDGE))


@dataclass(frozen=True, slots=True)
class Calibration:
    """The accuracy at a confidence: ``sigmoid(a * logit(confidence) + b)`` (a logistic
    recalibration); ``a = 1, b = 0`` is the identity (the confidence *is* the accuracy).

    >>> Calibration()(0.8), round(Calibration(2.0, -1.0)(0.8), 4)
    (0.8, 0.8548)
    """

    a: float = 1.0
    b: float = 0.0

    @property
    def identity(self) -> bool:
        return self.a == 1.0 and self.b == 0.0

    def __call__(self, confidence: float) -> float:
        if self.identity:
            return confidence
        c = min(max(confidence, 1e-6), 1.0 - 1e-6)
        z = self.a * math.log(c / (1.0 - c)) + self.b
        return 1.0 / (1.0 + math.exp(-min(max(z, -35.0), 35.0)))

    def meta(self) -> list[float]:
        return [self.a, self.b]

    @classmethod
    def restore(cls, m: Sequence[float]) -> Calibration:
        return cls(float(m[0]), float(m[1]))


# The likelihood-ratio statistic above which a calibration reference contradicts "the model's
# confidence is its accuracy": the chi-square(2) quantile at 0.99.
CALIBRATED_LR = 9.21


def fit_logistic(confidence: Sequence[float], correct: Sequence[float]
                 ) -> tuple[Calibration, float]:
    """The logistic recalibration of a reference, ``P(correct) = sigmoid(a * logit(confidence)
    + b)``, fitted by maximum likelihood (Newton's method from the identity, each step halved
    until the likelihood does not fall: the log-likelihood is concave), and its
    likelihood-ratio statistic against the identity (about chi-square with 2 degrees of
    freedom when the model is calibrated).

    >>> rng = np.random.default_rng(0)
    >>> c = rng.uniform(0.4, 1.0, 2000)
    >>> fit_logistic(c, rng.random(2000) < c)[1] < CALIBRATED_LR          # calibrated
    True
    >>> fit_logistic(c, rng.random(2000) < c ** 3)[1] > CALIBRATED_LR     # over-confident
    True
    """
    c = np.clip(np.asarray(confidence, dtype=np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(correct, dtype=np.float64)
    x = np.log(c / (1.0 - c))

    def sigmoid(a: float, b: float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(a * x + b, -35.0, 35.0)))

    def loglik(p: np.ndarray) -> float:
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return float(np.sum(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))

    a, b = 1.0, 0.0
    start = best = loglik(sigmoid(a, b))
    for _ in range(50):
        p = sigmoid(a, b)
        w = p * (1.0 - p)
        g = np.array([np.sum((y - p) * x), np.sum(y - p)])
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        try:
            d = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        except np.linalg.LinAlgError:
            break
        step = 1.0
        while step > 1e-6:
            na, nb = a + step * float(d[0]), b + step * float(d[1])
            ll = loglik(sigmoid(na, nb))
            if ll >= best:
                break
            step /= 2.0
        else:
            break
        a, b = na, nb
        gain, best = ll - best, ll
        if gain < 1e-10:
            break
    return Calibration(a, b), max(0.0, 2.0 * (best - start))


def calibrate(confidence: Sequence[float], correct: Sequence[float]) -> Calibration:
    """The calibration of a reference: the identity when the reference does not contradict
    the model's own confidence (the likelihood-ratio statistic of :func:`fit_logistic` below
    :data:`CALIBRATED_LR`), else the logistic fit. A fit where none is needed only adds its
    noise (docs/probabilities.md has the figures)."""
    cal, lr = fit_logistic(confidence, correct)
    return Calibration() if lr < CALIBRATED_LR else cal


@dataclass(slots=True, eq=False)
class EstimateState:
    """One model's performance estimate: the calibration pairs while they are collected, then
    the fitted calibration, and the last ``window`` (estimated, realized) error pairs of
    labelled events (the gap in replay's summary). Saved with the model's meta."""

    calibration_size: int
    window: int
    confidence: list[float] = field(default_factory=list)
    correct: list[float] = field(default_factory=list)
    calibration: Calibration | None = None
    calibrated_on: int = 0  # labelled events the calibration was fitted on
    calibrations: int = 0  # fits so far (1 + re-learnings after a gap alert)
    recent: deque[tuple[float, float]] = field(default_factory=deque)
    labelled: int = 0  # labelled events compared with their estimate since the last fit

    def estimated_error(self, confidence: float) -> float | None:
        """The expected 0/1 error at this confidence; None while not calibrated."""
        cal = self.calibration
        return None if cal is None else 1.0 - cal(confidence)

    def label(self, confidence: float, error: float, uniform: float) -> float | None:
        """A labelled event: its confidence, realized 0/1 error and randomization
        (:func:`uniform_of`). Before the calibration is fitted it joins the calibration pairs
        (and the fit happens at the last); after, returns its :func:`gap_score` to feed
        ``estimate_gap``."""
        cal = self.calibration
        if cal is None:
            self.confidence.append(confidence)
            self.correct.append(1.0 - error)
            if len(self.confidence) >= self.calibration_size:
                self.calibration = calibrate(self.confidence, self.correct)
                self.calibrated_on = len(self.confidence)
                self.calibrations += 1
                self.confidence, self.correct = [], []
            return None
        est = 1.0 - cal(confidence)
        self.recent.append((est, error))
        if len(self.recent) > self.window:
            self.recent.popleft()
        self.labelled += 1
        return gap_score(error, est, uniform)

    def relearn(self) -> None:
        """The estimate stopped holding (an ``estimate_gap`` alert): collect a new calibration
        reference from the next labelled events."""
        self.calibration = None
        self.confidence, self.correct = [], []
        self.recent.clear()
        self.labelled = 0

    def summary(self) -> dict[str, Any]:
        """The estimate against the realized error over the last labelled events, with the
        gap's standard error if the estimate held (each realized error a Bernoulli of its
        estimated rate): sqrt(sum e (1 - e)) / n."""
        out: dict[str, Any] = {"calibrated": self.calibration is not None,
                               "calibrated_on": self.calibrated_on,
                               "calibrations": self.calibrations,
                               "collecting": len(self.confidence)}
        n = len(self.recent)
        if n:
            est = sum(e for e, _ in self.recent) / n
            real = sum(r for _, r in self.recent) / n
            se = math.sqrt(sum(e * (1.0 - e) for e, _ in self.recent)) / n
            out.update(window=n, estimated_error=est, realized_error=real, gap=real - est,
                       gap_standard_error=se)
        return out

    def meta(self) -> dict[str, Any]:
        return {"v": 1, "confidence": self.confidence, "correct": self.correct,
                "calibration": None if self.calibration is None else self.calibration.meta(),
                "calibrated_on": self.calibrated_on, "calibrations": self.calibrations,
                "recent": [list(p) for p in self.recent], "labelled": self.labelled}

    def restore(self, m: Mapping[str, Any]) -> None:
        self.confidence = [float(x) for x in m.get("confidence", ())]
        self.correct = [float(x) for x in m.get("correct", ())]
        cal = m.get("calibration")
        self.calibration = None if cal is None else Calibration.restore(cal)
        self.calibrated_on = int(m.get("calibrated_on", 0))
        self.calibrations = int(m.get("calibrations", 0))
        self.recent = deque((float(a), float(b)) for a, b in m.get("recent", ()))
        self.labelled = int(m.get("labelled", 0))


def estimates(models: Sequence[tuple[str, str | None, EstimateState]]) -> list[dict[str, Any]]:
    """Replay's summary of the performance estimates: per state unit (model id, version), the
    estimate against the realized error (:meth:`EstimateState.summary`)."""
    out = [{"model_id": mid, "model_version": ver, **est.summary()}
           for mid, ver, est in models]
    return sorted(out, key=lambda r: (r["model_id"], str(r["model_version"])))
