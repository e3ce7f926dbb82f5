"""Delivering one notification to one target: rate limit, retries with backoff, outcome.

One loop serves every target; only the last step, sending the request, differs: an HTTP POST
(aiohttp) or a mail through an SMTP relay (:mod:`.smtp`). Each answer is a :class:`Reply`
that says whether it was taken, may be retried, or was rejected.

An answer is **retryable** when the target may accept the same request later: a connection
error, a timeout, HTTP 408, 425, 429 or any 5xx, an SMTP 4xx. Any other HTTP 4xx, or an SMTP
5xx, is a **rejection**: the request is wrong (bad routing key, malformed payload, a refused
login or recipient) and sending it again cannot help, so it goes to the dead-letter topic at
once. ``Retry-After`` on a 429/503 is honoured, capped at the policy's ``max_backoff_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

import aiohttp

from .config import RateLimit, ResolvedTarget, RetryPolicy
from .notification import Notification
from .payloads import (
    HttpRequest,
    MailRequest,
    Reply,
    Request,
    Verdict,
    build_request,
    effective_status,
)
from .smtp import send_mail

__all__ = ["DeliveryHooks", "DeliveryResult", "Forwarder", "Reply", "TokenBucket",
           "backoff_delay", "is_retryable", "retry_after_seconds"]

log = logging.getLogger("stream_monitor.notify")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None,
                  retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): full jitter over an
    exponentially growing cap. A server's Retry-After wins, up to ``max_backoff_seconds``.

    >>> p = RetryPolicy(initial_backoff_seconds=1, max_backoff_seconds=8, multiplier=2)
    >>> [backoff_delay(p, k, random.Random(0)) <= min(8, 2 ** (k - 1)) for k in (1, 2, 3, 4, 5)]
    [True, True, True, True, True]
    >>> backoff_delay(p, 1, retry_after=30.0)
    8.0
    """
    if retry_after is not None and retry_after >= 0:
        return min(retry_after, policy.max_backoff_seconds)
    cap = min(policy.max_backoff_seconds,
              policy.initial_backoff_seconds * policy.multiplier ** (attempt - 1))
    return (rng or random).uniform(0.0, cap)


