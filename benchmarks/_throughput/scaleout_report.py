"""The scale-out results: the method text, the summary and the printed tables."""

from __future__ import annotations

import itertools
from typing import Any

from rich.table import Table

from .common import fmt_rate, out, ratio, stats
from .scaleout import ScaleRun


def _ranges(parts: list[int]) -> str:
    """[0, 1, 2, 4] -> '0-2,4'."""
    out: list[str] = []
    for _, grp in itertools.groupby(enumerate(parts), key=lambda x: x[1] - x[0]):
        g = [q for _, q in grp]
        out.append(str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}")
    return ",".join(out)


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
