"""Points of the batch step a test can act at: the crash-safety tests kill the worker there (or
make the step raise) to check that nothing is lost or repeated (tests/failpoints.py).

Production code never reads them from its settings or its environment: a test entry point
passes a :class:`StepHooks` to the worker (``KafkaWorker(..., hooks=...)``); without one the
step calls :data:`NO_HOOKS`, which does nothing.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["NO_HOOKS", "POINTS", "Point", "StepHooks"]

# In the order of one batch (adapters/worker.py): before the pipeline, between the label join
# (written to Redis) and the state save, after the save, after the publish (before the commit).
Point = Literal["mid_batch", "after_join", "after_save", "after_publish"]
POINTS: tuple[Point, ...] = ("mid_batch", "after_join", "after_save", "after_publish")


class StepHooks(Protocol):
    def reached(self, point: Point, batch: int) -> None:
        """The step of batch number ``batch`` (1 for the process's first) is at ``point``."""


class _NoHooks:
    def reached(self, point: Point, batch: int) -> None:
        return None


NO_HOOKS: StepHooks = _NoHooks()
