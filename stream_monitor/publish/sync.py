"""A blocking publisher for services without an event loop (Flask, Django, a batch scorer):
the asyncio :class:`~stream_monitor.publish.publisher.Publisher` on an event loop of its own, in
a background thread.

Each call checks the event in the caller's thread (an invalid one raises there, nothing is
sent), then hands it to the loop and returns once it is buffered, with a
``concurrent.futures.Future`` of its delivery. ``on_delivery_error`` runs on the publisher's
thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from .errors import PublishError
from .events import (
    EventKind,
    ValueSerializer,
    inference_event,
    json_serializer,
    label_event,
    validate_event,
)
from .publisher import DeliveryCallback, Publisher, PublishStats
from .settings import PublisherSettings

__all__ = ["SyncPublisher"]

T = TypeVar("T")


class SyncPublisher:
    """The publisher for synchronous code; a context manager (``with SyncPublisher() as
    pub:``) that flushes and closes on exit. Thread-safe: any thread may publish. Arguments as
    :class:`~stream_monitor.publish.publisher.Publisher`'s; ``start_timeout`` bounds the
    connection at construction."""

    def __init__(self, settings: PublisherSettings | None = None, *,
                 bootstrap_servers: str | None = None,
                 value_serializer: ValueSerializer = json_serializer,
                 on_delivery_error: DeliveryCallback | None = None,
                 producer_options: Mapping[str, Any] | None = None,
                 start_timeout: float | None = None) -> None:
        self._publisher = Publisher(settings, bootstrap_servers=bootstrap_servers,
                                    value_serializer=value_serializer,
                                    on_delivery_error=on_delivery_error,
                                    producer_options=producer_options)
        self.settings = self._publisher.settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="stream-monitor-publisher")
        self._thread.start()
        self._closed = False
        try:
            self._run(self._publisher.start(start_timeout))
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._closed:
            coro.close()
            raise PublishError("the publisher is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    def publish_inference(self, event_id: str, model_id: str, features: Mapping[str, Any],
                          prediction: float | int | str | bool, *,
                          model_version: str | None = None,
                          timestamp: float | int | str | datetime | None = None,
                          label: Any = None, topic: str | None = None,
                          extra_headers: Iterable[tuple[str, bytes]] = (),
                          ) -> concurrent.futures.Future[Any]:
        """Build, check and send one inference event; the future of its delivery."""
        event = inference_event(event_id, model_id, features, prediction,
                                model_version=model_version, timestamp=timestamp, label=label)
        return self._send("inference", event, topic, extra_headers)

    def publish_label(self, event_id: str, model_id: str, label: float | int | str | bool, *,
                      timestamp: float | int | str | datetime | None = None,
                      topic: str | None = None,
                      extra_headers: Iterable[tuple[str, bytes]] = (),
                      ) -> concurrent.futures.Future[Any]:
        """Build, check and send a label event; the future of its delivery."""
        event = label_event(event_id, model_id, label, timestamp=timestamp)
        return self._send("label", event, topic, extra_headers)

    def send(self, kind: EventKind, event: Mapping[str, Any], *, topic: str | None = None,
             extra_headers: Iterable[tuple[str, bytes]] = ()) -> concurrent.futures.Future[Any]:
        """Check and send an event dict of ``kind`` (see ``Publisher.send``)."""
        validate_event(kind, event)
        return self._send(kind, event, topic, extra_headers)

    def _send(self, kind: EventKind, event: Mapping[str, Any], topic: str | None,
              extra_headers: Iterable[tuple[str, bytes]]) -> concurrent.futures.Future[Any]:
        # (Checked already: publish_* built the event, send validated it.)
        async def send() -> concurrent.futures.Future[Any]:
            fut = await self._publisher.send(kind, event, topic=topic,
                                             extra_headers=list(extra_headers), validate=False)
            out: concurrent.futures.Future[Any] = concurrent.futures.Future()
            fut.add_done_callback(lambda f: _copy(f, out))
            return out

        return self._run(send())

    @property
    def stats(self) -> PublishStats:
        return self._publisher.stats

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every buffered record is answered (``Publisher.flush``): raises
        ``DeliveryError`` for unreported failures, ``FlushTimeoutError`` at the deadline."""
        self._run(self._publisher.flush(timeout))

    def close(self, timeout: float = 30.0) -> None:
        """Flush and stop within ``timeout`` seconds, then end the background thread; raises
        ``DeliveryError`` for unreported failures. Closing twice is harmless."""
        if self._closed:
            return
        try:
            self._run(self._publisher.close(timeout), timeout + 5)
        finally:
            self._closed = True
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._closed = True
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


def _copy(src: asyncio.Future[Any], dst: concurrent.futures.Future[Any]) -> None:
    if src.cancelled():
        dst.cancel()
    elif (exc := src.exception()) is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())
