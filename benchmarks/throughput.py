"""Throughput of the stream-monitor worker against two baselines, on real Kafka and Redis.

    python benchmarks/throughput.py [--events N] [--repeat R]

One run, one broker, one payload: N synthetic inference events (4 models, 10 numeric features
plus a prediction each, key = model id) are produced once to a fresh single-partition topic, and
then read by

1. a raw aiokafka consumer (fresh group, from earliest, ``getmany`` loop doing nothing);
2. a no-op Faust agent (``benchmarks/_noop_faust.py``, configured like ``build_app``), in its
   own process, fresh app id / consumer group each time;
3. the real worker, ``python -m stream_monitor worker --config examples/monitor.yaml``, in its
   own process, fresh app id, Redis key prefix and output topics each time. Its ``credit-*``
   rule puts ADWIN and Page-Hinkley on every feature and on the prediction.

2 and 3 run ``--repeat`` times, interleaved (noop, worker, noop, worker, ...). What is timed
is described in benchmarks/README.md and in the ``method`` field of the JSON results, which are
written to ``benchmarks/results/throughput-<date>-<time>.json``.

Kafka and Redis come from KAFKA_BOOTSTRAP_SERVERS and REDIS_URL (as for the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from stream_monitor.adapters.kafka_io import create_topics, produce, wait_for_kafka
from stream_monitor.config import Settings, load_config, signal_detectors
from stream_monitor.synth import Drift, StreamSpec, generate

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
CONFIG = ROOT / "examples" / "monitor.yaml"
MODELS = ("credit-a", "credit-b", "credit-c", "credit-d")
N_FEATURES = 10
TARGET_RATE = 20_000.0
TARGET_RATIO = 0.70
START_FRACTION = 0.10  # the timed window starts when 10% of the events are done


class Interrupted(Exception):
    """SIGINT or SIGTERM: stop the subprocess being measured, delete the topics, exit 130."""


_stop_signal: int | None = None


def check_stop() -> None:
    # Checked in every wait loop, so an interrupt is honoured even if a library swallowed the
    # task cancellation that the signal handler also requests.
    if _stop_signal is not None:
        raise Interrupted(signal.Signals(_stop_signal).name)


# Results go to stdout, progress and status lines to stderr; wide enough for the tables in logs.
out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


# ---------------------------------------------------------------------------------------------
# Machine and environment


def machine_info() -> dict[str, Any]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        nproc = len(os.sched_getaffinity(0))
    versions: dict[str, str | None] = {}
    for dist in ("stream-monitor", "faust-streaming", "aiokafka", "river", "redis", "orjson"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    git: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git["commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        git["dirty"] = bool(status.strip())
    return {
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "loadavg_at_start": list(os.getloadavg()),
        "versions": versions,
        "git": git,
    }


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit(
            (
                parts.scheme,
                f"{parts.username or ''}:***@{host}",
                parts.path,
                parts.query,
                parts.fragment,
            )
        )
    return url


# ---------------------------------------------------------------------------------------------
# Payload


def build_payload(n_events: int) -> tuple[list[tuple[bytes, bytes]], dict[str, Any]]:
    """N events of 4 models, round-robin; key = model id. Drift at the middle of each model
    (amount, utilization, prediction), as `stream-monitor synth` does."""
    per_model = n_events // len(MODELS)
    half = per_model // 2
    spec = StreamSpec(
        models=MODELS,
        events_per_model=per_model,
        n_features=N_FEATURES,
        drifts=(
            Drift(half, "amount", 1.5),
            Drift(half, "utilization", -1.5),
            Drift(half, "prediction", 1.0),
        ),
    )
    records: list[tuple[bytes, bytes]] = []
    feature_names: tuple[str, ...] | None = None
    size = 0
    for j, value in enumerate(generate(spec)):
        ev = orjson.loads(value)
        model = MODELS[j % len(MODELS)]
        if ev["model_id"] != model:
            raise SystemExit(f"event {j}: model_id {ev['model_id']!r}, expected {model!r}")
        feats = ev["features"]
        names = tuple(feats)
        if feature_names is None:
            feature_names = names
        if (
            names != feature_names
            or len(names) != N_FEATURES
            or not all(isinstance(v, int | float) for v in feats.values())
            or not isinstance(ev.get("prediction"), int | float)
        ):
            raise SystemExit(
                f"event {j} does not have {N_FEATURES} numeric features and a numeric "
                f"prediction: {value[:200]!r}"
            )
        records.append((model.encode(), value))
        size += len(value)
    info = {
        "events": len(records),
        "models": list(MODELS),
        "events_per_model": per_model,
        "features": list(feature_names or ()),
        "n_features": len(feature_names or ()),
        "prediction": "numeric, in [0, 1]",
        "drifts_at_event_of_each_model": half,
        "mean_value_bytes": round(size / max(1, len(records)), 1),
        "key": "model id",
        "seed": spec.seed,
    }
    return records, info


def check_config(feature_names: list[str]) -> dict[str, Any]:
    """examples/monitor.yaml's credit-* rule must put ADWIN and Page-Hinkley on every signal."""
    cfg = load_config(CONFIG, Settings())  # type: ignore[call-arg]
    signals = ["prediction"] + [f"feature:{f}" for f in feature_names]
    watched: dict[str, list[str]] = {}
    for model in MODELS:
        rule = cfg.model_rule(model)
        if rule is None or rule.match != "credit-*":
            raise SystemExit(f"{CONFIG}: model {model!r} is not matched by the credit-* rule")
        for sig in signals:
            names = signal_detectors(cfg, rule, sig) or []
            types = sorted(cfg.detectors[n].type for n in names)
            if types != ["adwin", "page_hinkley"]:
                raise SystemExit(
                    f"{CONFIG}: signal {sig!r} of {model!r} has detectors {types}, "
                    "expected adwin and page_hinkley"
                )
            watched[sig] = types
    return {
        "path": str(CONFIG.relative_to(ROOT)),
        "rule": "credit-*",
        "signals": len(signals),
        "detectors_per_signal": ["adwin", "page_hinkley"],
        "detector_updates_per_event": 2 * len(signals),
    }


