"""Chaos tests with real processes on the real Kafka and Redis.

A long seeded stream with several known drifts per model, on a two-partition topic. Workers are
killed with SIGKILL at a dozen points (mid-batch, between the state save and the publish, after
the publish but before the offset commit, at random moments, and during a rebalance between two
workers), each followed by a restart. The alerts and retrain requests read back from Kafka must
be exactly those of an uninterrupted run, ids and detection offsets included; a duplicate is
allowed only as a byte-identical repeat, and is counted.

The broker-restart and Redis-restart cases restart the services that scripts/test.sh started.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_monitor.adapters.kafka_tools import consume, create_topics, produce
from stream_monitor.contracts import validate_record
from stream_monitor.synth import Drift, StreamSpec, generate

from ..helpers import worker_command
from .conftest import Unique, WorkerProcess, write_test_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Two models per partition (murmur2 of the key, as the Java and aiokafka clients partition).
MODELS = ("credit-a", "credit-b", "credit-g", "credit-h")
SPEC = StreamSpec(models=MODELS, events_per_model=8000, seed=23, drifts=(
    Drift(900, "amount", 2.0), Drift(1500, "utilization", -2.0), Drift(1500, "prediction", 1.5),
    Drift(2200, "age", 2.0), Drift(2200, "amount", -2.0), Drift(3300, "income_k", 2.0),
    Drift(4200, "utilization", 2.0), Drift(4200, "prediction", -1.5), Drift(5500, "age", -2.0),
    Drift(6800, "amount", 2.0), Drift(7400, "tenure_months", 2.0)))
PARTITIONS = 2
ENV = {"SM_BATCH_MAX": "200", "SM_BATCH_WITHIN_SECONDS": "0.05", "SM_LOG_LEVEL": "INFO",
       # A SIGKILLed member holds its partitions until its session times out: keep that short.
       "SM_SESSION_TIMEOUT_SECONDS": "6",
       # Faust's own setting (read from the environment): commit every 0.2 s instead of 2.8 s,
       # so that kills land between commits, not only before the first one.
       "BROKER_COMMIT_INTERVAL": "0.2"}


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    async def ask() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            offsets = await admin.list_consumer_group_offsets(group)
        except KafkaError:
            return {}
        finally:
            await admin.close()
        return {p: offsets[TopicPartition(topic, p)].offset for p in range(PARTITIONS)
                if TopicPartition(topic, p) in offsets}

    try:
        return asyncio.run(ask())
    except Exception:  # broker down or restarting: no answer yet
        return {}


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def ask() -> dict[int, int]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            ends = await c.end_offsets(tps)
        finally:
            await c.stop()
        return {tp.partition: o for tp, o in ends.items()}

    return asyncio.run(ask())


class Run:
    """One chaos scenario: its own topics, group and Redis prefix; starts worker processes."""

    def __init__(self, bootstrap: str, redis_url: str, tmp: Path, config: Path) -> None:
        self.u = Unique()
        self.bootstrap, self.redis_url, self.tmp, self.config = bootstrap, redis_url, tmp, config
        self.workers: list[WorkerProcess] = []
        asyncio.run(create_topics(bootstrap, [self.u.topics["inference"]], partitions=PARTITIONS))
        others = [v for k, v in self.u.topics.items() if k != "inference"]
        asyncio.run(create_topics(bootstrap, [*others, f"t-{self.u.id}-ops"]))

    def start(self, **env: str) -> WorkerProcess:
        w = WorkerProcess(worker_command(self.config, env),
                          self.u.env(self.bootstrap, self.redis_url, **ENV,
                                     SM_TOPIC_OPERATIONS=f"t-{self.u.id}-ops", **env),
                          self.tmp / f"{self.u.id}-worker-{len(self.workers)}.log")
        self.workers.append(w)
        return w

    def produce(self, lines: list[bytes]) -> None:
        asyncio.run(produce(self.bootstrap, self.u.topics["inference"], _keyed(lines)))

    def committed(self) -> dict[int, int]:
        return _committed(self.bootstrap, self.u.app_id, self.u.topics["inference"])

    def progress(self) -> int:
        return sum(self.committed().values())

    def wait_done(self, ends: dict[int, int], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.committed() == ends:
                return
            alive = [w for w in self.workers if w.proc.poll() is None]
            if not alive:
                tails = "\n---\n".join(w.tail() for w in self.workers[-2:])
                pytest.fail("no worker alive:\n" + tails)
            time.sleep(0.5)
        tail = self.workers[-1].tail()
        pytest.fail(f"committed {self.committed()} never reached {ends}:\n{tail}")

    def outputs(self, want_alerts: int, timeout: float = 60) -> list[Any]:
        topics = [self.u.topics["alerts"], self.u.topics["retrain"]]
        # `until` never stops the read early: it reads until 5 s pass with nothing new, so
        # duplicates written after the wanted count are seen too.
        return asyncio.run(consume(self.bootstrap, topics, timeout=timeout, idle=5.0,
                                   until=lambda m: False))

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


def _keyed(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(key, value): the model id; an undecodable record gets the key of the event before it
    (the same partition)."""
    out, key = [], b""
    for v in lines:
        try:
            key = orjson.loads(v)["model_id"].encode()
        except orjson.JSONDecodeError:
            pass
        out.append((key, v))
    return out


