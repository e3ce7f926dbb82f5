"""A TCP proxy in front of the test broker's PROXIED listener, which advertises the proxy's own
port: a client bootstrapped through it sends every request through it. The proxy reads the
Kafka request framing (4-byte size, then the API key) and can hold Produce requests for ever,
so one client sees a broker that takes its records and never answers, while every other
client (and that client's fetches) goes on normally."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Any

import pytest

PRODUCE = 0  # Kafka API key of Produce requests


class HoldingProxy:
    def __init__(self) -> None:
        upstream = os.environ.get("SM_TEST_KAFKA_PROXIED")
        port = os.environ.get("SM_TEST_KAFKA_PROXY_PORT")
        if not upstream or not port:
            pytest.skip("needs scripts/test.sh's own broker (its PROXIED listener)")
        host, _, up_port = upstream.rpartition(":")
        self.upstream = (host, int(up_port))
        self.port = int(port)
        self.hold_produce = False
        self.held = 0
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop)
        self._server = fut.result(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.upstream)

        async def requests() -> None:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(head, "big"))
                if self.hold_produce and int.from_bytes(body[:2], "big") == PRODUCE:
                    self.held += 1
                    await asyncio.Event().wait()  # never forwarded, never answered
                up_w.write(head + body)
                await up_w.drain()

        async def responses() -> None:
            while data := await up_r.read(65536):
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(requests(), responses())
        except Exception:
            pass
        finally:
            for w in (writer, up_w):
                w.close()