# ---------------------------------------------------------------------------------------------
# Kafka helpers


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Sum of the end offsets of each topic's partitions (= records, on a fresh topic)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        res = {}
        for t in topics:
            parts = c.partitions_for_topic(t)
            if parts is None:
                await c._client.force_metadata_update()  # learn a topic created after start
                parts = c.partitions_for_topic(t) or set()
            tps = [TopicPartition(t, p) for p in parts]
            ends = await c.end_offsets(tps) if tps else {}
            res[t] = sum(ends.values())
        return res
    finally:
        await c.stop()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


class CommitPoller:
    """Polls a consumer group's committed offset of one partition (OffsetFetch)."""

    def __init__(self, bootstrap: str, group: str, tp: TopicPartition) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        self.group = group
        self.tp = tp
        self.coordinator: int | None = None

    async def __aenter__(self) -> CommitPoller:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def committed(self) -> int:
        """The committed offset, -1 if none yet."""
        if self.coordinator is None:
            self.coordinator = await self.admin.find_coordinator(self.group)
        res = await self.admin.list_consumer_group_offsets(self.group, self.coordinator, [self.tp])
        meta = res.get(self.tp)
        return -1 if meta is None else meta.offset


# ---------------------------------------------------------------------------------------------
# Progress


class Reporter:
    """A rich progress bar on a terminal; plain status lines every few seconds otherwise."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.tty = err.is_terminal
        self._last_line: dict[TaskID, float] = {}

    def __enter__(self) -> Reporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def task(self, description: str, total: int) -> TaskID:
        tid = self.progress.add_task(description, total=total, note="")
        self._last_line[tid] = 0.0
        self.log(f"{description}: started")
        return tid

    def update(self, tid: TaskID, completed: int, note: str = "") -> None:
        self.progress.update(tid, completed=completed, note=note)
        if not self.tty and time.monotonic() - self._last_line[tid] >= 5.0:
            self._last_line[tid] = time.monotonic()
            task = self.progress.tasks[[t.id for t in self.progress.tasks].index(tid)]
            self.log(f"{task.description}: {completed}/{task.total} {note}")

    def log(self, msg: str) -> None:
        self.progress.console.log(msg) if self.tty else err.print(
            f"[{time.strftime('%H:%M:%S')}] {msg}", highlight=False
        )


# ---------------------------------------------------------------------------------------------
# Measurements


@dataclass
class CommitPoint:
    t: float  # estimated wall-clock time of the commit: middle of the poll gap it was seen in
    offset: int
    half_gap: float  # +- uncertainty of t, half the time between the two polls


@dataclass
class FaustRun:
    kind: str  # "noop" or "worker"
    index: int
    group: str
    rate: float | None = None  # events/s, committed offsets, START_FRACTION -> last in-flow commit
    rate_to_done: float | None = None  # events/s, START_FRACTION -> commit of the last event
    window: dict[str, Any] = field(default_factory=dict)
    startup_s: float | None = None  # process launch -> first commit seen
    first_commit_to_done_s: float | None = None
    commit_steps: dict[str, Any] = field(default_factory=dict)
    agent_clock: dict[str, Any] | None = None  # noop only: its own timings
    outputs: dict[str, Any] | None = None  # worker only: output records and Redis keys
    points: list[tuple[float, int]] = field(default_factory=list)  # (t - launch, offset)
    log: str = ""
    wall_s: float = 0.0


def rate_from_commits(points: list[CommitPoint], n: int, t_launch: float) -> dict[str, Any]:
    """Rate between the first commit at >= START_FRACTION of n and the last commit before the
    final one (a commit of an offset < n is made while events are still being processed, so it
    is a true sample of progress; the final commit can come up to broker_commit_interval after
    the last event was done, so it only bounds the rate from below)."""
    res: dict[str, Any] = {}
    if not points:
        return res
    res["startup_s"] = points[0].t - t_launch
    start = next((p for p in points if p.offset >= START_FRACTION * n), None)
    done = next((p for p in points if p.offset >= n), None)
    if done is not None:
        res["first_commit_to_done_s"] = done.t - points[0].t
    if start is None or done is None:
        return res
    inflow = [p for p in points if start.offset < p.offset < n]
    if inflow:
        end = inflow[-1]
        res["rate"] = (end.offset - start.offset) / (end.t - start.t)
        res["window"] = {
            "from_offset": start.offset,
            "to_offset": end.offset,
            "from_s": round(start.t - t_launch, 3),
            "to_s": round(end.t - t_launch, 3),
            "events": end.offset - start.offset,
            "seconds": round(end.t - start.t, 3),
            "fraction_of_events": round((end.offset - start.offset) / n, 3),
            "timing_uncertainty_s": round(start.half_gap + end.half_gap, 3),
            "relative_uncertainty": round((start.half_gap + end.half_gap) / (end.t - start.t), 4),
        }
    if done.t > start.t:
        res["rate_to_done"] = (n - start.offset) / (done.t - start.t)
    steps = [b.offset - a.offset for a, b in itertools.pairwise(points) if b.offset < n]
    gaps = [b.t - a.t for a, b in itertools.pairwise(points) if b.offset < n]
    res["commit_steps"] = {
        "commits_seen": len(points),
        "median_events_per_commit": statistics.median(steps) if steps else None,
        "median_s_between_commits": round(statistics.median(gaps), 3) if gaps else None,
        "max_s_between_commits": round(max(gaps), 3) if gaps else None,
        "final_commit_lag_s": round(done.t - (inflow[-1].t if inflow else start.t), 3),
    }
    return res


async def measure_raw(
    bootstrap: str, topic: str, n: int, group: str, rep: Reporter
) -> dict[str, Any]:
    tid = rep.task("raw aiokafka consumer", n)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    t_launch = time.time()
    await consumer.start()
    count = 0
    t_first = t_start = t_last = None
    n_first = n_start = 0
    last_msg = time.monotonic()
    last_ui = 0.0
    try:
        while count < n:
            check_stop()
            batch = await consumer.getmany(timeout_ms=1000)
            got = 0
            for msgs in batch.values():
                for _m in msgs:
                    pass
                got += len(msgs)
            now = time.time()
            if got:
                count += got
                last_msg = time.monotonic()
                if t_first is None:
                    t_first, n_first = now, count
                if t_start is None and count >= START_FRACTION * n:
                    t_start, n_start = now, count
                if count >= n:
                    t_last = now
            elif time.monotonic() - last_msg > 60:
                raise RuntimeError(f"raw consumer: no message for 60 s after {count}/{n}")
            if time.monotonic() - last_ui > 0.25 or count >= n:
                last_ui = time.monotonic()
                rep.update(tid, count)
    finally:
        await consumer.stop()
    assert t_first is not None and t_start is not None and t_last is not None
    rate = (n - n_start) / (t_last - t_start) if t_last > t_start else None
    rate_all = (n - n_first) / (t_last - t_first) if t_last > t_first else None
    rep.update(tid, n, f"{rate:,.0f} ev/s" if rate else "")
    rep.log(
        f"raw aiokafka consumer: {rate:,.0f} events/s" if rate else "raw aiokafka: too fast to time"
    )
    return {
        "group": group,
        "events": count,
        "rate": rate,
        "rate_first_to_last": rate_all,
        "window": {"from_events": n_start, "to_events": n, "seconds": round(t_last - t_start, 4)},
        "startup_s": round(t_first - t_launch, 3),
    }


async def measure_faust(
    kind: str,
    index: int,
    *,
    run_id: str,
    bootstrap: str,
    redis_url: str,
    topic: str,
    n: int,
    log_dir: Path,
    poll_interval: float,
    timeout: float,
    rep: Reporter,
    cleanup: dict[str, list[str]],
) -> FaustRun:
    group = f"bench-{run_id}-{kind}-{index}"
    run = FaustRun(kind, index, group)
    data_dir = log_dir / f"{group}-data"  # Faust's data dir (unused with the memory store)
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        REDIS_URL=redis_url,
        SM_DATA_DIR=str(data_dir),
        # Metrics are still computed per batch; only the HTTP endpoint is off (port clashes).
        SM_METRICS_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    outputs: dict[str, str] = {}
    result_file = log_dir / f"{group}.result.json"
    prefix = f"bench-{run_id}-{index}"
    if kind == "worker":
        outputs = {k: f"bench-{run_id}-{index}-{k}" for k in ("alerts", "retrain", "dead_letter")}
        cleanup["topics"] += outputs.values()
        cleanup["redis_prefixes"].append(prefix)
        await create_topics(bootstrap, outputs.values())
        env.update(
            SM_APP_ID=group,
            SM_KEY_PREFIX=prefix,
            SM_TOPIC_INFERENCE=topic,
            **{f"SM_TOPIC_{k.upper()}": v for k, v in outputs.items()},
        )
        cmd = [sys.executable, "-m", "stream_monitor", "worker", "--config", str(CONFIG)]
        label = f"stream-monitor worker #{index + 1}"
    else:
        cmd = [
            sys.executable,
            str(BENCH / "_noop_faust.py"),
            "--app-id",
            group,
            "--topic",
            topic,
            "--events",
            str(n),
            "--result",
            str(result_file),
        ]
        label = f"no-op Faust agent #{index + 1}"
    log_path = log_dir / f"{group}.log"
    run.log = str(log_path)
    tid = rep.task(label, n)
    tp = TopicPartition(topic, 0)
    points: list[CommitPoint] = []
    with log_path.open("wb") as log:
        t_launch = time.time()
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=str(log_dir), env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        try:
            async with CommitPoller(bootstrap, group, tp) as poller:
                last_offset = -1
                t_prev = time.time()
                t_change = time.monotonic()
                while True:
                    try:
                        off = await poller.committed()
                    except Exception as exc:  # coordinator not ready yet, etc.
                        off = last_offset
                        poller.coordinator = None
                        if time.monotonic() - t_change > 10:
                            rep.log(f"{label}: offset fetch failed: {exc!r}")
                    t_now = time.time()
                    if off != last_offset and off > 0:
                        points.append(CommitPoint((t_prev + t_now) / 2, off, (t_now - t_prev) / 2))
                        last_offset = off
                        t_change = time.monotonic()
                        el = t_now - t_launch
                        rep.update(tid, min(off, n), f"{el:5.1f}s since launch")
                    t_prev = t_now
                    if last_offset >= n:
                        break
                    check_stop()
                    if proc.returncode is not None:
                        raise RuntimeError(
                            f"{label} exited with code {proc.returncode} after "
                            f"{last_offset}/{n} events; log: {log_path}\n" + _tail(log_path)
                        )
                    if time.monotonic() - t_change > timeout:
                        raise RuntimeError(
                            f"{label}: no commit progress for {timeout:.0f} s "
                            f"({last_offset}/{n}); log: {log_path}\n" + _tail(log_path)
                        )
                    await asyncio.sleep(poll_interval)
            if kind == "noop":
                for _ in range(50):  # written before the last event was acked; normally there
                    if result_file.exists():
                        break
                    await asyncio.sleep(0.1)
        finally:
            await _stop(proc)
        run.wall_s = round(time.time() - t_launch, 2)
    shutil.rmtree(data_dir, ignore_errors=True)

    res = rate_from_commits(points, n, t_launch)
    run.rate = res.get("rate")
    run.rate_to_done = res.get("rate_to_done")
    run.window = res.get("window", {})
    run.startup_s = round(res["startup_s"], 3) if "startup_s" in res else None
    run.first_commit_to_done_s = (
        round(res["first_commit_to_done_s"], 3) if "first_commit_to_done_s" in res else None
    )
    run.commit_steps = res.get("commit_steps", {})
    run.points = [(round(p.t - t_launch, 3), p.offset) for p in points]
    if kind == "noop" and result_file.exists():
        a = json.loads(result_file.read_text())
        ac: dict[str, Any] = {"events": a["events"]}
        if a["t_last"] > a["t_first"]:
            ac["rate_first_to_last"] = (a["events"] - 1) / (a["t_last"] - a["t_first"])
        if a.get("t_at_10pct") and a["t_last"] > a["t_at_10pct"]:
            ac["rate"] = (a["events"] - a["at_10pct_events"]) / (a["t_last"] - a["t_at_10pct"])
        ac["first_event_after_launch_s"] = round(a["t_first"] - t_launch, 3)
        run.agent_clock = ac
        result_file.unlink()
    if kind == "worker":
        counts = await end_offsets(bootstrap, list(outputs.values()))
        run.outputs = {
            "topics": outputs,
            "records": {k: counts.get(v, 0) for k, v in outputs.items()},
            "redis_prefix": prefix,
            "redis_keys": await _redis_cleanup(redis_url, prefix),
        }
    note = f"{run.rate:,.0f} ev/s" if run.rate else "no rate (too few commits)"
    rep.update(tid, n, note)
    msg = f"{label}: {note}"
    if run.window:
        msg += (
            f" (offsets {run.window['from_offset']}->{run.window['to_offset']} in "
            f"{run.window['seconds']:.2f} s, +-{run.window['timing_uncertainty_s']:.2f} s)"
        )
    if run.outputs:
        r = run.outputs["records"]
        msg += (
            f"; outputs: {r['alerts']} alerts, {r['retrain']} retrain requests, "
            f"{r['dead_letter']} dead letters; {run.outputs['redis_keys']} Redis keys"
        )
    rep.log(msg)
    return run


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 30 s: the process we started, by its pid."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _redis_cleanup(redis_url: str, prefix: str) -> int:
    """Count, then delete, the worker's state keys (its prefix is fresh for every run)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------------
