"""Redis cost per batch on a Redis Cluster against a single Redis, in the same run.

Runs the worker's batch step (``BatchPipeline`` with ``RedisStore``, its duplicate claims and
label join in Redis as the worker wires them) over batches of N events spread over M models, in
the order the worker calls the store (epoch check, batch, outbox clear), once per backend:

- ``single``: a single Redis (``REDIS_URL``);
- ``cluster``: the Redis Cluster (``REDIS_CLUSTER_URL``), each save waiting for one replica of
  each master written to (WAIT, the default ``SM_REDIS_WAIT_REPLICAS=1``);
- ``cluster-nowait``: the same cluster with ``SM_REDIS_WAIT_REPLICAS=0``.

Per batch it reports the wall time spent inside store calls (the detectors' CPU is left out)
and this process's CPU time in them (the client's share: encoding, routing, parsing), the
requests sent (one pipelined write to one node is one request: a round trip; on a cluster
the requests of one store call go to the nodes in parallel), the store calls that waited for
Redis, and the bytes sent and received by the client. "steady" batches find every model cached;
the "reload" batch follows a ``forget()`` (a rebalance), so it loads every model first.

    eval "$(scripts/services.sh env)"; eval "$(scripts/services-cluster.sh env)"
    python benchmarks/redis_cluster.py                   # N=2000, M=10,100,1000, 8 batches
    python benchmarks/redis_cluster.py --models 50 --batches 20 --json out/rc.json
    python benchmarks/redis_cluster.py --memory --models 100   # memory per model and signal
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio.connection import AbstractConnection  # noqa: E402

from stream_monitor.config import load_config  # noqa: E402
from stream_monitor.contracts.records import Position, RawRecord  # noqa: E402
from stream_monitor.pipeline import BatchPipeline  # noqa: E402
from stream_monitor.state.client import redis_client  # noqa: E402
from stream_monitor.state.redis import RedisStore  # noqa: E402
from stream_monitor.synth import Drift, StreamSpec, generate  # noqa: E402


class Meter:
    """Requests and bytes on every Redis connection of this process (patched in below)."""

    requests = 0
    sent = 0
    received = 0


_send = AbstractConnection.send_packed_command


async def _counted_send(self: Any, command: Any, check_health: bool = True) -> None:
    Meter.requests += 1
    if isinstance(command, (bytes, str)):
        Meter.sent += len(command)
    else:
        command = list(command)
        Meter.sent += sum(len(c) for c in command)
    return await _send(self, command, check_health)


AbstractConnection.send_packed_command = _counted_send  # type: ignore[method-assign]

# Every StreamReader in this process belongs to a Redis connection (no Kafka here).
for _name in ("read", "readline", "readexactly", "readuntil"):
    _orig = getattr(asyncio.StreamReader, _name)

    def _make(orig: Any) -> Any:
        async def counted(self: Any, *a: Any, **k: Any) -> Any:
            data = await orig(self, *a, **k)
            Meter.received += len(data)
            return data
        return counted

    setattr(asyncio.StreamReader, _name, _make(_orig))


class TimedStore:
    """The store with the wall time of its calls summed; ``client`` and ``prefix`` pass
    through, so the pipeline puts its duplicate claims and label join next to it."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.cpu = 0.0  # this process's CPU time inside store calls (client side only)
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("load", "save", "clear_outbox", "check_epoch", "versions", "expire"):
            async def timed(*a: Any, **k: Any) -> Any:
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    return await attr(*a, **k)
                finally:
                    self.seconds += time.perf_counter() - t0
                    self.cpu += time.process_time() - c0
                    self.calls += 1
            return timed
        return attr


