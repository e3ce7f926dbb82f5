"""The single-partition benchmark from start to results file (rows 1-3 and the core)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from stream_monitor.adapters.kafka_tools import create_topics, produce, wait_for_kafka
from stream_monitor.settings import Settings
from stream_monitor.state.connection import env_redis_client

from .common import (
    BENCH,
    ROOT,
    TARGET_CORE_RATIO,
    TARGET_RATE,
    TARGET_RATIO,
    check_stop,
    err,
    install_signal_handlers,
    machine_info,
    out,
    redact,
    use_config,
)
from .core_cpu import measure_core
from .faust_process import FaustRun, measure_faust
from .kafka import clean_up, end_offsets
from .payload import build_payload, check_config
from .progress import Reporter
from .raw_consumer import measure_raw
from .report import METHOD, print_report, summarize


async def amain(args: argparse.Namespace) -> int:
    install_signal_handlers()
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
    use_config(args.detectors, log_dir)
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
        f"config {config_info['path']}: {' + '.join(config_info['detectors_per_signal'])} on "
        f"all {config_info['signals']} signals",
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
        await clean_up(bootstrap, redis_url, cleanup, args.keep_topics)

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
