"""The Faust app the worker (and the benchmark's no-op baseline) runs on."""

from __future__ import annotations

import asyncio

from stream_monitor.adapters.worker import faust_app
from stream_monitor.config import Settings


def test_consumer_fetch_wait_is_ours_not_fausts_hard_coded_1500_ms(monkeypatch) -> None:
    """Faust hard-codes fetch_max_wait_ms=1500; with an idle labels topic next to the inference
    topic that halved throughput (README "Delayed labels"). The consumer Faust creates must
    carry SM_FETCH_MAX_WAIT_MS instead."""
    monkeypatch.setenv("SM_FETCH_MAX_WAIT_MS", "80")

    async def create() -> int:
        app = faust_app("sm-test-fetch-wait", Settings())
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(create()) == 80
    assert Settings().fetch_max_wait_ms == 80
