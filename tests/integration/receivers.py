"""Local HTTP receivers that speak the PagerDuty Events v2, Slack webhook and generic webhook
formats, with scripted failures. They run on 127.0.0.1 in the test's event loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from stream_monitor.notify import SignatureError, verify_signature


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return orjson.loads(self.body)


# A script says which status to answer to the n-th request (0-based) on a path.
Script = Callable[[int, bytes], int]


def statuses(*codes: int) -> Script:
    """Answer these codes in order, then repeat the last one."""
    return lambda n, body: codes[min(n, len(codes) - 1)]


class Receivers:
    """One aiohttp server; each path is a receiver with its own script."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.scripts: dict[str, Script] = {}
        self.webhook_secrets: dict[str, str] = {}
        self.seen_keys: dict[str, list[str]] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""

    def on(self, path: str, script: Script, *, webhook_secret: str | None = None) -> str:
        self.scripts[path] = script
        if webhook_secret is not None:
            self.webhook_secrets[path] = webhook_secret
        return self.base + path

    def at(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        body = await request.read()
        n = len(self.at(path))
        headers = dict(request.headers)
        if path in self.webhook_secrets:
            # What a real receiver does: check the signature, then deduplicate on the key.
            try:
                verify_signature(self.webhook_secrets[path], body,
                                 headers.get("X-Stream-Monitor-Signature"), time.time())
            except SignatureError as exc:
                self.requests.append(Request(path, headers, body, 401))
                return web.json_response({"error": str(exc)}, status=401)
        status = self.scripts.get(path, statuses(404))(n, body)
        self.requests.append(Request(path, headers, body, status))
        if status >= 300:
            return web.json_response({"status": "error", "message": "injected failure"},
                                     status=status)
        if path in self.webhook_secrets:
            self.seen_keys.setdefault(path, []).append(headers.get("Idempotency-Key", ""))
        if path.startswith("/pagerduty"):
            doc = orjson.loads(body)
            return web.json_response({"status": "success", "message": "Event processed",
                                      "dedup_key": doc.get("dedup_key")}, status=202)
        if path.startswith("/slack"):
            return web.Response(text="ok")
        return web.json_response({"ok": True})

    async def start(self) -> Receivers:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
