"""Replay a JSON-lines file of inference events through the core, with in-memory state.

The embedded default: needs neither Kafka nor Redis. Each line's position is
``(file name, 0, line number)``, so alerts name the line where drift was detected. A labels file
(records of the labels topic) is merged in by timestamp; its lines get the labels topic's name
(``topics.labels``) as their "topic", which is how the pipeline tells labels from events.
"""

from __future__ import annotations

import asyncio
import heapq
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import orjson

from ..contracts.outputs import OutputRecord
from ..contracts.records import Position, RawRecord
from ..core.model_state import MonitorState
from ..core.plan import MonitorPlan
from ..pipeline import BatchOutput, BatchPipeline
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


def _timed(path: Path, topic: str) -> Iterator[tuple[float, int, RawRecord]]:
    """(timestamp, line, record) of a file; a line without a numeric timestamp keeps the
    previous line's, so it stays where it was relative to its file."""
    t = float("-inf")
    with path.open("rb") as f:
        for i, line in enumerate(f):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                ts = orjson.loads(line).get("timestamp")
                if isinstance(ts, int | float):
                    t = max(t, float(ts))
            except (orjson.JSONDecodeError, AttributeError):
                pass
            yield t, i, RawRecord(line, Position(topic, 0, i))


def iter_merged(events: Path, labels: Path, labels_topic: str,
                batch: int) -> Iterator[list[RawRecord]]:
    """Events and labels merged by timestamp (events first on a tie), in batches."""
    merged = heapq.merge(((t, 0, i, r) for t, i, r in _timed(events, events.name)),
                         ((t, 1, i, r) for t, i, r in _timed(labels, labels_topic)))
    buf: list[RawRecord] = []
    for _, _, _, r in merged:
        buf.append(r)
        if len(buf) >= batch:
            yield buf
            buf = []
    if buf:
        yield buf


def replay_file(
    config: MonitorPlan,
    path: str | os.PathLike[str],
    out: IO[bytes],
    *,
    batch: int = 2000,
    on_batch: Callable[[int, BatchOutput], None] | None = None,
    labels: str | os.PathLike[str] | None = None,
    state_out: list[MonitorState] | None = None,
) -> BatchOutput:
    """Run every event of ``path`` (and label of ``labels``) through the monitor; write outputs
    to ``out`` as JSON lines. ``on_batch`` gets the records read so far; ``state_out`` gets the
    final in-memory state (e.g. for the signals still collecting their reference)."""
    pipeline = BatchPipeline(config, MemoryStore())
    total = BatchOutput()
    p = Path(path)
    batches = iter_file(p, batch) if labels is None else iter_merged(
        p, Path(labels), config.topics.labels, batch)

    async def run() -> None:
        done = 0
        for raws in batches:
            res = await pipeline.run(raws)
            _write(out, res.records)
            await pipeline.store.clear_outbox(res.outbox)
            total.merge(res)
            done += len(raws)
            if on_batch:
                on_batch(done, res)

    asyncio.run(run())
    if state_out is not None:
        state_out.append(pipeline.state)
    return total


def _write(out: IO[bytes], records: list[OutputRecord]) -> None:
    for r in records:
        out.write(r.value + b"\n")
