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

Scale-out mode::

    python benchmarks/throughput.py --scale-out 1,2,3 [--partitions 6] [--models 12] [--events N]

pre-fills one topic with ``--partitions`` partitions (keys = ``--models`` model ids chosen so
that aiokafka's DefaultPartitioner spreads them evenly) and, for each worker count K, starts K
worker processes in ONE fresh consumer group (fresh SM_APP_ID, SM_KEY_PREFIX and output topics,
BROKER_COMMIT_INTERVAL=0.5 for finer commit resolution) and times the group's end-to-end rate
from the sum of its committed offsets over all partitions. It checks that every worker got
partitions (DescribeGroups) and that all N events were processed (committed offsets, and the
models' state in Redis). Results: ``benchmarks/results/scaleout-<date>-<time>.json``.

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

from stream_monitor.adapters.kafka_clients import env_client_kwargs
from stream_monitor.adapters.kafka_io import create_topics, produce, wait_for_kafka
from stream_monitor.config import Settings, load_config, signal_detectors
from stream_monitor.state.connection import env_redis_client
from stream_monitor.synth import Drift, StreamSpec, generate

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
CONFIG = ROOT / "examples" / "monitor.yaml"
MODELS = ("credit-a", "credit-b", "credit-c", "credit-d")
N_FEATURES = 10
TARGET_RATE = 25_000.0
TARGET_RATIO = 0.70  # of the no-op Faust agent (kept as a reference row)
TARGET_CORE_RATIO = 0.80  # of the core's own CPU-only rate on the same events
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


def build_payload(
    n_events: int, models: tuple[str, ...] = MODELS
) -> tuple[list[tuple[bytes, bytes]], dict[str, Any]]:
    """N events of the models, round-robin; key = model id. Drift at the middle of each model
    (amount, utilization, prediction), as `stream-monitor synth` does."""
    per_model = n_events // len(models)
    half = per_model // 2
    spec = StreamSpec(
        models=models,
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
        model = models[j % len(models)]
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
        "models": list(models),
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


def check_config(feature_names: list[str], models: tuple[str, ...] = MODELS) -> dict[str, Any]:
    """examples/monitor.yaml's credit-* rule must put ADWIN and Page-Hinkley on every signal."""
    cfg = load_config(CONFIG, Settings())  # type: ignore[call-arg]
    signals = ["prediction"] + [f"feature:{f}" for f in feature_names]
    watched: dict[str, list[str]] = {}
    for model in models:
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
    c = AIOKafkaConsumer(**env_client_kwargs(bootstrap), group_id=None, enable_auto_commit=False)
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
    admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap))
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


class CommitPoller:
    """Polls a consumer group's committed offset of one partition (OffsetFetch)."""

    def __init__(self, bootstrap: str, group: str, tp: TopicPartition) -> None:
        self.admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap), request_timeout_ms=10_000)
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


