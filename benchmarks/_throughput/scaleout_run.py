"""The scale-out benchmark from start to results file."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stream_monitor.adapters.kafka_tools import create_topics, produce, wait_for_kafka
from stream_monitor.settings import Settings
from stream_monitor.state.connection import env_redis_client

from .common import BENCH, ROOT, check_stop, err, install_signal_handlers, machine_info, out, redact
from .kafka import clean_up, partition_end_offsets
from .payload import build_payload, check_config
from .procstat import listener_pid
from .progress import Reporter
from .scaleout import ScaleRun, measure_scaleout, partition_counts, pick_models
from .scaleout_report import SCALE_METHOD, print_scaleout_report, summarize_scaleout


async def scaleout_main(args: argparse.Namespace) -> int:
    install_signal_handlers()
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
            cleanup_result = await clean_up(bootstrap, redis_url, cleanup, args.keep_topics)
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
