"""Summary statistics of a window of values: the evidence shown in every alert."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["QUANTILES", "quantiles", "summarize"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Count, mean, std (sample), min, max and quantiles of a window.

    >>> summarize([1.0, 2.0, 3.0])["mean"]
    2.0
    >>> summarize([])["count"]
    0
    """
    n = len(values)
    if n == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None,
                "quantiles": {f"p{int(q * 100):02d}": None for q in QUANTILES}}
    a = np.fromiter(values, dtype=np.float64, count=n)
    qs = quantiles(a)
    return {
        "count": n,
        "mean": _f(a.mean()),
        "std": _f(a.std(ddof=1)) if n > 1 else 0.0,
        "min": _f(a.min()),
        "max": _f(a.max()),
        "quantiles": {f"p{int(q * 100):02d}": _f(v) for q, v in zip(QUANTILES, qs, strict=True)},
    }


def quantiles(a: np.ndarray) -> list[float]:
    """``np.quantile(a, QUANTILES)`` (its default ``linear`` method) of a 1-d float64 array,
    bit for bit, at a tenth of its cost on an alert's windows (most of which is numpy's
    argument handling): the same partition of a copy at the same indices, then the same
    interpolation, ``a + (b - a) g``, or ``b - (b - a)(1 - g)`` when ``g >= 0.5``, in float64.
    Alerts summarize four windows each, in the batch that raises them (tests/unit/test_stats.py
    compares with numpy on ties, signed zeros and every length up to 700).

    >>> quantiles(np.array([4.0, 1.0, 3.0, 2.0]))
    [1.15, 1.75, 2.5, 3.25, 3.8499999999999996]
    """
    kth, picks = _quantile_plan(len(a))
    s = a.copy()
    s.partition(kth)
    out = []
    for lo, hi, g in picks:
        x = float(s[lo])
        y = float(s[hi])
        d = y - x
        out.append(y - d * (1.0 - g) if g >= 0.5 else x + d * g)
    return out


@lru_cache(maxsize=1024)
def _quantile_plan(n: int) -> tuple[np.ndarray, tuple[tuple[int, int, float], ...]]:
    """Per quantile of ``n`` sorted values: the two neighbours and the weight numpy uses
    (virtual index ``(n - 1) q``; at or past the last index, the last value), and the indices
    numpy partitions at (the first, the last and every neighbour)."""
    picks = []
    ks = {0, n - 1}
    for q in QUANTILES:
        v = (n - 1) * q
        if v >= n - 1:
            lo = hi = n - 1
            g = v + 1.0  # numpy's weight there (previous index -1); both ends are the last value
        else:
            lo = math.floor(v)
            hi = lo + 1
            g = v - lo
        picks.append((lo, hi, g))
        ks.update((lo, hi))
    return np.array(sorted(ks), dtype=np.intp), tuple(picks)


def _f(x: Any) -> float:
    v = float(x)
    return v if math.isfinite(v) else 0.0
