"""Fixtures for tests against the real Kafka broker and Redis server started by scripts/test.sh.

Each test gets its own topics, consumer group and Redis key prefix, so tests never see each
other's data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_monitor.adapters.kafka_clients import KafkaTarget
from stream_monitor.adapters.kafka_tools import create_topics

from ..helpers import stop_process, worker_command

pytestmark = pytest.mark.integration


def _need(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set: run the integration tests through scripts/test.sh, which "
                    "starts a real Kafka and Redis and exports their addresses")
    return value


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _need("KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _need("REDIS_URL")


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """The local Redis Cluster (tests marked `cluster`; scripts/services-cluster.sh)."""
    return _need("REDIS_CLUSTER_URL")


class Unique:
    """Names for one test: topics, consumer group (Faust app id) and Redis key prefix."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:10]
        kinds = ("inference", "alerts", "retrain", "dead_letter", "labels", "deployments",
                 "incidents")
        self.topics = {k: f"t-{self.id}-{k}" for k in kinds}
        self.app_id = f"sm-test-{self.id}"
        self.prefix = f"smt-{self.id}"

    def env(self, kafka: str, redis: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka, REDIS_URL=redis,
                   SM_APP_ID=self.app_id, SM_KEY_PREFIX=self.prefix, SM_LOG_LEVEL="INFO",
                   SM_BATCH_WITHIN_SECONDS="0.1", SM_METRICS_PORT="0",
                   **{f"SM_TOPIC_{k.upper()}": v for k, v in self.topics.items()})
        env.update(extra)
        return env


@pytest.fixture
def unique(kafka_bootstrap: str) -> Unique:
    u = Unique()
    asyncio.run(create_topics(kafka_bootstrap, u.topics.values()))
    return u


TEST_CONFIG = {
    "windows": {"reference_size": 300, "recent_size": 200, "evidence_size": 30},
    "models": [{
        "match": "credit-*",
        "signals": [{"match": "*", "detectors": ["adwin", "page_hinkley"]}],
        "retrain": {"min_drifted_signals": 2, "within_seconds": 600, "cooldown_seconds": 3600},
    }],
}


def write_test_config(directory: Path) -> Path:
    """TEST_CONFIG as ``directory/monitor.yaml``."""
    p = directory / "monitor.yaml"
    p.write_text(yaml.safe_dump(TEST_CONFIG))
    return p


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_test_config(tmp_path)


class WorkerProcess:
    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_f = log.open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log_f, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        code = stop_process(self.proc, sig, timeout)
        self._log_f.close()
        return code

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def start_worker(tmp_path: Path, kafka_bootstrap: str, redis_url: str) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(config: Path, unique: Unique, **env: str) -> WorkerProcess:
        w = WorkerProcess(worker_command(config, env),
                          unique.env(kafka_bootstrap, redis_url, **env),
                          tmp_path / f"worker-{len(started)}.log")
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


async def committed(bootstrap: KafkaTarget, group: str, topic: str) -> int:
    """The consumer group's committed offset on partition 0 of a topic (-1 when none)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    from stream_monitor.adapters.kafka_clients import kafka_kwargs

    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError:  # e.g. the coordinator is not ready yet on a fresh broker: ask again
        return -1
    finally:
        await admin.close()
    meta = offsets.get(TopicPartition(topic, 0))
    return meta.offset if meta is not None else -1


def wait_committed(bootstrap: KafkaTarget, group: str, topic: str, target: int,
                   worker: WorkerProcess,
                   timeout: float = 120) -> None:
    """Wait until the group has committed ``target`` (asks Kafka; fails with the worker log)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            pytest.fail(f"worker exited with {worker.proc.returncode}:\n{worker.tail()}")
        last = asyncio.run(committed(bootstrap, group, topic))
        if last >= target:
            return
        time.sleep(0.5)
    pytest.fail(f"committed offset {last} never reached {target} in {timeout}s:\n{worker.tail()}")
