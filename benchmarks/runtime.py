"""Worker runtime figures on real Kafka and Redis: event-to-alert latency at a steady rate, and
memory under many models. Each figure is printed next to a baseline measured in the same run.

    python benchmarks/runtime.py latency [--rate 10000] [--seconds 60]
    python benchmarks/runtime.py memory  [--models 100000] [--events-per-model 2] [--rounds 1]
                                         [--reference-src DIR]

latency: one fresh single-partition inference topic is fed at a steady ``--rate`` events/s
(paced in 10 ms slices) with drifts every few thousand events of each model, while one
worker (``examples/monitor.yaml``, ADWIN + Page-Hinkley on 11 signals) reads it. The alerts
topic is created with ``message.timestamp.type=LogAppendTime``, so each alert carries the
time the broker appended it; the latency of an alert is that time minus the producer's
timestamp of the event that triggered it (found by the alert's ``detected_at`` offset). The
baseline row is the same measure for the raw input: the consumer-side age of events read by a
plain aiokafka consumer at the same time (transport alone).

memory: ``--models`` model ids with 3 numeric signals each (2 features and the prediction),
``--events-per-model`` events each, are pre-filled, then read by the worker with its default
model cache (``SM_MODEL_CACHE_SIZE``) and, as the baseline, with a cache large enough to hold
every model (the old behaviour). For each: peak RSS of the worker process (VmHWM from
/proc), events/s from its committed offsets, its CPU time, and the Redis keys it wrote.
``--reference-src`` adds a row for the worker of another version of the package (say, the
main branch's, unpacked in a directory), with the default cache, in the same run.

Kafka and Redis come from KAFKA_BOOTSTRAP_SERVERS and REDIS_URL. Results are printed and
written to ``benchmarks/results/runtime-<mode>-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

from stream_monitor.adapters.kafka_clients import env_client_kwargs
from stream_monitor.adapters.kafka_tools import produce
from stream_monitor.state.connection import env_redis_kwargs

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "monitor.yaml"
out = Console()
err = Console(stderr=True)
# Targets of issue 20.
TARGET_P99_MS = 100.0
TARGET_LATENCY_RATE = 10_000.0
TARGET_MANY_MODELS_RATE = 8_000.0


# -- shared -----------------------------------------------------------------------------------
def _env(bootstrap: str, redis_url: str, app: str, topics: dict[str, str],
         **extra: str) -> dict[str, str]:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, REDIS_URL=redis_url,
               SM_APP_ID=app, SM_KEY_PREFIX=app, SM_METRICS_PORT="0",
               **{f"SM_TOPIC_{k.upper()}": v for k, v in topics.items()})
    env.setdefault("SM_LOG_LEVEL", "WARNING")
    env.update(extra)
    return env


def _worker(config: Path, env: dict[str, str], log: Path,
            profile: str | None = None) -> subprocess.Popen[bytes]:
    f = log.open("ab")
    # --profile: the worker runs under cProfile, which writes its stats when the worker exits
    # (it stops on SIGTERM by returning from main).
    prof = ["-m", "cProfile", "-o", profile] if profile else []
    return subprocess.Popen([sys.executable, *prof, "-m", "stream_monitor", "worker", "--config",
                             str(config)], env=env, stdout=f, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _topics(bootstrap: str, names: list[str], configs: dict[str, dict[str, str]]) -> None:
    admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1, topic_configs=configs.get(n, {}))
                                   for n in names])
    finally:
        await admin.close()


async def _delete(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap))
    await admin.start()
    try:
        await admin.delete_topics(names)
    except Exception:
        pass
    finally:
        await admin.close()


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:
        return -1
    finally:
        await admin.close()
    meta = offsets.get(TopicPartition(topic, 0))
    return meta.offset if meta is not None else -1


async def _end_offset(bootstrap: str, topic: str) -> int:
    c = AIOKafkaConsumer(**env_client_kwargs(bootstrap), group_id=None)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await c.end_offsets([tp]))[tp]
    finally:
        await c.stop()


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _rss_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _write(mode: str, result: dict[str, Any]) -> Path:
    now = dt.datetime.now().astimezone()
    path = ROOT / "benchmarks" / "results" / f"runtime-{mode}-{now:%Y-%m-%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"date": now.isoformat(timespec="seconds"), "mode": mode,
                                "loadavg_at_end": list(os.getloadavg()), **result}, indent=2))
    return path


# -- latency ----------------------------------------------------------------------------------
def _drifting(n_models: int, per_model: int, every: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Events of `n_models` models, interleaved; the mean of `amount` and of the prediction
    jumps by 3 sd and back every `every` events of a model (alerts all along the run)."""
    rng = random.Random(seed)
    recs = []
    for i in range(per_model):
        up = (i // every) % 2 == 1
        for m in range(n_models):
            model = f"credit-{m}"
            f = {f"f{k}": round(rng.gauss(0, 1), 4) for k in range(8)}
            f["amount"] = round(rng.gauss(120 + (105 if up else 0), 35), 3)
            f["utilization"] = round(rng.gauss(0.4, 0.12), 4)
            ev = {"event_id": f"{model}-{i}", "model_id": model, "model_version": "1",
                  "features": f, "prediction": round(rng.gauss(0.3 + (0.3 if up else 0), 0.1), 4)}
            recs.append((model.encode(), orjson.dumps(ev)))
    return recs


async def _paced(bootstrap: str, topic: str, recs: list[tuple[bytes, bytes]], rate: float) -> float:
    prod = AIOKafkaProducer(**env_client_kwargs(bootstrap), linger_ms=2, acks=1)
    await prod.start()
    t0 = time.monotonic()
    try:
        step = max(1, int(rate / 100))  # 10 ms slices
        for k in range(0, len(recs), step):
            due = t0 + k / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            for key, value in recs[k:k + step]:
                await prod.send(topic, value, key=key)
        await prod.flush()
    finally:
        await prod.stop()
    return len(recs) / (time.monotonic() - t0)


async def _read_all(bootstrap: str, topic: str, until_n: int, timeout: float) -> list[Any]:
    c = AIOKafkaConsumer(topic, **env_client_kwargs(bootstrap), auto_offset_reset="earliest",
                         group_id=None, enable_auto_commit=False)
    await c.start()
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < until_n and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                got.extend(msgs)
    finally:
        await c.stop()
    return got


async def _transport_age(bootstrap: str, topic: str, n: int, timeout: float) -> list[float]:
    """Age of each input event when a plain consumer got it: the transport alone."""
    c = AIOKafkaConsumer(topic, **env_client_kwargs(bootstrap), auto_offset_reset="latest",
                         group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100)
    await c.start()
    ages: list[float] = []
    deadline = time.monotonic() + timeout
    try:
        while len(ages) < n and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=200)
            now = time.time() * 1000
            ages += [now - m.timestamp for msgs in batch.values() for m in msgs]
    finally:
        await c.stop()
    return ages


