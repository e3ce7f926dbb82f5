"""Two workers on one model after a rebalance: the stale one is fenced, reloads, and neither
clobbers the other's state nor publishes an effect twice."""

from __future__ import annotations

from pathlib import Path

from stream_monitor.adapters.worker import MonitorWorker
from stream_monitor.config import load_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.contracts.units import unit_id
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.settings import Settings
from stream_monitor.state import MemoryStore
from stream_monitor.synth import Drift, StreamSpec, generate

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "monitor.yaml"
SPEC = StreamSpec(models=("credit-risk",), events_per_model=3000, seed=4,
                  drifts=(Drift(1500, "amount", 2.0), Drift(1500, "utilization", -2.0)))


UNIT = unit_id("credit-risk", "1")  # the synthetic events carry model_version "1"


def raws() -> list[RawRecord]:
    return [RawRecord(v, Position("in", 0, i, 1_767_225_600_000 + i))
            for i, v in enumerate(generate(SPEC))]


async def run(worker: MonitorWorker, batch: list[RawRecord]) -> list[bytes]:
    out = await worker.process(batch)
    await worker.store.clear_outbox(out.outbox)
    return [r.value for r in out.records]


async def test_stale_worker_is_fenced_and_retries_without_duplicates() -> None:
    cfg = load_config(CONFIG)
    rs = raws()
    expected: list[bytes] = []
    solo = BatchPipeline(cfg, MemoryStore())
    for lo in range(0, len(rs), 500):
        expected += [r.value for r in (await solo.run(rs[lo:lo + 500])).records]
    assert len(expected) >= 3

    store = MemoryStore()
    a = MonitorWorker(cfg, Settings(), store)
    b = MonitorWorker(cfg, Settings(), store)
    got = await run(a, rs[:1400])            # A owns the partition
    got += await run(b, rs[:1600])           # rebalance: B gets it, re-reads from A's commit
    assert got[-1:] and len(got) >= 1        # B skipped A's 1,400 events, applied 1,400..1,599
    fenced_before = store._versions[UNIT]
    got += await run(a, rs[1400:2200])       # A, stale, still holds its batch: fenced, reloads
    assert store._versions[UNIT] == fenced_before + 1
    got += await run(b, rs[1600:])           # B is stale now in turn
    assert got == expected
