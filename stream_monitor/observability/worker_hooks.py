"""Metrics and health endpoints of the Kafka worker.

The worker command calls :func:`serve_worker_health` once the worker object exists; the batch
step calls :meth:`WorkerMetrics.observe_batch` once a batch is committed. What belongs where is
spelled out in ``docs/notify.md`` ("Wiring the worker").

Readiness means: Kafka answers (a ListOffsets request for the assigned partitions), Redis
answers PING, and this worker has input partitions assigned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from .http import HealthServer, Readiness
from .metrics import WorkerMetrics

__all__ = ["ObservedStore", "sample_lag", "serve_worker_health", "worker_readiness"]

log = logging.getLogger("stream_monitor.observability")


def _assigned(worker: Any, topic: str | None) -> list[Any]:
    return [tp for tp in getattr(worker, "assigned", ()) if topic is None or tp.topic == topic]


def worker_readiness(worker: Any, store: Any, *, input_topic: str | None = None,
                     timeout_seconds: float = 3.0, cache_seconds: float = 2.0) -> Readiness:
    """Readiness checks of a :class:`~stream_monitor.adapters.worker.KafkaWorker`: ``kafka``,
    ``redis``, ``partitions_assigned``."""

    async def kafka() -> tuple[bool, str]:
        if not worker.started:
            return False, "the Kafka clients are not started"
        tps = _assigned(worker, input_topic)
        if tps:
            hws = await worker.consumer.end_offsets(tps)  # a round trip to the partition leaders
            return True, f"high watermarks of {len(hws)} partitions read"
        await worker.consumer.topics()  # a metadata round trip
        return True, "metadata read (no partitions assigned)"

    async def redis() -> tuple[bool, str]:
        ping = getattr(store, "ping", None)
        if ping is None:
            return True, "store has no server"
        return bool(await ping()), "PING"

    def partitions() -> tuple[bool, str]:
        n = len(_assigned(worker, input_topic))
        return n > 0, f"{n} partitions assigned"

    return Readiness({"kafka": kafka, "redis": redis, "partitions_assigned": partitions},
                     timeout_seconds=timeout_seconds, cache_seconds=cache_seconds)


async def sample_lag(worker: Any, metrics: WorkerMetrics, input_topic: str | None = None) -> None:
    """Set the assignment and the lag per assigned input partition (one ListOffsets request;
    the lag is measured from the committed position, what a restart would read again)."""
    tps = _assigned(worker, input_topic)
    metrics.set_assigned([(tp.topic, tp.partition) for tp in tps])
    if not tps:
        return
    highwaters = await worker.consumer.end_offsets(tps)
    positions: dict[tuple[str, int], int | None] = {}
    for tp in tps:
        try:
            positions[(tp.topic, tp.partition)] = await worker.consumer.committed(tp)
        except Exception:  # no commit yet
            positions[(tp.topic, tp.partition)] = None
    metrics.lag_from_highwaters({(tp.topic, tp.partition): hw for tp, hw in highwaters.items()},
                                positions)


async def serve_worker_health(worker: Any, metrics: WorkerMetrics, readiness: Readiness, *,
                              port: int, host: str = "0.0.0.0", input_topic: str | None = None,
                              lag_interval_seconds: float = 5.0) -> Any:
    """Serve /metrics, /healthz and /readyz and sample the lag every few seconds, until the
    returned coroutine's task is cancelled."""
    server: HealthServer | None = None
    try:
        server = await HealthServer(metrics.registry, readiness, host=host, port=port).start()
    except OSError as exc:  # e.g. the port is taken: monitoring goes on without it
        log.error("cannot serve /metrics and health on %s:%d: %s (set SM_METRICS_PORT)",
                  host, port, exc)
    try:
        while True:
            await asyncio.sleep(lag_interval_seconds)
            try:
                await asyncio.wait_for(sample_lag(worker, metrics, input_topic),
                                       max(5.0, lag_interval_seconds))
            except Exception as exc:  # lag is best effort; readiness reports Kafka trouble
                log.warning("lag sample failed: %r", exc)
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.stop(), 2.0)


class ObservedStore:
    """A state store that reports to :class:`WorkerMetrics`: the round-trip time of every load
    and save, and each failed save. Wrap the worker's store with it; nothing else changes.

    >>> import asyncio
    >>> from prometheus_client import CollectorRegistry
    >>> from stream_monitor.state.memory import MemoryStore
    >>> reg = CollectorRegistry()
    >>> store = ObservedStore(MemoryStore(), WorkerMetrics(reg))
    >>> asyncio.run(store.load(["m"]))
    {}
    >>> reg.get_sample_value("stream_monitor_redis_round_trip_seconds_count")
    1.0
    """

    def __init__(self, store: Any, metrics: WorkerMetrics) -> None:
        self.store = store
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:  # prefix, client, last_round_trip_s, ...
        return getattr(self.store, name)

    async def load(self, model_ids: Any) -> Any:
        t0 = time.perf_counter()
        out = await self.store.load(model_ids)
        self.metrics.redis_round_trip(time.perf_counter() - t0)
        return out

    async def save(self, deltas: Any) -> None:
        if not deltas:
            return await self.store.save(deltas)
        t0 = time.perf_counter()
        try:
            await self.store.save(deltas)
        except BaseException:
            self.metrics.state_save_failed()
            raise
        self.metrics.redis_round_trip(time.perf_counter() - t0)
        return None

    async def ping(self) -> bool:
        ping = getattr(self.store, "ping", None)
        return True if ping is None else bool(await ping())

    async def close(self) -> None:
        await self.store.close()
