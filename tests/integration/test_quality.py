"""The data-quality gate on the real Kafka and Redis: a stream with a known mix of good and bad
events, every reason code, duplicates kept in Redis, a worker killed after its first state save
(so its batch is redelivered to the next one), and a missing-rate jump that raises a
data-quality alert."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as redis_sync
import yaml

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import validate_record
from stream_monitor.contracts.records import REASON_CODES
from stream_monitor.contracts.units import unit_id
from stream_monitor.contracts.wire import REGISTRY_REASON_CODES
from stream_monitor.core.gate import Claim
from stream_monitor.state.base import unit_key
from stream_monitor.state.dedupe import RedisDedupe, bucket_of

from .conftest import committed, wait_committed

pytestmark = pytest.mark.integration

MODEL = "credit-risk"
CONFIG = {
    "windows": {"reference_size": 300, "recent_size": 200, "evidence_size": 30},
    "quality": {"max_message_bytes": 4096, "unknown_model": "dead_letter",
                "max_features_per_event": 50, "max_features_per_model": 20, "max_id_length": 64,
                "max_classes_per_event": 5, "max_embedding_length": 8,
                "duplicates": {"window_seconds": 3600},
                "timestamps": {"max_future_seconds": 600, "max_past_seconds": 7 * 86400}},
    "models": [{
        "match": "credit-*",
        "signals": [{"match": "*", "detectors": ["adwin", "page_hinkley"]}],
        "quality": {"bounds": {"amount": {"min": 0.0}}, "indicators": ["missing"],
                    "detectors": ["adwin"]},
    }],
}
N_GOOD = 4000
JUMP_AT = 2000  # utilization goes missing in 1% of the events before, 30% after


def good_events(now: float, seed: int = 17) -> list[dict[str, Any]]:
    """Good events (some with one bad value: NaN, out of bounds, or missing), event times in
    the last hour of the processing clock."""
    rng = random.Random(seed)
    out = []
    for i in range(N_GOOD):
        f: dict[str, Any] = {"amount": round(rng.gauss(120, 35), 3),
                             "utilization": round(rng.gauss(0.4, 0.12), 4),
                             "age": round(rng.gauss(41, 11), 2)}
        if rng.random() < (0.01 if i < JUMP_AT else 0.30):
            del f["utilization"]
        if i % 500 == 250:
            f["amount"] = math.nan  # one value rejected (non_finite), the event kept
        if i % 500 == 450:
            f["amount"] = -7.5  # one value rejected (out_of_bounds), the event kept
        out.append({"event_id": f"{MODEL}-{i:06d}", "model_id": MODEL, "model_version": "3",
                    "timestamp": now - 3600 + i * 0.5, "features": f,
                    "prediction": round(rng.random(), 4)})
    return out


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # NaN written as the token NaN, as Python producers do


def build_stream(now: float) -> tuple[list[tuple[bytes | None, bytes | None]], dict[int, str],
                                      dict[str, Any]]:
    """(key, value) records, the expected reason code of each bad offset, and facts to check."""
    goods = good_events(now)
    template = dict(goods[0], features={"amount": 1.0})
    bad: list[tuple[str, bytes | None, bytes | None]] = [
        ("too_large", MODEL.encode(), dumps(dict(template, event_id="big", pad="x" * 5000))),
        ("undecodable", MODEL.encode(), b"not json"),
        ("undecodable", MODEL.encode(), b"\xff\xfe\x00binary"),
        ("undecodable", MODEL.encode(), None),  # tombstone
        ("not_an_object", MODEL.encode(), b"[1, 2, 3]"),
        ("missing_field", MODEL.encode(),
         dumps({"event_id": "nf", "model_id": MODEL, "features": {}})),
        ("wrong_type", MODEL.encode(), dumps(dict(template, event_id=17))),
        ("non_finite", MODEL.encode(),
         dumps(dict(template, event_id="nan-ts", timestamp=math.nan))),
        ("unknown_model", b"fraud-x", dumps(dict(template, event_id="fx", model_id="fraud-x"))),
        ("timestamp_in_future", MODEL.encode(),
         dumps(dict(template, event_id="fut", timestamp=now + 86400))),
        ("timestamp_too_old", MODEL.encode(),
         dumps(dict(template, event_id="old", timestamp=now - 30 * 86400))),
        ("too_many_features", MODEL.encode(),
         dumps(dict(template, event_id="wide", features={f"x{i}": 1.0 for i in range(60)}))),
        ("too_many_signals", MODEL.encode(),
         dumps(dict(template, event_id="new-names", features={f"y{i}": 1.0 for i in range(30)}))),
        ("id_too_long", MODEL.encode(), dumps(dict(template, event_id="e" * 100))),
        # An invalid class-probability map (docs/probabilities.md).
        ("probability_not_numeric", MODEL.encode(),
         dumps(dict(template, event_id="p-str", probabilities={"a": "high", "b": 0.5}))),
        ("probability_out_of_range", MODEL.encode(),
         dumps(dict(template, event_id="p-neg", probabilities={"a": 1.5, "b": -0.5}))),
        ("probabilities_not_normalized", MODEL.encode(),
         dumps(dict(template, event_id="p-sum", probabilities={"a": 0.5, "b": 0.2}))),
        ("too_many_classes", MODEL.encode(),
         dumps(dict(template, event_id="p-wide", probabilities={f"c{i}": 0.125
                                                                for i in range(8)}))),
        # An invalid embedding vector (docs/joint-drift.md).
        ("embedding_not_numeric", MODEL.encode(),
         dumps(dict(template, event_id="v-str", embeddings=[0.5, "x"]))),
        ("embedding_too_long", MODEL.encode(),
         dumps(dict(template, event_id="v-long", embeddings=[0.1] * 9))),
    ]
    stream: list[tuple[bytes | None, bytes | None, str | None]] = [
        (MODEL.encode(), dumps(e), None) for e in goods]
    # Spread the bad records over the stream; offsets are list positions (a fresh topic).
    for k, (code, key, value) in enumerate(bad):
        stream.insert(37 + k * 331, (key, value, code))
    # Duplicates: exact repeats of good events, appended (the first copies come earlier).
    for i in (5, 1234, 3999):
        stream.append((MODEL.encode(), dumps(goods[i]), "duplicate"))
    offsets = {json.loads(v)["event_id"]: off for off, (_, v, code) in enumerate(stream)
               if code is None and v is not None}
    # A good event whose id Redis already holds from another position: a duplicate too; and one
    # whose id Redis holds from its own position (a redelivery): processed.
    other, same = goods[100]["event_id"], goods[200]["event_id"]
    key, value, _ = stream[offsets[other]]
    stream[offsets[other]] = (key, value, "duplicate")
    records = [(k, v) for k, v, _ in stream]
    expected = {off: code for off, (_, _, code) in enumerate(stream) if code is not None}
    facts = {"seeded_other": (other, offsets[other]), "seeded_same": (same, offsets[same]),
             "n_good": len(records) - len(expected),
             "amount_rejected": sum(1 for e in goods if not e["features"]["amount"] >= 0)}
    return records, expected, facts


def test_every_bad_event_is_dead_lettered_with_its_reason_and_every_good_one_processed(
        kafka_bootstrap, redis_url, unique, start_worker, tmp_path: Path) -> None:
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    now = time.time()
    records, expected, facts = build_stream(now)
    # Every code of a JSON topic (the registry formats' own: tests/integration/test_registry.py).
    assert set(expected.values()) == (set(REASON_CODES) - {"internal_error"}
                                      - set(REGISTRY_REASON_CODES))
    topic = unique.topics["inference"]
    r = redis_sync.Redis.from_url(redis_url)
    # Claims as an earlier run would have left them: one by another record (a duplicate), one
    # by this very record (a redelivery after a crash: not a duplicate).
    other_id, other_off = facts["seeded_other"]
    same_id, same_off = facts["seeded_same"]
    window = CONFIG["quality"]["duplicates"]["window_seconds"]
    bucket = f"{unique.prefix}:{{{MODEL}}}:dedupe:{bucket_of(time.time(), window)}"
    r.hset(bucket, mapping={other_id: "elsewhere:0:12", same_id: f"{topic}:0:{same_off}"})
    r.pexpire(bucket, 2 * window * 1000)
    asyncio.run(produce(kafka_bootstrap, topic, records))

    # The first worker dies (SIGKILL) right after saving its first batch: claims and state are
    # written, nothing is published or committed. The next worker gets the batch again.
    # The whole stream is in the topic already: wait long enough that the first batch is full
    # (with the usual 0.1 s a first partial fetch can cut it short).
    env = {"SM_BATCH_MAX": "500", "SM_BATCH_WITHIN_SECONDS": "5", "SM_SESSION_TIMEOUT_SECONDS": "6"}
    first = start_worker(config_path, unique, SM_FAILPOINT="after_save:1", **env)
    assert first.proc.wait(120) == -signal.SIGKILL, first.tail()
    assert asyncio.run(committed(kafka_bootstrap, unique.app_id, topic)) == -1
    # The first batch claimed its ids, with their positions, before it died.
    buckets = list(r.scan_iter(f"{unique.prefix}:{{{MODEL}}}:dedupe:*"))
    assert [r.hget(b, f"{MODEL}-000010") for b in buckets if r.hexists(b, f"{MODEL}-000010")] \
        == [f"{topic}:0:10".encode()]
    assert sum(r.hlen(b) for b in buckets) > 400

    second = start_worker(config_path, unique, **env)
    wait_committed(kafka_bootstrap, unique.app_id, topic, len(records), second)

    def done(msgs: list[Any]) -> bool:
        ids = {orjson.loads(m.value)["dead_letter_id"] for m in msgs
               if m.topic == unique.topics["dead_letter"]}
        return len(ids) >= len(expected) and any(
            m.topic == unique.topics["alerts"]
            and dict(m.headers).get("schema") == b"data-quality-alert/v1" for m in msgs)

    outputs = [unique.topics["dead_letter"], unique.topics["alerts"]]
    msgs = asyncio.run(consume(kafka_bootstrap, outputs, until=done, timeout=60))
    assert done(msgs), second.tail()
    # A few more seconds: nothing else may arrive (e.g. a redelivered event taken for a duplicate).
    msgs = asyncio.run(consume(kafka_bootstrap, outputs, idle=3, timeout=30))

    dead: dict[str, dict[str, Any]] = {}
    for m in msgs:
        if m.topic == unique.topics["dead_letter"]:
            rec = orjson.loads(m.value)
            validate_record(rec)
            assert dict(m.headers)["reason-code"] == rec["reason_code"].encode()
            assert m.key == (records[rec["source"]["offset"]][0] or b"")
            dead[rec["dead_letter_id"]] = rec  # a redelivered batch re-sends the same ids
    got = {d["source"]["offset"]: d["reason_code"] for d in dead.values()}
    assert got == expected  # exactly the bad events, each with its reason
    for d in dead.values():
        _, value = records[d["source"]["offset"]]
        original = d["original"]["value"]
        if value is None:
            assert original is None
        else:
            data = (base64.b64decode(original["data"]) if original["encoding"] == "base64"
                    else original["data"].encode())
            assert data == value  # byte for byte
        assert d["source"]["topic"] == topic and d["source"]["partition"] == 0
    assert got[other_off] == "duplicate" and "elsewhere:0:12" in \
        next(d for d in dead.values() if d["source"]["offset"] == other_off)["reason"]
    assert same_off not in got  # the redelivered record held its own claim

    # Every good event was processed, once: the model's event count and the signals' counts.
    # (The events carry model_version "3": the state lives under that version's unit.)
    base = unit_key(unique.prefix, unit_id(MODEL, "3"))
    meta = orjson.loads(r.get(f"{base}:model"))
    assert meta["events"] == facts["n_good"]
    amount = orjson.loads(r.get(f"{base}:sig:feature:amount"))
    assert amount["n"] == facts["n_good"] - facts["amount_rejected"]
    age = orjson.loads(r.get(f"{base}:sig:feature:age"))
    assert age["n"] == facts["n_good"]

    # The missing-rate jump of `utilization` raised a data-quality alert naming it.
    dq = [(m, orjson.loads(m.value)) for m in msgs if m.topic == unique.topics["alerts"]
          and orjson.loads(m.value)["type"] == "data_quality_alert"]
    assert dq
    for m, rec in dq:
        validate_record(rec)
        assert dict(m.headers)["schema"] == b"data-quality-alert/v1" and m.key == MODEL.encode()
    m, first_dq = dq[0]
    assert (first_dq["feature"], first_dq["indicator"]) == ("utilization", "missing")
    assert dict(m.headers)["feature"] == b"utilization"
    jump_offset = next(off for off, (_, v) in enumerate(records)
                       if v is not None and v.startswith(b'{"event_id": "credit-risk-002000"'))
    assert jump_offset <= first_dq["detected_at"]["offset"] < jump_offset + 1200
    assert first_dq["rate_before"] < 0.05 and 0.15 < first_dq["rate_after"] < 0.45
    assert second.stop() == 0, second.tail()


def test_redis_claims_one_round_trip_hash_tagged_and_redelivery_safe(redis_url, unique) -> None:
    async def go() -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url)
        d = RedisDedupe(client, unique.prefix)
        round_trips: list[int] = []
        pipeline = client.pipeline

        def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def counted(*a: Any, **k: Any) -> Any:
                round_trips.append(len(pipe.command_stack))
                return await execute(*a, **k)

            pipe.execute = counted
            return pipe

        client.pipeline = counting_pipeline  # type: ignore[method-assign]
        try:
            first = await d.claim([Claim("a", "1", "t:0:1"), Claim("b", "1", "t:0:2"),
                                   Claim("a", "1", "t:0:3"), Claim("a", "x" * 500, "t:0:4"),
                                   Claim("a", 'é"\n\\', "t:0:5")], 30.0, now=0.0)
            assert first == [None, None, "t:0:1", None, None]
            assert round_trips == [2]  # one pipelined round trip: one script call per model
            again = await d.claim([Claim("a", "1", "t:0:1"), Claim("a", "1", "t:1:1"),
                                   Claim("a", "x" * 500, "t:0:4"), Claim("a", 'é"\n\\', "t:0:6")],
                                  30.0, now=29.0)
            assert again == [None, "t:0:1", None, "t:0:5"]
            keys = {k.decode() for k in await client.keys(f"{unique.prefix}:*")}
            assert keys == {f"{unique.prefix}:{{a}}:dedupe:0", f"{unique.prefix}:{{b}}:dedupe:0"}
            fields = {f.decode() for f in await client.hkeys(f"{unique.prefix}:{{a}}:dedupe:0")}
            assert len(fields) == 3 and sum(f.startswith("sha256:") for f in fields) == 1
            assert 0 < await client.pttl(f"{unique.prefix}:{{a}}:dedupe:0") <= 60_000
            # The previous bucket still counts; two buckets on, the id is free again.
            assert await d.claim([Claim("a", "1", "t:0:9")], 30.0, now=59.0) == ["t:0:1"]
            assert await d.claim([Claim("a", "1", "t:0:9")], 30.0, now=60.0) == [None]
        finally:
            await client.aclose()

    asyncio.run(go())
