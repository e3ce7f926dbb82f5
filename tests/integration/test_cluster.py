"""The stores and the worker on a real Redis Cluster (3 masters + 3 replicas, started by
scripts/test.sh through scripts/services-cluster.sh for a full run or ``-m cluster``).

- the stores on the cluster: the label join still equals the pure book, duplicate claims work,
  a batch save and load span every master in one pipelined round each, a lost or rolled-back
  model is reported as lost, and a master that lost its data is noticed by its epoch marker;
- the worker's outputs on the cluster equal replay's;
- a master is SIGKILLed mid-stream and its replica takes over: the alerts are replay's, or a
  ``state_reset`` record says acknowledged writes were lost. The killed node is restarted (it
  rejoins as a replica) and the cluster is healthy again before the test ends;
- a rebalance between two workers on the cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from redis.cluster import RedisCluster

from stream_monitor.adapters.kafka_tools import consume, create_topics, produce
from stream_monitor.contracts import validate_record
from stream_monitor.core.gate import Claim
from stream_monitor.state.base import ModelDelta, SignalDelta, StateFencedError
from stream_monitor.state.client import redis_client, slot_of, split_cluster_url
from stream_monitor.state.dedupe import RedisDedupe
from stream_monitor.state.label_store import RedisLabelStore
from stream_monitor.state.redis import RedisStore
from stream_monitor.synth import Drift, StreamSpec, generate
from tests.helpers import apply_label_scenarios, label_scenarios_in_book, replay_records

from .conftest import Unique, WorkerProcess, write_test_config

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
# Six models: their slots fall on all three masters (checked in the tests that need it).
MODELS = ("credit-a", "credit-b", "credit-c", "credit-d", "credit-e", "credit-f")
SPEC = StreamSpec(models=MODELS, events_per_model=2500, seed=31, drifts=(
    Drift(700, "amount", 2.0), Drift(1100, "utilization", -2.0), Drift(1100, "prediction", 1.5),
    Drift(1600, "age", 2.0), Drift(2100, "income_k", 2.0)))
ENV = {"SM_BATCH_MAX": "200", "SM_BATCH_WITHIN_SECONDS": "0.05", "SM_SESSION_TIMEOUT_SECONDS": "6"}


# ------------------------------------------------------------------ cluster helpers


def _admin(url: str) -> RedisCluster:
    return RedisCluster.from_url(split_cluster_url(url)[0])


def _nodes(url: str) -> list[dict[str, Any]]:
    """CLUSTER NODES of the node the URL names: port, role, flags, slot ranges."""
    host_port = split_cluster_url(url)[0].split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, port = host_port.rsplit(":", 1)
    parsed = redis.Redis(host=host, port=int(port)).execute_command("CLUSTER NODES")
    return [{"id": n["node_id"], "port": int(addr.rsplit(":", 1)[1]), "flags": n["flags"],
             "ranges": [(int(r[0]), int(r[-1])) for r in n["slots"]]}
            for addr, n in parsed.items()]


def _master_port_of(url: str, slot: int) -> int:
    for n in _nodes(url):
        if "master" in n["flags"] and "fail" not in n["flags"] and \
                any(lo <= slot <= hi for lo, hi in n["ranges"]):
            return int(n["port"])
    raise AssertionError(f"no live master serves slot {slot}: {_nodes(url)}")


def _run_dir() -> Path:
    return Path(os.environ.get("SM_REDIS_CLUSTER_RUN_DIR", ROOT / ".local/run/redis-cluster"))


def _own_node_pid(port: int) -> int | None:
    """The pid of our redis-server on ``port`` (pid file + /proc cmdline), None if not ours."""
    f = _run_dir() / str(port) / "redis.pid"
    if not f.exists():
        return None
    pid = int(f.read_text().strip())
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return pid if "redis-server" in cmdline and f":{port}" in cmdline else None


def _cluster_script(*args: str) -> None:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "services-cluster.sh"), *args],
                          timeout=180, capture_output=True, text=True)
    assert done.returncode == 0, f"services-cluster.sh {args}: {done.stderr[-2000:]}"


def _own_master_of_first_model(run: Any, url: str) -> int:
    """The port of the master serving MODELS[0]'s keys; skips the test when that node is not
    one scripts/services-cluster.sh started here (an external cluster is not ours to kill)."""
    port = _master_port_of(url, slot_of(f"{run.u.prefix}:{{{MODELS[0]}}}:model"))
    if _own_node_pid(port) is None:
        pytest.skip("the cluster is external here; scripts/services-cluster.sh's own is needed")
    return port


def _kill_master(url: str, port: int) -> None:
    pid = _own_node_pid(port)
    if pid is None:
        pytest.skip(f"node {port} is not one scripts/services-cluster.sh started here")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


# ------------------------------------------------------------------ stream helpers


def _key(rec: dict[str, Any]) -> tuple[Any, ...]:
    """What must match between runs, whatever the partitions: ids and where they fired."""
    if rec["type"] == "drift_alert":
        return ("alert", rec["alert_id"], rec["model_id"], rec["signal"],
                rec["detected_at"]["event_id"])
    return ("retrain", rec["request_id"], rec["model_id"])


def _expected(config: Path, lines: list[bytes], tmp: Path) -> set[tuple[Any, ...]]:
    recs = [r for r in replay_records(config, lines, tmp)
            if r["type"] in ("drift_alert", "retrain_request")]
    keys = [_key(r) for r in recs]
    assert len(keys) == len(set(keys))
    return set(keys)


class Run:
    def __init__(self, bootstrap: str, url: str, tmp: Path, config: Path, partitions: int) -> None:
        self.u = Unique()
        self.bootstrap, self.url, self.tmp, self.config = bootstrap, url, tmp, config
        self.ops = f"t-{self.u.id}-ops"
        self.partitions = partitions
        self.workers: list[WorkerProcess] = []
        asyncio.run(create_topics(bootstrap, [self.u.topics["inference"]], partitions=partitions))
        asyncio.run(create_topics(bootstrap, [v for k, v in self.u.topics.items()
                                              if k != "inference"] + [self.ops]))

    def start(self, **env: str) -> WorkerProcess:
        w = WorkerProcess([sys.executable, "-m", "stream_monitor", "worker", "--config",
                           str(self.config)],
                          self.u.env(self.bootstrap, self.url, **ENV, SM_TOPIC_OPERATIONS=self.ops,
                                     **env),
                          self.tmp / f"worker-{len(self.workers)}.log")
        self.workers.append(w)
        return w

    def produce(self, lines: list[bytes]) -> None:
        asyncio.run(produce(self.bootstrap, self.u.topics["inference"],
                            ((orjson.loads(v)["model_id"].encode(), v) for v in lines)))

    def committed(self) -> int:
        from aiokafka import TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        async def ask() -> int:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            try:
                await admin.start()
                offsets = await admin.list_consumer_group_offsets(self.u.app_id)
            except KafkaError:
                return 0
            finally:
                await admin.close()
            tps = [TopicPartition(self.u.topics["inference"], p) for p in range(self.partitions)]
            return sum(max(0, offsets[tp].offset) for tp in tps if tp in offsets)

        return asyncio.run(ask())

    def wait_committed(self, target: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.committed() >= target:
                return
            if not any(w.proc.poll() is None for w in self.workers):
                pytest.fail("no worker alive:\n" + "\n---\n".join(w.tail() for w in self.workers))
            time.sleep(0.3)
        pytest.fail(f"committed {self.committed()} never reached {target}:\n"
                    + "\n---\n".join(w.tail() for w in self.workers))

    def outputs(self) -> tuple[set[tuple[Any, ...]], list[str]]:
        """Unique outputs; ids repeated with different bytes (must be none)."""
        msgs = asyncio.run(consume(self.bootstrap, [self.u.topics["alerts"],
                                                    self.u.topics["retrain"]],
                                   timeout=60, idle=5.0))
        seen: dict[tuple[Any, ...], bytes] = {}
        mismatched = []
        for m in msgs:
            rec = orjson.loads(m.value)
            validate_record(rec)
            k = _key(rec)
            if k in seen and seen[k] != m.value:
                mismatched.append(str(k))
            seen.setdefault(k, m.value)
        return set(seen), mismatched

    def resets(self) -> list[dict[str, Any]]:
        msgs = asyncio.run(consume(self.bootstrap, [self.ops], timeout=5, idle=3.0))
        return [orjson.loads(m.value) for m in msgs]

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return list(generate(SPEC))


@pytest.fixture(scope="module")
def cluster_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_config(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def expected(cluster_config: Path, lines: list[bytes],
             tmp_path_factory: pytest.TempPathFactory) -> set[tuple[Any, ...]]:
    exp = _expected(cluster_config, lines, tmp_path_factory.mktemp("replay"))
    assert sum(k[0] == "alert" for k in exp) >= 20 and sum(k[0] == "retrain" for k in exp) >= 3
    return exp


def _masters_of_models(url: str, prefix: str) -> set[int]:
    return {_master_port_of(url, slot_of(f"{prefix}:{{{m}}}:model")) for m in MODELS}


# ------------------------------------------------------------------ the stores on the cluster


def test_state_store_on_the_cluster_spans_every_master_and_reports_lost_writes(
        redis_cluster_url: str, unique: Unique) -> None:
    ids = [f"m{i}" for i in range(30)]
    assert len({_master_port_of(redis_cluster_url, slot_of(f"x:{{{m}}}")) for m in ids}) == 3

    async def go() -> None:
        store = RedisStore("", unique.prefix, client=redis_client(redis_cluster_url))
        try:
            assert await store.check_epoch()
            deltas = [ModelDelta(m, {"signals": ["s"]},
                                 [SignalDelta("s", {"n": i}, [float(i), 1.5], [2.5])],
                                 revision=0, outbox={f"o{i}": b"rec"}) for i, m in enumerate(ids)]
            await store.save(deltas)
            snaps = await store.load([*ids, "never-saved"])
            assert sorted(snaps) == sorted(ids)
            assert snaps["m7"].revision == 1 and snaps["m7"].outbox == {"o7": b"rec"}
            assert snaps["m7"].signals[0].recent == [7.0, 1.5]
            await store.clear_outbox({m: [f"o{i}"] for i, m in enumerate(ids)})
            assert all(not s.outbox for s in (await store.load(ids)).values())
            # Another worker moved m1 on: fenced, not lost.
            with pytest.raises(StateFencedError) as moved:
                await store.save([ModelDelta("m1", {"signals": []}, [], revision=0)])
            assert not moved.value.lost
            # The store went back to an older version of m2 (a failover that lost the last
            # save): lost, so the worker says state_reset instead of continuing silently.
            await store.client.set(f"{unique.prefix}:{{m2}}:version", 0)
            with pytest.raises(StateFencedError) as back:
                await store.save([ModelDelta("m2", {"signals": []}, [], revision=1)])
            assert back.value.lost
            # One master lost its data: its epoch marker is gone.
            marker = next(iter(store.slot_epochs))
            await store.client.delete(f"{unique.prefix}:{{epoch:{_tag_n(marker)}}}:epoch")
            assert not await store.check_epoch()
            assert await store.check_epoch()  # the new marker is the one seen from now on
            assert store.wait_replicas == 1
        finally:
            await store.close()

    asyncio.run(go())


def test_start_up_check_passes_on_the_cluster(redis_cluster_url: str, unique: Unique) -> None:
    """The worker's start-up check (state/connection.py) runs every store command, a Lua
    script included, the way the stores do: also on a cluster."""
    from stream_monitor.settings import ConnectionSettings
    from stream_monitor.state.connection import redis_preflight

    settings = ConnectionSettings(REDIS_URL=redis_cluster_url)  # type: ignore[call-arg]
    asyncio.run(redis_preflight(settings, unique.prefix))


def _tag_n(slot: int) -> str:
    from stream_monitor.state.client import slot_tag

    return slot_tag(slot)[len("{epoch:"):-1]


def test_label_join_and_duplicate_claims_on_the_cluster(redis_cluster_url: str,
                                                        unique: Unique) -> None:
    async def go() -> tuple[Any, ...]:
        client = redis_client(redis_cluster_url)
        try:
            labels = RedisLabelStore(client, unique.prefix)
            first, again, second, stats = await apply_label_scenarios(labels)
            d = RedisDedupe(client, unique.prefix)
            claims = await d.claim([Claim(m, "e1", f"t:0:{i}") for i, m in enumerate(MODELS)]
                                   + [Claim("credit-a", "e1", "t:0:99")], 30.0, now=0.0)
            return first, again, second, stats, claims
        finally:
            await client.aclose()

    first, again, second, stats, claims = asyncio.run(go())
    book, want1, want2 = label_scenarios_in_book()
    assert [p.event_id for p in first] == [p.event_id for p in want1] == \
        [p.event_id for p in again]
    assert [p.event_id for p in second] == [p.event_id for p in want2]
    assert stats.joined == book.stats.joined and stats.labels == book.stats.labels
    assert claims == [None] * len(MODELS) + ["t:0:0"]


# ------------------------------------------------------------------ the worker on the cluster


def test_worker_on_the_cluster_equals_replay(kafka_bootstrap: str, redis_cluster_url: str,
                                             lines: list[bytes], cluster_config: Path,
                                             expected: set[tuple[Any, ...]],
                                             tmp_path: Path) -> None:
    run = Run(kafka_bootstrap, redis_cluster_url, tmp_path, cluster_config, partitions=1)
    assert len(_masters_of_models(redis_cluster_url, run.u.prefix)) == 3
    run.produce(lines)
    w = run.start()
    try:
        run.wait_committed(len(lines))
        got, mismatched = run.outputs()
        resets = run.resets()
    finally:
        run.stop_all()
    assert not mismatched
    assert not resets, resets
    assert got == expected
    assert "CROSSSLOT" not in w.log.read_text()
    # Every key the worker wrote carries a model's hash tag (or an epoch marker's).
    admin = _admin(redis_cluster_url)
    try:
        written = [k.decode() for k in admin.scan_iter(match=f"{run.u.prefix}:*",
                                                      target_nodes=RedisCluster.PRIMARIES)]
    finally:
        admin.close()
    assert written
    tags = {f"{{{m}}}" for m in MODELS}
    assert all(k.split(":", 2)[1] in tags or k.endswith(":epoch") for k in written), \
        sorted(written)[:20]


def test_master_killed_mid_stream_replica_takes_over(kafka_bootstrap: str,
                                                     redis_cluster_url: str, lines: list[bytes],
                                                     cluster_config: Path,
                                                     expected: set[tuple[Any, ...]],
                                                     tmp_path: Path) -> None:
    run = Run(kafka_bootstrap, redis_cluster_url, tmp_path, cluster_config, partitions=1)
    port = _own_master_of_first_model(run, redis_cluster_url)
    run.produce(lines)
    w = run.start()
    try:
        run.wait_committed(len(lines) // 3)
        killed_at = run.committed()
        t0 = time.monotonic()
        _kill_master(redis_cluster_url, port)
        # The replica is promoted after the node timeout (3 s) and an election; the worker
        # retries the batch meanwhile, then goes on.
        run.wait_committed(killed_at + 2 * int(ENV["SM_BATCH_MAX"]), timeout=60)
        resumed_after = time.monotonic() - t0
        assert w.proc.poll() is None, w.tail()
        run.wait_committed(len(lines))
        got, mismatched = run.outputs()
        resets = run.resets()
    finally:
        run.stop_all()
        _cluster_script("start")  # restart the killed node: it rejoins as a replica
    print(f"master {port} killed at committed offset {killed_at}; progress again after "
          f"{resumed_after:.1f} s; state resets: {len(resets)}")
    log = w.log.read_text()
    assert "unavailable" in log, "the worker never saw the failover:\n" + w.tail()
    assert not mismatched, mismatched
    if resets:  # acknowledged writes were lost: said so, never silently
        for r in resets:
            validate_record(r)
            assert r["type"] == "state_reset"
        assert "STATE RESET" in log
    else:
        assert got == expected
    nodes = _nodes(redis_cluster_url)
    back = next(n for n in nodes if n["port"] == port)
    assert "slave" in back["flags"], nodes  # the restarted node came back as a replica


def test_rebalance_between_two_workers_on_the_cluster(kafka_bootstrap: str,
                                                      redis_cluster_url: str,
                                                      lines: list[bytes], cluster_config: Path,
                                                      expected: set[tuple[Any, ...]],
                                                      tmp_path: Path) -> None:
    run = Run(kafka_bootstrap, redis_cluster_url, tmp_path, cluster_config, partitions=2)
    run.produce(lines)
    a = run.start()
    try:
        run.wait_committed(len(lines) // 4)
        b = run.start()  # the group rebalances: a hands a partition to b
        run.wait_committed(len(lines) // 2)
        a.proc.send_signal(signal.SIGKILL)  # and again: b takes all, after a's session ends
        a.proc.wait(30)
        run.wait_committed(len(lines))
        assert b.proc.poll() is None, b.tail()
        got, mismatched = run.outputs()
        resets = run.resets()
    finally:
        run.stop_all()
    assert not mismatched, mismatched
    assert not resets, resets
    assert got == expected


def test_master_restarted_empty_says_state_reset(kafka_bootstrap: str, redis_cluster_url: str,
                                                 lines: list[bytes], cluster_config: Path,
                                                 tmp_path: Path) -> None:
    """A master restarted at once, before its replica could be promoted, keeps its slots but
    comes back empty (no persistence) and its replica resyncs from it: that third of the models
    lost its state. The worker must say so (its epoch marker on that master is gone), not
    carry on silently, and go on detecting."""
    run = Run(kafka_bootstrap, redis_cluster_url, tmp_path, cluster_config, partitions=1)
    port = _own_master_of_first_model(run, redis_cluster_url)
    run.produce(lines)
    w = run.start()
    try:
        run.wait_committed(len(lines) // 3)
        _kill_master(redis_cluster_url, port)
        _cluster_script("start")  # back within a second, long before the 3 s node timeout
        run.wait_committed(len(lines))
        assert w.proc.poll() is None, w.tail()
        resets = run.resets()
        got, _ = run.outputs()
    finally:
        run.stop_all()
        _cluster_script("start")
    master = next(n for n in _nodes(redis_cluster_url) if n["port"] == port)
    if "master" not in master["flags"]:
        pytest.fail(f"node {port} was failed over before it came back; the scenario did not "
                    f"happen: {master}")
    assert resets, "no state_reset record:\n" + w.tail()
    for r in resets:
        validate_record(r)
        assert r["type"] == "state_reset"
    assert any("epoch" in r["reason"] for r in resets), resets
    assert "STATE RESET" in w.log.read_text()
    late = [k for k in got if k[0] == "alert" and k[4] >= f"{k[2]}-{2000:08d}"]
    assert late, "no alert after the state reset: the worker did not go on detecting"
