"""Hooks that attach metrics and health endpoints to the Faust worker's app.

``build_app`` stays as it is; the worker command calls :func:`instrument_faust_app` on the app it
returns, and the agent calls :meth:`WorkerMetrics.observe_batch` once a batch is safe. What
belongs where is spelled out in ``docs/notify.md`` ("Wiring the worker").

Readiness means: Kafka answers (a ListOffsets request for the assigned partitions), Redis
answers PING, and this worker has input partitions assigned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .http import HealthServer, Readiness
from .metrics import WorkerMetrics

__all__ = ["ObservedStore", "instrument_faust_app", "sample_lag", "worker_readiness"]

log = logging.getLogger("stream_monitor.observability")


def _assigned(app: Any, topic: str | None) -> list[Any]:
    try:
        tps = app.consumer.assignment()
    except Exception:  # the consumer is not started yet
        return []
    return [tp for tp in tps if topic is None or tp.topic == topic]


def worker_readiness(app: Any, store: Any, *, input_topic: str | None = None,
                     timeout_seconds: float = 3.0, cache_seconds: float = 2.0) -> Readiness:
    """Readiness checks of a Faust worker: ``kafka``, ``redis``, ``partitions_assigned``."""

    async def kafka() -> tuple[bool, str]:
        tps = _assigned(app, input_topic)
        if tps:
            hws = await app.consumer.highwaters(*tps)  # a round trip to the partition leaders
            return True, f"high watermarks of {len(hws)} partitions read"
        client = getattr(getattr(app.producer, "_producer", None), "client", None)
        if client is None:
            return False, "no partitions assigned and the producer is not started"
        ok = await client.fetch_all_metadata()
        return ok is not None, "metadata read (no partitions assigned)"

    async def redis() -> tuple[bool, str]:
        ping = getattr(store, "ping", None)
        if ping is None:
            return True, "store has no server"
        return bool(await ping()), "PING"

    def partitions() -> tuple[bool, str]:
        n = len(_assigned(app, input_topic))
        return n > 0, f"{n} partitions assigned"

    return Readiness({"kafka": kafka, "redis": redis, "partitions_assigned": partitions},
                     timeout_seconds=timeout_seconds, cache_seconds=cache_seconds)


async def sample_lag(app: Any, metrics: WorkerMetrics, input_topic: str | None = None) -> None:
    """Set the assignment and the lag per assigned input partition (one ListOffsets request)."""
    tps = _assigned(app, input_topic)
    metrics.set_assigned([(tp.topic, tp.partition) for tp in tps])
    if not tps:
        return
    highwaters = await app.consumer.highwaters(*tps)
    positions: dict[tuple[str, int], int | None] = {}
    for tp in tps:
        try:
            positions[(tp.topic, tp.partition)] = await app.consumer.position(tp)
        except Exception:  # no position yet (never fetched)
            positions[(tp.topic, tp.partition)] = None
    metrics.lag_from_highwaters({(tp.topic, tp.partition): hw for tp, hw in highwaters.items()},
                                positions)


def instrument_faust_app(app: Any, metrics: WorkerMetrics, readiness: Readiness, *,
                         port: int, host: str = "0.0.0.0", input_topic: str | None = None,
                         lag_interval_seconds: float = 5.0) -> None:
    """Serve /metrics, /healthz and /readyz while the app runs, and sample lag periodically.

    Call it after ``build_app`` and before the worker starts.
    """
    state: dict[str, HealthServer] = {}

    @app.task
    async def _serve_health() -> None:
        if port:
            try:
                state["server"] = await HealthServer(metrics.registry, readiness, host=host,
                                                     port=port).start()
            except OSError as exc:  # e.g. the port is taken: monitoring goes on without it
                log.error("cannot serve /metrics and health on %s:%d: %s (set SM_METRICS_PORT)",
                          host, port, exc)

    @app.timer(lag_interval_seconds)
    async def _sample_lag() -> None:
        try:
            await asyncio.wait_for(sample_lag(app, metrics, input_topic),
                                   max(5.0, lag_interval_seconds))
        except Exception as exc:  # lag is best effort; readiness reports Kafka trouble
            log.warning("lag sample failed: %r", exc)

    @app.on_partitions_assigned.connect
    async def _assigned_changed(app: Any, assigned: Any, **kwargs: Any) -> None:
        metrics.set_assigned([(tp.topic, tp.partition) for tp in assigned
                              if input_topic is None or tp.topic == input_topic])

    @app.on_before_shutdown.connect
    async def _stop_health(app: Any, **kwargs: Any) -> None:
        server = state.pop("server", None)
        if server is not None:
            await server.stop()


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
