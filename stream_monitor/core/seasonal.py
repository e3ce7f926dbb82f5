"""A signal with a known period of **event time** (``signals[].period: 1d``): every value is
compared with the reference at the same phase of its event's timestamp.

A period in values (``period: 1440``) assumes a steady event rate; this one does not. The phase
of a value is ``(t mod period) / period`` of its event time ``t``, in ``PHASE_BINS`` bins. While
the reference is collected each value's bin is recorded; when the reference is complete, each
bin's mean (less the reference's overall mean) is the **season**, and the reference becomes the
values less their bin's season. From then on every value is fed to the detectors (and kept in
the recent window) less the season of its event's bin, so the detectors' calibration, their
sums and the change localization all see de-seasonalized values, exact however uneven the
event rate is.

The reference must span the cycle: it keeps collecting past ``reference_size`` until it covers
``MIN_PERIODS`` periods of event time, up to ``MAX_GROWTH`` times ``reference_size`` values
(then it is used as it is; bins it never saw get no correction, and the calibration record says
how many periods it spanned).

Only this subclass reads the event time: the monitor sets :attr:`TimedSignalState.t` once per
event for the model's timed signals (``ModelState.timed``), so other signals' hot path is
unchanged. The state is plain numbers (``season``; ``ref_bins`` as a string of one character per
reference value while it is collected), saved with the signal's meta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .plan import PHASE_BINS
from .signals import SignalState

__all__ = ["MAX_GROWTH", "MIN_PERIODS", "TimedSignalState", "phase_bin"]

MIN_PERIODS = 2.0
MAX_GROWTH = 10
_BIN0 = 48  # ord("0"): bins are stored as the characters chr(48 + bin)


def phase_bin(t: float, period: float) -> int:
    """The phase bin of event time ``t`` (seconds) in a period of ``period`` seconds.

    >>> phase_bin(0.0, 86400.0), phase_bin(43200.0, 86400.0), phase_bin(86399.0, 86400.0)
    (0, 24, 47)
    """
    return int((t % period) * PHASE_BINS / period) % PHASE_BINS


@dataclass(slots=True, eq=False)
class TimedSignalState(SignalState):
    """A :class:`SignalState` whose values are de-seasonalized by the phase of event time."""

    period_seconds: float = 0.0
    t: float = 0.0  # the current event's time, set by the monitor before the values are fed
    ref_bins: list[int] = field(default_factory=list)
    ref_start: float | None = None  # event time of the reference's first value
    season: list[float] = field(default_factory=list)
    spanned: float = 0.0  # periods the reference spanned when it was used

    def update(self, x: float) -> int:
        b = phase_bin(self.t, self.period_seconds)
        if self.detectors is None:
            if self.ref_start is None:
                self.ref_start = self.t
            self.ref_bins.append(b)
            ref = self.reference
            if len(ref) + 1 >= self.reference_size and not self._covered(len(ref) + 1):
                # Not yet two periods: keep collecting (SignalState activates at
                # reference_size, so append here and wait).
                self.n += 1
                self.recent.append(x)
                ref.append(x)
                return -1
            return SignalState.update(self, x)
        season = self.season
        return SignalState.update(self, x - season[b] if season else x)

    def _covered(self, n: int) -> bool:
        span = (self.t - (self.ref_start if self.ref_start is not None else self.t))
        return span >= MIN_PERIODS * self.period_seconds or n >= MAX_GROWTH * self.reference_size

    def _activate(self) -> None:
        x = np.asarray(self.reference, dtype=np.float64)
        bins = np.asarray(self.ref_bins[:len(x)], dtype=np.int64)
        if len(bins) == len(x) and len(x):
            sums = np.bincount(bins, weights=x, minlength=PHASE_BINS)
            counts = np.bincount(bins, minlength=PHASE_BINS)
            overall = float(x.mean())
            season = np.where(counts > 0, sums / np.maximum(counts, 1) - overall, 0.0)
            self.season = [round(float(v), 9) for v in season]
            self.reference = [float(v) for v in x - season[bins]]
            first = self.ref_start if self.ref_start is not None else self.t
            self.spanned = round((self.t - first) / self.period_seconds, 3)
        self.ref_bins = []
        self.ref_start = None
        SignalState._activate(self)
        if self.calibration is not None:
            self.calibration["period_seconds"] = self.period_seconds
            self.calibration["periods_spanned"] = self.spanned

    def rebaseline(self, events: int) -> None:
        SignalState.rebaseline(self, events)
        self.season = []
        self.ref_bins = []
        self.ref_start = None

    def meta(self) -> dict[str, Any]:
        out = SignalState.meta(self)
        out["timed"] = {"season": self.season, "spanned": self.spanned,
                        "ref_start": self.ref_start,
                        "ref_bins": "".join(chr(_BIN0 + b) for b in self.ref_bins)}
        return out

    def restore_timed(self, meta: dict[str, Any]) -> bool:
        """The season and the reference's phase bins from a saved meta; False for a meta saved
        without them (before the period was a duration): the caller then starts the reference
        over."""
        timed = meta.get("timed")
        if timed is None:
            return False
        self.season = [float(v) for v in timed.get("season") or []]
        self.spanned = float(timed.get("spanned") or 0.0)
        start = timed.get("ref_start")
        self.ref_start = None if start is None else float(start)
        self.ref_bins = [ord(c) - _BIN0 for c in timed.get("ref_bins") or ""]
        return True
