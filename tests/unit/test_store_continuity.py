"""A worker restarted mid-stream continues from the store exactly where the old one stopped.

The synthetic stream runs through ``BatchPipeline`` on a ``MemoryStore``. At a cut point the
pipeline is thrown away and a new one is built on the same store (a restarted worker: nothing
in memory, everything from the store). Its outputs must be those of one uninterrupted pipeline,
byte for byte, and the stored state must end up the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from stream_monitor.config import load_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.core.plan import MonitorPlan
from stream_monitor.pipeline import BatchPipeline, OutputRecord
from stream_monitor.state import MemoryStore
from stream_monitor.synth import Drift, StreamSpec, generate

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "monitor.yaml"
BATCH = 400
# Two models, one per rule of the example config; drifts at different points in each.
SPEC = StreamSpec(models=("credit-risk", "churn"), events_per_model=3600,
                  drifts=(Drift(1500, "amount", 1.5), Drift(1500, "utilization", -1.5),
                          Drift(1500, "prediction", 1.0), Drift(2600, "age", 2.0)))


def fixed_clock() -> float:
    return 1_767_225_600.0


@pytest.fixture(scope="module")
def cfg() -> MonitorPlan:
    return load_config(EXAMPLE_CONFIG)


@pytest.fixture(scope="module")
def raws() -> list[RawRecord]:
    lines = list(generate(SPEC))
    lines[777] = b'{"event_id": "broken"'  # one dead letter on the way
    return [RawRecord(v, Position("inference-events", 0, i, 1_767_225_600_000 + i))
            for i, v in enumerate(lines)]


def batches(n: int, cuts: Iterable[int]) -> list[tuple[int, int]]:
    bounds = sorted({*range(0, n, BATCH), *(c for c in cuts if 0 < c < n), n})
    return list(itertools.pairwise(bounds))


async def run(cfg: MonitorPlan, raws: list[RawRecord], restart_at: Iterable[int] = (),
              boundaries: Iterable[int] = ()) -> tuple[list[OutputRecord], MemoryStore]:
    """Feed the stream in batches; at each offset in ``restart_at`` start a new pipeline."""
    restart = set(restart_at)
    store = MemoryStore()
    pipeline = BatchPipeline(cfg, store, clock=fixed_clock)
    out: list[OutputRecord] = []
    for lo, hi in batches(len(raws), restart | set(boundaries)):
        if lo in restart:
            pipeline = BatchPipeline(cfg, store, clock=fixed_clock)
        res = await pipeline.run(raws[lo:hi])
        out += res.records
        await store.clear_outbox(res.outbox)  # "published": what every adapter does next
    return out, store


def summary(records: list[OutputRecord]) -> list[tuple[str, Any, Any]]:
    out = []
    for r in records:
        rec: Any = r.record
        rid = (getattr(rec, "alert_id", None) or getattr(rec, "request_id", None)
               or getattr(rec, "dead_letter_id", None))
        at = getattr(rec, "detected_at", None) or getattr(rec, "triggered_by", None) or rec.source
        out.append((rec.type, rid, at.offset))
    return out


def by_topic(records: list[OutputRecord]) -> dict[str, list[bytes]]:
    """Each topic's records in order. Across topics the order depends on batching (a batch
    publishes its dead letters, then its alerts, then its retrain requests)."""
    out: dict[str, list[bytes]] = {}
    for r in records:
        out.setdefault(r.topic, []).append(r.value)
    return out


async def published(pipeline: BatchPipeline, store: MemoryStore,
                    raws: list[RawRecord]) -> list[OutputRecord]:
    """Run a batch and "publish" it: the outbox is cleared, as every adapter does."""
    res = await pipeline.run(raws)
    await store.clear_outbox(res.outbox)
    return res.records


async def stored(store: MemoryStore) -> dict[str, Any]:
    """The stored state, less its version (a count of saves, which depends on batching)."""
    snaps = await store.load(SPEC.models)
    return {m: (s.meta, s.signals, s.outbox) for m, s in snaps.items()}


@pytest.fixture(scope="module")
def uninterrupted(cfg: MonitorPlan, raws: list[RawRecord]) -> dict[str, Any]:
    import asyncio

    out, store = asyncio.run(run(cfg, raws, boundaries=CUTS))
    alerts = [r.record for r in out if r.record.type == "drift_alert"]
    return {"out": out, "state": asyncio.run(stored(store)), "alerts": alerts}


def test_the_stream_has_drifts_retrains_and_a_dead_letter(
        uninterrupted: dict[str, Any]) -> None:
    kinds = [k for k, _, _ in summary(uninterrupted["out"])]
    assert kinds.count("dead_letter") == 1
    assert kinds.count("retrain_request") >= 2
    alerts = uninterrupted["alerts"]
    assert {a.model_id for a in alerts} == set(SPEC.models)
    assert {a.signal for a in alerts} >= {"feature:amount", "feature:utilization",
                                            "prediction", "feature:age"}
    # The cut points below depend on these: a change here means they must be re-derived.
    got = sorted(a.detected_at.offset for a in alerts)
    assert ALERT_OFFSETS == got, got


async def test_batch_size_does_not_change_the_outputs(
        cfg: MonitorPlan, raws: list[RawRecord], uninterrupted: dict[str, Any]) -> None:
    out, store = await run(cfg, raws, boundaries=range(0, len(raws), 173))
    assert by_topic(out) == by_topic(uninterrupted["out"])
    assert await stored(store) == uninterrupted["state"]


# Offsets (line numbers of the interleaved two-model stream) where the uninterrupted run alerts.
# Checked by test_the_stream_has_drifts_retrains_and_a_dead_letter.
ALERT_OFFSETS = [3027, 3039, 3052, 3076, 3109, 3118, 5225, 5240]
CUTS = [
    0,
    5,
    300,  # both models still collecting their first (short) reference
    1000,  # watched on short references (200 values per signal), which still grow to 1000
    2000,  # right after the signals were re-based on their full references
    2001,
    3028,  # right after the first alert (churn utilization rebaselined, its reference empty)
    3039,  # just before an event that raises an alert and a retrain request
    3040,  # right after it
    3053,  # right after credit-risk's first alert
    3110,  # right after churn's prediction alert
    3119,  # right after the last alert of the first wave
    3175,  # right after the second retrain request
    4000,  # new references: short ones watched and growing
    5226,  # right after an alert on `age`
    5241,
    len(SPEC.models) * SPEC.events_per_model - 1,
]


@pytest.mark.parametrize("cut", CUTS)
async def test_restart_at_a_cut_point_continues_exactly(
        cfg: MonitorPlan, raws: list[RawRecord], uninterrupted: dict[str, Any],
        cut: int) -> None:
    out, store = await run(cfg, raws, restart_at=[cut], boundaries=CUTS)
    assert summary(out) == summary(uninterrupted["out"])
    assert [r.value for r in out] == [r.value for r in uninterrupted["out"]]
    assert [r.headers for r in out] == [r.headers for r in uninterrupted["out"]]
    assert await stored(store) == uninterrupted["state"]


async def test_restart_at_every_cut_point(cfg: MonitorPlan, raws: list[RawRecord],
                                          uninterrupted: dict[str, Any]) -> None:
    out, store = await run(cfg, raws, restart_at=CUTS, boundaries=CUTS)
    assert [r.value for r in out] == [r.value for r in uninterrupted["out"]]
    assert await stored(store) == uninterrupted["state"]


@pytest.mark.parametrize("cut", [800, 3028, 3040, 3110])
async def test_redelivered_batch_after_a_restart_changes_nothing(
        cfg: MonitorPlan, raws: list[RawRecord], uninterrupted: dict[str, Any],
        cut: int) -> None:
    """A worker that saved a batch but died before committing its offsets: the new worker
    gets the batch again. Its effects are already stored, so it publishes nothing new and
    the stored state is unchanged; the rest of the stream then continues exactly."""
    store = MemoryStore()
    first = BatchPipeline(cfg, store, clock=fixed_clock)
    out: list[OutputRecord] = []
    for lo, hi in batches(cut, []):
        out += await published(first, store, raws[lo:hi])
    before = await stored(store)
    second = BatchPipeline(cfg, store, clock=fixed_clock)
    replay_from = max(0, cut - BATCH)
    again = await second.run(raws[replay_from:cut])
    has_dead_letter = replay_from <= 777 < cut
    assert again.redelivered == cut - replay_from - has_dead_letter
    assert [r.record.type for r in again.records] == ["dead_letter"] * has_dead_letter
    assert await stored(store) == before
    for lo, hi in batches(len(raws) - cut, []):
        out += await published(second, store, raws[cut + lo:cut + hi])
    assert by_topic(out) == by_topic(uninterrupted["out"])
    assert await stored(store) == uninterrupted["state"]


@pytest.mark.parametrize("crash_after", [3028, 3040, 5226])
async def test_outputs_saved_but_never_published_are_recovered(
        cfg: MonitorPlan, raws: list[RawRecord], uninterrupted: dict[str, Any],
        crash_after: int) -> None:
    """A worker dies after the state save of the batch ending at `crash_after`, before Kafka
    confirmed its outputs: they are lost from this run but still in the outbox. The redelivered
    events are skipped by the watermark, and the next worker publishes the outbox first."""
    store = MemoryStore()
    pipeline = BatchPipeline(cfg, store, clock=fixed_clock)
    out: list[OutputRecord] = []
    lost: list[OutputRecord] = []
    for lo, hi in batches(len(raws), set(CUTS) | {crash_after}):
        res = await pipeline.run(raws[lo:hi])
        if hi == crash_after:
            lost = [r for r in res.records if r.record.type != "dead_letter"]
            pipeline = BatchPipeline(cfg, store, clock=fixed_clock)  # the restarted worker
            redelivered = await pipeline.run(raws[lo:hi])  # Kafka redelivers the batch
            assert redelivered.redelivered == sum(
                1 for r in raws[lo:hi] if b'"model_id"' in (r.value or b""))
            assert [r.value for r in redelivered.records if r.record.type != "dead_letter"] \
                == [r.value for r in lost]
            res = redelivered
        out += res.records
        await store.clear_outbox(res.outbox)
    assert lost, "the crash point must be a batch with outputs"
    assert by_topic(out) == by_topic(uninterrupted["out"])
    assert await stored(store) == uninterrupted["state"]
