"""A calibrated two-sided CUSUM on the level and on the spread of a standardized signal.

River's detectors compare a stream with itself (Page-Hinkley with its own running mean, ADWIN
with its own sub-windows). This one compares every value with the signal's **reference**, which
is what a drift monitor means, and its thresholds come from the reference's own distribution
(``core/calibrate.py``), so that its false-alarm rate follows a budget on data that is not
independent and Gaussian.

Per value (already standardized by the monitor, ``z = (x - mean) / std``):

* ``r = clip(a * z + b, -clip, clip)`` -- a robust re-standardization by the reference median
  and MAD, clipped, so one huge value (a heavy tail) moves a sum by at most ``clip``;
* ``u = (r - m) * inv_s`` -- centred and scaled by the clipped reference's mean and std;
* four CUSUMs on the **level**: up and down with allowance ``k`` (fast, for ~1 sd shifts) and
  ``k_slow`` (for ~0.5 sd shifts);
* two CUSUMs on the **spread**: ``v = (|u| - wm) * inv_ws``, up and down with ``scale_k``.

Each one-sided sum has its own threshold in ``h`` (level fast up/down, level slow up/down,
spread up/down): skewed data need different thresholds on each side. ``fired`` tells which
sum crossed (an index into ``KINDS``). All attributes are plain numbers, so the detector is
checkpointed like the River ones (``core/detectors.py``).

>>> det = Cusum()
>>> for i in range(60):
...     det.update(0.8 * (-1) ** i + (2.0 if i >= 30 else 0.0))
...     if det.drift_detected:
...         break
>>> i, KINDS[det.fired]
(40, 'mean_up')
"""

from __future__ import annotations

import copy

import numpy as np

from .scan import Floats, Scan, feed_in_chunks

__all__ = ["KINDS", "Cusum"]

# What each one-sided sum watches, by index (`Cusum.fired`).
KINDS = ("mean_up", "mean_down", "mean_up", "mean_down", "spread_up", "spread_down")

# Thresholds for N(0,1) input at 1 false alarm per 1,000,000 values, from the same formula as
# the calibration (used until a calibration sets them, e.g. in a bare detector): the "h" that
# core.calibrate.calibrate chose for a bare cusum on 200,000 N(0,1) values (numpy seed 0).
_DEFAULT_H = (15.3, 15.4, 28.2, 28.2, 27.4, 19.2)


