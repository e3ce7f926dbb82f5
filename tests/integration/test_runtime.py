"""The worker runtime on the real Kafka and Redis: nothing acked before it is applied, outputs
that always fit, a shutdown deadline that holds, and a bounded model cache.

Each test compares the worker with `replay` of the same records (the same core with in-memory
state): a hole in the worker loop shows up as missing or different outputs, or as a committed
offset past an event whose effects are not there.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import validate_record
from stream_monitor.synth import Drift, StreamSpec, generate

from ..helpers import replay_records
from .conftest import TEST_CONFIG, wait_committed

pytestmark = pytest.mark.integration

SPEC = StreamSpec(models=("credit-risk",), events_per_model=2400, seed=21,
                  drifts=(Drift(1200, "amount", 1.5), Drift(1200, "utilization", -1.5),
                          Drift(1200, "prediction", 1.0)))


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    asyncio.run(produce(bootstrap, topic, records))


def _read(bootstrap: str, u: Any, n_min: int, timeout: float = 60) -> list[Any]:
    topics = [u.topics["alerts"], u.topics["retrain"], u.topics["dead_letter"]]
    return asyncio.run(consume(bootstrap, topics, until=lambda ms: len(ms) >= n_min,
                               timeout=timeout))


def _ids(recs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    key = {"drift_alert": "alert_id", "retrain_request": "request_id",
           "dead_letter": "dead_letter_id"}
    return sorted((r["type"], r[key[r["type"]]]) for r in recs if r["type"] in key)


def _huge(values: list[bytes], every: int) -> list[bytes]:
    """Every `every`-th event gets a finite but huge feature value (1e308)."""
    out = []
    for i, v in enumerate(values):
        if i % every == every // 2:
            ev = orjson.loads(v)
            ev["features"]["age"] = 1e308
            v = orjson.dumps(ev)
        out.append(v)
    return out


def test_huge_values_and_an_exception_before_the_commit_lose_nothing(
        tmp_path: Path, config_path: Path, unique: Any, kafka_bootstrap: str,
        start_worker: Any) -> None:
    """1e308 values once made the metrics code raise after the acks, and Faust committed
    thousands of events it never applied. Here the same values go through, and an exception
    injected after the 2nd batch's publish (before its commit) makes the worker read that batch
    again: every output of replay arrives, and the committed offset covers every event."""
    values = _huge(list(generate(SPEC)), every=97)
    key = b"credit-risk"
    _produce(kafka_bootstrap, unique.topics["inference"], [(key, v) for v in values])
    expected = replay_records(config_path, values, tmp_path)
    assert any(r["type"] == "drift_alert" for r in expected)
    w = start_worker(config_path, unique, SM_BATCH_MAX="300",
                     SM_FAILPOINT="after_publish:2:raise")
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], len(values), w)
    got = [orjson.loads(m.value) for m in _read(kafka_bootstrap, unique, len(expected))]
    assert _ids(got) == _ids(expected)  # re-sent outputs of the retried batch: same ids
    log = w.log.read_text()
    assert "failpoint after_publish:2:raise" in log and "rewinding" in log
    assert w.stop() == 0


def test_oversized_bad_record_is_dead_lettered_bounded_and_the_partition_moves_on(
        tmp_path: Path, config_path: Path, unique: Any, kafka_bootstrap: str,
        start_worker: Any) -> None:
    """A 900,001-byte non-UTF-8 record (under max_message_bytes) once became a 1.2 MB dead
    letter that the producer refused forever, freezing its partition."""
    bad = b"\xff" * 900_001
    escaped = b"\x01" * 300_000  # valid UTF-8 that JSON escapes sixfold (\u0001)
    good = list(generate(StreamSpec(models=("credit-risk",), events_per_model=50, seed=3)))
    records = [(b"credit-risk", bad), (b"credit-risk", escaped)] + [
        (b"credit-risk", v) for v in good]
    _produce(kafka_bootstrap, unique.topics["inference"], records)
    w = start_worker(config_path, unique)
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], len(records), w)
    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["dead_letter"]],
                               until=lambda ms: len(ms) >= 2, timeout=30))
    assert len(msgs) == 2
    for m, original in zip(msgs, (bad, escaped), strict=True):
        assert len(m.value) < 100_000
        rec = orjson.loads(m.value)
        validate_record(rec)
        v = rec["original"]["value"]
        assert v["truncated"] is True and v["length"] == len(original)
        assert v["sha256"] == hashlib.sha256(original).hexdigest()
        head = (base64.b64decode(v["data"]) if v["encoding"] == "base64"
                else v["data"].encode())
        assert original.startswith(head) and len(head) == 65_536
    assert w.stop() == 0


async def _create_topic(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    """Set topic configs on a topic the `unique` fixture created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                  configs=configs)])
    finally:
        await admin.close()


