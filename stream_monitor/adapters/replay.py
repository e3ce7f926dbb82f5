"""Replay a JSON-lines file of inference events through the core, with in-memory state.

The embedded default: needs neither Kafka nor Redis. Each line's position is
``(file name, 0, line number)``, so alerts name the line where drift was detected.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ..config import MonitorConfig
from ..contracts.records import Position, RawRecord
from ..pipeline import BatchOutput, BatchPipeline, OutputRecord
from ..state.memory import MemoryStore

__all__ = ["iter_file", "replay_file"]


def iter_file(path: Path, batch: int) -> Iterator[list[RawRecord]]:
    name = path.name
    buf: list[RawRecord] = []
    with path.open("rb") as f:
        for i, line in enumerate(f):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            buf.append(RawRecord(line, Position(name, 0, i)))
            if len(buf) >= batch:
                yield buf
                buf = []
    if buf:
        yield buf


def replay_file(
    config: MonitorConfig,
    path: str | os.PathLike[str],
    out: IO[bytes],
    *,
    batch: int = 2000,
    on_batch: Callable[[int, BatchOutput], None] | None = None,
) -> BatchOutput:
    """Run every event of ``path`` through the monitor; write outputs to ``out`` as JSON lines."""
    pipeline = BatchPipeline(config, MemoryStore())
    total = BatchOutput()
    p = Path(path)

    async def run() -> None:
        for raws in iter_file(p, batch):
            res = await pipeline.run(raws)
            _write(out, res.records)
            await pipeline.store.clear_outbox(res.outbox)
            total.merge(res)
            if on_batch:
                on_batch(raws[-1].position.offset + 1, res)

    asyncio.run(run())
    return total


def _write(out: IO[bytes], records: list[OutputRecord]) -> None:
    for r in records:
        out.write(r.value + b"\n")
