"""The worker's one retry policy: how long to wait between tries while a dependency is down.

The store (a batch run again while Redis is away), the epoch check and the publishing of outputs
(a broker restarting) all wait the same way: capped exponential backoff with equal jitter
(redis-py's ``EqualJitterBackoff``: after ``n`` failed tries a random wait in [c/2, c] with
c = min(cap, base * 2**n)), counted from the loop's first failure, so each batch starts again
from the shortest wait. A cause already mended (Redis' scripts reloaded after a NOSCRIPT, a new
producer started) is tried again at once, a few times. Each wait is logged on the rate-limited
``stream_monitor.retry`` logger (observability/logging.py, ``RateLimitFilter``), so an outage
of an hour leaves a few lines, not thousands.

>>> p = RetryPolicy(cap_seconds=2.0, base_seconds=0.05)
>>> t = p.start("state store")
>>> t.wait(ConnectionError("refused"), "retrying", now=True)
0.0
>>> 0.05 <= t.wait(ConnectionError("refused"), "retrying") <= 0.1
True
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.backoff import EqualJitterBackoff

__all__ = ["RetryPolicy", "Tries", "retry_log"]

# The lines of the retry loops: rate-limited (observability/logging.py, RateLimitFilter).
retry_log = logging.getLogger("stream_monitor.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Waits between tries: ``cap_seconds`` at most, ``base_seconds * 2**n`` before that;
    ``at_once`` immediate tries for a cause already mended; ``deadline_seconds`` (None: none):
    how long a condition may persist over the tries before the loop gives up
    (:meth:`Tries.persisting`)."""

    cap_seconds: float
    base_seconds: float = 0.05
    at_once: int = 3
    deadline_seconds: float | None = None

    def start(self, what: str) -> Tries:
        """The tries of one loop (one batch's store retries, one publish)."""
        return Tries(self, what)


class Tries:
    """One loop's count of failures and its waits (see :class:`RetryPolicy`)."""

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self.policy = policy
        self.what = what
        self.failures = 0
        self.at_once = 0
        self._backoff = EqualJitterBackoff(cap=policy.cap_seconds, base=policy.base_seconds)
        self._since: float | None = None

    def wait(self, cause: object, doing: str, *, now: bool = False) -> float:
        """Count a failure and return the wait before the next try (logged). ``now``: the cause
        is already mended, try again at once (at most ``at_once`` times in a row)."""
        if now and self.at_once < self.policy.at_once:
            self.at_once += 1
            retry_log.info("%s: %s; %s at once", self.what, cause, doing)
            return 0.0
        self.failures += 1
        delay = float(self._backoff.compute(self.failures))
        retry_log.warning("%s unavailable, %s in %.1fs: %s", self.what, doing, delay, cause)
        return delay

    async def sleep(self, cause: object, doing: str, *, now: bool = False) -> None:
        """:meth:`wait`, then sleep that long."""
        delay = self.wait(cause, doing, now=now)
        if delay > 0:
            await asyncio.sleep(delay)

    def persisting(self, holds: bool) -> float | None:
        """Follow a condition over the tries (e.g. "the topic is unknown"): once it has held
        without a break for the policy's deadline, the seconds it held; else None. A try where
        it does not hold starts the count again."""
        if not holds:
            self._since = None
            return None
        now = time.monotonic()
        if self._since is None:
            self._since = now
        d = self.policy.deadline_seconds
        held = now - self._since
        return held if d is not None and held >= d else None
