"""Summary statistics of a window of values: the evidence shown in every alert."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["QUANTILES", "summarize"]

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
    qs = np.quantile(a, QUANTILES)
    return {
        "count": n,
        "mean": _f(a.mean()),
        "std": _f(a.std(ddof=1)) if n > 1 else 0.0,
        "min": _f(a.min()),
        "max": _f(a.max()),
        "quantiles": {f"p{int(q * 100):02d}": _f(v) for q, v in zip(QUANTILES, qs, strict=True)},
    }


def _f(x: Any) -> float:
    v = float(x)
    return v if math.isfinite(v) else 0.0
