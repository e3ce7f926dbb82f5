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

__all__ = ["PageHinkley"]

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
