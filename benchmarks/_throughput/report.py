"""The single-partition results: the method text, the summary and the printed tables."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .common import (
    TARGET_CORE_RATIO,
    TARGET_RATE,
    TARGET_RATIO,
    fmt_rate,
    fmt_ratio,
    out,
    ratio,
    stats,
)
from .faust_process import FaustRun

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
        "worker_rate_ge_target": None if w is None else w >= TARGET_RATE,
        "worker_ge_target_of_core_cpu": None if wc is None else wc >= TARGET_CORE_RATIO,
        "worker_cpu_ge_target_of_core_cpu": None if wcc is None else wcc >= TARGET_CORE_RATIO,
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
        f"target >= {TARGET_RATE:,.0f} events/s: {verdict(tg['worker_rate_ge_target'])}  "
        f"(worker median {fmt_rate(w)} events/s)"
    )
    rc = r["worker/core_cpu"]
    out.print(
        f"target >= {TARGET_CORE_RATIO:.0%} of the core's CPU-only rate: "
        f"{verdict(tg['worker_ge_target_of_core_cpu'])}  "
        f"(worker / core = {'-' if rc is None else f'{rc:.0%}'}; per CPU second of the worker "
        f"process: {verdict(tg['worker_cpu_ge_target_of_core_cpu'])} "
        f"{fmt_ratio(r['worker_per_cpu_s/core_cpu'])})"
    )
    out.print(
        f"target >= 70% of no-op Faust: {verdict(tg['worker_ge_70pct_of_noop_faust'])}  "
        f"(worker / no-op Faust = {'-' if rr is None else f'{rr:.0%}'})"
    )
