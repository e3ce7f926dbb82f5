"""A small aiohttp server for ``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness).

It runs on the caller's event loop (the Faust worker's, the notifier's), so a loop that is
stuck also stops answering ``/healthz``, which is what a liveness probe should notice.

Readiness is a set of named checks (Kafka reachable, Redis reachable, partitions assigned),
each bounded by a timeout; results are cached briefly so that probes do not hammer Redis.

>>> import asyncio
>>> r = Readiness({"always": lambda: True}, cache_seconds=0)
>>> asyncio.run(r.report())["ready"]
True
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["Check", "HealthServer", "Readiness", "failure_code", "start_http_server"]

log = logging.getLogger("stream_monitor.observability")

# A check returns True/False, or (ok, detail); it may be async. Raising counts as not ready, with
# a reason code as the detail (failure_code), never the exception's text.
Check = Callable[[], "bool | tuple[bool, str] | Awaitable[bool | tuple[bool, str]]"]


class Readiness:
    def __init__(self, checks: Mapping[str, Check] | None = None, *, timeout_seconds: float = 2.0,
                 cache_seconds: float = 1.0) -> None:
        self.checks: dict[str, Check] = dict(checks or {})
        self.timeout = timeout_seconds
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check
        self._cached = None

    async def _run(self, check: Check, name: str = "check") -> tuple[bool, str]:
        try:
            res = check()
            if inspect.isawaitable(res):
                res = await asyncio.wait_for(res, self.timeout)
        except TimeoutError:
            return False, "timeout"
        except Exception as exc:
            # The probe answer is a reason code: exception text can name hosts, users or
            # paths, and /readyz is usually unauthenticated. The text goes to the log.
            code = failure_code(exc)
            log.warning("readiness check %s failed (%s): %s: %s", name, code,
                        type(exc).__name__, exc)
            return False, code
        if isinstance(res, tuple):
            return bool(res[0]), str(res[1])
        return bool(res), ""

    async def report(self) -> dict[str, Any]:
        """{"ready": bool, "checks": {name: {"ok": bool, "detail": str}}}."""
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            names = list(self.checks)
            results = await asyncio.gather(*(self._run(self.checks[n], n) for n in names))
            checks = {n: {"ok": ok, "detail": detail} for n, (ok, detail) in zip(names, results,
                                                                                 strict=True)}
            report = {"ready": bool(checks) and all(c["ok"] for c in checks.values()),
                      "checks": checks}
            self._cached = (time.monotonic(), report)
            return report


class HealthServer:
    """``/metrics`` from a registry, ``/healthz`` and ``/readyz``. Start, then stop."""

    def __init__(self, registry: CollectorRegistry, readiness: Readiness | Check | None = None, *,
                 liveness: Check | None = None, host: str = "0.0.0.0", port: int = 9464) -> None:
        self.registry = registry
        if readiness is None or isinstance(readiness, Readiness):
            self.readiness = readiness or Readiness()
        else:
            self.readiness = Readiness({"ready": readiness})
        self.liveness = liveness
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._runner is None:
            raise RuntimeError("the server is not started")
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                return int(server.sockets[0].getsockname()[1])
        return self.port

    async def start(self) -> HealthServer:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        log.info("health and metrics on http://%s:%d (/metrics /healthz /readyz)", self.host,
                 self.bound_port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        # prometheus_client's exposition: its encoder for the Accept header (OpenMetrics when
        # asked for, else the text format) and its ``name[]`` filter, as in its own aiohttp
        # handler (prometheus_client.aiohttp, 0.24+). That handler renders on the event loop;
        # here the render runs in a thread, because a worker at its label limits (1,000 models,
        # 5,000 signal series: 33,000 lines) took 1.9 s to render, measured on a loaded
        # 2-core machine, and would stall its Kafka consumer for that long.
        encoder, content_type = choose_encoder(",".join(request.headers.getall("Accept", [])))
        registry: Any = self.registry
        if "name[]" in request.query:
            registry = registry.restricted_registry(request.query.getall("name[]"))
        body = await asyncio.to_thread(encoder, registry)
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.liveness is not None:
            ok, detail = await Readiness(timeout_seconds=self.readiness.timeout)._run(self.liveness)
            if not ok:
                return _json({"status": "failing", "detail": detail}, 503)
        return _json({"status": "ok"}, 200)

    async def _readyz(self, request: web.Request) -> web.Response:
        report = await self.readiness.report()
        return _json(report, 200 if report["ready"] else 503)


def failure_code(exc: BaseException) -> str:
    """A reason code for a failed check: ``auth_failed``, ``not_permitted``, ``tls_failed``,
    ``unreachable`` or ``check_failed``.

    >>> failure_code(ConnectionRefusedError(111, "Connection refused"))
    'unreachable'
    """
    name = type(exc).__name__.lower()
    text = str(exc).lower()
    if "auth" in name or "wrongpass" in text or "invalid credentials" in text:
        return "auth_failed"
    if "permission" in name or "noperm" in text or "authoriz" in name:
        return "not_permitted"
    if "ssl" in name or "certificate" in text:
        return "tls_failed"
    if isinstance(exc, OSError) or "connection" in name or "timeout" in name:
        return "unreachable"
    return "check_failed"


def _json(obj: Any, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


async def start_http_server(port: int, readiness: Readiness | Check | None = None, *,
                            registry: CollectorRegistry | None = None,
                            liveness: Check | None = None, host: str = "0.0.0.0") -> HealthServer:
    """Start the server on the running loop; ``await server.stop()`` at shutdown."""
    from prometheus_client import REGISTRY

    server = HealthServer(registry if registry is not None else REGISTRY, readiness,
                          liveness=liveness, host=host, port=port)
    return await server.start()
