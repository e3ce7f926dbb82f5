"""Local HTTP receivers that speak the PagerDuty Events v2, OpsGenie Alert API v2, Slack webhook,
Microsoft Teams webhook and generic webhook formats, with scripted failures. They run on
127.0.0.1 in the test's event loop."""

from __future__ import annotations

import time
import uuid
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
        # OpsGenie, as its Alert API behaves: one open alert per alias, a repeat counts on it.
        self.opsgenie_key = ""
        self.opsgenie_alerts: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.base = ""

    def on(self, path: str, script: Script, *, webhook_secret: str | None = None) -> str:
        self.scripts[path] = script
        if webhook_secret is not None:
            self.webhook_secrets[path] = webhook_secret
        return self.base + path

    def at(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def _script(self, path: str) -> Script:
        """The path's own script, or that of the longest registered path it lies under
        (``/opsgenie`` answers ``/opsgenie/v2/alerts/<alias>/close`` too)."""
        if path in self.scripts:
            return self.scripts[path]
        under = [p for p in self.scripts if path.startswith(p.rstrip("/") + "/")]
        return self.scripts[max(under, key=len)] if under else statuses(404)

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
        if path.startswith("/opsgenie") and (
                headers.get("Authorization") != f"GenieKey {self.opsgenie_key}"):
            self.requests.append(Request(path, headers, body, 401))
            return web.json_response({"message": "Could not authenticate"}, status=401)
        status = self._script(path)(n, body)
        self.requests.append(Request(path, headers, body, status))
        if status >= 300 and path.startswith("/teams"):
            # As Office 365 connectors do: 200, and Teams' refusal in the body.
            return web.Response(text="Webhook message delivery failed with error: Microsoft "
                                f"Teams endpoint returned HTTP error {status} with ContextId "
                                "tcid=0,server=test")
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
        if path.startswith("/opsgenie"):
            return self._opsgenie(request, orjson.loads(body))
        if path.startswith("/teams"):
            return web.Response(text="1")  # what an incoming webhook answers
        return web.json_response({"ok": True})

    def opsgenie_open(self, alias: str) -> dict[str, Any] | None:
        return next((a for a in self.opsgenie_alerts
                     if a["alias"] == alias and a["status"] == "open"), None)

    def _opsgenie(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        # Checks what the API checks (the key was checked above); the request was recorded.
        if request.path.endswith("/close"):
            if request.query.get("identifierType") != "alias":
                return web.json_response({"message": "identifierType"}, status=422)
            alias = request.path.rsplit("/", 2)[-2]
            if (alert := self.opsgenie_open(alias)) is not None:
                alert.update(status="closed", close_note=doc.get("note"))
        elif not doc.get("message"):
            return web.json_response({"message": "Message can not be empty."}, status=422)
        elif (alert := self.opsgenie_open(doc.get("alias", ""))) is not None:
            alert["count"] += 1  # de-duplicated on the alias
        else:
            self.opsgenie_alerts.append({**doc, "status": "open", "count": 1})
        return web.json_response({"result": "Request will be processed", "took": 0.01,
                                  "requestId": str(uuid.uuid4())}, status=202)

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
