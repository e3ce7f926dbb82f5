"""The reference row: the core alone on the same events, CPU time only."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from stream_monitor.config import load_config

from .common import config_path


def measure_core(records: list[tuple[bytes, bytes]], batch: int, repeat: int = 3) -> dict[str, Any]:
    """The same events through the same pipeline code in this process, with a store that keeps
    nothing: events per CPU second of the detection work alone (decode, gate, core, state
    deltas), the ceiling for a worker whose transport and state cost nothing."""
    from core_micro import NullStore

    import stream_monitor.core.signals as core_signals
    from stream_monitor.contracts import Position, RawRecord
    from stream_monitor.pipeline import BatchPipeline

    cfg = load_config(config_path())
    raws = [RawRecord(v, Position("bench", 0, i, 1_767_225_600_000 + i), k)
            for i, (k, v) in enumerate(records)]
    # What the false-alarm calibration costs: it runs once per reference formed (at start and
    # after each drift), never per event; timed here around the core's own calls.
    calls: list[float] = []
    real = core_signals.calibrate

    def timed(*a: Any, **kw: Any) -> Any:
        c = time.process_time()
        try:
            return real(*a, **kw)
        finally:
            calls.append(time.process_time() - c)

    rates = []
    core_signals.calibrate = timed  # type: ignore[assignment]
    try:
        for _ in range(repeat):
            pipe = BatchPipeline(cfg, NullStore())  # type: ignore[arg-type]

            async def once() -> None:
                for lo in range(0, len(raws), batch):
                    await pipe.run(raws[lo:lo + batch])  # noqa: B023

            c0 = time.process_time()
            asyncio.run(once())
            rates.append(len(raws) / (time.process_time() - c0))
    finally:
        core_signals.calibrate = real  # type: ignore[assignment]
    if not calls:  # the config calibrates (a budget is set): a patch that timed nothing is stale
        raise RuntimeError("no calibration was timed: the core no longer calls "
                           "stream_monitor.core.signals.calibrate; update benchmarks/_throughput/"
                           "core_cpu.py")
    per_run = len(calls) / max(1, repeat)
    return {"rates": [round(r) for r in rates], "batch": batch, "events": len(raws),
            "calibration": {
                "references_calibrated_per_run": per_run,
                "ms_per_reference_median": (round(1000 * statistics.median(calls), 3)
                                            if calls else None),
                "us_per_event": round(1e6 * sum(calls) / max(1, repeat) / len(raws), 3),
            }}