def _noisy(lines: list[bytes], every: int = 20) -> list[bytes]:
    """The stream with an undecodable record after every ``every`` events: each batch then
    publishes dead letters, so the worker always has sends in flight."""
    out = []
    for i, v in enumerate(lines):
        out.append(v)
        if i % every == every - 1:
            out.append(b"{undecodable " + str(i).encode())
    return out


def _dead_letters(bootstrap: str, topic: str) -> tuple[set[tuple[int, int]], int]:
    """The (partition, offset) of the records a topic's dead letters are about (their ids name
    the run's own topic), and how many repeats (a dead letter made again after a redelivery
    carries a new timestamp, so repeats are counted by id only)."""
    msgs = asyncio.run(consume(bootstrap, [topic], timeout=60, idle=5.0,
                               until=lambda m: False))
    recs = [orjson.loads(m.value) for m in msgs]
    ids = {r["dead_letter_id"] for r in recs}
    return {(r["source"]["partition"], r["source"]["offset"]) for r in recs}, len(recs) - len(ids)


def _summary(msgs: list[Any]) -> tuple[dict[str, tuple], Counter, list[str]]:
    """Unique outputs by id -> (type, partition, offset); duplicate counts; non-identical
    repeats."""
    seen: dict[str, bytes] = {}
    out: dict[str, tuple] = {}
    dups: Counter = Counter()
    mismatched = []
    for m in msgs:
        rec = orjson.loads(m.value)
        validate_record(rec)
        rid = rec.get("alert_id") or rec["request_id"]
        if rid in seen:
            dups[rec["type"]] += 1
            if seen[rid] != m.value:
                mismatched.append(rid)
            continue
        seen[rid] = m.value
        where = rec.get("detected_at") or rec["triggered_by"]
        out[rid] = (rec["type"], rec["model_id"], where["partition"], where["offset"])
    return out, dups, mismatched


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    return list(generate(SPEC))


@pytest.fixture(scope="module")
def chaos_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_config(tmp_path_factory.mktemp("chaos"))


