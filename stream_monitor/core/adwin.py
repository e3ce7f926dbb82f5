"""River's ADWIN with a batch path: the same detector (River's class, its compiled window), fed a
run of values at once.

River's ``ADWIN.update`` is a Python method around the compiled window's own ``update``, which
answers whether this value was a drift; per value, the Python wrapper and the reading of
``drift_detected`` cost about ten times the window's work. :meth:`ADWIN.feed` hands the values
straight to the compiled window and stops at the first drift, which is exactly what ``update``
one by one does (River's ``update``: reset the window after a drift, then
``drift = window.update(x)``). The object is River's, so its checkpoint (the window's state
bytes, core/detectors.py) is unchanged: a checkpoint written before restores into it.
tests/unit/test_vector.py compares both paths on seeded streams.

The compiled window is River's private ``_helper`` attribute (the one River's ``update`` calls):
pyproject pins River to 0.26.x, and the tests above compare with River's own ``update``, so a
River that changes it fails them rather than drifting silently.

>>> det = ADWIN(delta=0.002, clock=32)
>>> xs = np.array([0.0] * 2000 + [5.0] * 200)
>>> fed = det.feed(xs)
>>> fed, det.drift_detected
(2016, True)
"""

from __future__ import annotations

import copy
import operator

import numpy as np
import numpy.typing as npt
from river import drift

__all__ = ["ADWIN"]

Floats = npt.NDArray[np.float64]


class ADWIN(drift.ADWIN):
    """River's ``drift.ADWIN`` (same parameters, state and checkpoint) with :meth:`feed` and
    :meth:`clone` for the batch path."""

    def clone(self) -> ADWIN:  # type: ignore[override]  # River's clone makes a fresh one
        """An independent copy with the same state (River's ``clone`` gives a fresh detector
        of the same parameters; the batch path needs the state)."""
        twin: ADWIN = copy.copy(self)
        helper = self._helper
        twin._helper = fresh = type(helper)(
            delta=self.delta, clock=self.clock, max_buckets=self.max_buckets,
            min_window_length=self.min_window_length, grace_period=self.grace_period)
        fresh.__setstate__(helper.__getstate__())
        return twin

    def feed(self, x: Floats) -> int:
        """Feed values in order, exactly as :meth:`update` one by one would, and stop after
        the first that fires. Returns how many were fed (``len(x)`` when none fired)."""
        if self.drift_detected:
            self._reset()  # type: ignore[no-untyped-call]  # River's, not annotated
        values = iter(x.tolist())
        # The compiled window's update answers "drift?"; `any` stops at the first yes, and
        # the list iterator then knows how many values are left.
        hit = any(map(self._helper.update, values))
        self._drift_detected = hit
        return len(x) - operator.length_hint(values)