# Summary


def stats(values: list[float | None]) -> dict[str, Any]:
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}  ({x:.0%})"


def summarize(
    raw: dict[str, Any], noops: list[FaustRun], workers: list[FaustRun]
) -> dict[str, Any]:
    s_raw = stats([raw["rate"]])
    s_noop = stats([r.rate for r in noops])
    s_worker = stats([r.rate for r in workers])
    s_noop_agent = stats([(r.agent_clock or {}).get("rate") for r in noops])
    s_noop_done = stats([r.rate_to_done for r in noops])
    s_worker_done = stats([r.rate_to_done for r in workers])
    paired = [ratio(w.rate, n.rate) for n, w in zip(noops, workers, strict=True)]
    w, nf, rk = s_worker["median"], s_noop["median"], s_raw["median"]
    wn = ratio(w, nf)
    ratios = {
        "worker/noop_faust": wn,
        "worker/raw_aiokafka": ratio(w, rk),
        "noop_faust/raw_aiokafka": ratio(nf, rk),
        "worker/noop_faust_paired": stats(paired),
    }
    targets = {
        "worker_rate_ge_20000": None if w is None else w >= TARGET_RATE,
        "worker_ge_70pct_of_noop_faust": None if wn is None else wn >= TARGET_RATIO,
    }
    return {
        "raw_aiokafka": s_raw,
        "noop_faust": s_noop,
        "worker": s_worker,
        "noop_faust_agent_clock": s_noop_agent,
        "noop_faust_to_done": s_noop_done,
        "worker_to_done": s_worker_done,
        "ratios": ratios,
        "targets": targets,
    }


