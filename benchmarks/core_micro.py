"""Micro-benchmark of the pipeline's CPU path, without Kafka or Redis: decode + quality gate +
core + state deltas, through ``BatchPipeline.run`` on a store that keeps nothing.

    python benchmarks/core_micro.py [--config examples/monitor.yaml] [--events 80000] [--repeat 5]

Prints the best and median events per CPU second of this process over the repeats (each repeat
is a fresh pipeline over the same synthetic bytes: 4 models, 10 numeric features and a numeric
prediction per event, the same payload as benchmarks/throughput.py). CPU time rather than wall
time, because the machines are shared: other processes then barely move the figure. Used to
check that the quality gate does not slow the numeric path; see README "Data quality".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from stream_monitor.config import load_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.synth import StreamSpec, generate


class NullStore:
    """Loads nothing and saves nothing: only the CPU work of the pipeline is measured."""

    async def load(self, model_ids):  # type: ignore[no-untyped-def]
        return {}

    async def save(self, deltas):  # type: ignore[no-untyped-def]
        return None

    async def versions(self, model_ids):  # type: ignore[no-untyped-def]
        return {}

    async def expire(self, units, ttl_seconds):  # type: ignore[no-untyped-def]
        return None

    async def close(self) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    default_config = Path(__file__).resolve().parents[1] / "examples" / "monitor.yaml"
    ap.add_argument("--config", default=str(default_config))
    ap.add_argument("--events", type=int, default=80_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config(args.config)
    spec = StreamSpec(models=("credit-a", "credit-b", "credit-c", "credit-d"),
                      events_per_model=args.events // 4)
    raws = [RawRecord(v, Position("bench", 0, i, 1_767_225_600_000 + i), b"credit")
            for i, v in enumerate(generate(spec))]
    batches = [raws[i:i + args.batch] for i in range(0, len(raws), args.batch)]

    async def once() -> float:
        pipe = BatchPipeline(cfg, NullStore(), clock=lambda: 1_767_225_600.0)
        t0 = time.process_time()
        for b in batches:
            await pipe.run(b)
        return len(raws) / (time.process_time() - t0)

    rates = [asyncio.run(once()) for _ in range(args.repeat)]
    print(f"{len(raws)} events, batch {args.batch}: best {max(rates):,.0f} events/CPU-s, "
          f"median {statistics.median(rates):,.0f} over {args.repeat} runs")


if __name__ == "__main__":
    main()
