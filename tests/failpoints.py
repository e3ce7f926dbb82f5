"""Failpoints of the crash-safety tests: kill the worker (SIGKILL), or make its step raise, at
one point of its N-th batch. Given to the worker by tests/failpoint_worker.py, never by the
production command (stream_monitor/adapters/hooks.py).

Spec (the ``SM_FAILPOINT`` variable the tests give that entry point): ``<point>:N`` (SIGKILL at
the N-th batch) or ``<point>:N:raise`` (an exception, once: the batch read again goes through).

>>> Failpoints.parse("after_save:3").point, Failpoints.parse("after_publish:2:raise").raise_
('after_save', True)
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

from stream_monitor.adapters.hooks import POINTS, Point

log = logging.getLogger("stream_monitor.worker")


@dataclass
class Failpoints:
    point: str
    batch: int
    raise_: bool
    spent: bool = False

    @classmethod
    def parse(cls, spec: str) -> Failpoints:
        parts = spec.split(":")
        if (len(parts) not in (2, 3) or parts[0] not in POINTS or not parts[1].isdigit()
                or (len(parts) == 3 and parts[2] != "raise")):
            raise ValueError(f"SM_FAILPOINT={spec!r}: use <point>:N or <point>:N:raise with "
                             f"point one of {', '.join(POINTS)}")
        return cls(parts[0], int(parts[1]), len(parts) == 3)

    def reached(self, point: Point, batch: int) -> None:
        if self.spent or point != self.point or batch != self.batch:
            return
        if self.raise_:
            self.spent = True  # once: the batch read again must go through
            raise RuntimeError(f"failpoint {point}:{batch}:raise")
        log.warning("failpoint %s:%d reached: SIGKILL", point, batch)
        os.kill(os.getpid(), signal.SIGKILL)