def rate_from_commits(
    points: list[CommitPoint], n: int, t_launch: float, not_before: float | None = None
) -> dict[str, Any]:
    """Rate between the first commit at >= START_FRACTION of n and the last commit before the
    final one (a commit of an offset < n is made while events are still being processed, so it
    is a true sample of progress; the final commit can come up to broker_commit_interval after
    the last event was done, so it only bounds the rate from below).

    ``not_before`` (scale-out mode): the start must also be a commit first seen by a poll made
    after that time (the poll before it was at ``t - half_gap``), i.e. made after it."""
    res: dict[str, Any] = {}
    if not points:
        return res
    res["startup_s"] = points[0].t - t_launch
    start = next(
        (
            p
            for p in points
            if p.offset >= START_FRACTION * n
            and (not_before is None or p.t - p.half_gap >= not_before)
        ),
        None,
    )
    done = next((p for p in points if p.offset >= n), None)
    if done is not None:
        res["first_commit_to_done_s"] = done.t - points[0].t
    if start is None or done is None:
        return res
    res["start_index"] = next(i for i, p in enumerate(points) if p is start)
    inflow = [p for p in points if start.offset < p.offset < n]
    if inflow:
        end = inflow[-1]
        res["end_index"] = next(i for i, p in enumerate(points) if p is end)
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
        **env_client_kwargs(bootstrap),
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
        redis_before = await _redis_stats(redis_url) if kind == "worker" else None
        t_launch = time.time()
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=str(log_dir), env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        try:
            async with CommitPoller(bootstrap, group, tp) as poller:
                last_offset = -1
                t_prev = time.time()
                t_change = time.monotonic()
                cpu_samples: list[tuple[float, float]] = []
                while True:
                    try:
                        off = await poller.committed()
                    except Exception as exc:  # coordinator not ready yet, etc.
                        off = last_offset
                        poller.coordinator = None
                        if time.monotonic() - t_change > 10:
                            rep.log(f"{label}: offset fetch failed: {exc!r}")
                    t_now = time.time()
                    cpu = proc_cpu_s(proc.pid)
                    if cpu is not None:
                        cpu_samples.append((t_now, cpu))
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
    w = run.window
    if w and cpu_samples:
        # The process's own CPU time over the timed window: events per CPU second of the
        # process, comparable with the core's CPU-only rate whatever else the machine runs.
        def cpu_at(t: float) -> float:
            return min(cpu_samples, key=lambda s: abs(s[0] - t))[1]

        used = cpu_at(t_launch + w["to_s"]) - cpu_at(t_launch + w["from_s"])
        if used > 0:
            w["process_cpu_s"] = round(used, 3)
            w["events_per_cpu_s"] = round(w["events"] / used)
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
        after = await _redis_stats(redis_url)
        run.outputs = {
            "topics": outputs,
            "records": {k: counts.get(v, 0) for k, v in outputs.items()},
            "redis_prefix": prefix,
            "redis": _redis_cost(redis_before, after, n),
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
        rc = run.outputs.get("redis") or {}
        if rc:
            msg += (f"; Redis: {rc['commands_per_1000_events']} commands per 1,000 events, "
                    f"{rc['bytes_per_event']} bytes per event")
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


async def _redis_stats(redis_url: str) -> dict[str, int]:
    """Redis's own counters (INFO stats): commands processed and network bytes in and out."""
    client = env_redis_client(redis_url)
    try:
        info = await client.info("stats")
    finally:
        await client.aclose()
    return {k: int(info[k]) for k in ("total_commands_processed", "total_net_input_bytes",
                                       "total_net_output_bytes")}


def _redis_cost(before: dict[str, int] | None, after: dict[str, int],
                events: int) -> dict[str, Any]:
    """Redis commands and bytes the worker's run cost, per event and per batch of SM_BATCH_MAX
    (the whole server's counters: run it on a Redis nobody else uses)."""
    if before is None:
        return {}
    d = {k: after[k] - before[k] for k in after}
    return {
        "commands": d["total_commands_processed"],
        "bytes_in": d["total_net_input_bytes"],
        "bytes_out": d["total_net_output_bytes"],
        "commands_per_1000_events": round(1000 * d["total_commands_processed"] / events, 1),
        "bytes_per_event": round((d["total_net_input_bytes"] + d["total_net_output_bytes"])
                                 / events, 1),
    }


async def _redis_cleanup(redis_url: str, prefix: str) -> int:
    """Count, then delete, the worker's state keys (its prefix is fresh for every run)."""
    client = env_redis_client(redis_url)
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


def measure_core(values: list[bytes], batch: int, repeat: int = 3) -> dict[str, Any]:
    """The same events through the same pipeline code in this process, with a store that keeps
    nothing: events per CPU second of the detection work alone (decode, gate, core, state
    deltas), the ceiling for a worker whose transport and state cost nothing."""
    from core_micro import NullStore

    import stream_monitor.core.monitor as core_monitor
    from stream_monitor.contracts import Position, RawRecord
    from stream_monitor.pipeline import BatchPipeline

    cfg = load_config(CONFIG)
    raws = [RawRecord(v, Position("bench", 0, i, 1_767_225_600_000 + i), k)
            for i, (k, v) in enumerate(values)]
    # What the false-alarm calibration costs: it runs once per reference formed (at start and
    # after each drift), never per event; timed here around the core's own calls.
    calls: list[float] = []
    real = core_monitor.calibrate

    def timed(*a: Any, **kw: Any) -> Any:
        c = time.process_time()
        try:
            return real(*a, **kw)
        finally:
            calls.append(time.process_time() - c)

    rates = []
    core_monitor.calibrate = timed  # type: ignore[assignment]
    try:
        for _ in range(repeat):
            pipe = BatchPipeline(cfg, NullStore())  # type: ignore[arg-type]

            async def once() -> None:
                for lo in range(0, len(raws), batch):
                    await pipe.run(raws[lo:lo + batch])  # noqa: B023

            c0 = time.process_time()
            asyncio.run(once())
            rates.append(len(raws) / (time.process_time() - c0))
    finally:
        core_monitor.calibrate = real  # type: ignore[assignment]
    per_run = len(calls) / max(1, repeat)
    return {"rates": [round(r) for r in rates], "batch": batch, "events": len(raws),
            "calibration": {
                "references_calibrated_per_run": per_run,
                "ms_per_reference_median": (round(1000 * statistics.median(calls), 3)
                                            if calls else None),
                "us_per_event": round(1e6 * sum(calls) / max(1, repeat) / len(raws), 3),
            }}


def summarize(
    raw: dict[str, Any], noops: list[FaustRun], workers: list[FaustRun],
    core: dict[str, Any] | None = None,
) -> dict[str, Any]:
    s_raw = stats([raw["rate"]])
    s_core = stats(list(core["rates"]) if core else [])
    s_noop = stats([r.rate for r in noops])
    s_worker = stats([r.rate for r in workers])
    s_noop_agent = stats([(r.agent_clock or {}).get("rate") for r in noops])
    s_noop_done = stats([r.rate_to_done for r in noops])
    s_worker_done = stats([r.rate_to_done for r in workers])
    paired = [ratio(w.rate, n.rate) for n, w in zip(noops, workers, strict=True)]
    w, nf, rk = s_worker["median"], s_noop["median"], s_raw["median"]
    wn = ratio(w, nf)
    s_worker_cpu = stats([r.window.get("events_per_cpu_s") for r in workers])
    wc = ratio(w, s_core["median"])
    wcc = ratio(s_worker_cpu["median"], s_core["median"])
    ratios = {
        "worker/core_cpu": wc,
        "worker_per_cpu_s/core_cpu": wcc,
        "worker/noop_faust": wn,
        "worker/raw_aiokafka": ratio(w, rk),
        "noop_faust/raw_aiokafka": ratio(nf, rk),
        "worker/noop_faust_paired": stats(paired),
    }
    targets = {
        "worker_rate_ge_25000": None if w is None else w >= TARGET_RATE,
        "worker_ge_80pct_of_core_cpu": None if wc is None else wc >= TARGET_CORE_RATIO,
        "worker_cpu_ge_80pct_of_core_cpu": None if wcc is None else wcc >= TARGET_CORE_RATIO,
        "worker_ge_70pct_of_noop_faust": None if wn is None else wn >= TARGET_RATIO,
    }
    return {
        "core_cpu": s_core,
        "worker_per_cpu_s": s_worker_cpu,
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
    row(t, "core, CPU only (same events)", "in-process, events per CPU second",
        summary["core_cpu"])
    row(t, "worker, per CPU second of its process", "events / worker CPU s, same window",
        summary["worker_per_cpu_s"])
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
    t.add_row("worker / core CPU-only", fmt_ratio(r["worker/core_cpu"]))
    t.add_row("worker per CPU s / core CPU-only", fmt_ratio(r["worker_per_cpu_s/core_cpu"]))
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
        f"target >= 25000 events/s: {verdict(tg['worker_rate_ge_25000'])}  "
        f"(worker median {fmt_rate(w)} events/s)"
    )
    rc = r["worker/core_cpu"]
    out.print(
        f"target >= 80% of the core's CPU-only rate: {verdict(tg['worker_ge_80pct_of_core_cpu'])}  "
        f"(worker / core = {'-' if rc is None else f'{rc:.0%}'}; per CPU second of the worker "
        f"process: {verdict(tg['worker_cpu_ge_80pct_of_core_cpu'])} "
        f"{fmt_ratio(r['worker_per_cpu_s/core_cpu'])})"
    )
    out.print(
        f"target >= 70% of no-op Faust: {verdict(tg['worker_ge_70pct_of_noop_faust'])}  "
        f"(worker / no-op Faust = {'-' if rr is None else f'{rr:.0%}'})"
    )


# ---------------------------------------------------------------------------------------------
# Scale-out: K worker processes in one consumer group, reading one multi-partition topic

SCALE_MODEL_PREFIX = "credit-m"  # matched by examples/monitor.yaml's credit-* rule
SCALE_DESCRIBE_INTERVAL = 0.25  # s between two DescribeGroups of the measured group
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def pick_models(n_models: int, partitions: int) -> tuple[tuple[str, ...], dict[int, list[str]]]:
    """``n_models`` model ids (``credit-m000``, ``credit-m001``, ..., skipping ids as needed)
    chosen so that aiokafka's DefaultPartitioner (murmur2 of the key, which the producer uses)
    puts the same number of them on every partition (the remainder on the lowest partitions).

    Returned in an order that visits the partitions in turn, so the round-robin generator
    fills every partition at the same pace."""
    from aiokafka.partitioner import DefaultPartitioner

    if n_models < partitions:
        raise SystemExit(
            f"--models {n_models} < --partitions {partitions}: some partitions would get no events"
        )
    part = DefaultPartitioner()
    all_p = list(range(partitions))
    quota = {q: n_models // partitions + (1 if q < n_models % partitions else 0) for q in all_p}
    by_part: dict[int, list[str]] = {q: [] for q in all_p}
    for i in range(100_000):
        name = f"{SCALE_MODEL_PREFIX}{i:03d}"
        q = part(name.encode(), all_p, all_p)
        if len(by_part[q]) < quota[q]:
            by_part[q].append(name)
            if all(len(by_part[x]) == quota[x] for x in all_p):
                break
    else:
        raise SystemExit(f"found no model ids that fill all {partitions} partitions")
    order = [by_part[q][j] for j in range(max(quota.values())) for q in all_p if j < quota[q]]
    return tuple(order), by_part


def partition_counts(records: list[tuple[bytes, bytes]], partitions: int) -> dict[int, int]:
    """Events per partition as aiokafka's DefaultPartitioner will place them (by key)."""
    from aiokafka.partitioner import DefaultPartitioner

    part = DefaultPartitioner()
    all_p = list(range(partitions))
    where: dict[bytes, int] = {}
    counts = dict.fromkeys(all_p, 0)
    for key, _ in records:
        q = where.get(key)
        if q is None:
            q = where[key] = part(key, all_p, all_p)
        counts[q] += 1
    return counts


async def partition_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    c = AIOKafkaConsumer(**env_client_kwargs(bootstrap), group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic)
        if parts is None:
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(topic) or set()
        ends = await c.end_offsets([TopicPartition(topic, q) for q in sorted(parts)])
        return {tp.partition: off for tp, off in sorted(ends.items())}
    finally:
        await c.stop()


async def delete_groups(bootstrap: str, groups: list[str]) -> dict[str, str]:
    """Delete consumer groups (DeleteGroups; aiokafka's admin client has no helper for it).
    A group can only be deleted once it is empty, i.e. after its workers have left."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import DeleteGroupsRequest

    admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap), request_timeout_ms=10_000)
    await admin.start()
    res: dict[str, str] = {}
    try:
        for g in groups:
            try:
                node = await admin.find_coordinator(g)
                resp = await admin._send_request(DeleteGroupsRequest([g]), node)
                for gid, code in resp.results:
                    res[gid] = "deleted" if code == 0 else for_code(code).__name__
            except Exception as exc:
                res[g] = repr(exc)
    finally:
        await admin.close()
    return res


class GroupPoller:
    """One consumer group: committed offsets of all partitions of a topic (one OffsetFetch),
    and its state, members and their assignments (DescribeGroups)."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap), request_timeout_ms=10_000)
        self.group = group
        self.topic = topic
        self.tps = [TopicPartition(topic, q) for q in range(partitions)]
        self.coordinator: int | None = None

    async def __aenter__(self) -> GroupPoller:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def _coordinator(self) -> int:
        if self.coordinator is None:
            self.coordinator = await self.admin.find_coordinator(self.group)
        return self.coordinator

    async def committed(self) -> list[int]:
        """Committed offset of each partition, 0 where none yet."""
        res = await self.admin.list_consumer_group_offsets(
            self.group, await self._coordinator(), self.tps
        )
        out = []
        for tp in self.tps:
            meta = res.get(tp)
            out.append(max(0, meta.offset) if meta is not None else 0)
        return out

    async def describe(self) -> tuple[str, dict[str, list[int]]]:
        """(group state, {client id: partitions of the topic assigned to it})."""
        from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

        [resp] = await self.admin.describe_consumer_groups([self.group], await self._coordinator())
        g = resp.to_object()["groups"][0]
        members: dict[str, list[int]] = {}
        for m in g["members"]:
            parts: list[int] = []
            raw = m.get("member_assignment")
            if raw:
                a = ConsumerProtocolMemberAssignment.decode(raw)
                parts = sorted(q for t, qs in a.assignment if t == self.topic for q in qs)
            name = m["client_id"] if m["client_id"] not in members else m["member_id"]
            members[name] = parts
        return g["state"], members


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far (/proc/<pid>/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / _CLK_TCK
    return None


def machine_cpu_s() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine since boot (/proc/stat, all CPUs)."""
    with contextlib.suppress(OSError, ValueError):
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = v
        return (
            (user + nice + system + irq + softirq) / _CLK_TCK,
            steal / _CLK_TCK,
            sum(v) / _CLK_TCK,
        )
    return (0.0, 0.0, 0.0)


def listener_pid(address: str) -> dict[str, Any] | None:
    """The local process listening on ``host:port`` (the Kafka broker, Redis), found through
    /proc/net/tcp* and the socket inodes in /proc/<pid>/fd; None if it is not on this machine
    or cannot be seen. Used only to read its CPU time."""
    host, _, port_s = address.rpartition(":")
    if host.strip("[]") not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "") or not port_s:
        return None
    port = int(port_s)
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (d / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        comm = (d / "comm").read_text().strip()
                        return {"pid": int(d.name), "comm": comm, "address": address}
    return None


@dataclass
class Sample:
    """Taken when a new group commit is seen (aligned with the CommitPoints)."""

    t: float
    parts: list[int]  # committed offset of each partition
    machine: tuple[float, float, float]  # machine_cpu_s()
    own_cpu: float  # the benchmark process's CPU seconds
    workers_cpu: list[float | None]  # each worker process's CPU seconds
    services_cpu: dict[str, float | None]  # the broker's and Redis's CPU seconds, if local


@dataclass
class ScaleRun:
    workers: int
    index: int  # round (--repeat)
    group: str
    rate: float | None = None  # events/s, see SCALE_METHOD
    rate_10pct_rule: float | None = None  # events/s with the plain 10% start, however the group was
    rate_to_done: float | None = None  # lower bound: start -> commit of the last event
    start_rule: str = ""
    window: dict[str, Any] = field(default_factory=dict)
    startup_s: float | None = None  # launch -> first commit of the group
    full_group_s: float | None = None  # launch -> the final assignment was first seen
    first_commit_to_done_s: float | None = None
    assignment: dict[str, list[int]] = field(default_factory=dict)  # final: worker -> partitions
    group_timeline: list[dict[str, Any]] = field(default_factory=list)
    rebalances: int = 0  # times the group was seen rebalancing
    member_rates: dict[str, float] = field(default_factory=dict)  # per worker, in the window
    partition_done_s: dict[int, float] = field(default_factory=dict)
    committed_at_end: dict[int, int] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    commit_steps: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    redis_state: dict[str, Any] = field(default_factory=dict)
    log_checks: dict[str, Any] = field(default_factory=dict)
    loadavg_before: list[float] = field(default_factory=list)
    loadavg_after: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    points: list[tuple[float, int]] = field(default_factory=list)  # (t - launch, group total)
    logs: list[str] = field(default_factory=list)
    wall_s: float = 0.0


async def _watch_group(
    poller: GroupPoller,
    timeline: list[dict[str, Any]],
    t_launch: float,
    on_change: Any,
) -> None:
    """Record every change of the group's state / members / assignment (DescribeGroups)."""
    last: Any = None
    while True:
        try:
            state, members = await poller.describe()
        except asyncio.CancelledError:
            raise
        except Exception:  # coordinator not ready yet, group not created yet, ...
            poller.coordinator = None
            await asyncio.sleep(SCALE_DESCRIBE_INTERVAL)
            continue
        t = time.time()
        sig = (state, sorted((c, tuple(p)) for c, p in members.items()))
        if sig != last:
            last = sig
            entry = {"t": t, "s": round(t - t_launch, 3), "state": state, "members": members}
            timeline.append(entry)
            on_change(entry)
        await asyncio.sleep(SCALE_DESCRIBE_INTERVAL)


def _ranges(parts: list[int]) -> str:
    """[0, 1, 2, 4] -> '0-2,4'."""
    out: list[str] = []
    for _, grp in itertools.groupby(enumerate(parts), key=lambda x: x[1] - x[0]):
        g = [q for _, q in grp]
        out.append(str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}")
    return ",".join(out)


def _wname(client_id: str, client_ids: list[str]) -> str:
    return f"w{client_ids.index(client_id) + 1}" if client_id in client_ids else client_id


def _complete(entry: dict[str, Any], client_ids: list[str], partitions: int) -> bool:
    """The group is Stable, has exactly our workers, each with >= 1 partition, and every
    partition is assigned exactly once."""
    members = entry["members"]
    parts = [q for ps in members.values() for q in ps]
    return (
        entry["state"] == "Stable"
        and sorted(members) == sorted(client_ids)
        and all(members[c] for c in client_ids)
        and sorted(parts) == list(range(partitions))
    )


def _scan_log(path: Path) -> dict[str, Any]:
    """What a worker's (JSON) log says: how often Faust gave it an assignment, the partitions
    named in its lines (drift alerts carry the partition of their event; informative only: a
    worker that joins late may have no alert), and warnings that would make the run suspect."""
    import re

    parts: set[int] = set()
    counts = {
        "error_lines": 0,
        "tracebacks": 0,
        "dropped_batches": 0,
        "state_resets": 0,
        "store_retries": 0,
        "assignments_received": 0,
        "flow_resumed": 0,
    }
    pat = re.compile(r'"partition":\s*(\d+)|partition=(\d+)')
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            for m in pat.finditer(line):
                parts.add(int(m.group(1) or m.group(2)))
            if '"level":"ERROR"' in line or " ERROR " in line or "[ERROR]" in line:
                counts["error_lines"] += 1
            if "Traceback" in line:
                counts["tracebacks"] += 1
            if "dropping a batch" in line:
                counts["dropped_batches"] += 1
            if "STATE RESET" in line:
                counts["state_resets"] += 1
            if "state store unavailable" in line:
                counts["store_retries"] += 1
            if "assigned " in line and " partitions" in line:
                counts["assignments_received"] += 1
            if "Resuming flow" in line:
                counts["flow_resumed"] += 1
    return {"partitions_in_log_lines": sorted(parts), **counts}


async def _redis_models(redis_url: str, prefix: str, models: tuple[str, ...]) -> dict[str, Any]:
    """Each model's saved meta: how many events it has processed, and the partition/offset
    of the last one applied (state/redis.py key layout: <prefix>:{model}:v:<version>:model;
    the synthetic events carry model_version "1")."""
    from stream_monitor.state.base import unit_id, unit_key

    client = env_redis_client(redis_url)
    try:
        raws = await client.mget([unit_key(prefix, unit_id(m, "1")) + ":model" for m in models])
    finally:
        await client.aclose()
    per_model: dict[str, Any] = {}
    for m, raw in zip(models, raws, strict=True):
        if raw is None:
            per_model[m] = None
            continue
        meta = orjson.loads(raw)
        per_model[m] = {"events": meta.get("events"), "applied": meta.get("applied")}
    total = sum(v["events"] for v in per_model.values() if v and isinstance(v.get("events"), int))
    return {
        "events_total": total,
        "models_saved": sum(v is not None for v in per_model.values()),
        "per_model": per_model,
    }


async def measure_scaleout(
    k: int,
    index: int,
    *,
    run_id: str,
    bootstrap: str,
    redis_url: str,
    topic: str,
    ends: dict[int, int],
    models: tuple[str, ...],
    events_per_model: int,
    services: dict[str, dict[str, Any] | None],
    log_dir: Path,
    poll_interval: float,
    timeout: float,
    commit_interval: float,
    rep: Reporter,
    cleanup: dict[str, list[str]],
) -> ScaleRun:
    group = f"bench-{run_id}-x{k}-{index}"
    n = sum(ends.values())
    partitions = len(ends)
    run = ScaleRun(k, index, group)
    run.loadavg_before = [round(x, 2) for x in os.getloadavg()]
    outputs = {kind: f"{group}-{kind}" for kind in ("alerts", "retrain", "dead_letter")}
    cleanup["topics"] += outputs.values()
    cleanup["redis_prefixes"].append(group)
    cleanup["groups"].append(group)
    await create_topics(bootstrap, outputs.values())
    client_ids = [f"{group}-w{i + 1}" for i in range(k)]
    base_env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        REDIS_URL=redis_url,
        SM_APP_ID=group,  # consumer group, shared by the k workers
        SM_KEY_PREFIX=group,  # Redis state, shared by the k workers
        SM_TOPIC_INFERENCE=topic,
        **{f"SM_TOPIC_{kind.upper()}": name for kind, name in outputs.items()},
        SM_METRICS_PORT="0",  # k workers on one host would clash on the port
        SM_LOG_FORMAT="json",  # drift alerts carry their partition: a per-worker cross-check
        BROKER_COMMIT_INTERVAL=str(commit_interval),  # read by Faust from the environment
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "stream_monitor", "worker", "--config", str(CONFIG)]
    label = f"{k} worker{'s' if k > 1 else ''}" + (f" (round {index + 1})" if index else "")
    tid = rep.task(label, n)
    procs: list[asyncio.subprocess.Process] = []
    files: list[Any] = []
    points: list[CommitPoint] = []
    samples: list[Sample] = []
    timeline: list[dict[str, Any]] = []
    cpu_at_stop: list[float | None] = []
    watcher: asyncio.Task[None] | None = None
    status = {"members": "0", "total": 0}

    def on_change(entry: dict[str, Any]) -> None:
        assigned = ", ".join(
            f"{_wname(c, client_ids)}:{','.join(map(str, ps)) or '-'}"
            for c, ps in sorted(entry["members"].items())
        )
        status["members"] = f"{len(entry['members'])}/{k}"
        rep.log(
            f"{label}: group {entry['state']} at {entry['s']:.1f}s, "
            f"members {status['members']} [{assigned}]"
        )

    t_launch = time.time()
    try:
        for i in range(k):
            log_path = log_dir / f"{group}-w{i + 1}.log"
            run.logs.append(str(log_path))
            f = log_path.open("wb")
            files.append(f)
            env = dict(
                base_env,
                SM_CLIENT_ID=client_ids[i],  # names the worker in DescribeGroups
                SM_DATA_DIR=str(log_dir / f"{group}-w{i + 1}-data"),
            )
            procs.append(
                await asyncio.create_subprocess_exec(
                    *cmd, cwd=str(log_dir), env=env, stdout=f, stderr=asyncio.subprocess.STDOUT
                )
            )
        async with (
            GroupPoller(bootstrap, group, topic, partitions) as poller,
            GroupPoller(bootstrap, group, topic, partitions) as describer,
        ):
            watcher = asyncio.create_task(_watch_group(describer, timeline, t_launch, on_change))
            last_total = -1
            t_prev = time.time()
            t_change = time.monotonic()
            while True:
                try:
                    parts: list[int] | None = await poller.committed()
                except Exception as exc:  # coordinator not ready yet, etc.
                    parts = None
                    poller.coordinator = None
                    if time.monotonic() - t_change > 10:
                        rep.log(f"{label}: offset fetch failed: {exc!r}")
                t_now = time.time()
                if parts is not None:
                    total = sum(parts)
                    if total != last_total and total > 0:
                        points.append(
                            CommitPoint((t_prev + t_now) / 2, total, (t_now - t_prev) / 2)
                        )
                        samples.append(
                            Sample(
                                t_now,
                                parts,
                                machine_cpu_s(),
                                time.process_time(),
                                [proc_cpu_s(p.pid) for p in procs],
                                {
                                    name: None if sv is None else proc_cpu_s(sv["pid"])
                                    for name, sv in services.items()
                                },
                            )
                        )
                        last_total = total
                        t_change = time.monotonic()
                        rep.update(
                            tid,
                            min(total, n),
                            f"members {status['members']}, {t_now - t_launch:5.1f}s since launch",
                        )
                t_prev = t_now
                if last_total >= n:
                    break
                check_stop()
                for i, proc in enumerate(procs):
                    if proc.returncode is not None:
                        raise RuntimeError(
                            f"{label}: worker {i + 1} exited with code {proc.returncode} after "
                            f"{last_total}/{n} events; log: {run.logs[i]}\n"
                            + _tail(Path(run.logs[i]))
                        )
                if time.monotonic() - t_change > timeout:
                    raise RuntimeError(
                        f"{label}: no commit progress for {timeout:.0f} s ({last_total}/{n}); "
                        f"logs: {', '.join(run.logs)}\n" + _tail(Path(run.logs[-1]))
                    )
                await asyncio.sleep(poll_interval)
            # One more look at the group, now that every event is committed.
            with contextlib.suppress(Exception):
                state, members = await poller.describe()
                t = time.time()
                sig = (state, members)
                if not timeline or (timeline[-1]["state"], timeline[-1]["members"]) != sig:
                    entry = {
                        "t": t,
                        "s": round(t - t_launch, 3),
                        "state": state,
                        "members": members,
                    }
                    timeline.append(entry)
                    on_change(entry)
        cpu_at_stop = [proc_cpu_s(p.pid) for p in procs]
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        # SIGTERM (SIGKILL after 30 s), each worker by its own pid.
        await asyncio.gather(*(_stop(p) for p in procs))
        for f in files:
            f.close()
        run.wall_s = round(time.time() - t_launch, 2)
        for i in range(len(procs)):
            shutil.rmtree(log_dir / f"{group}-w{i + 1}-data", ignore_errors=True)
    run.loadavg_after = [round(x, 2) for x in os.getloadavg()]

    # --- the group's assignments
    run.group_timeline = [{kk: v for kk, v in e.items() if kk != "t"} for e in timeline]
    run.rebalances = sum(
        1
        for a, b in itertools.pairwise(timeline)
        if b["state"] == "PreparingRebalance" and a["state"] != "PreparingRebalance"
    )
    final = next((e for e in reversed(timeline) if _complete(e, client_ids, partitions)), None)
    full_t: float | None = None
    if final is None:
        run.problems.append(
            "the group was never seen Stable with every worker holding >= 1 partition"
        )
    else:
        # The final assignment: the first of the complete entries after which nothing changed.
        i_final = timeline.index(final)
        later = timeline[i_final + 1 :]
        if later:
            run.problems.append(
                f"the group changed after its last complete assignment: {later[-1]['state']} "
                f"with {len(later[-1]['members'])} members"
            )
        full_t = final["t"]
        run.full_group_s = final["s"]
        run.assignment = {
            f"w{client_ids.index(c) + 1}": ps for c, ps in sorted(final["members"].items())
        }

    # --- rates (same commit-based method as the single-worker measurement)
    res = rate_from_commits(points, n, t_launch, not_before=full_t)
    res10 = rate_from_commits(points, n, t_launch)
    run.rate = res.get("rate")
    run.rate_10pct_rule = res10.get("rate")
    run.rate_to_done = res.get("rate_to_done")
    run.window = res.get("window", {})
    run.startup_s = round(res["startup_s"], 3) if "startup_s" in res else None
    if "first_commit_to_done_s" in res:
        run.first_commit_to_done_s = round(res["first_commit_to_done_s"], 3)
    run.commit_steps = res.get("commit_steps", {})
    run.points = [(round(p.t - t_launch, 3), p.offset) for p in points]
    if res.get("start_index") is not None and res.get("start_index") == res10.get("start_index"):
        run.start_rule = "first commit >= 10% of N (the final assignment was already in place)"
    elif res.get("start_index") is not None:
        run.start_rule = (
            f"first commit >= 10% of N made after the final assignment was seen "
            f"({run.full_group_s:.1f} s after launch); the plain 10% rule would start earlier, "
            "with fewer workers in the group"
        )
    if run.rate is None:
        run.problems.append("no rate: too few commits after the final assignment")

    # --- CPU and per-worker throughput in the timed window
    si, ei = res.get("start_index"), res.get("end_index")
    if si is not None and ei is not None:
        a, b = samples[si], samples[ei]
        dt_s = b.t - a.t
        busy, steal = (b.machine[0] - a.machine[0]) / dt_s, (b.machine[1] - a.machine[1]) / dt_s
        per_worker = [
            None if x is None or y is None else round((y - x) / dt_s, 3)
            for x, y in zip(a.workers_cpu, b.workers_cpu, strict=True)
        ]
        workers_cores = sum(x for x in per_worker if x is not None)
        own = (b.own_cpu - a.own_cpu) / dt_s
        svc: dict[str, float | None] = {}
        for name in services:
            x, y = a.services_cpu.get(name), b.services_cpu.get(name)
            svc[name] = None if x is None or y is None else round((y - x) / dt_s, 3)
        win_s = points[ei].t - points[si].t
        run.cpu = {
            "window_s": round(dt_s, 3),
            "machine_busy_cores": round(busy, 3),
            "machine_steal_cores": round(steal, 3),
            "workers_cores": round(workers_cores, 3),
            "per_worker_cores": {f"w{i + 1}": c for i, c in enumerate(per_worker)},
            "worker_cpu_us_per_event": round(
                workers_cores / (run.window["events"] / win_s) * 1e6, 1
            )
            if run.window
            else None,
            "benchmark_process_cores": round(own, 3),
            "kafka_broker_cores": svc.get("kafka"),
            "redis_cores": svc.get("redis"),
            "other_cores": round(
                busy - workers_cores - own - sum(v or 0.0 for v in svc.values()), 3
            ),
            "other_is": "machine busy - workers - benchmark - broker - Redis (whichever of the "
            "last two could be measured): other tenants of the machine",
        }
        for c, ps in sorted((final or {"members": {}})["members"].items()):
            ev = sum(b.parts[q] - a.parts[q] for q in ps)
            run.member_rates[f"w{client_ids.index(c) + 1}"] = round(ev / win_s, 1)
    for q in range(partitions):
        j = next((j for j, s in enumerate(samples) if s.parts[q] >= ends[q]), None)
        if j is not None:
            run.partition_done_s[q] = round(points[j].t - t_launch, 2)
    if cpu_at_stop:
        run.cpu["per_worker_cpu_s_total"] = {
            f"w{i + 1}": None if c is None else round(c, 2) for i, c in enumerate(cpu_at_stop)
        }

    # --- did the group process every event?
    run.committed_at_end = dict(enumerate(samples[-1].parts)) if samples else {}
    short = {
        q: (run.committed_at_end.get(q, 0), e)
        for q, e in ends.items()
        if run.committed_at_end.get(q, 0) != e
    }
    if short:
        run.problems.append(f"committed offsets differ from the end offsets: {short}")
    counts = await end_offsets(bootstrap, list(outputs.values()))
    run.outputs = {
        "topics": outputs,
        "records": {kind: counts.get(name, 0) for kind, name in outputs.items()},
    }
    if run.outputs["records"]["dead_letter"]:
        run.problems.append(f"{run.outputs['records']['dead_letter']} dead letters")
    rs = await _redis_models(redis_url, group, models)
    rs["expected_events_per_model"] = events_per_model
    rs["keys_deleted"] = await _redis_cleanup(redis_url, group)
    run.redis_state = rs
    wrong = [m for m, v in rs["per_model"].items() if not v or v.get("events") != events_per_model]
    if wrong:
        run.problems.append(
            f"Redis state of {len(wrong)} models does not show {events_per_model} events "
            f"each: {wrong[:4]}"
        )
    for i, path in enumerate(run.logs):
        w = f"w{i + 1}"
        run.log_checks[w] = chk = _scan_log(Path(path))
        if run.member_rates and not run.member_rates.get(w):
            run.problems.append(
                f"worker {i + 1}'s partitions {run.assignment.get(w)} did not advance in the window"
            )
        if not chk["assignments_received"]:
            run.problems.append(f"worker {i + 1}'s log shows no partition assignment")
        if chk["tracebacks"] or chk["state_resets"]:
            run.problems.append(f"worker {i + 1}'s log has tracebacks or state resets: {chk}")

    note = f"{run.rate:,.0f} ev/s" if run.rate else "no rate"
    rep.update(tid, n, note)
    msg = f"{label}: {note}"
    if run.window:
        msg += (
            f" (offsets {run.window['from_offset']}->{run.window['to_offset']} in "
            f"{run.window['seconds']:.2f} s, +-{run.window['timing_uncertainty_s']:.2f} s)"
        )
    msg += f"; assignment {run.assignment or '?'}"
    if run.cpu.get("machine_busy_cores") is not None:
        msg += (
            f"; CPU in window: machine {run.cpu['machine_busy_cores']:.2f} cores busy, workers "
            f"{run.cpu['workers_cores']:.2f}"
        )
    rep.log(msg)
    for p in run.problems:
        rep.log(f"[red]{label}: {p}[/red]")
    return run


def summarize_scaleout(runs: list[ScaleRun], counts: list[int]) -> dict[str, Any]:
    by_k: dict[int, dict[str, Any]] = {}
    for k in counts:
        rs = [r for r in runs if r.workers == k]
        s = stats([r.rate for r in rs])
        s["rate_10pct_rule"] = stats([r.rate_10pct_rule for r in rs])
        s["rate_to_done"] = stats([r.rate_to_done for r in rs])
        s["machine_busy_cores"] = stats([r.cpu.get("machine_busy_cores") for r in rs])
        s["workers_cores"] = stats([r.cpu.get("workers_cores") for r in rs])
        for key in ("kafka_broker_cores", "redis_cores", "other_cores", "worker_cpu_us_per_event"):
            s[key] = stats([r.cpu.get(key) for r in rs])
        s["all_checks_passed"] = all(not r.problems for r in rs)
        by_k[k] = s
    base = by_k.get(1, {}).get("median")
    for k, s in by_k.items():
        s["speedup_vs_1"] = ratio(s["median"], base)
        s["per_worker"] = None if s["median"] is None else s["median"] / k
        s["efficiency"] = None if s["speedup_vs_1"] is None else s["speedup_vs_1"] / k
    return {str(k): v for k, v in by_k.items()}


def print_scaleout_report(
    meta: dict[str, Any], summary: dict[str, Any], runs: list[ScaleRun]
) -> None:
    m = meta["machine"]
    out.print()
    out.rule("stream-monitor scale-out: K workers in one consumer group")
    out.print(f"date     {meta['date']}", highlight=False)
    la0, la1 = m["loadavg_at_start"], meta["loadavg_at_end"]
    out.print(
        f"machine  nproc={m['nproc']}  cpu={m['cpu_model']}  python={m['python']}  "
        f"loadavg (1/5/15 min) before={la0[0]:.2f}/{la0[1]:.2f}/{la0[2]:.2f} "
        f"after={la1[0]:.2f}/{la1[1]:.2f}/{la1[2]:.2f}",
        highlight=False,
    )
    out.print(
        "         Kafka broker, Redis, the benchmark and the workers all run on this machine",
        highlight=False,
    )
    p = meta["payload"]
    pp = meta["partitioning"]
    out.print(
        f"payload  {p['events']:,} events, {len(p['models'])} models x {p['events_per_model']:,} "
        f"(credit-m*), {p['n_features']} numeric features + prediction, "
        f"{p['mean_value_bytes']:.0f} B/event, key=model id",
        highlight=False,
    )
    out.print(
        f"topic    {meta['topic']}: {pp['partitions']} partitions, "
        f"{'/'.join(sorted({str(len(v)) for v in pp['models_per_partition'].values()}))} models "
        "each (by aiokafka's DefaultPartitioner); events per partition: "
        + ", ".join(f"p{q}={c:,}" for q, c in pp["events_per_partition"].items()),
        highlight=False,
    )
    c = meta["config"]
    out.print(
        f"worker   {c['path']} rule {c['rule']}: adwin + page_hinkley on {c['signals']} signals; "
        f"each run: fresh SM_APP_ID (group), SM_KEY_PREFIX, output topics; "
        f"BROKER_COMMIT_INTERVAL={meta['faust_commit_settings']['BROKER_COMMIT_INTERVAL']} "
        "(Faust default 2.8 s) for finer commit resolution",
        highlight=False,
    )
    out.print(
        "timed    group's committed offsets summed over all partitions, from the first commit "
        ">= 10% of N (and after the final assignment) to the last commit < N",
        highlight=False,
    )

    t = Table(
        title="end-to-end events/s of K stream-monitor workers in one consumer group; "
        "CPU columns: cores used in the timed window (machine total, the K workers together, "
        "the Kafka broker, Redis, everything else)"
    )
    for col in (
        "workers",
        "events/s",
        "speed-up vs 1",
        "per worker",
        "CPUs (nproc)",
        "CPU busy",
        "workers",
        "Kafka",
        "Redis",
        "other",
        "worker CPU/event",
        "runs",
        "checks",
    ):
        t.add_column(col, justify="left" if col == "checks" else "right")
    for k, s in summary.items():
        su = s["speedup_vs_1"]

        def cores(x: dict[str, Any]) -> str:
            return "-" if x["median"] is None else f"{x['median']:.2f}"

        t.add_row(
            k,
            fmt_rate(s["median"])
            + ("" if s["n"] < 2 else f" ({fmt_rate(s['min'])}-{fmt_rate(s['max'])})"),
            "-" if su is None else f"{su:.2f}x",
            fmt_rate(s["per_worker"]),
            str(m["nproc"]),
            cores(s["machine_busy_cores"]),
            cores(s["workers_cores"]),
            cores(s["kafka_broker_cores"]),
            cores(s["redis_cores"]),
            cores(s["other_cores"]),
            "-"
            if s["worker_cpu_us_per_event"]["median"] is None
            else f"{s['worker_cpu_us_per_event']['median']:.0f} us",
            str(s["n"]),
            "[green]ok[/green]" if s["all_checks_passed"] else "[red]see below[/red]",
        )
    out.print(t)

    t = Table(title="each run")
    for col in (
        "run",
        "final assignment",
        "1st commit / full group s",
        "rebal.",
        "window (offsets, s)",
        "+-s",
        "10%-rule ev/s",
        "to final commit",
        "each worker ev/s",
        "each worker CPU",
        "partitions done s",
    ):
        t.add_column(col)
    for r in runs:
        w = r.window
        done = sorted(r.partition_done_s.values())
        t.add_row(
            f"{r.workers}w" + (f" #{r.index + 1}" if r.index else ""),
            " ".join(f"{w_}:{_ranges(ps)}" for w_, ps in r.assignment.items()) or "-",
            f"{r.startup_s} / {r.full_group_s}",
            str(r.rebalances),
            f"{w.get('from_offset')}->{w.get('to_offset')}, {w.get('seconds')}" if w else "-",
            f"{w.get('timing_uncertainty_s')}" if w else "-",
            fmt_rate(r.rate_10pct_rule),
            fmt_rate(r.rate_to_done),
            " ".join(f"{fmt_rate(v)}" for v in r.member_rates.values()) or "-",
            " ".join(
                "-" if c is None else f"{c:.2f}" for c in r.cpu.get("per_worker_cores", {}).values()
            )
            or "-",
            f"{done[0]}-{done[-1]}" if done else "-",
        )
    out.print(t)
    n_events = meta["payload"]["events"]
    for r in runs:
        rec = r.outputs.get("records", {})
        rs = r.redis_state
        parts_in_logs = " ".join(
            f"w{i + 1}:{','.join(map(str, c['partitions_in_log_lines'])) or '-'}"
            for i, c in enumerate(r.log_checks.values())
        )
        out.print(
            f"{r.workers}w: committed {sum(r.committed_at_end.values()):,}/{n_events:,}; "
            f"Redis: {rs.get('models_saved')} models saved, {rs.get('events_total', 0):,} events "
            f"processed; {rec.get('alerts')} alerts, {rec.get('retrain')} retrain, "
            f"{rec.get('dead_letter')} DLQ; partitions in worker logs {parts_in_logs}; "
            f"loadavg {r.loadavg_before[0]:.2f} -> {r.loadavg_after[0]:.2f}; "
            + (
                "[green]checks ok[/green]"
                if not r.problems
                else "[red]" + "; ".join(r.problems) + "[/red]"
            ),
            highlight=False,
        )
        out.print(f"    start: {r.start_rule}", highlight=False)


SCALE_METHOD = {
    "setup": "One topic with P partitions, pre-filled once with N events whose keys (model ids) "
    "are chosen so that aiokafka's DefaultPartitioner spreads them evenly over the partitions. "
    "For each K, K `python -m stream_monitor worker` processes are launched at the same time "
    "with the same fresh SM_APP_ID (one consumer group), SM_KEY_PREFIX and output topics; each "
    "gets BROKER_CLIENT_ID=<group>-w<i> so that DescribeGroups names it, SM_METRICS_PORT=0, "
    "SM_LOG_FORMAT=json and BROKER_COMMIT_INTERVAL (Faust commits every that many seconds "
    "instead of 2.8 s).",
    "timing": "Every poll_interval s the benchmark reads the group's committed offsets of all "
    "partitions (one OffsetFetch) and sums them; a new sum is a commit point, stamped at the "
    "middle of the poll gap (+- half the gap). Every 0.25 s it also describes the group "
    "(DescribeGroups: state, members, assignments). Rate = (O_b - O_a) / (t_b - t_a), a = the "
    "first commit point with sum >= 10% of N that was made after the group was first seen "
    "Stable with its final assignment (every worker holding >= 1 partition; nothing changed "
    "after), b = the last commit point with sum < N. When the group was complete before 10% of "
    "N, this is exactly the single-worker method; rate_10pct_rule is the plain 10% rule in all "
    "cases. rate_to_done (lower bound) ends at the commit that brings the sum to N.",
    "checks": "The sum of committed offsets equals N and each partition's committed offset its "
    "end offset; every worker is a member with >= 1 partition in the final assignment; each "
    "model's state in Redis shows N / models events processed; no dead letters; each worker's "
    "log names partitions of its assignment (drift alerts carry the partition).",
    "cpu": "/proc/stat and /proc/<pid>/stat sampled at each commit point; cores = CPU seconds "
    "used in the timed window / its length. The broker and Redis processes are found by their "
    "listening ports (/proc/net/tcp*). other = machine busy - workers - benchmark process - "
    "broker - Redis: other tenants of the machine. worker_cpu_us_per_event = the workers' CPU "
    "seconds in the window / events committed in it.",
}


async def scaleout_main(args: argparse.Namespace) -> int:
    _install_signal_handlers()
    settings = Settings()  # type: ignore[call-arg]  # fields come from the environment
    bootstrap, redis_url = settings.kafka_bootstrap_servers, settings.redis_url
    counts = args.scale_out
    now = dt.datetime.now().astimezone()
    run_id = now.strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
    machine = machine_info()
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="sm-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    err.print(
        f"scale-out {counts} workers; Kafka {bootstrap}, Redis {redact(redis_url)}, run {run_id}, "
        f"logs in {log_dir}; BROKER_COMMIT_INTERVAL={args.commit_interval} for the workers",
        highlight=False,
    )
    if max(counts) > args.partitions:
        err.print(
            f"[yellow]warning: more workers ({max(counts)}) than partitions "
            f"({args.partitions}): some workers would get none[/yellow]"
        )
    await wait_for_kafka(bootstrap, timeout=30)

    rc = env_redis_client(redis_url)
    try:
        await rc.ping()
    finally:
        await rc.aclose()

    services = {
        "kafka": listener_pid(bootstrap.split(",")[0]),
        "redis": listener_pid(
            f"{urlsplit(redis_url).hostname or ''}:{urlsplit(redis_url).port or 6379}"
        ),
    }
    err.print(f"local services (for their CPU time): {services}", highlight=False)
    t0 = time.monotonic()
    models, by_part = pick_models(args.models, args.partitions)
    with err.status("generating and checking the payload..."):
        per = args.events // len(models)
        records, payload = build_payload(per * len(models), models)
        config_info = check_config(payload["features"], models)
        expected = partition_counts(records, args.partitions)
    n = len(records)
    empty = [q for q, c in expected.items() if c == 0]
    if empty:
        raise SystemExit(f"partitions {empty} would get no events")
    err.print(
        f"payload: {n:,} events of {len(models)} models; DefaultPartitioner puts "
        + ", ".join(f"p{q}={c:,}" for q, c in expected.items()),
        highlight=False,
    )

    topic = f"bench-{run_id}-scaleout"
    cleanup: dict[str, list[str]] = {"topics": [topic], "redis_prefixes": [], "groups": []}
    runs: list[ScaleRun] = []
    cleanup_result: dict[str, Any] = {}
    try:
        await create_topics(bootstrap, [topic], partitions=args.partitions)
        with Reporter() as rep:
            tid = rep.task("producing", n)
            t_p = time.monotonic()
            await produce(bootstrap, topic, records, on_progress=lambda k: rep.update(tid, k))
            produce_s = time.monotonic() - t_p
            del records
            ends = await partition_end_offsets(bootstrap, topic)
            if ends != expected:
                raise RuntimeError(f"{topic}: end offsets {ends}, expected {expected}")
            rep.log(
                f"produced {n:,} events to {topic} ({args.partitions} partitions, end offsets "
                f"as expected) in {produce_s:.1f} s"
            )
            for r in range(args.repeat):
                for k in counts:
                    check_stop()
                    runs.append(
                        await measure_scaleout(
                            k,
                            r,
                            run_id=run_id,
                            bootstrap=bootstrap,
                            redis_url=redis_url,
                            topic=topic,
                            ends=ends,
                            models=models,
                            events_per_model=per,
                            services=services,
                            log_dir=log_dir,
                            poll_interval=args.poll_interval,
                            timeout=args.timeout,
                            commit_interval=args.commit_interval,
                            rep=rep,
                            cleanup=cleanup,
                        )
                    )
    finally:
        with err.status("cleaning up: topics, Redis keys, consumer groups..."):
            if not args.keep_topics:
                with contextlib.suppress(Exception):
                    await delete_topics(bootstrap, cleanup["topics"])
                    cleanup_result["topics_deleted"] = len(cleanup["topics"])
            for prefix in cleanup["redis_prefixes"]:  # normally already deleted after each run
                with contextlib.suppress(Exception):
                    await _redis_cleanup(redis_url, prefix)
            with contextlib.suppress(Exception):
                cleanup_result["groups"] = await delete_groups(bootstrap, cleanup["groups"])
        err.print(f"clean-up: {cleanup_result}", highlight=False)

    summary = summarize_scaleout(runs, counts)
    meta = {
        "date": now.isoformat(timespec="seconds"),
        "run_id": run_id,
        "mode": "scale-out",
        "machine": machine,
        "loadavg_at_end": list(os.getloadavg()),
        "kafka_bootstrap_servers": bootstrap,
        "redis_url": redact(redis_url),
        "local_services": services,
        "topic": topic,
        "partitioning": {
            "partitions": args.partitions,
            "partitioner": "aiokafka DefaultPartitioner (murmur2 of the key, as the producer)",
            "models_per_partition": {q: ms for q, ms in by_part.items()},
            "events_per_partition": expected,
            "end_offsets_checked": True,
        },
        "workers": counts,
        "repeat": args.repeat,
        "payload": payload,
        "config": config_info,
        "poll_interval_s": args.poll_interval,
        "faust_commit_settings": {
            "BROKER_COMMIT_INTERVAL": args.commit_interval,
            "set_for": "every worker process (environment), for finer commit resolution; "
            "Faust's default is 2.8 s",
            "broker_commit_every": os.environ.get("BROKER_COMMIT_EVERY", 10_000),
        },
        "worker_settings": {
            "SM_BATCH_MAX": settings.batch_max,
            "SM_BATCH_WITHIN_SECONDS": settings.batch_within_seconds,
            "SM_SESSION_TIMEOUT_SECONDS": settings.session_timeout_seconds,
            "SM_LOG_LEVEL": settings.log_level,
            "SM_LOG_FORMAT": "json",
            "SM_METRICS_PORT": 0,
        },
        "produce_s": round(produce_s, 2),
        "total_runtime_s": round(time.monotonic() - t0, 1),
        "log_dir": str(log_dir),
        "cleanup": cleanup_result,
        "method": SCALE_METHOD,
    }
    print_scaleout_report(meta, summary, runs)
    result = {**meta, "summary": summary, "runs": [asdict(r) for r in runs]}
    res_dir = BENCH / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    path = res_dir / f"scaleout-{now.strftime('%Y-%m-%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    out.print(f"results: {path.relative_to(ROOT)}", highlight=False)
    return 0 if all(not r.problems for r in runs) else 1


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


def _install_signal_handlers() -> None:
    """SIGINT / SIGTERM: cancel the main task once, so that its finally blocks stop the
    processes it started and delete what it created."""
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


async def amain(args: argparse.Namespace) -> int:
    _install_signal_handlers()
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

    rc = env_redis_client(redis_url)
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
            rep.log("measuring the core alone on the same events (CPU time)...")
            core = await asyncio.to_thread(measure_core, records, settings.batch_max)
            cal = core["calibration"]
            rep.log(f"core CPU-only: {core['rates']} events per CPU second; calibration: "
                    f"{cal['references_calibrated_per_run']:.0f} references a run, "
                    f"{cal['ms_per_reference_median']} ms each (median), "
                    f"{cal['us_per_event']} us per event on average")
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

    summary = summarize(raw, noops, workers, core)
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
        "core_calibration": core["calibration"],
        "targets": {"worker_events_per_s": TARGET_RATE, "worker_over_noop_faust": TARGET_RATIO,
                    "worker_over_core_cpu": TARGET_CORE_RATIO},
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


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write worker counts like 1,2,3") from None


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
        help="no-op Faust / worker measurements, interleaved; with --scale-out: rounds over "
        "all worker counts (default 1)",
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
    g = ap.add_argument_group(
        "scale-out mode",
        "K stream-monitor workers in one consumer group on one multi-partition topic "
        "(see benchmarks/README.md, Scale-out)",
    )
    g.add_argument(
        "--scale-out",
        metavar="K,K,...",
        type=_int_list,
        help="measure these worker counts, e.g. 1,2,3 (instead of the single-partition benchmark)",
    )
    g.add_argument(
        "--partitions", type=int, default=6, help="partitions of the pre-filled topic (default 6)"
    )
    g.add_argument(
        "--models",
        type=int,
        default=12,
        help="model ids (keys), spread evenly over the partitions (default 12)",
    )
    g.add_argument(
        "--commit-interval",
        type=float,
        default=0.5,
        help="BROKER_COMMIT_INTERVAL given to the workers, in s (default 0.5; Faust's is 2.8)",
    )
    args = ap.parse_args()
    if args.repeat < 1 or args.events < 4:
        ap.error("--repeat must be >= 1 and --events >= 4")
    if args.scale_out is not None:
        if not args.scale_out or min(args.scale_out) < 1:
            ap.error("--scale-out takes worker counts >= 1, e.g. 1,2,3")
        if args.partitions < 1 or args.models < args.partitions:
            ap.error("--partitions must be >= 1 and --models >= --partitions")
        if args.events < 10 * args.models:
            ap.error("--events must be at least 10 x --models")
    import logging

    logging.basicConfig(level=logging.WARNING)
    try:
        code = asyncio.run(scaleout_main(args) if args.scale_out else amain(args))
    except (KeyboardInterrupt, Interrupted, asyncio.CancelledError):
        err.print("[yellow]interrupted; the processes it started are stopped[/yellow]")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