def print_report(
    meta: dict[str, Any], summary: dict[str, Any], noops: list[FaustRun], workers: list[FaustRun]
) -> None:
    m = meta["machine"]
    out.print()
    out.rule("stream-monitor throughput")
    out.print(f"date     {meta['date']}", highlight=False)
    out.print(
        f"machine  nproc={m['nproc']}  cpu={m['cpu_model']}  python={m['python']}  "
        f"loadavg start={m['loadavg_at_start'][0]:.2f} end={meta['loadavg_at_end'][0]:.2f}",
        highlight=False,
    )
    p = meta["payload"]
    out.print(
        f"payload  {p['events']:,} events ({len(p['models'])} models x {p['events_per_model']:,}), "
        f"{p['n_features']} numeric features + prediction, {p['mean_value_bytes']:.0f} B/event, "
        f"key=model id; topic {meta['topic']} with 1 partition",
        highlight=False,
    )
    c = meta["config"]
    out.print(
        f"worker   {c['path']} rule {c['rule']}: adwin + page_hinkley on {c['signals']} signals "
        f"({c['detector_updates_per_event']} detector updates/event); repeat={meta['repeat']} "
        "(noop/worker interleaved)",
        highlight=False,
    )

    def row(t: Table, name: str, method: str, s: dict[str, Any]) -> None:
        t.add_row(
            name, method, fmt_rate(s["median"]), fmt_rate(s["min"]), fmt_rate(s["max"]), str(s["n"])
        )

    t = Table(title="events/s (timed from 10% of the events to the end; see benchmarks/README.md)")
    for col in ("measurement", "clock", "median", "min", "max", "runs"):
        t.add_column(col, justify="right" if col in ("median", "min", "max", "runs") else "left")
    row(t, "raw aiokafka consumer", "in-process, 10%->100% of messages", summary["raw_aiokafka"])
    row(
        t, "no-op Faust agent", "committed offsets, 10%->last in-flow commit", summary["noop_faust"]
    )
    row(
        t, "stream-monitor worker", "committed offsets, 10%->last in-flow commit", summary["worker"]
    )
    row(
        t,
        "  no-op Faust (cross-check)",
        "agent's own clock, 10%->100%",
        summary["noop_faust_agent_clock"],
    )
    row(
        t,
        "  no-op Faust (lower bound)",
        "committed offsets, 10%->final commit",
        summary["noop_faust_to_done"],
    )
    row(
        t,
        "  worker (lower bound)",
        "committed offsets, 10%->final commit",
        summary["worker_to_done"],
    )
    out.print(t)

    r = summary["ratios"]
    t = Table(title="ratios (of medians)")
    t.add_column("ratio")
    t.add_column("value", justify="right")
    t.add_row("worker / no-op Faust", fmt_ratio(r["worker/noop_faust"]))
    t.add_row("worker / raw aiokafka", fmt_ratio(r["worker/raw_aiokafka"]))
    t.add_row("no-op Faust / raw aiokafka", fmt_ratio(r["noop_faust/raw_aiokafka"]))
    pr = r["worker/noop_faust_paired"]
    if pr["n"]:
        t.add_row(
            "worker / no-op Faust, per interleaved pair",
            f"median {pr['median']:.2f}, min {pr['min']:.2f}, max {pr['max']:.2f}",
        )
    out.print(t)

    t = Table(title="each run")
    for col in (
        "run",
        "events/s",
        "to final commit",
        "window (offsets, s)",
        "+-s",
        "1st commit s",
        "commit every",
        "outputs",
    ):
        t.add_column(col)
    for run in [x for pair in zip(noops, workers, strict=True) for x in pair]:
        wdw = run.window
        cs = run.commit_steps
        o = "-"
        if run.outputs:
            rec = run.outputs["records"]
            o = (
                f"{rec['alerts']} alerts, {rec['retrain']} retrain, {rec['dead_letter']} DLQ, "
                f"{run.outputs['redis_keys']} redis keys"
            )
        elif run.agent_clock:
            o = f"agent clock {fmt_rate(run.agent_clock.get('rate'))} ev/s"
        t.add_row(
            f"{run.kind} #{run.index + 1}",
            fmt_rate(run.rate),
            fmt_rate(run.rate_to_done),
            f"{wdw.get('from_offset')}->{wdw.get('to_offset')}, {wdw.get('seconds')}"
            if wdw
            else "-",
            f"{wdw.get('timing_uncertainty_s')}" if wdw else "-",
            f"{run.startup_s}",
            f"{cs.get('median_events_per_commit') or 0:,.0f} ev / "
            f"{cs.get('median_s_between_commits')} s"
            if cs
            else "-",
            o,
        )
    out.print(t)

    tg = summary["targets"]
    w = summary["worker"]["median"]
    rr = r["worker/noop_faust"]

    def verdict(ok: bool | None) -> str:
        return (
            "[green]PASS[/green]"
            if ok
            else ("[red]FAIL[/red]" if ok is False else "[yellow]N/A[/yellow]")
        )

    out.print(
        f"target >= 20000 events/s: {verdict(tg['worker_rate_ge_20000'])}  "
        f"(worker median {fmt_rate(w)} events/s)"
    )
    out.print(
        f"target >= 70% of no-op Faust: {verdict(tg['worker_ge_70pct_of_noop_faust'])}  "
        f"(worker / no-op Faust = {'-' if rr is None else f'{rr:.0%}'})"
    )