class Cusum:
    """Two-sided CUSUMs on the level (two allowances) and on the spread of ``z``."""

    def __init__(self, k: float = 0.5, k_slow: float = 0.25, scale_k: float = 0.3,
                 clip: float = 3.0, a: float = 1.0, b: float = 0.0, m: float = 0.0,
                 inv_s: float = 1.0, wm: float = 0.7979, inv_ws: float = 1.658,
                 h: list[float] | None = None, period: int = 0,
                 season: list[float] | None = None, phase: int = 0) -> None:
        for name, v in (("k", k), ("k_slow", k_slow), ("scale_k", scale_k), ("clip", clip)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        hs = list(_DEFAULT_H if h is None else h)
        if len(hs) != 6 or not all(x > 0 for x in hs):
            raise ValueError("h must be 6 positive thresholds (level fast up/down, level slow "
                             "up/down, spread up/down)")
        self.k = float(k)
        self.k_slow = float(k_slow)
        self.scale_k = float(scale_k)
        self.clip = float(clip)
        self.a, self.b, self.m, self.inv_s = float(a), float(b), float(m), float(inv_s)
        self.wm, self.inv_ws = float(wm), float(inv_ws)
        self.h = [float(x) for x in hs]
        # A known period (values): `season` holds the reference's mean of z per phase bin,
        # subtracted before anything else; `phase` is the next value's position in the period.
        self.period = int(period)
        self.season = [float(x) for x in (season or [0.0])]
        self.phase = int(phase)
        if self.period < 0 or (self.period and not 0 <= self.phase < self.period):
            raise ValueError("period must be >= 0 and phase in [0, period)")
        self._reset()

    def _reset(self) -> None:
        self.s0 = self.s1 = self.s2 = self.s3 = self.s4 = self.s5 = 0.0
        self.fired = -1
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    def update(self, z: float) -> None:
        if self._drift_detected:
            self._reset()
        if self.period:
            p = self.phase
            z -= self.season[p * len(self.season) // self.period]
            p += 1
            self.phase = 0 if p == self.period else p
        c = self.clip
        r = self.a * z + self.b
        if r > c:
            r = c
        elif r < -c:
            r = -c
        u = (r - self.m) * self.inv_s
        k = self.k
        s0 = self.s0 + u - k
        s1 = self.s1 - u - k
        k = self.k_slow
        s2 = self.s2 + u - k
        s3 = self.s3 - u - k
        v = ((u if u >= 0.0 else -u) - self.wm) * self.inv_ws
        k = self.scale_k
        s4 = self.s4 + v - k
        s5 = self.s5 - v - k
        self.s0 = s0 = s0 if s0 > 0.0 else 0.0
        self.s1 = s1 = s1 if s1 > 0.0 else 0.0
        self.s2 = s2 = s2 if s2 > 0.0 else 0.0
        self.s3 = s3 = s3 if s3 > 0.0 else 0.0
        self.s4 = s4 = s4 if s4 > 0.0 else 0.0
        self.s5 = s5 = s5 if s5 > 0.0 else 0.0
        h = self.h
        if s0 > h[0] or s1 > h[1] or s2 > h[2] or s3 > h[3] or s4 > h[4] or s5 > h[5]:
            # The sum furthest past its threshold, relative to it, names the kind of change.
            ratios = (s0 / h[0], s1 / h[1], s2 / h[2], s3 / h[3], s4 / h[4], s5 / h[5])
            self.fired = max(range(6), key=ratios.__getitem__)
            self._drift_detected = True

    def clone(self) -> Cusum:
        """An independent copy (its lists are never changed in place, so they are shared)."""
        return copy.copy(self)

    def feed(self, z: Floats) -> int:
        """Feed values in order, exactly as :meth:`update` one by one would, and stop after
        the first that fires. Returns how many were fed (``len(z)`` when none fired).

        The sums are computed a chunk at a time in closed form (core/scan.py); where that
        cannot decide bit for bit (a sum near its threshold, or near 0), the values go
        through :meth:`update`.
        """
        if self._drift_detected:
            self._reset()
        return feed_in_chunks(self, z)

    def _feed_chunk(self, z: Floats) -> int:
        """Apply the values of ``z`` before the first alarm candidate; returns how many. When
        the closed form cannot decide, the values go through :meth:`update` up to an alarm
        (included: then ``drift_detected`` is set)."""
        n = len(z)
        x = z
        if self.period:
            ph = (self.phase + np.arange(n)) % self.period
            season = np.asarray(self.season)
            x = z - season[ph * len(self.season) // self.period]
        c = self.clip
        r = self.a * x + self.b
        r = np.where(r > c, c, np.where(r < -c, -c, r))
        u = (r - self.m) * self.inv_s
        v = (np.where(u >= 0.0, u, -u) - self.wm) * self.inv_ws
        parts = np.empty((6, n, 2))
        parts[0, :, 0] = u
        parts[1, :, 0] = -u
        parts[2, :, 0] = u
        parts[3, :, 0] = -u
        parts[4, :, 0] = v
        parts[5, :, 0] = -v
        parts[0:2, :, 1] = -self.k
        parts[2:4, :, 1] = -self.k_slow
        parts[4:6, :, 1] = -self.scale_k
        sc = Scan(np.array([self.s0, self.s1, self.s2, self.s3, self.s4, self.s5]), parts)
        first = int(sc.first_over(np.asarray(self.h)).min())
        states = sc.state_after(first)
        if states is None:
            for j in range(n):
                self.update(float(z[j]))
                if self._drift_detected:
                    return j + 1
            return n
        self.s0, self.s1, self.s2, self.s3, self.s4, self.s5 = states
        if self.period:
            self.phase = (self.phase + first) % self.period
        return first