def _batches(models: int, per_batch: int, count: int) -> list[list[RawRecord]]:
    names = tuple(f"credit-{i:05d}" for i in range(models))
    per_model = math.ceil(per_batch * count / models)
    spec = StreamSpec(models=names, events_per_model=per_model, seed=17,
                      drifts=(Drift(per_model // 2, "amount", 1.5),))
    raws = [RawRecord(v, Position("bench", 0, i)) for i, v in enumerate(generate(spec))]
    return [raws[i:i + per_batch] for i in range(0, per_batch * count, per_batch)]


class Backend:
    """One store under test: its pipeline, and the figures of each measured batch."""

    def __init__(self, name: str, url: str, wait: int, config: Path) -> None:
        self.name, self.url = name, url
        self.prefix = f"bench-rc-{uuid.uuid4().hex[:8]}"
        self.client = redis_client(url)
        self.store = TimedStore(RedisStore(url, self.prefix, client=self.client,
                                           wait_replicas=wait))
        self.pipeline = BatchPipeline(load_config(config), self.store)  # type: ignore[arg-type]
        self.rows: list[dict[str, float]] = []
        self.reload: dict[str, float] = {}

    async def batch(self, raws: list[RawRecord]) -> dict[str, float]:
        """One batch as the worker runs it: epoch check, batch step, outbox clear."""
        st = self.store
        r0, s0, b0, t0, c0 = Meter.requests, Meter.sent, Meter.received, st.seconds, st.calls
        u0 = st.cpu
        await st.check_epoch()
        out = await self.pipeline.run(raws)
        await st.clear_outbox(out.outbox)
        return {"ms": (st.seconds - t0) * 1000, "cpu_ms": (st.cpu - u0) * 1000,
                "requests": Meter.requests - r0,
                "calls": st.calls - c0, "sent": Meter.sent - s0, "received": Meter.received - b0}

    def result(self, models: int, per_batch: int) -> dict[str, Any]:
        steady = {k: statistics.mean(r[k] for r in self.rows) for k in self.rows[0]}
        steady["ms_p50"] = statistics.median(r["ms"] for r in self.rows)
        return {"backend": self.name, "models": models, "events_per_batch": per_batch,
                "batches": len(self.rows), "steady": steady, "reload": self.reload}


async def _measure(backends: list[tuple[str, str, int]], models: int, per_batch: int,
                   count: int, config: Path) -> list[dict[str, Any]]:
    """The backends take turns, batch by batch, so that load from elsewhere on the machine
    falls on all of them alike."""
    batches = _batches(models, per_batch, count + 2)
    runs = [Backend(name, url, wait, config) for name, url, wait in backends]
    try:
        for b in runs:
            await b.batch(batches[0])  # creates every model's state (and loads the scripts)
        for raws in batches[1:-1]:
            for b in runs:
                b.rows.append(await b.batch(raws))
        for b in runs:
            b.pipeline.forget()
            b.reload = await b.batch(batches[-1])
    finally:
        for b in runs:
            await _cleanup(b.client, b.prefix)
            await b.client.aclose()
    return [b.result(models, per_batch) for b in runs]


async def _cleanup(client: Any, prefix: str) -> None:
    from stream_monitor.state.client import is_cluster

    kw = {"target_nodes": client.PRIMARIES} if is_cluster(client) else {}
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000, **kw)]
    for i in range(0, len(keys), 500):
        pipe = client.pipeline(transaction=False)
        for k in keys[i:i + 500]:
            pipe.delete(k)
        await pipe.execute()


def _kind(key: str) -> str:
    """What a key holds, from its name: p:{m}[:v:<version>]:<what>."""
    rest = key.split("}:", 1)[1]
    if rest.startswith("v:"):
        rest = rest.split(":", 2)[2]
    if rest.startswith("sig:"):
        return "signal " + ("recent window" if rest.endswith(":recent") else
                            "reference window" if rest.endswith(":ref") else "meta")
    return rest.split(":", 1)[0] if not rest.startswith("versions") else rest


async def _memory(url: str, models: int, per_model: int, config: Path) -> dict[str, Any]:
    """Populate a store through the batch step, then MEMORY USAGE of every key by kind and
    the masters' used_memory before and after."""
    from stream_monitor.state.client import is_cluster

    cfg = load_config(config)
    prefix = f"bench-mem-{uuid.uuid4().hex[:8]}"
    client = redis_client(url)
    kw: dict[str, Any] = {"target_nodes": client.PRIMARIES} if is_cluster(client) else {}

    async def used() -> int:
        info = await client.info("memory", **kw)
        if is_cluster(client):
            return sum(int(v["used_memory"]) for v in info.values())
        return int(info["used_memory"])

    store = RedisStore(url, prefix, client=client, wait_replicas=0)
    pipeline = BatchPipeline(cfg, store)
    names = tuple(f"credit-{i:05d}" for i in range(models))
    spec = StreamSpec(models=names, events_per_model=per_model, seed=19)
    raws = [RawRecord(v, Position("bench", 0, i)) for i, v in enumerate(generate(spec))]
    try:
        before = await used()
        for i in range(0, len(raws), 2000):
            out = await pipeline.run(raws[i:i + 2000])
            await store.clear_outbox(out.outbox)
        after = await used()
        keys = [k.decode() async for k in client.scan_iter(match=f"{prefix}:*", count=1000, **kw)]
        by_kind: dict[str, list[int]] = {}
        for i in range(0, len(keys), 500):
            pipe = client.pipeline(transaction=False)
            for k in keys[i:i + 500]:
                pipe.execute_command("MEMORY USAGE", k, "SAMPLES", "0")
            for k, n in zip(keys[i:i + 500], await pipe.execute(), strict=True):
                by_kind.setdefault(_kind(k), []).append(int(n or 0))
        signals = len(by_kind.get("signal meta", []))
    finally:
        await _cleanup(client, prefix)
        await client.aclose()
    return {"models": models, "events_per_model": per_model, "keys": len(keys),
            "signals": signals, "used_memory_delta": after - before,
            "by_kind": {k: {"keys": len(v), "bytes": sum(v), "mean": sum(v) / len(v)}
                        for k, v in sorted(by_kind.items())}}


def _fmt(r: dict[str, Any], part: str) -> str:
    d = r[part]
    ms = d.get("ms_p50", d["ms"])  # steady: the median batch
    return (f"{r['backend']:<15} {r['models']:>6} {part:<7} {ms:>8.1f} {d['cpu_ms']:>7.1f} "
            f"{d['requests']:>8.1f} {d['calls']:>6.1f} {d['sent'] / 1024:>9.1f} "
            f"{d['received'] / 1024:>9.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2000, help="events per batch (N)")
    ap.add_argument("--models", default="10,100,1000", help="models per batch (M), a list")
    ap.add_argument("--batches", type=int, default=8, help="steady batches measured")
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "monitor.yaml")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--memory", action="store_true",
                    help="instead: Redis memory per model and signal on a populated cluster")
    ap.add_argument("--memory-events", type=int, default=1600,
                    help="--memory: events per model (1,600 fill the reference and recent "
                    "windows of examples/monitor.yaml)")
    args = ap.parse_args()
    if args.memory:
        url = os.environ.get("REDIS_CLUSTER_URL") or os.environ.get("REDIS_URL")
        if not url:
            print("set REDIS_CLUSTER_URL or REDIS_URL", file=sys.stderr)
            return 2
        m = int(args.models.split(",")[0])
        r = asyncio.run(_memory(url, m, args.memory_events, args.config))
        per_model = r["used_memory_delta"] / m
        print(f"{url}: {m} models x {args.memory_events} events: {r['keys']} keys, "
              f"{r['signals']} signals; used_memory +{r['used_memory_delta'] / 2**20:.1f} MiB "
              f"= {per_model / 1024:.1f} KiB a model, "
              f"{r['used_memory_delta'] / max(1, r['signals']) / 1024:.1f} KiB a signal")
        for kind, d in r["by_kind"].items():
            print(f"  {kind:<24} {d['keys']:>7} keys  {d['bytes'] / 2**20:>8.2f} MiB  "
                  f"{d['mean']:>9.0f} B a key (MEMORY USAGE)")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(r, indent=1))
        return 0
    single = os.environ.get("REDIS_URL")
    cluster = os.environ.get("REDIS_CLUSTER_URL")
    if not single or not cluster:
        print("set REDIS_URL and REDIS_CLUSTER_URL (scripts/services.sh env, "
              "scripts/services-cluster.sh env)", file=sys.stderr)
        return 2
    results = []
    print(f"{'backend':<15} {'models':>6} {'batch':<7} {'store ms':>8} {'cpu ms':>7} "
          f"{'requests':>8} {'calls':>6} {'KiB sent':>9} {'KiB recv':>9}   "
          f"(per batch of {args.events} events)")
    for m in (int(x) for x in args.models.split(",")):
        rs = asyncio.run(_measure([("single", single, 0), ("cluster", cluster, 1),
                                   ("cluster-nowait", cluster, 0)],
                                  m, args.events, args.batches, args.config))
        results += rs
        for r in rs:
            print(_fmt(r, "steady"))
            print(_fmt(r, "reload"))
        base = rs[0]
        for r in rs[1:]:
            print(f"  {r['backend']} / single, models={m}: store ms steady (median) "
                  f"{r['steady']['ms_p50'] / base['steady']['ms_p50']:.2f}x, reload "
                  f"{r['reload']['ms'] / base['reload']['ms']:.2f}x; requests steady "
                  f"{r['steady']['requests'] / base['steady']['requests']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