# ---------------------------------------------------------------------------------------------
# Main


METHOD = {
    "raw_aiokafka": "In the benchmark process: AIOKafkaConsumer (fresh group, auto_offset_reset="
    "earliest, no commits, aiokafka defaults) in a getmany() loop that touches each message and "
    "does nothing else. Rate = events received after the first getmany() batch that brought the "
    "count to >= 10% of N, divided by the time from that batch to the batch with the N-th event.",
    "noop_faust_and_worker": "Separate process, fresh consumer group. The benchmark polls the "
    "group's committed offset of the (single) partition with OffsetFetch every poll_interval s. "
    "A commit is timestamped at the middle of the poll gap in which it first appeared (+- half "
    "the gap). Rate = (O_b - O_a) / (t_b - t_a), where a = the first commit with offset >= 10% "
    "of N and b = the last commit with offset < N. A commit of an offset < N is made while "
    "events are still being processed and covers everything acked so far, so it is a true "
    "sample of progress; the commit of the N-th event can come up to broker_commit_interval "
    "(2.8 s) after the event was done (Faust commits every 10,000 acks or every 2.8 s, but the "
    "10,000-ack check runs only when a new message arrives), so it is used only for the lower "
    "bound rate_to_done = (N - O_a) / (t_done - t_a). Startup (process launch, Kafka group "
    "join, first 10% of the events) is excluded. Completion = committed offset == N.",
    "noop_agent_clock": "Cross-check: the no-op agent's own time.time() at its 10%-th and N-th "
    "event; rate = 90% of N / that time.",
}


