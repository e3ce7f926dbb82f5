"""The Redis label store (state/labels.py) on the real Redis: the same join and counters as the
pure LabelJoin (tests/unit/test_labels.py), keys under the model's hash tag."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from stream_monitor.state.labels import LabelOp, RedisLabelStore

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0


def test_join_counts_early_late_unmatched_and_expired_in_redis(redis_url, unique) -> None:
    async def run() -> tuple[list, list, dict, list]:
        client = aioredis.Redis.from_url(redis_url)
        store = RedisLabelStore(client, unique.prefix, ttl_seconds=100, bucket_seconds=10)
        try:
            first = await store.apply([
                LabelOp("prediction", "m", "a", 0.9, T0),
                LabelOp("prediction", "m", "b", 0.1, T0 + 1),
                LabelOp("label", "m", "c", 1, T0 + 2),  # before its prediction
                LabelOp("label", "m", "a", 0, T0 + 30),
            ])
            # A second batch: c's prediction, a label for nothing, then past the TTL.
            second = await store.apply([
                LabelOp("prediction", "m", "c", 0.8, T0 + 31),
                LabelOp("label", "m", "z", 1, T0 + 40),
                LabelOp("prediction", "m", "d", 0.2, T0 + 200),
                LabelOp("label", "m", "b", 0, T0 + 201),  # its prediction expired
            ])
            stats = await store.stats("m")
            keys = [k.decode() async for k in client.scan_iter(f"{unique.prefix}:*")]
            return first, second, stats, keys
        finally:
            await client.aclose()

    first, second, stats, keys = asyncio.run(run())
    assert [(p.event_id, p.prediction, p.label, p.label_first) for p in first] == [
        ("a", 0.9, 0, False)]
    assert first[0].label_time - first[0].prediction_time == 30.0
    assert [(p.event_id, p.prediction, p.label, p.label_first) for p in second] == [
        ("c", 0.8, 1, True)]
    assert {k: stats[k] for k in ("predictions", "labels", "labels_before_prediction",
                                  "expired_predictions", "unmatched_labels")} == {
        "predictions": 4, "labels": 4, "labels_before_prediction": 1,
        "expired_predictions": 1, "unmatched_labels": 1}
    assert all(k.startswith(f"{unique.prefix}:{{m}}:") for k in keys)