def test_a_record_kafka_refuses_ends_in_a_clear_error_not_a_retry_loop(
        config_path: Path, unique: Any, kafka_bootstrap: str, start_worker: Any) -> None:
    """A dead-letter topic whose max.message.bytes is below the dead letter: bounded retries,
    one clear error naming the setting, exit 1, and nothing committed."""
    asyncio.run(_create_topic(kafka_bootstrap, unique.topics["dead_letter"],
                              {"max.message.bytes": "2000"}))
    _produce(kafka_bootstrap, unique.topics["inference"], [(b"credit-risk", b"x" * 5000)])
    w = start_worker(config_path, unique)
    try:
        rc = w.proc.wait(90)
    except Exception:
        pytest.fail(f"the worker kept retrying a refused record:\n{w.tail()}")
    assert rc == 1
    log = w.log.read_text()
    assert "SM_MAX_OUTPUT_BYTES" in log and "max.message.bytes" in log
    from .conftest import committed
    assert asyncio.run(committed(kafka_bootstrap, unique.app_id, unique.topics["inference"])) < 1


def test_sigterm_while_a_publish_is_stuck_exits_within_the_deadline(
        config_path: Path, unique: Any, kafka_bootstrap: str, start_worker: Any) -> None:
    """The worker talks to Kafka through a proxy that, once armed, holds every Produce request
    for ever: a broker that takes the dead letter and never answers. SIGTERM must still end
    the worker within SM_SHUTDOWN_TIMEOUT_SECONDS, without committing the batch."""
    from .conftest import committed
    from .kafka_proxy import HoldingProxy

    with HoldingProxy() as proxy:
        w = start_worker(config_path, unique, KAFKA_BOOTSTRAP_SERVERS=proxy.bootstrap,
                         SM_SHUTDOWN_TIMEOUT_SECONDS="6")
        deadline = time.monotonic() + 60
        while "assigned 1 partitions" not in w.log.read_text():
            if time.monotonic() > deadline or w.proc.poll() is not None:
                pytest.fail(f"the worker never got its partition:\n{w.tail()}")
            time.sleep(0.2)
        proxy.hold_produce = True
        _produce(kafka_bootstrap, unique.topics["inference"], [(b"credit-risk", b"{not json")])
        while proxy.held < 1:
            if time.monotonic() > deadline or w.proc.poll() is not None:
                pytest.fail(f"the dead letter was never published:\n{w.tail()}")
            time.sleep(0.1)
        time.sleep(1.0)
        assert w.proc.poll() is None  # stuck in the publish, not gone
        t0 = time.monotonic()
        w.proc.terminate()
        try:
            w.proc.wait(30)
        except Exception:
            pytest.fail(f"SIGTERM did not stop the worker within 30 s:\n{w.tail()}")
        took = time.monotonic() - t0
    assert took < 6 + 3, f"exit took {took:.1f}s with a 6 s deadline:\n{w.tail()}"
    assert asyncio.run(committed(kafka_bootstrap, unique.app_id, unique.topics["inference"])) < 1


def test_model_cache_eviction_under_many_models_matches_replay(
        tmp_path: Path, unique: Any, kafka_bootstrap: str, start_worker: Any) -> None:
    """60 models through a cache of 7: models are evicted and reloaded from Redis all the time,
    and the outputs are exactly replay's (which holds every model in memory)."""
    cfg = dict(TEST_CONFIG, windows={"reference_size": 100, "recent_size": 60,
                                     "evidence_size": 20})
    config = tmp_path / "many.yaml"
    config.write_text(yaml.safe_dump(cfg))
    models = tuple(f"credit-{i:03d}" for i in range(60))
    spec = StreamSpec(models=models, events_per_model=300, seed=5, n_features=3,
                      drifts=(Drift(150, "amount", 2.0), Drift(150, "prediction", 1.5)))
    values = list(generate(spec))
    keys = [orjson.loads(v)["model_id"].encode() for v in values]
    _produce(kafka_bootstrap, unique.topics["inference"], list(zip(keys, values, strict=True)))
    expected = replay_records(config, values, tmp_path)
    assert sum(r["type"] == "drift_alert" for r in expected) >= 30
    w = start_worker(config, unique, SM_MODEL_CACHE_SIZE="7", SM_BATCH_MAX="500")
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"], len(values), w,
                   timeout=240)
    got = [orjson.loads(m.value) for m in _read(kafka_bootstrap, unique, len(expected))]
    assert _ids(got) == _ids(expected)
    assert w.stop() == 0