async def amain(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        global _stop_signal
        if _stop_signal is not None:
            return  # once: a second cancel could interrupt the clean-up itself
        err.print(f"[yellow]{signal.Signals(signum).name}: stopping...[/yellow]")
        _stop_signal = signum
        if main_task is not None:
            main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    settings = Settings()  # type: ignore[call-arg]  # fields come from the environment
    bootstrap, redis_url = settings.kafka_bootstrap_servers, settings.redis_url
    n_req = args.events
    if n_req < 40_000:
        err.print(
            "[yellow]warning: with fewer than 40,000 events Faust commits (every 10,000 "
            "events) give too few points for a good rate[/yellow]"
        )
    now = dt.datetime.now().astimezone()
    run_id = now.strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
    machine = machine_info()
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="sm-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    err.print(
        f"Kafka {bootstrap}, Redis {redact(redis_url)}, run {run_id}, logs in {log_dir}",
        highlight=False,
    )
    commit_env = {
        k: os.environ[k]
        for k in ("BROKER_COMMIT_INTERVAL", "BROKER_COMMIT_EVERY")
        if k in os.environ
    }
    if commit_env:
        err.print(
            f"[yellow]note: Faust reads {commit_env} from the environment: both Faust "
            "processes get it[/yellow]"
        )

    await wait_for_kafka(bootstrap, timeout=30)
    import redis.asyncio as aioredis

    rc = aioredis.Redis.from_url(redis_url)
    try:
        await rc.ping()
    finally:
        await rc.aclose()

    t0 = time.monotonic()
    with err.status("generating and checking the payload..."):
        records, payload = build_payload(n_req)
        config_info = check_config(payload["features"])
    n = len(records)
    err.print(
        f"payload: {n:,} events, {payload['n_features']} numeric features + prediction "
        f"({', '.join(payload['features'])}), {payload['mean_value_bytes']:.0f} B/event; "
        f"config {config_info['path']}: adwin + page_hinkley on all {config_info['signals']} "
        "signals",
        highlight=False,
    )

    topic = f"bench-{run_id}-inference"
    cleanup: dict[str, list[str]] = {"topics": [topic], "redis_prefixes": []}
    noops: list[FaustRun] = []
    workers: list[FaustRun] = []
    try:
        await create_topics(bootstrap, [topic], partitions=1)
        with Reporter() as rep:
            tid = rep.task("producing", n)
            t_p = time.monotonic()
            await produce(bootstrap, topic, records, on_progress=lambda k: rep.update(tid, k))
            produce_s = time.monotonic() - t_p
            del records
            end = (await end_offsets(bootstrap, [topic]))[topic]
            if end != n:
                raise RuntimeError(f"topic {topic} has {end} records, expected {n}")
            rep.log(f"produced {n:,} events to {topic} (1 partition) in {produce_s:.1f} s")

            raw = await measure_raw(bootstrap, topic, n, f"bench-{run_id}-raw", rep)
            common = dict(
                run_id=run_id,
                bootstrap=bootstrap,
                redis_url=redis_url,
                topic=topic,
                n=n,
                log_dir=log_dir,
                poll_interval=args.poll_interval,
                timeout=args.timeout,
                rep=rep,
                cleanup=cleanup,
            )
            for i in range(args.repeat):
                check_stop()
                noops.append(await measure_faust("noop", i, **common))
                check_stop()
                workers.append(await measure_faust("worker", i, **common))
    finally:
        if not args.keep_topics:
            with contextlib.suppress(Exception):
                await delete_topics(bootstrap, cleanup["topics"])
        for prefix in cleanup["redis_prefixes"]:  # normally already deleted after each run
            with contextlib.suppress(Exception):
                await _redis_cleanup(redis_url, prefix)

    summary = summarize(raw, noops, workers)
    meta = {
        "date": now.isoformat(timespec="seconds"),
        "run_id": run_id,
        "machine": machine,
        "loadavg_at_end": list(os.getloadavg()),
        "kafka_bootstrap_servers": bootstrap,
        "redis_url": redact(redis_url),
        "topic": topic,
        "topic_partitions": 1,
        "topics_deleted_after_run": not args.keep_topics,
        "payload": payload,
        "config": config_info,
        "repeat": args.repeat,
        "poll_interval_s": args.poll_interval,
        "faust_commit_settings": {
            "broker_commit_interval_s": 2.8,
            "broker_commit_every": 10_000,
            "env_overrides": commit_env,
        },
        "worker_settings": {
            "SM_BATCH_MAX": settings.batch_max,
            "SM_BATCH_WITHIN_SECONDS": settings.batch_within_seconds,
            "SM_LOG_LEVEL": settings.log_level,
        },
        "produce_s": round(produce_s, 2),
        "total_runtime_s": round(time.monotonic() - t0, 1),
        "log_dir": str(log_dir),
        "method": METHOD,
        "targets": {"worker_events_per_s": TARGET_RATE, "worker_over_noop_faust": TARGET_RATIO},
    }
    result = {
        **meta,
        "summary": summary,
        "raw_aiokafka": raw,
        "noop_faust_runs": [asdict(r) for r in noops],
        "worker_runs": [asdict(r) for r in workers],
    }
    print_report(meta, summary, noops, workers)
    res_dir = BENCH / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    path = res_dir / f"throughput-{now.strftime('%Y-%m-%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    out.print(f"results: {path.relative_to(ROOT)}", highlight=False)
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--events",
        type=int,
        default=200_000,
        help="events to pre-fill (rounded down to a multiple of 4; default 200000)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="no-op Faust / worker measurements, interleaved (default 1)",
    )
    ap.add_argument(
        "--poll-interval",
        type=float,
        default=0.05,
        help="seconds between committed-offset polls (default 0.05)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="fail a measurement after this many seconds without commit progress",
    )
    ap.add_argument(
        "--log-dir", help="where the Faust processes' logs go (default: a new temp dir)"
    )
    ap.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep the benchmark's Kafka topics (deleted by default)",
    )
    args = ap.parse_args()
    if args.repeat < 1 or args.events < 4:
        ap.error("--repeat must be >= 1 and --events >= 4")
    import logging

    logging.basicConfig(level=logging.WARNING)
    try:
        code = asyncio.run(amain(args))
    except (KeyboardInterrupt, Interrupted, asyncio.CancelledError):
        err.print("[yellow]interrupted; the processes it started are stopped[/yellow]")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
