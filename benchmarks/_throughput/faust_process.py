"""Rows 2 and 3: the no-op Faust agent and the real worker, each in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from stream_monitor.adapters.kafka_tools import create_topics

from .commits import CommitPoint, rate_from_commits
from .common import BENCH, check_stop, config_path, window_note
from .kafka import CommitPoller, end_offsets
from .procstat import proc_cpu_s
from .progress import Reporter
from .redis_cost import redis_cleanup, redis_cost, redis_stats


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
        cmd = [sys.executable, "-m", "stream_monitor", "worker", "--config",
               str(config_path())]
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
        redis_before = await redis_stats(redis_url) if kind == "worker" else None
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
                            f"{last_offset}/{n} events; log: {log_path}\n" + tail_log(log_path)
                        )
                    if time.monotonic() - t_change > timeout:
                        raise RuntimeError(
                            f"{label}: no commit progress for {timeout:.0f} s "
                            f"({last_offset}/{n}); log: {log_path}\n" + tail_log(log_path)
                        )
                    await asyncio.sleep(poll_interval)
            if kind == "noop":
                for _ in range(50):  # written before the last event was acked; normally there
                    if result_file.exists():
                        break
                    await asyncio.sleep(0.1)
        finally:
            await stop_process(proc)
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
        after = await redis_stats(redis_url)
        run.outputs = {
            "topics": outputs,
            "records": {k: counts.get(v, 0) for k, v in outputs.items()},
            "redis_prefix": prefix,
            "redis": redis_cost(redis_before, after, n),
            "redis_keys": await redis_cleanup(redis_url, prefix),
        }
    note = f"{run.rate:,.0f} ev/s" if run.rate else "no rate (too few commits)"
    rep.update(tid, n, note)
    msg = f"{label}: {note}"
    if run.window:
        msg += window_note(run.window)
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


def tail_log(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


async def stop_process(proc: asyncio.subprocess.Process) -> None:
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