async def latency(args: argparse.Namespace, bootstrap: str, redis_url: str) -> dict[str, Any]:
    run = f"bench-lat-{uuid.uuid4().hex[:8]}"
    topics = {k: f"{run}-{k}" for k in ("inference", "alerts", "retrain", "dead_letter",
                                         "operations", "deployments", "labels")}
    await _topics(bootstrap, list(topics.values()),
                  {topics["alerts"]: {"message.timestamp.type": "LogAppendTime"}})
    n_models = 20
    per_model = int(args.rate * args.seconds / n_models)
    recs = _drifting(n_models, per_model, every=1500, seed=args.seed)
    log = Path(tempfile.mkdtemp(prefix="sm-bench-")) / "worker.log"
    # The alert lifecycle folds repeat drifts of a signal within an hour into one alert, so
    # the example config would give one alert per signal here; this one alerts on every drift.
    config = Path(tempfile.mkdtemp(prefix="sm-bench-")) / "latency.yaml"
    config.write_text(yaml.safe_dump({
        "windows": {"reference_size": 500, "recent_size": 200, "evidence_size": 30},
        "models": [{"match": "credit-*", "signals": [
            {"match": "*", "detectors": ["adwin", "page_hinkley"]}]}]}))
    proc = _worker(config, _env(bootstrap, redis_url, run, topics,
                                SM_LOG_LEVEL=os.environ.get("SM_LOG_LEVEL", "WARNING")), log,
                   profile=args.profile)
    try:
        deadline = time.monotonic() + 60
        while await _committed(bootstrap, run, topics["inference"]) < 0:
            # An empty topic is not committed: feed a warm-up event of a model the config
            # does not watch and wait for its commit (the worker is then running).
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {log}")
            await produce(bootstrap, topics["inference"], [(b"x", orjson.dumps(
                {"event_id": "warm", "model_id": "warmup", "features": {}, "prediction": 0}))])
            await asyncio.sleep(1.0)
        err.print(f"feeding {len(recs):,} events at {args.rate:,.0f}/s for {args.seconds}s...")
        transport = asyncio.ensure_future(_transport_age(bootstrap, topics["inference"],
                                                         len(recs), args.seconds + 30))
        cpu0 = _proc_cpu(proc.pid)  # start-up and warm-up left out of the capacity below
        achieved = await _paced(bootstrap, topics["inference"], recs, args.rate)
        ages = await transport
        total = await _end_offset(bootstrap, topics["inference"])  # warm-up events included
        deadline = time.monotonic() + 120
        while await _committed(bootstrap, run, topics["inference"]) < total:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"worker did not catch up; see {log}")
            await asyncio.sleep(0.5)
        cpu = _proc_cpu(proc.pid)
    finally:
        _stop(proc)
    alerts = [m for m in await _read_all(bootstrap, topics["alerts"], 10**9, 10)
              if orjson.loads(m.value).get("type") == "drift_alert"]
    inputs = await _read_all(bootstrap, topics["inference"], total + 1, 60)
    created = {m.offset: m.timestamp for m in inputs}
    lat = []
    for m in alerts:
        rec = orjson.loads(m.value)
        t_event = created.get(rec["detected_at"]["offset"])
        if t_event is not None:
            lat.append(m.timestamp - t_event)
    await _delete(bootstrap, list(topics.values()))
    if not lat:
        raise RuntimeError(f"no alerts to measure; see {log}")
    batches = [float(x.split(" committed ")[1].split(" ms")[0]) for x in
               log.read_text().splitlines() if " committed " in x and " ms after" in x]
    res = {
        "rate_target": args.rate, "rate_achieved": round(achieved), "events": len(recs),
        "alerts": len(lat),
        "event_to_alert_ms": {"p50": _pct(lat, 0.5), "p90": _pct(lat, 0.9),
                              "p99": _pct(lat, 0.99), "max": max(lat)},
        "transport_age_ms": {"p50": round(_pct(ages, 0.5), 1), "p99": round(_pct(ages, 0.99), 1),
                             "n": len(ages)},
        "worker_cpu_s": cpu,
        # Capacity: the fed events over the worker CPU seconds they took (start-up excluded).
        # Above the rate it was fed at, the worker kept up; below, it queued (the latency then
        # grows with the run, not with the batch).
        "events_per_worker_cpu_s": (round(len(recs) / (cpu - cpu0))
                                    if cpu is not None and cpu0 is not None and cpu > cpu0
                                    else None),
        "batch_fetch_to_commit_ms": ({"p50": _pct(batches, 0.5), "p99": _pct(batches, 0.99),
                                      "n": len(batches)} if batches else None),
        "settings": {k: v for k, v in os.environ.items() if k.startswith("SM_BATCH")},
    }
    t = Table(title=f"event-to-alert latency at {achieved:,.0f} events/s "
                    f"({len(lat)} alerts, {len(recs):,} events)")
    for c in ("measure", "p50 ms", "p90 ms", "p99 ms", "max ms", "n"):
        t.add_column(c, justify="left" if c == "measure" else "right")
    e = res["event_to_alert_ms"]
    t.add_row("worker: event produced -> alert appended", f"{e['p50']:.0f}", f"{e['p90']:.0f}",
              f"{e['p99']:.0f}", f"{e['max']:.0f}", str(len(lat)))
    a = res["transport_age_ms"]
    t.add_row("baseline: event produced -> read by a plain consumer", f"{a['p50']:.0f}", "",
              f"{a['p99']:.0f}", "", str(a["n"]))
    out.print(t)
    if res["events_per_worker_cpu_s"]:
        out.print(f"worker capacity: {res['events_per_worker_cpu_s']:,} events per CPU second "
                  f"(fed at {res['rate_achieved']:,}/s; load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    verdict = "PASS" if e["p99"] <= TARGET_P99_MS else "FAIL"
    out.print(f"target p99 <= {TARGET_P99_MS:.0f} ms at {TARGET_LATENCY_RATE:,.0f} events/s: "
              f"{verdict} (p99 {e['p99']:.0f} ms at {res['rate_achieved']:,} events/s)")
    return res


def _proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


# -- memory -----------------------------------------------------------------------------------
async def _one_memory_run(name: str, config: Path, bootstrap: str, redis_url: str,
                          topic: str, n: int, cache: int | None,
                          source: str | None = None) -> dict[str, Any]:
    """One worker over the whole topic. ``source``: a directory holding another version of the
    ``stream_monitor`` package, run in place of this one (put first on PYTHONPATH)."""
    run = f"bench-mem-{uuid.uuid4().hex[:8]}"
    outs = {k: f"{run}-{k}" for k in ("alerts", "retrain", "dead_letter", "operations",
                                       "deployments", "labels")}
    extra = {} if cache is None else {"SM_MODEL_CACHE_SIZE": str(cache)}
    if source is not None:
        extra["PYTHONPATH"] = os.pathsep.join(
            [source, *filter(None, [os.environ.get("PYTHONPATH")])])
    log = Path(tempfile.mkdtemp(prefix="sm-bench-")) / "worker.log"
    proc = _worker(config, _env(bootstrap, redis_url, run, {"inference": topic, **outs},
                                **extra), log)
    samples: list[tuple[float, int]] = []
    peak = 0.0
    t0 = time.monotonic()
    try:
        last = -1
        while last < n:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited {proc.returncode}; see {log}")
            if time.monotonic() - t0 > 900:
                raise RuntimeError(f"{name}: not done in 900 s; see {log}")
            last = await _committed(bootstrap, run, topic)
            if last > 0:
                samples.append((time.monotonic(), last))
            peak = max(peak, _rss_hwm_mb(proc.pid) or 0.0)
            err.print(f"  {name}: {max(last, 0):,}/{n:,} events, peak RSS {peak:,.0f} MB",
                      end="\r")
            await asyncio.sleep(0.5)
        peak = max(peak, _rss_hwm_mb(proc.pid) or 0.0)
        cpu = _proc_cpu(proc.pid)  # the whole run, start-up imports included
    finally:
        _stop(proc)
    err.print()
    lo = next((s for s in samples if s[1] >= n // 10), samples[0])
    rate = (samples[-1][1] - lo[1]) / max(1e-9, samples[-1][0] - lo[0])
    import redis

    r = redis.Redis.from_url(redis_url, **env_redis_kwargs(redis_url))
    keys = sum(1 for _ in r.scan_iter(f"{run}:*", count=10_000))
    for batch in _chunks(r.scan_iter(f"{run}:*", count=10_000), 10_000):
        r.delete(*batch)
    r.close()
    return {"name": name, "cache": cache,
            "source": None if source is None else "--reference-src",
            "peak_rss_mb": round(peak), "events_per_s": round(rate),
            "worker_cpu_s": cpu, "events_per_cpu_s": round(n / cpu) if cpu else None,
            "redis_keys": keys}


def _chunks(it: Any, n: int) -> Any:
    buf: list[Any] = []
    for x in it:
        buf.append(x)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


async def memory(args: argparse.Namespace, bootstrap: str, redis_url: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sm-bench-"))
    config = tmp / "many-models.yaml"
    config.write_text(yaml.safe_dump({"models": [{"match": "m-*", "signals": [
        {"match": "*", "detectors": ["adwin", "page_hinkley"]}]}]}))
    rng = random.Random(args.seed)
    recs = []
    for i in range(args.events_per_model):
        for m in range(args.models):
            mid = f"m-{m:06d}"
            ev = {"event_id": f"{mid}-{i}", "model_id": mid,
                  "features": {"a": round(rng.gauss(0, 1), 4), "b": round(rng.gauss(5, 2), 4)},
                  "prediction": round(rng.random(), 4)}
            recs.append((mid.encode(), orjson.dumps(ev)))
    topic = f"bench-mem-{uuid.uuid4().hex[:8]}-inference"
    await _topics(bootstrap, [topic], {})
    err.print(f"producing {len(recs):,} events of {args.models:,} models...")
    await produce(bootstrap, topic, recs)
    runs = []
    try:
        for _ in range(args.rounds):  # interleaved: the load of the machine changes
            runs.append(await _one_memory_run("bounded cache (default)", config, bootstrap,
                                              redis_url, topic, len(recs), None))
            runs.append(await _one_memory_run("baseline: cache holds every model", config,
                                              bootstrap, redis_url, topic, len(recs),
                                              args.models * 2))
            if args.reference_src:
                runs.append(await _one_memory_run(
                    "reference: other code, bounded cache", config, bootstrap, redis_url,
                    topic, len(recs), None, source=args.reference_src))
    finally:
        await _delete(bootstrap, [topic])
    t = Table(title=f"{args.models:,} models x 3 signals, {args.events_per_model} events each")
    for c in ("worker", "peak RSS MB", "events/s", "events per worker CPU s", "Redis keys"):
        t.add_column(c, justify="left" if c == "worker" else "right")
    for r in runs:
        t.add_row(r["name"], f"{r['peak_rss_mb']:,}", f"{r['events_per_s']:,}",
                  f"{r['events_per_cpu_s'] or 0:,}", f"{r['redis_keys']:,}")
    out.print(t)
    b, base = runs[0], runs[1]
    out.print(f"bounded / baseline: RSS {b['peak_rss_mb'] / base['peak_rss_mb']:.2f}, rate "
              f"{b['events_per_s'] / max(1, base['events_per_s']):.2f}")
    if args.reference_src:
        ref = runs[2]
        out.print(f"bounded / reference code: events per worker CPU s "
                  f"{(b['events_per_cpu_s'] or 0) / max(1, ref['events_per_cpu_s'] or 1):.2f}, "
                  f"rate {b['events_per_s'] / max(1, ref['events_per_s']):.2f}")
    ok = b["peak_rss_mb"] < 1024 and b["events_per_s"] >= TARGET_MANY_MODELS_RATE
    out.print(f"target < 1 GB RSS and >= {TARGET_MANY_MODELS_RATE:,.0f} events/s: "
              f"{'PASS' if ok else 'FAIL'}")
    return {"models": args.models, "events_per_model": args.events_per_model, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    la = sub.add_parser("latency", help="event-to-alert latency at a steady rate")
    la.add_argument("--rate", type=float, default=TARGET_LATENCY_RATE)
    la.add_argument("--seconds", type=float, default=60.0)
    la.add_argument("--seed", type=int, default=3)
    la.add_argument("--profile", metavar="FILE", help="run the worker under cProfile, stats to "
                    "FILE (slows it: for where the time goes, not for the figures)")
    me = sub.add_parser("memory", help="RSS and rate under many models")
    me.add_argument("--models", type=int, default=100_000)
    me.add_argument("--events-per-model", type=int, default=2)
    me.add_argument("--seed", type=int, default=3)
    me.add_argument("--rounds", type=int, default=1,
                    help="runs of each worker, interleaved")
    me.add_argument("--reference-src", default=None,
                    help="a directory with another version of the stream_monitor package "
                         "(e.g. `git archive main stream_monitor | tar -x -C DIR`): one more "
                         "row, that code's worker with the default cache")
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    fn = latency if args.mode == "latency" else memory
    res = asyncio.run(fn(args, bootstrap, redis_url))
    path = _write(args.mode, res)
    out.print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
