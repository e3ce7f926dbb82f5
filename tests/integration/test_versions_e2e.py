"""Model versions on the real Kafka and Redis (README "Model versions"): a new version starts
with its own state, its post-deploy watch ends in a deployment check on the deployments topic,
and the superseded version's state expires from Redis while the new one's stays."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
import redis as redis_sync
import yaml

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import validate_record
from stream_monitor.contracts.units import unit_id
from stream_monitor.state.base import unit_key
from tests.unit.test_versions import CONFIG, stream

from .conftest import wait_committed

pytestmark = pytest.mark.integration


def test_new_version_is_watched_checked_and_the_old_one_expires(
        kafka_bootstrap, redis_url, unique, start_worker, tmp_path: Path) -> None:
    # No event-time limit on the wait for labels: both topics are read at their own pace, and
    # one batch may hold all of v2's predictions before any of its labels (a time limit would
    # then end the watch without performance, by design).
    cfg = {**CONFIG, "models": [{**CONFIG["models"][0], "match": "m",
                                 "versions": {**CONFIG["models"][0]["versions"],
                                              "max_wait_seconds": None,
                                              "expire_seconds": 10}}]}
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(cfg))
    raws = stream([("1", 1500, 0.0, 0.1), ("2", 1500, 2.0, 0.3)])
    worker = start_worker(config, unique)
    topics = {"inference-events": unique.topics["inference"],
              "inference-labels": unique.topics["labels"]}
    by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
    for r in raws:
        by_topic.setdefault(topics[r.position.topic], []).append((b"m", r.value))

    async def send() -> None:
        await asyncio.gather(*(produce(kafka_bootstrap, t, recs) for t, recs in by_topic.items()))

    asyncio.run(send())
    for t, recs in by_topic.items():
        wait_committed(kafka_bootstrap, unique.app_id, t, len(recs), worker)

    r = redis_sync.Redis.from_url(redis_url)
    old, new = (unit_key(unique.prefix, unit_id("m", v)) for v in ("1", "2"))
    assert {k.decode() for k in r.hkeys(f"{unique.prefix}:{{m}}:versions")} == {"1", "2"}
    assert r.get(f"{unique.prefix}:{{m}}:versions:latest") == b"2"
    assert r.pttl(new + ":model") == -1  # the newest version does not expire
    assert 0 < r.pttl(old + ":model") <= 10_000

    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["deployments"]], timeout=20,
                               until=lambda ms: len(ms) >= 1, idle=3))
    [msg] = msgs
    check = orjson.loads(msg.value)
    validate_record(check)
    headers = dict(msg.headers)
    assert msg.key == b"m" and headers["verdict"] == b"fail"
    assert headers["check-id"] == check["check_id"].encode()
    assert (check["model_version"], check["previous_version"]) == ("2", "1")
    assert {s["signal"] for s in check["signals"] if s["changed"]} == {"feature:amount"}
    assert check["performance"]["degraded"]

    meta = orjson.loads(r.get(new + ":model"))
    assert meta["model_version"] == "2" and meta["deploy"][4] is True  # watch done
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and r.keys(old + ":*"):
        time.sleep(0.5)
    assert r.keys(old + ":*") == []  # v1 is gone, signal windows included
    assert r.exists(new + ":model") and r.keys(new + ":sig:*")
