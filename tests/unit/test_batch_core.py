"""One batch's steps driven without I/O (core/batch.py): the questions a batch asks, in order,
answered from dicts, give the records the pipeline gives over the memory stores."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from stream_monitor.config import parse_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.contracts.output_records import DeadLetterRecord
from stream_monitor.contracts.outputs import encode_batch
from stream_monitor.core.batch import BatchCore, BatchOutcome, Need
from stream_monitor.core.gate import Claims
from stream_monitor.core.label_join import Join, LabelBook
from stream_monitor.core.load import Expire, Load, Versions
from stream_monitor.core.model_state import MonitorState
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.state.memory import MemoryStore

NOW = 1_767_225_600.0
CONFIG: dict[str, Any] = {
    "topics": {"labels": "labels"},
    "windows": {"reference_size": 50, "recent_size": 50},
    "quality": {"duplicates": {"window_seconds": 60}},
    "false_alarm_budget": None,
    "models": [{"match": "m", "labels": {"task": "regression"},
                "signals": [{"match": "*", "detectors": ["page_hinkley"]}]}],
}


def _event(i: int, x: float, event_id: str | None = None) -> bytes:
    return orjson.dumps({"event_id": event_id or f"e{i}", "model_id": "m", "features": {"x": x},
                         "prediction": x, "timestamp": NOW - 1000 + i})


def _raws() -> list[RawRecord]:
    raws = [RawRecord(_event(i, float(i % 5 + (20 if i >= 300 else 0))), Position("t", 0, i))
            for i in range(400)]
    raws.append(RawRecord(_event(400, 1.0, event_id="e7"), Position("t", 0, 400)))  # duplicate
    raws.append(RawRecord(b'{"oops', Position("t", 0, 401)))
    raws.append(RawRecord(orjson.dumps({"event_id": "e3", "model_id": "m", "label": 2.0,
                                        "timestamp": NOW - 990}), Position("labels", 0, 0)))
    return raws


def _drive(core: BatchCore, raws: list[RawRecord]) -> tuple[list[str], BatchOutcome]:
    """The batch's steps, each question answered from dicts (nothing stored yet)."""
    claimed: dict[tuple[str, str], str] = {}
    books: dict[str, LabelBook] = {}
    asked: list[str] = []

    def answer(need: Need) -> None:
        asked.append(type(need).__name__)
        if isinstance(need, Claims):
            for c in need.claims:
                first = claimed.setdefault((c.model_id, c.event_id), c.position)
                need.first_seen.append(None if first == c.position else first)
        elif isinstance(need, Join):
            for mid, (ttl, bucket) in need.rules.items():
                book = books.setdefault(mid, LabelBook(mid))
                need.pairs += book.apply([op for op in need.ops if op.model_id == mid],
                                         ttl_seconds=ttl, bucket_seconds=bucket,
                                         cursors=need.cursors.get(mid, {}))
        elif isinstance(need, Versions):
            need.index = {m: {} for m in need.model_ids}
        else:
            assert isinstance(need, Load | Expire) or type(need).__name__ == "Pause"

    steps = core.steps(raws, MonitorState(), NOW)
    try:
        need = next(steps)
        while True:
            answer(need)
            need = next(steps)
    except StopIteration as done:
        return asked, done.value


def test_a_batch_asks_its_questions_in_order_and_decides_without_io() -> None:
    cfg = parse_config(CONFIG)
    core = BatchCore(cfg, chunk=150)
    asked, outcome = _drive(core, _raws())
    # Claims of the ids, the label join, the state units; a pause between parts of 150 events.
    assert asked == ["Claims", "Join", "Load", "Pause", "Pause"]
    dead = [o.record for o in outcome.outgoing[:2]]
    assert [d.reason_code for d in dead if isinstance(d, DeadLetterRecord)] == [
        "duplicate", "undecodable"]
    alerts = [o.record for o in outcome.outgoing if o.record.type == "drift_alert"]
    assert alerts and all(o.unit == "m" for o in outcome.outgoing[2:])
    assert outcome.labels == 1 and outcome.dead_letters == 2


def test_the_steps_give_the_pipelines_records() -> None:
    cfg = parse_config(CONFIG)
    _, outcome = _drive(BatchCore(cfg), _raws())
    mine = encode_batch(outcome.recovered, outcome.outgoing).records
    out = asyncio.run(BatchPipeline(cfg, MemoryStore(), clock=lambda: NOW).run(_raws()))
    assert [(r.topic, r.key, r.headers, r.value) for r in mine] == [
        (r.topic, r.key, r.headers, r.value) for r in out.records]
    assert len(mine) > 2
