"""What a batch leaves for the metrics to show: a small typed copy of the signals it changed
(``BatchPipeline.readings``), so that the metrics read no state of the pipeline or the core."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelReading", "ReadingFilter", "SignalReading"]


@dataclass(frozen=True, slots=True)
class SignalReading:
    """What the metrics show of one signal after a batch (a copy: no window is shared)."""

    signal: str
    reference_size: int
    recent_size: int
    reference_mean: float | None  # None for a category signal (codes have no mean)
    current_mean: float | None
    detecting: bool
    reference_needed: int | None
    watch: dict[str, Any] | None  # the watchability verdict (core/watchable.py)


@dataclass(frozen=True, slots=True)
class ModelReading:
    model_id: str
    signals: tuple[SignalReading, ...]
    # The windowed performance metrics (core/performance.py, docs/metrics.md): (metric, value),
    # and (class, metric, value) for the classes the model's rule reports; empty without
    # labelled events.
    performance: tuple[tuple[str, float], ...] = ()
    classes: tuple[tuple[str, str, float], ...] = ()



# Which (model, signal) pairs a reader wants read (e.g. the metrics' allow-list and series cap).
ReadingFilter = Callable[[str, str], bool]