def is_retryable(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


class TokenBucket:
    """Per-target rate limit: ``per_second`` on average, ``burst`` at once. ``acquire`` waits.

    >>> b = TokenBucket(RateLimit(per_second=2, burst=1), clock=lambda: 0.0)
    >>> b.try_acquire(), b.try_acquire(), round(b.wait_time(), 3)
    (True, False, 0.5)
    """

    def __init__(self, limit: RateLimit, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.rate = limit.per_second
        self.capacity = float(limit.burst)
        self.tokens = float(limit.burst)
        self.clock = clock
        self.sleep = sleep
        self.updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def try_acquire(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        self._refill()
        return max(0.0, (1.0 - self.tokens) / self.rate)

    async def acquire(self) -> float:
        """Take a token, waiting as long as needed; returns the seconds waited."""
        waited = 0.0
        async with self._lock:  # first come, first served
            for _ in range(1_000_000):  # bounded; each pass waits for the missing fraction
                if self.try_acquire():
                    return waited
                w = self.wait_time()
                waited += w
                await self.sleep(w)
        raise RuntimeError("token bucket never refilled")  # pragma: no cover


@dataclass(slots=True)
class DeliveryResult:
    target: str
    outcome: Literal["delivered", "failed", "rejected", "skipped"]
    attempts: int = 0
    status: int | None = None  # last HTTP status, None when no response came back
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in ("delivered", "skipped")


class DeliveryHooks(Protocol):
    """What a forwarder reports as it goes (``NotifierMetrics`` implements it)."""

    def attempt(self, target: str, result: str) -> None: ...
    def rate_limited(self, target: str, seconds: float) -> None: ...


class _NoHooks:
    def attempt(self, target: str, result: str) -> None:
        pass

    def rate_limited(self, target: str, seconds: float) -> None:
        pass


class Forwarder:
    """One configured target: builds its request, sends it with retries, under its rate limit."""

    def __init__(self, target: ResolvedTarget, session: aiohttp.ClientSession, *,
                 generator_url: str | None = None, hooks: DeliveryHooks | None = None,
                 clock: Clock = time.time, sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.target = target
        self.spec = target.spec
        self.session = session
        self.generator_url = generator_url
        self.hooks: DeliveryHooks = hooks or _NoHooks()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.bucket = TokenBucket(self.spec.rate_limit, sleep=sleep)

    @property
    def name(self) -> str:
        return self.spec.name

    def wants(self, n: Notification) -> bool:
        return n.record_type in self.spec.records

    async def deliver(self, n: Notification, raw: bytes | None = None) -> DeliveryResult:
        """Deliver or give up; never raises (except on cancellation)."""
        if not self.wants(n):
            return DeliveryResult(self.name, "skipped")
        policy = self.spec.retry
        t0 = time.monotonic()
        result = DeliveryResult(self.name, "failed")
        for attempt in range(1, policy.max_attempts + 1):
            waited = await self.bucket.acquire()
            if waited > 0:
                self.hooks.rate_limited(self.name, waited)
            # Built per attempt: the webhook signature's timestamp must be fresh.
            req = build_request(self.target, n, self.clock(), raw=raw,
                                generator_url=self.generator_url)
            result.attempts = attempt
            retry_after: float | None = None
            try:
                reply = await self._send(req)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                result.status, result.error = None, f"{type(exc).__name__}: {exc}"
                self.hooks.attempt(self.name, "error")
            else:
                result.status, retry_after = reply.status, reply.retry_after
                if reply.verdict == "ok":
                    self.hooks.attempt(self.name, "ok")
                    result.outcome, result.error = "delivered", ""
                    break
                result.error = reply.detail
                if reply.verdict == "rejected":
                    self.hooks.attempt(self.name, "rejected")
                    result.outcome = "rejected"
                    log.warning("%s rejected %s %s: %s", self.name, n.record_type,
                                n.idempotency_key, result.error)
                    break
                self.hooks.attempt(self.name, "retryable")
            if attempt < policy.max_attempts:
                delay = backoff_delay(policy, attempt, self.rng, retry_after)
                log.info("%s: attempt %d/%d for %s %s failed (%s); retrying in %.2fs", self.name,
                         attempt, policy.max_attempts, n.record_type, n.idempotency_key,
                         result.error, delay)
                await self.sleep(delay)
        result.seconds = time.monotonic() - t0
        return result

    async def _send(self, req: Request) -> Reply:
        """One attempt over the target's transport. Raises on a connection error or timeout."""
        if isinstance(req, MailRequest):
            # smtplib blocks: a worker thread, bounded by the per-operation socket timeout.
            return await asyncio.to_thread(send_mail, self.target, req,
                                           self.spec.timeout_seconds)
        return await self._post(req)

    async def _post(self, req: HttpRequest) -> Reply:
        timeout = aiohttp.ClientTimeout(total=self.spec.timeout_seconds)
        async with self.session.post(req.url, data=req.body, headers=req.headers,
                                     timeout=timeout, allow_redirects=False) as resp:
            text = await resp.text(errors="replace")
            status = effective_status(self.target, resp.status, text)
            verdict: Verdict = (
                "ok" if 200 <= status < 300 else
                "retryable" if is_retryable(status) else "rejected")
            return Reply(status, verdict, f"HTTP {resp.status}: {text[:300]}",
                         retry_after_seconds(resp.headers.get("Retry-After"), self.clock()))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, which RFC 9110 (10.2.3) allows as
    delta-seconds or as an HTTP-date; ``now`` is the epoch time to count a date from. None when
    the header is absent or unparsable: our own backoff applies then.

    >>> retry_after_seconds("120", now=0.0)
    120.0
    >>> retry_after_seconds("Thu, 01 Jan 1970 00:02:00 GMT", now=60.0)
    60.0
    >>> retry_after_seconds("soon", now=0.0) is None
    True
    """
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP-dates are in GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