@pytest.fixture(scope="module")
def baseline(kafka_bootstrap: str, redis_url: str, stream: list[bytes], chaos_config: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run: one worker, start to end."""
    run = Run(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("baseline"), chaos_config)
    run.produce(stream)
    ends = _ends(kafka_bootstrap, run.u.topics["inference"])
    assert sum(ends.values()) == len(stream) and all(ends.values()), ends
    run.start()
    try:
        run.wait_done(ends)
        msgs = run.outputs(0)
    finally:
        run.stop_all()
    outputs, dups, _ = _summary(msgs)
    kinds = Counter(t for t, *_ in outputs.values())
    assert kinds["drift_alert"] >= 30 and kinds["retrain_request"] >= 4, kinds
    assert not dups
    return {"outputs": outputs, "ends": ends}


@pytest.fixture(scope="module")
def noisy_baseline(kafka_bootstrap: str, redis_url: str, stream: list[bytes],
                   chaos_config: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, Any]:
    """The uninterrupted run of the stream with an undecodable record every 20 events."""
    run = Run(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("noisy"), chaos_config)
    noisy = _noisy(stream)
    run.produce(noisy)
    ends = _ends(kafka_bootstrap, run.u.topics["inference"])
    run.start()
    try:
        run.wait_done(ends)
        msgs = run.outputs(0)
    finally:
        run.stop_all()
    outputs, dups, _ = _summary(msgs)
    dead, repeats = _dead_letters(kafka_bootstrap, run.u.topics["dead_letter"])
    assert not dups and not repeats and len(dead) == len(noisy) - len(stream)
    return {"outputs": outputs, "ends": ends, "dead": dead, "stream": noisy}


def test_kill_9_at_many_points_changes_no_alert(kafka_bootstrap, redis_url, stream, chaos_config,
                                                baseline, tmp_path):
    run = Run(kafka_bootstrap, redis_url, tmp_path, chaos_config)
    run.produce(stream)
    ends = baseline["ends"]
    rng = random.Random(5)
    # (how, detail): failpoints kill at an exact step of the N-th batch of a process;
    # "random" kills after a seeded delay; "rebalance" kills one of two workers mid-rebalance.
    # Batch numbers count from each process's start; Faust commits every ~2.8 s, so the later
    # points land after commits, the early ones before any (state ahead of the offsets).
    kill_points = [
        ("failpoint", "after_save:2"), ("failpoint", "after_save:9"),
        ("failpoint", "after_publish:7"), ("failpoint", "mid_batch:6"), ("random", None),
        ("failpoint", "after_save:1"), ("failpoint", "after_save:10"), ("random", None),
        ("failpoint", "after_publish:3"), ("failpoint", "mid_batch:8"),
        ("failpoint", "after_save:5"), ("rebalance", None), ("random", None),
    ]
    killed = []
    for how, detail in kill_points:
        before = run.progress()
        if how == "failpoint":
            w = run.start(SM_FAILPOINT=detail)
            deadline = time.monotonic() + 90
            while w.proc.poll() is None and time.monotonic() < deadline:
                if run.committed() == ends:  # the stream ended before this point was reached
                    break
                time.sleep(0.2)
            if w.proc.poll() is None:
                w.stop(signal.SIGKILL)
                if run.committed() != ends:
                    pytest.fail(f"failpoint {detail} was never reached:\n{w.tail()}")
                break
            assert w.proc.returncode == -signal.SIGKILL, w.tail()
        elif how == "random":
            w = run.start()
            _wait_log(w, ASSIGNED, 1)
            delay = rng.uniform(0.05, 0.6)  # a seeded moment while it is consuming
            time.sleep(delay)
            w.proc.send_signal(signal.SIGKILL)
            w.proc.wait(30)
            detail = f"{delay:.2f}s after assignment"
        else:  # two workers; kill the first while the group rebalances for the second
            a = run.start()
            _wait_log(a, ASSIGNED, 1)
            b = run.start()
            _wait_log(a, "rebalancing", 1)
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait(30)
            _wait_log(b, ASSIGNED, 2 if _count(b, ASSIGNED) else 1)  # b takes over a's share
            time.sleep(0.3)
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(30)
            detail = "first worker killed mid-rebalance, then the second after its takeover"
        killed.append((how, detail, before, run.progress()))
        if run.committed() == ends:
            break
    assert len(killed) >= 10, f"the stream ended before enough kills: {killed}"
    # The kills landed all along the stream, not only before the first commit.
    assert sum(after > before for _, _, before, after in killed) >= 4, killed
    run.start()
    try:
        run.wait_done(ends)
        msgs = run.outputs(0)
    finally:
        run.stop_all()
    outputs, dups, mismatched = _summary(msgs)
    print(f"kill points (how, detail, committed before, after): {killed}")
    print(f"outputs: {Counter(t for t, *_ in outputs.values())}; duplicates: {dict(dups)}")
    assert not mismatched, f"same id, different record: {mismatched}"
    assert outputs == baseline["outputs"]


ASSIGNED = "INFO stream_monitor.worker assigned "


def _count(w: WorkerProcess, text: str) -> int:
    return w.log.read_text(errors="replace").count(text)


def _wait_log(w: WorkerProcess, text: str, times: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _count(w, text) < times:
        if w.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker never logged {text!r} x{times}:\n{w.tail()}")
        time.sleep(0.05)


def _managed(var: str, default_port: str, port_var: str) -> bool:
    return os.environ.get(var, "").endswith(f":{os.environ.get(port_var, default_port)}") or \
        os.environ.get(var, "").endswith(f":{os.environ.get(port_var, default_port)}/0")


def _services(*args: str) -> None:
    for attempt in range(3):  # a just-stopped server's port can take a moment to free up
        done = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), *args], timeout=180)
        if done.returncode == 0:
            return
        time.sleep(2.0 * (attempt + 1))
    pytest.fail(f"scripts/services.sh {' '.join(args)} failed 3 times")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Outage:
    """What a worker does while a dependency is down: its CPU share over the outage, the log
    it writes from the stop until its first commit after the return, and how long after the
    return that commit came (the committed offsets, read from Kafka)."""

    def __init__(self, run: Run, w: WorkerProcess) -> None:
        self.run, self.w = run, w
        self.log_at_stop = w.log.stat().st_size

    def down(self) -> None:
        """The dependency is down from now."""
        self.t_down, self.cpu_down = time.monotonic(), _cpu_seconds(self.w.proc.pid)

    def back(self) -> None:
        """The dependency answers again from now (it is restarted)."""
        self.t_back = time.monotonic()
        self.log_at_back = self.w.log.stat().st_size
        self.cpu_share = ((_cpu_seconds(self.w.proc.pid) - self.cpu_down)
                          / (self.t_back - self.t_down))

    def first_commit(self, before: int | None = None, timeout: float = 60) -> float:
        """Seconds from the return to the first commit past ``before`` (by default: past
        what the first answer after the return shows; a commit before that answer is then
        missed, which can only make the figure larger)."""
        deadline = self.t_back + timeout
        while time.monotonic() < deadline:
            assert self.w.proc.poll() is None, "the worker exited:\n" + self.w.tail()
            c = self.run.committed()
            if c:
                if before is None:
                    before = sum(c.values())
                elif sum(c.values()) > before:
                    self.seconds = time.monotonic() - self.t_back
                    self.log_bytes = self.w.log.stat().st_size - self.log_at_stop
                    return self.seconds
            time.sleep(0.1)
        pytest.fail(f"no commit within {timeout}s of the return:\n{self.w.tail()}")

    def check(self, what: str) -> None:
        print(f"{what}: down {self.t_back - self.t_down:.1f}s, worker CPU "
              f"{100 * self.cpu_share:.1f}% of a core, first commit {self.seconds:.2f}s after "
              f"the return, log of the outage {self.log_bytes} bytes")
        assert self.seconds < 5.0, f"first commit {self.seconds:.1f}s after the return"
        assert self.log_bytes < 2**20, f"{self.log_bytes} bytes of log for the outage"
        # Generous: idle waiting costs ~1%; the metadata spin cost 82-96% of a core.
        assert self.cpu_share < 0.30, f"worker used {100 * self.cpu_share:.0f}% of a core"


# The worker's publish loop (MonitorWorker.publish with KafkaWorker's producer, its metadata
# brake, its renewal, the rate-limited log) publishing batch after batch, so that sends are
# always in flight when the broker goes: that is where aiokafka spun (a send refused with
# NotLeaderForPartition during the broker's shutdown leaves a partition without a known
# leader), 26-32% of a core and ~2,000 log lines a second here without the brake; and after
# the restart the broker refused the old producer with OutOfOrderSequenceNumber (2 runs of 2).
# The worker itself meets that state only when the stop catches it mid-publish.
_PUMP = """
import asyncio, sys
from pathlib import Path
from stream_monitor.adapters.worker import KafkaWorker
from stream_monitor.config import load_config
from stream_monitor.settings import Settings
from stream_monitor.contracts.output_records import StateReset, WorkerRef
from stream_monitor.contracts.outputs import output_record
from stream_monitor.observability.logging import configure_logging
from stream_monitor.state import MemoryStore

async def main(bootstrap, topic, config, count):
    settings = Settings(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    runtime = KafkaWorker(load_config(Path(config)), settings, MemoryStore())
    await runtime.producer.start()
    print("pumping", flush=True)
    n = 0
    while True:
        await runtime.worker.publish([
            output_record(topic, b"k%d" % (i % 5), StateReset(
                reset_id=f"{n}.{i}", detected_at="", reason="", models=[],
                worker=WorkerRef("pump", "", 0), action=""), ())
            for i in range(20)])
        n += 1
        Path(count + ".tmp").write_text(str(n))
        Path(count + ".tmp").replace(count)  # whole, never half-written

configure_logging("INFO")
asyncio.run(main(*sys.argv[1:]))
"""


def test_broker_restart_mid_stream(kafka_bootstrap, redis_url, chaos_config, noisy_baseline,
                                   tmp_path):
    """The broker stopped while the worker publishes (every batch has dead letters to send)
    and commits, down for 20 s, restarted: the worker stays up, quiet and idle while it waits,
    commits again within 5 s of the broker's return, and the outputs are exactly those of the
    uninterrupted run (alerts and retrain requests byte for byte, dead letters by id)."""
    if not _managed("KAFKA_BOOTSTRAP_SERVERS", "29092", "SM_KAFKA_PORT"):
        pytest.skip("Kafka is external here; scripts/test.sh's own broker is needed to restart it")
    baseline = noisy_baseline
    stream = baseline["stream"]
    run = Run(kafka_bootstrap, redis_url, tmp_path, chaos_config)
    run.produce(stream)
    ends = baseline["ends"]
    import sys

    count = tmp_path / "pumped"
    pump = WorkerProcess([sys.executable, "-c", _PUMP, kafka_bootstrap,
                          run.u.topics["deployments"], str(chaos_config), str(count)],
                         dict(os.environ), tmp_path / "pump.log")
    w = run.start()
    try:
        _wait_log(pump, "pumping", 1)
        deadline = time.monotonic() + 120
        while run.progress() < len(stream) // 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        outage = Outage(run, w)
        pumped = Outage(run, pump)
        _services("stop", "kafka")
        outage.down()
        pumped.down()
        time.sleep(20.0)
        assert w.proc.poll() is None, "the worker died with the broker:\n" + w.tail()
        outage.back()  # counted from here: the restart itself takes a while
        pumped.back()
        _services("start", "kafka")
        outage.t_back = time.monotonic()  # the broker answers (services.sh waits for it)
        pumped_before = int(count.read_text())
        outage.first_commit()
        while int(count.read_text()) == pumped_before and pump.proc.poll() is None \
                and time.monotonic() - outage.t_back < 30:
            time.sleep(0.05)
        pump_resumed = time.monotonic() - outage.t_back  # at most: checked after the commit
        assert pump.proc.poll() is None, "the publish loop ended:\n" + pump.tail()
        run.wait_done(ends, timeout=300)
        assert w.proc.poll() is None, w.tail()
        msgs = run.outputs(0)
    finally:
        run.stop_all()
        pump.stop(signal.SIGKILL)
    outage.check("broker restart")
    # While the broker was down (afterwards it logs every refused send it never awaited).
    pump_log = pumped.log_at_back - pumped.log_at_stop
    renewals = pump.log.read_text(errors="replace").count("started a new Kafka producer")
    print(f"a publish loop with sends in flight: CPU {100 * pumped.cpu_share:.1f}% of a core, "
          f"{pump_log} bytes of log while the broker was down; publishing again "
          f"{pump_resumed:.2f}s after the return; {renewals} new producers")
    assert pumped.cpu_share < 0.10, "the producer's metadata refresh spins"
    assert pump_log < 2**20
    assert pump_resumed < 5.0
    outputs, dups, mismatched = _summary(msgs)
    dead, repeats = _dead_letters(kafka_bootstrap, run.u.topics["dead_letter"])
    print(f"broker restart: duplicates {dict(dups)} (byte-identical repeats), dead letters "
          f"{len(dead)} ({repeats} repeats)")
    assert not mismatched
    assert outputs == baseline["outputs"]
    assert dead == baseline["dead"]


class AofRedis:
    """A Redis of this test's own, with an append-only file (fsync on every write), that the
    test stops and restarts from that file. Its port: SM_AOF_REDIS_PORT, else SM_REDIS_PORT + 10
    (below the ephemeral range, like the others of scripts/services.sh)."""

    def __init__(self, directory: Path) -> None:
        base = int(os.environ.get("SM_REDIS_PORT", "26379"))
        self.port = int(os.environ.get("SM_AOF_REDIS_PORT", str(base + 10)))
        self.dir = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import shutil
        import socket

        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (scripts/services.sh installs it)")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", self.port)) == 0 and self.proc is None:
                pytest.fail(f"port {self.port} is taken; set SM_AOF_REDIS_PORT")
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("redis-server did not start: "
                            + (self.dir / "redis.log").read_text()[-2000:])
            time.sleep(0.05)

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:  # refused, or LOADING the append-only file
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # a clean shutdown: the append-only file is complete
            self.proc.wait(30)
        self.proc = None


@pytest.fixture
def aof_redis(tmp_path: Path) -> Any:
    r = AofRedis(tmp_path)
    r.start()
    yield r
    r.stop()


def test_redis_restart_from_aof_after_30s(kafka_bootstrap, stream, chaos_config, baseline,
                                          aof_redis, tmp_path):
    """Redis down for 30 s, then back with its data (append-only file): the worker waits
    quietly, reloads its scripts at once (a restarted Redis forgets them: NOSCRIPT), commits
    within 5 s of the return, with no state reset and outputs equal to the uninterrupted run."""
    run = Run(kafka_bootstrap, aof_redis.url, tmp_path, chaos_config)
    run.produce(stream)
    ends = baseline["ends"]
    w = run.start()
    try:
        deadline = time.monotonic() + 120
        while run.progress() < len(stream) // 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        outage = Outage(run, w)
        aof_redis.stop()
        outage.down()
        time.sleep(30.0)
        assert w.proc.poll() is None, "the worker died while Redis was down:\n" + w.tail()
        stalled = run.progress()
        outage.back()
        aof_redis.start()  # returns once Redis answers PING (the file loaded)
        outage.t_back = time.monotonic()
        outage.first_commit(before=stalled)
        run.wait_done(ends, timeout=300)
        assert w.proc.poll() is None, w.tail()
        msgs = run.outputs(0)
    finally:
        run.stop_all()
    outage.check("redis restart (AOF)")
    log = w.log.read_text(errors="replace")
    assert "STATE RESET" not in log, "the state survived in the append-only file"
    assert "lost its scripts" in log  # NOSCRIPT met and answered by a reload
    outputs, dups, mismatched = _summary(msgs)
    print(f"redis restart: duplicates {dict(dups)} (byte-identical repeats)")
    assert not mismatched
    assert outputs == baseline["outputs"]


def test_redis_restart_loses_state_and_says_so(kafka_bootstrap, redis_url, stream, chaos_config,
                                               tmp_path):
    if not _managed("REDIS_URL", "26379", "SM_REDIS_PORT"):
        pytest.skip("Redis is external here; scripts/test.sh's own Redis is needed to restart it")
    run = Run(kafka_bootstrap, redis_url, tmp_path, chaos_config)
    run.produce(stream)
    ends = _ends(kafka_bootstrap, run.u.topics["inference"])
    w = run.start()
    try:
        deadline = time.monotonic() + 120
        while run.progress() < len(stream) // 5 and time.monotonic() < deadline:
            time.sleep(0.3)
        _services("stop", "redis")
        stalled_at = run.progress()
        rss = []
        for _ in range(8):  # Redis down for ~8 s: the worker waits, bounded, and stays up
            time.sleep(1.0)
            assert w.proc.poll() is None, "the worker died while Redis was down:\n" + w.tail()
            rss.append(int(Path(f"/proc/{w.proc.pid}/statm").read_text().split()[1]) * 4096)
        paused = run.progress() - stalled_at
        _services("start", "redis")
        run.wait_done(ends, timeout=300)
        assert w.proc.poll() is None, w.tail()
        ops = asyncio.run(consume(kafka_bootstrap, [f"t-{run.u.id}-ops"], timeout=20,
                                  until=lambda m: len(m) >= 1))
        msgs = run.outputs(0)
    finally:
        run.stop_all()
    # Consumption paused: at most the batches already taken in flight were committed.
    assert paused <= 4 * int(ENV["SM_BATCH_MAX"]), paused
    assert max(rss) - min(rss) < 64 * 2**20, f"worker memory grew while Redis was down: {rss}"
    assert ops, "no state-reset record on the operations topic:\n" + w.tail()
    reset = orjson.loads(ops[0].value)
    validate_record(reset)
    assert reset["type"] == "state_reset" and "epoch" in reset["reason"]
    assert "STATE RESET" in w.log.read_text()
    # It went on from fresh detectors: the drifts after the restart are still found.
    outputs, _, _ = _summary(msgs)
    late = [o for o in outputs.values() if o[0] == "drift_alert" and o[3] > ends[o[2]] * 0.8]
    assert late, "no alert after the state reset: the worker did not continue"
