"""Row 1: a raw aiokafka consumer, in the benchmark process, doing nothing per event."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from stream_monitor.adapters.kafka_clients import env_client_kwargs

from .common import START_FRACTION, check_stop
from .progress import Reporter


async def measure_raw(
    bootstrap: str, topic: str, n: int, group: str, rep: Reporter
) -> dict[str, Any]:
    tid = rep.task("raw aiokafka consumer", n)
    consumer = AIOKafkaConsumer(
        topic,
        **env_client_kwargs(bootstrap),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    t_launch = time.time()
    await consumer.start()
    count = 0
    t_first = t_start = t_last = None
    n_first = n_start = 0
    last_msg = time.monotonic()
    last_ui = 0.0
    try:
        while count < n:
            check_stop()
            batch = await consumer.getmany(timeout_ms=1000)
            got = 0
            for msgs in batch.values():
                for _m in msgs:
                    pass
                got += len(msgs)
            now = time.time()
            if got:
                count += got
                last_msg = time.monotonic()
                if t_first is None:
                    t_first, n_first = now, count
                if t_start is None and count >= START_FRACTION * n:
                    t_start, n_start = now, count
                if count >= n:
                    t_last = now
            elif time.monotonic() - last_msg > 60:
                raise RuntimeError(f"raw consumer: no message for 60 s after {count}/{n}")
            if time.monotonic() - last_ui > 0.25 or count >= n:
                last_ui = time.monotonic()
                rep.update(tid, count)
    finally:
        await consumer.stop()
    assert t_first is not None and t_start is not None and t_last is not None
    rate = (n - n_start) / (t_last - t_start) if t_last > t_start else None
    rate_all = (n - n_first) / (t_last - t_first) if t_last > t_first else None
    rep.update(tid, n, f"{rate:,.0f} ev/s" if rate else "")
    rep.log(
        f"raw aiokafka consumer: {rate:,.0f} events/s" if rate else "raw aiokafka: too fast to time"
    )
    return {
        "group": group,
        "events": count,
        "rate": rate,
        "rate_first_to_last": rate_all,
        "window": {"from_events": n_start, "to_events": n, "seconds": round(t_last - t_start, 4)},
        "startup_s": round(t_first - t_launch, 3),
    }
