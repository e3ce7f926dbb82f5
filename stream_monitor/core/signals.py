"""One monitored signal of one model: its reference and recent windows and its detectors.

Per (model, signal) the core keeps:

* a **reference window**: the first ``reference_size`` values (again after each drift). Its mean
  and standard deviation standardize every later value, ``z = (x - mean) / std``, so detector
  thresholds are in reference standard deviations whatever the feature's units;
* a **recent window**: the last ``recent_size`` values, for evidence;
* the **detectors** (River objects), fed ``z`` (binary detectors get the raw 0/1 value).

:meth:`SignalState.update` is the hot path; it says which detector fired, and the monitor
(core/monitor.py) turns that into an alert and calls :meth:`SignalState.rebaseline`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..contracts.signals import PREDICTION
from .adwin import ADWIN
from .bernoulli import BernoulliCusum, calibrate_rate, is_binary_reference
from .calibrate import calibrate
from .categories import CodeTable
from .cusum import Cusum
from .detectors import REGISTRY, build_detector, checkpoint
from .multinomial import calibrate_multinomial
from .page_hinkley import PageHinkley
from .watchable import assess

__all__ = ["PREDICTION", "SignalState", "rate_scale", "reference_scale", "user_params"]

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


# The detectors whose `feed` takes a run of values bit-identically to `update` one by one.
_FEEDS = (Cusum, BernoulliCusum, PageHinkley, ADWIN)


def _plan(detectors: list[Any], binary: tuple[bool, ...]) -> tuple[tuple[bool, Any], ...]:
    """How SignalState.update feeds each detector: (True: the raw value, False: the
    standardized one; the detector)."""
    return tuple(zip(binary, detectors, strict=True))


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
    plan: tuple[tuple[bool, Any], ...] = ()
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
    # Watchability (core/watchable.py) of the last calibration; a short reference that cannot
    # support the budget is not watched yet: it keeps growing and is assessed again at
    # `watch_next` values (up to the full reference, which is watched whatever it supports).
    watch: dict[str, Any] | None = None
    watch_next: int = 0
    # The detector types actually built (set when the reference forms): a `cusum` on a binary
    # signal (a fault rate, or a reference of only 0/1 values) is a `bernoulli_cusum`.
    kinds: tuple[str, ...] = ()
    # Categorical signals (core/categories.py): the code table of their categories (values are
    # codes), and how many of the most frequent get their own slot in the detector (the rest
    # are "other"). None: a numeric signal.
    table: CodeTable | None = None
    top_k: int = 20

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
                if len(ref) >= self.watched_after:
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
        # Every detector through its public contract: `update`, then `drift_detected`.
        for raw, det in self.plan:
            det.update(x if raw else z)
            if fired < 0 and det.drift_detected:
                fired = i
            i += 1
        return fired

    # -- the batch path (core/vector.py) --------------------------------------------------
    @property
    def vectorised(self) -> bool:
        """Can :meth:`feed` take this signal's next values as arrays? Its detectors (if it has
        any yet) are all of a kind whose ``feed`` takes runs of values bit-identically to one
        by one: the project's CUSUMs, its Page-Hinkley and River's ADWIN (core/adwin.py). A
        signal collecting or growing its reference is fed up to the value that completes it
        (:meth:`first_alarm`), which the loop feeds (it calibrates)."""
        dets = self.detectors
        return (type(self) is SignalState and self.table is None
                and (dets is None or all(type(d) in _FEEDS for d in dets)))

    def _collecting(self) -> int:
        """How many more values join the reference before the one that completes it (-1 when
        the signal is watching, its reference complete)."""
        if self.detectors is None:
            return max(0, self.watched_after - len(self.reference) - 1)
        if self.growing:
            return max(0, self.reference_size - len(self.reference) - 1)
        return -1

    def first_alarm(self, xs: Sequence[float]) -> tuple[int, list[Any]]:
        """The index of the first of ``xs`` that the loop must feed (``len(xs)`` when none):
        the first at which a detector would fire, or the one that completes a reference being
        collected; and copies of the detectors fed up to it. The signal is left as it was.
        Only for a :attr:`vectorised` signal."""
        first = len(xs)
        more = self._collecting()
        if more >= 0:
            first = min(first, more)
        if self.detectors is None:
            return first, []
        x = np.asarray(xs, dtype=np.float64)
        z = (x - self.ref_mean) / self.ref_std
        twins = []
        for det, raw in zip(self.detectors, self.binary, strict=True):
            twin = det.clone()
            fed = twin.feed((x if raw else z)[:first])
            if twin.drift_detected:
                first = fed - 1
            twins.append(twin)
        return first, twins

    def feed(self, xs: Sequence[float], twins: list[Any] | None = None) -> None:
        """Feed values known to raise no alarm and complete no reference
        (:meth:`first_alarm`): the same state as :meth:`update` on each. ``twins``: the
        detectors :meth:`first_alarm` fed on exactly these values, taken in place of feeding
        them again. Only for a :attr:`vectorised` signal."""
        if not len(xs):
            return
        more = self._collecting()
        if more >= 0:
            if len(xs) > more:
                raise AssertionError("SignalState.feed: values past a reference")
            self.reference.extend(xs)
        dets = self.detectors
        if dets is None:
            pass
        elif twins is not None:
            dets[:] = twins
            self.plan_for = None  # the plan holds the detectors it feeds
        else:
            x = np.asarray(xs, dtype=np.float64)
            z = (x - self.ref_mean) / self.ref_std
            for det, raw in zip(dets, self.binary, strict=True):
                det.feed(x if raw else z)
                if det.drift_detected:
                    raise AssertionError("SignalState.feed: values past an alarm")
        self.n += len(xs)
        self.recent.extend(xs)

    @property
    def watched_after(self) -> int:
        """Values the signal needs before it is watched (or assessed again, when its short
        reference could not support the budget)."""
        return self.watch_next or self.reference_min or self.reference_size

    @property
    def watched_reference(self) -> list[float]:
        """The reference the detectors compare with (a short reference's values up to its
        calibration; later values that joined it are watched values)."""
        ref = self.reference
        return ref if self.ref_used >= len(ref) else ref[:self.ref_used]

    def update_category(self, label: str) -> int:
        """Feed one category of a categorical signal (see :meth:`update`)."""
        table = self.table
        if table is None:
            raise TypeError(f"{self.signal} is not a categorical signal")
        return self.update(table.code(label))

    def _activate(self) -> None:
        self.ref_used = len(self.reference)
        self.growing = self.ref_used < self.reference_size
        if self.table is not None:
            # Categories: one multinomial CUSUM on the codes (core/multinomial.py), calibrated
            # to the signal's budget; values are not standardized.
            self.ref_mean, self.ref_std = 0.0, 1.0
            p = self.detector_params[0]
            over, self.calibration = calibrate_multinomial(
                self.reference, self.table.labels, self.budget, user_params(p), self.top_k)
            self.calibration["budget"] = self.budget_config or {
                "per_events": round(1.0 / self.calibration["budget_per_value"])}
            self.overrides = [over]
            self.set_kinds((p["__type__"],))
            if self._not_watchable_yet((p,), self.calibration["budget_per_value"]):
                return
            self.detectors = [build_detector(p["__type__"], {**user_params(p), **over})]
            return
        if self.rate_sample:
            self.ref_mean, self.ref_std = rate_scale(self.reference, self.rate_sample)
        else:
            self.ref_mean, self.ref_std = reference_scale(self.reference)
        self.set_kinds(self.detector_kinds())
        # As built: calibrate() leaves the Bernoulli CUSUMs to _calibrate_rates.
        params = tuple(p if k == p["__type__"] else {"__type__": k}
                       for p, k in zip(self.detector_params, self.kinds, strict=True))
        if self.budget is not None:
            # Once per reference: thresholds for this signal's budget (core/calibrate.py; for
            # binary signals core/bernoulli.py).
            self.overrides, self.calibration = calibrate(
                self.reference, self.ref_mean, self.ref_std, params, self.budget,
                self.period, self.base_n % self.period if self.period else 0)
            self._calibrate_rates()
            self.calibration["budget"] = self.budget_config
            if self._not_watchable_yet(params, self.budget):
                return
            self.detectors = [build_detector(k, {**self.own_params(i), **o})
                              for i, (k, o) in enumerate(zip(self.kinds, self.overrides,
                                                             strict=True))]
            return
        self.detectors = [build_detector(k, self.own_params(i)) for i, k in enumerate(self.kinds)]

    def _not_watchable_yet(self, params: tuple[dict[str, Any], ...], budget: float) -> bool:
        """Assess the calibration (core/watchable.py); True when the short reference cannot
        support the budget, so the signal is not watched yet and its reference keeps growing.
        A rate or a category mix that cannot is still watched on its short reference while it
        grows (its calibration meets the budget; a paused flag would miss a change while its
        reference grows, and absorb it), and is reported."""
        assert self.calibration is not None and self.overrides is not None
        self.watch = assess(self.calibration, self.overrides, params, budget, self.reference_size)
        if self.watch is not None:
            self.calibration["watchable"] = {
                k: self.watch[k] for k in ("watchable", "effective_sample_size",
                                           "expected_delay", "horizon")}
            if not self.watch["watchable"] and self.growing and "kind" not in self.watch:
                # Not watchable yet: keep collecting; look again at 1.5 times the values.
                self.watch_next = min(self.reference_size, -(-3 * self.ref_used // 2))
                self.detectors = None
                self.growing = False
                self.ref_used = 0
                self.calibration = self.overrides = None
                return True
        self.watch_next = 0
        return False

    @property
    def is_binary(self) -> bool:
        """A binary signal: a fault rate, or a reference of only 0/1 values (whatever its
        length or how few distinct values it has: the Bernoulli calibration's prior makes a
        constant reference safe)."""
        return self.signal.startswith("quality:") or is_binary_reference(self.reference)

    def detector_kinds(self) -> tuple[str, ...]:
        """The type each configured detector is built as for the current reference: the
        calibrated default ``cusum`` picks its arithmetic from the signal's kind."""
        binary = self.is_binary
        return tuple("bernoulli_cusum" if binary and p["__type__"] == "cusum" else p["__type__"]
                     for p in self.detector_params)

    def set_kinds(self, kinds: tuple[str, ...]) -> None:
        self.kinds = kinds
        self.binary = tuple(REGISTRY[k].input == "binary" for k in kinds)

    def own_params(self, i: int) -> dict[str, Any]:
        """Detector ``i``'s configured parameters, when it is built as its configured type
        (a ``cusum`` built as a ``bernoulli_cusum`` takes none of the numeric ones)."""
        p = self.detector_params[i]
        return user_params(p) if self.kinds[i] == p["__type__"] else {}

    def _calibrate_rates(self) -> None:
        """Bernoulli CUSUMs: alternatives and thresholds for their share of the budget."""
        assert self.calibration is not None and self.overrides is not None
        found = [i for i, k in enumerate(self.kinds) if k == "bernoulli_cusum"]
        if not found:
            return
        share = float(self.budget or 0.0) / max(1, len(self.kinds))
        dets = self.calibration.setdefault("detectors", [{} for _ in self.kinds])
        for i in found:
            self.overrides[i], dets[i] = calibrate_rate(self.watched_reference, share,
                                                        self.own_params(i))
        if len(found) == len(self.kinds):
            d = dets[found[0]]
            self.calibration["long_run_variance_ratio"] = d["long_run_variance_ratio"]
            self.calibration["effective_sample_size"] = d["effective_sample_size"]
        self.calibration["signal_kind"] = "binary"

    def rebaseline(self, events: int) -> None:
        """Forget the reference and the detectors; collect a new reference from now on
        (``events``: the model's event count now, where the new reference starts)."""
        self.base_events = events
        self.reference = []
        self.detectors = None
        self.growing = False
        self.ref_used = 0
        self.ref_mean, self.ref_std = 0.0, 1.0
        self.calibration = self.overrides = None
        self.watch = None
        self.watch_next = 0
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
            "detectors": (None if self.detectors is None
                          else [checkpoint(d) for d in self.detectors]),
            "calibration": self.calibration,
            "overrides": self.overrides,
            "base": [self.base_n, self.base_events],
            "ref_used": self.ref_used,
            "watch": [self.watch_next, self.watch],
            "kinds": list(self.kinds),
            **({} if self.table is None else {"categories": list(self.table.labels)}),
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


def user_params(p: dict[str, Any]) -> dict[str, Any]:
    """A detector's parameters as the user gave them (without the ``__type__`` tag)."""
    return {k: v for k, v in p.items() if k != "__type__"}
