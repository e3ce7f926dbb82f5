"""Page-Hinkley, owned by the project: the test River ships as ``drift.PageHinkley``, with the
same arithmetic in the same order (so the same detections on the same values, bit for bit:
tests/unit/test_page_hinkley.py runs both on seeded streams), on plain attributes.

Owning it lets the hot path call it without River's per-value indirections (a ``Mean`` object,
a dispatch of the test by mode) and lets its checkpoint be the project's own plain numbers
rather than River's private fields. Checkpoints written by earlier versions, which held River's
fields (``_x_mean`` and the ``_sum_*`` sums), still restore (core/detectors.py).

Per value ``x``: the running mean ``m`` of the values since the last reset; the sums
``up = alpha * up + (x - m) - delta`` and ``down = alpha * down + (x - m) + delta`` with their
running minimum and maximum; once ``min_instances`` values are in, a drift when ``up`` is more
than ``threshold`` above its minimum (mode ``up``), ``down`` more than ``threshold`` below its
maximum (mode ``down``), or either (``both``).

>>> det = PageHinkley(threshold=5.0)
>>> for i, x in enumerate([0.0] * 40 + [3.0] * 5):
...     det.update(x)
...     if det.drift_detected:
...         break
>>> i
41
"""

from __future__ import annotations

import copy
import math

import numpy as np
import numpy.typing as npt

__all__ = ["PageHinkley"]

Floats = npt.NDArray[np.float64]

# Values per step of `feed`: the running mean of a step is computed before its alarm is
# looked for, so a step bounds the work done past an alarm.
_STEP = 1024

_MODES = ("up", "down", "both")


class PageHinkley:
    """The Page-Hinkley test (River's parameters and defaults)."""

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001, mode: str = "both") -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self._reset()

    def _reset(self) -> None:
        self.n = 0.0  # values since the last reset (a float, as River's Mean counts them)
        self.mean = 0.0
        self.sum_increase = 0.0
        self.sum_decrease = 0.0
        self.min_increase = float("inf")
        self.max_decrease = -1.0
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    def update(self, x: float) -> None:
        if self._drift_detected:
            self._reset()
        n = self.n = self.n + 1.0
        mean = self.mean = self.mean + (1.0 / n) * (x - self.mean)
        dev = x - mean
        up = self.sum_increase = self.alpha * self.sum_increase + dev - self.delta
        down = self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta
        if up < self.min_increase:
            self.min_increase = up
        if down > self.max_decrease:
            self.max_decrease = down
        if n >= self.min_instances:
            mode = self.mode
            thr = self.threshold
            if mode == "both":
                drift = up - self.min_increase > thr or self.max_decrease - down > thr
            elif mode == "up":
                drift = up - self.min_increase > thr
            else:
                drift = self.max_decrease - down > thr
            self._drift_detected = drift

    # -- the batch path (core/vector.py) --------------------------------------------------
    def clone(self) -> PageHinkley:
        """An independent copy (all its state is plain numbers)."""
        return copy.copy(self)

    def feed(self, x: Floats) -> int:
        """Feed values in order, exactly as :meth:`update` one by one would, and stop after
        the first that fires. Returns how many were fed (``len(x)`` when none fired).

        Exact, not approximate: the running mean is the per-value recurrence (a plain loop
        over floats, the one step numpy cannot take in order); everything after it is
        elementwise or an accumulate, which numpy computes in order, so with the usual
        ``alpha = 1`` the sums are the loop's to the bit (``(s + dev) - delta`` is a cumulative
        sum of the interleaved ``dev`` and ``-delta``). Another ``alpha`` goes value by value.
        """
        if self._drift_detected:
            self._reset()
        n = len(x)
        if self.alpha != 1.0:
            for j, v in enumerate(x.tolist()):
                self.update(v)
                if self._drift_detected:
                    return j + 1
            return n
        i = 0
        while i < n:
            step = x[i:i + _STEP]
            fed = self._feed_step(step)
            i += fed
            if self._drift_detected:
                return i
        return n

    def _feed_step(self, x: Floats) -> int:
        m = len(x)
        count = self.n
        mean = self.mean
        means: list[float] = []
        add = means.append
        for v in x.tolist():  # the running mean, as update computes it
            count += 1.0
            mean = mean + (1.0 / count) * (v - mean)
            add(mean)
        dev = x - np.array(means)
        delta = self.delta
        flat = np.empty(2 * m + 1)
        flat[1::2] = dev
        flat[0] = self.sum_increase
        flat[2::2] = -delta
        up = np.cumsum(flat)[2::2]  # ((s + dev) - delta), in order
        flat[0] = self.sum_decrease
        flat[2::2] = delta
        down = np.cumsum(flat)[2::2]
        # Running extremes: exact, and the sums are never -0.0 (so no tie of signed zeros).
        low = np.minimum.accumulate(np.minimum(up, self.min_increase))
        high = np.maximum.accumulate(np.maximum(down, self.max_decrease))
        thr = self.threshold
        mode = self.mode
        if mode == "both":
            hit = (up - low > thr) | (high - down > thr)
        elif mode == "up":
            hit = up - low > thr
        else:
            hit = high - down > thr
        start = math.ceil(self.min_instances - self.n - 1.0)  # the first index where n >= min
        if start > 0:
            hit[:start] = False
        k = int(hit.argmax()) if hit.any() else m - 1
        self.n = self.n + float(k + 1)
        self.mean = means[k]
        self.sum_increase = float(up[k])
        self.sum_decrease = float(down[k])
        self.min_increase = float(low[k])
        self.max_decrease = float(high[k])
        self._drift_detected = bool(hit[k])
        return k + 1
