"""Scale-out: K worker processes in one consumer group, reading one multi-partition topic."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream_monitor.adapters.kafka_tools import create_topics
from stream_monitor.state.connection import env_redis_client

from .commits import CommitPoint, rate_from_commits
from .common import CONFIG, check_stop, window_note
from .faust_process import stop_process, tail_log
from .kafka import GroupPoller, end_offsets
from .procstat import machine_cpu_s, proc_cpu_s
from .progress import Reporter
from .redis_cost import redis_cleanup

SCALE_MODEL_PREFIX = "credit-m"  # matched by examples/monitor.yaml's credit-* rule
SCALE_DESCRIBE_INTERVAL = 0.25  # s between two DescribeGroups of the measured group


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
                            + tail_log(Path(run.logs[i]))
                        )
                if time.monotonic() - t_change > timeout:
                    raise RuntimeError(
                        f"{label}: no commit progress for {timeout:.0f} s ({last_total}/{n}); "
                        f"logs: {', '.join(run.logs)}\n" + tail_log(Path(run.logs[-1]))
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
        await asyncio.gather(*(stop_process(p) for p in procs))
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
    rs["keys_deleted"] = await redis_cleanup(redis_url, group)
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
        msg += window_note(run.window)
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
