"""Categorical signals: category codes, and the evidence of a category-mix alert.

A categorical signal (a string feature when the value rules' ``categorical`` is on, a
class-label prediction, or any signal whose rule says ``kind: categorical``) keeps its values
as **codes**: small integers, stored as floats in the same reference and recent windows as a
numeric signal's values (so persistence, checkpoints and replay are unchanged), with the
signal's :class:`CodeTable` (code -> category, first seen first) persisted in its meta. The
table only grows, up to ``cap`` categories; later new categories get code -1 and count as
"other". The detector (core/multinomial.py) fixes its slots, the ``top-K`` reference
categories plus "other", when it is calibrated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .multinomial import locate_mix

__all__ = ["OVERFLOW", "CodeTable", "category_evidence", "label_of"]

OVERFLOW = -1.0  # the code of a category past the table's cap


def label_of(value: Any) -> str | None:
    """The category of a JSON value: a string as is, ``true``/``false``, an integral number
    without its ``.0`` (``1`` and ``1.0`` are one class), other finite numbers by ``repr``;
    None for null and non-finite numbers (missing).

    >>> [label_of(v) for v in ("cat", 3, 3.0, 2.5, True, None, float("nan"))]
    ['cat', '3', '3', '2.5', 'true', None, None]
    """
    t = type(value)
    if t is str:
        return str(value)  # the same object (exactly a str): typed as one
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return None


class CodeTable:
    """Codes of a signal's categories (first seen, first coded), at most ``cap``."""

    __slots__ = ("cap", "codes", "labels")

    def __init__(self, cap: int, labels: list[str] | None = None) -> None:
        self.cap = cap
        self.labels: list[str] = list(labels or ())
        self.codes: dict[str, float] = {c: float(i) for i, c in enumerate(self.labels)}

    def code(self, label: str) -> float:
        c = self.codes.get(label)
        if c is None:
            if len(self.labels) >= self.cap:
                return OVERFLOW
            c = self.codes[label] = float(len(self.labels))
            self.labels.append(label)
        return c

    def label(self, code: float) -> str:
        i = int(code)
        return self.labels[i] if 0 <= i < len(self.labels) else "(other)"


def category_evidence(window: list[float], calibration: dict[str, Any],
                      slot_of: list[int]) -> tuple[dict[str, Any], int, dict[str, Any] | None]:
    """What moved in a category-mix alert: the values since the reference (codes) split at the
    estimated change start (:func:`~stream_monitor.core.multinomial.locate_mix`), and per
    category its reference share, its share from the start on and the difference, largest
    move first, with the total-variation distance. Returns the evidence's ``categories`` part,
    the start (index into ``window``) and the location estimate."""
    labels = calibration["categories"]
    shares = np.asarray(calibration["reference_shares"], dtype=np.float64)
    k = len(labels)
    other = k - 1
    slots = np.array([slot_of[int(c)] if 0 <= int(c) < len(slot_of) else other
                      for c in window], dtype=np.int64)
    tau = float(calibration.get("long_run_variance_ratio", 1.0))
    loc = locate_mix(slots, shares, tau)
    start = loc["start"] if loc is not None else max(len(window) - 1, 0)
    after = slots[start:]
    m = len(after)
    cur = np.bincount(after, minlength=k) / m if m else np.zeros(k)
    moved = sorted(
        ({"category": labels[j], "reference_share": round(float(shares[j]), 4),
          "current_share": round(float(cur[j]), 4),
          "change": round(float(cur[j] - shares[j]), 4)} for j in range(k)),
        key=lambda r: -abs(r["change"]))
    tv = 0.5 * float(np.abs(cur - shares).sum())
    return ({"total_variation": round(tv, 4), "values_after_start": m, "moved": moved},
            start, loc)
