"""The Redis label store (state/labels.py) on the real Redis runs the same join as the pure
LabelBook (core/labels.py): same pairs, same counters, same idempotence; keys under the model's
hash tag."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from stream_monitor.core.labels import LabelOp
from stream_monitor.state.labels import MemoryLabelStore, RedisLabelStore
from tests.helpers import LABEL_RULES, apply_label_scenarios, label_scenarios_in_book

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0
RULES = LABEL_RULES


def _key(p):  # pairs compared field by field
    return (p.seq, p.model_id, p.version, p.event_id, p.prediction, p.prediction_time, p.label,
            p.label_time, p.label_first, p.topic, p.partition, p.offset)


def test_redis_join_matches_the_pure_book_on_the_scenario(redis_url, unique) -> None:
    async def run():
        client = aioredis.Redis.from_url(redis_url)
        store = RedisLabelStore(client, unique.prefix)
        try:
            first, again, second, stats = await apply_label_scenarios(store)
            keys = [k.decode() async for k in client.scan_iter(f"{unique.prefix}:*")]
            return first, again, second, stats, keys
        finally:
            await client.aclose()

    first, again, second, stats, keys = asyncio.run(run())
    book, want1, want2 = label_scenarios_in_book()
    assert [_key(p) for p in first] == [_key(p) for p in want1] == [_key(p) for p in again]
    assert [_key(p) for p in second] == [_key(p) for p in want2]
    assert [p.event_id for p in second] == ["c"]
    for f in ("predictions", "labels", "joined", "labels_before_prediction",
              "unmatched_labels", "expired_predictions", "delay_sum", "delay_max"):
        assert getattr(stats, f) == getattr(book.stats, f), f
    assert (stats.expired_predictions, stats.unmatched_labels) == (1, 1)
    assert all(k.startswith(f"{unique.prefix}:{{m}}:") for k in keys)


def test_redis_join_matches_the_pure_book_on_random_streams(redis_url, unique) -> None:
    """Random interleavings: late, early, missing and duplicated labels, several versions,
    batches retried; Redis and the pure book agree on every pair and counter."""
    rng = random.Random(11)
    ops: list[LabelOp] = []
    off = {"inf": 0, "lab": 0}
    t = T0
    for i in range(600):
        t += rng.random() * 3
        ops.append(LabelOp("prediction", "m", f"e{i}", rng.random(), t, "inf", 0, off["inf"],
                           rng.choice([None, "v1", "v2"])))
        off["inf"] += 1
        for _ in range(rng.choice([0, 1, 1, 2])):
            j = max(0, i - rng.randint(-5, 60))  # labels before, just after, long after
            ops.append(LabelOp("label", "m", f"e{j}", rng.randint(0, 1), t + rng.random(), "lab",
                               0, off["lab"]))
            off["lab"] += 1
    batches = []
    k = 0
    while k < len(ops):
        n = rng.randint(1, 40)
        batches.append(ops[k:k + n])
        k += n
    rules = {"m": (60.0, 5.0)}

    async def run():
        client = aioredis.Redis.from_url(redis_url)
        redis_store, mem = RedisLabelStore(client, unique.prefix), MemoryLabelStore()
        got, want = [], []
        cursors: dict[str, int] = {}
        try:
            for b in batches:
                retries = 2 if rng.random() < 0.2 else 1
                for _ in range(retries):
                    r_pairs, r_stats = await redis_store.apply(b, rules, {"m": dict(cursors)})
                    m_pairs, m_stats = await mem.apply(b, rules, {"m": dict(cursors)})
                got.append(([_key(p) for p in r_pairs], r_stats["m"]))
                want.append(([_key(p) for p in m_pairs], m_stats["m"]))
                for p in r_pairs:  # the model state consumes what it got
                    vk = "" if p.version is None else "v:" + p.version
                    cursors[vk] = max(cursors.get(vk, 0), p.seq)
            return got, want
        finally:
            await client.aclose()

    got, want = asyncio.run(run())
    assert got == want
    final = got[-1][1]
    assert final.joined > 300 and final.labels_before_prediction > 0
    assert final.expired_predictions > 0 and final.unmatched_labels > 0


def test_redis_join_keeps_two_clocks_like_the_pure_book(redis_url, unique) -> None:
    """Labels read long before their predictions (a backlog): nothing expires in Redis either."""
    preds = [LabelOp("prediction", "m", f"e{i}", 0.9, T0 + i, "inf", 0, i) for i in range(600)]
    labels = [LabelOp("label", "m", f"e{i}", 1, T0 + i + 5, "lab", 0, i) for i in range(600)]

    async def run():
        client = aioredis.Redis.from_url(redis_url)
        store = RedisLabelStore(client, unique.prefix)
        try:
            await store.apply(labels, RULES, {})
            return await store.apply(preds, RULES, {})
        finally:
            await client.aclose()

    pairs, stats = asyncio.run(run())
    assert len(pairs) == 600
    assert (stats["m"].labels_before_prediction, stats["m"].unmatched_labels,
            stats["m"].expired_predictions) == (600, 0, 0)
