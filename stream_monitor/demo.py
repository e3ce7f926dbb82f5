"""The end-to-end demo: real Kafka and Redis, a real worker process, a drifting stream."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from .adapters.kafka_io import consume, create_topics, produce, wait_for_kafka
from .config import Settings, load_config
from .synth import Drift, StreamSpec, generate

BAD_EVENTS = [b"this is not json", b"[1, 2, 3]", b'{"event_id": "x-1", "features": {}}']


async def run_demo(config_path: Path, settings: Settings, *, events: int, timeout: float,
                   console: Console) -> int:
    run = time.strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
    out_dir = Path("out")
    out_dir.mkdir(exist_ok=True)
    topics = {k: f"demo-{run}-{k}" for k in ("inference", "alerts", "retrain", "dead_letter")}
    env = dict(os.environ, SM_APP_ID=f"stream-monitor-demo-{run}", SM_KEY_PREFIX=f"sm-demo-{run}",
               KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, REDIS_URL=settings.redis_url,
               **{f"SM_TOPIC_{k.upper()}": v for k, v in topics.items()})
    load_config(config_path)  # fail here, with the field named, before anything starts
    bootstrap = settings.kafka_bootstrap_servers
    console.rule("stream-monitor demo")
    console.print(f"Kafka {bootstrap}, Redis {settings.redis_url}, run {run}")
    await wait_for_kafka(bootstrap)
    await create_topics(bootstrap, topics.values())

    log_path = out_dir / "demo-worker.log"
    console.print(f"starting worker (log: {log_path})")
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream_monitor", "worker", "--config", str(config_path),
        env=env, stdout=log, stderr=asyncio.subprocess.STDOUT)
    try:
        half = events // 2
        spec = StreamSpec(models=("credit-risk",), events_per_model=events,
                          drifts=(Drift(half, "amount", 1.5), Drift(half, "utilization", -1.5),
                                  Drift(half, "prediction", 1.0)))
        lines = list(generate(spec))
        # Three malformed events early on: they must reach the dead-letter topic, not stop us.
        for k, bad in enumerate(BAD_EVENTS):
            lines.insert(100 + 50 * k, bad)
        events_path = out_dir / "demo-events.jsonl"
        events_path.write_bytes(b"\n".join(lines) + b"\n")
        console.print(f"feeding {len(lines)} events (drift injected at event {half}: amount "
                      "+1.5 sd, utilization -1.5 sd, prediction +1 sd; 3 malformed events)")
        with console.status("producing...") as status:
            await produce(bootstrap, topics["inference"], ((b"credit-risk", v) for v in lines),
                          on_progress=lambda n: status.update(f"produced {n}/{len(lines)}"))

        want_topics = [topics["alerts"], topics["retrain"], topics["dead_letter"]]

        def done(msgs: list[Any]) -> bool:
            kinds = [m.topic for m in msgs]
            return (kinds.count(topics["retrain"]) >= 1 and kinds.count(topics["alerts"]) >= 3
                    and kinds.count(topics["dead_letter"]) >= len(BAD_EVENTS))

        with console.status("waiting for the worker's alerts on the output topics..."):
            t0 = time.monotonic()
            msgs = await consume(bootstrap, want_topics, until=done, timeout=timeout)
            # Anything more that is still on its way (e.g. a late alert) within 3 s.
            msgs += [m for m in await consume(bootstrap, want_topics, timeout=3.0, idle=3.0)
                     if (m.topic, m.partition, m.offset) not in {(x.topic, x.partition, x.offset) for x in msgs}]
        console.print(f"read {len(msgs)} output records in {time.monotonic() - t0:.1f}s")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
    records = [(m.topic, orjson.loads(m.value), dict(m.headers or ())) for m in msgs]
    outputs_path = out_dir / "demo-outputs.jsonl"
    outputs_path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for _, r, _ in records))
    _show(console, records, topics)
    try:
        from .plot import plot_signals

        img = plot_signals(events_path, outputs_path, out_dir / "demo-signals.png")
        console.print(f"plot of the drifting signals: {img}")
    except ImportError:
        console.print("(install matplotlib to get a plot of the signals)")
    alerts = sum(1 for t, r, _ in records
                 if t == topics["alerts"] and r.get("type") == "drift_alert")
    retrains = sum(1 for t, _, _ in records if t == topics["retrain"])
    console.print(f"worker exit code {proc.returncode}; outputs in {outputs_path}")
    ok = alerts >= 1 and retrains >= 1
    console.print("[green]demo ok[/green]" if ok else "[red]demo failed: no alert or no retrain request[/red]")
    return 0 if ok else 1


def _show(console: Console, records: list[tuple[str, dict, dict]], topics: dict[str, str]) -> None:
    t = Table(title=f"drift alerts (topic {topics['alerts']})")
    for c in ("signal", "detector", "offset", "event_id", "reference mean", "current mean",
              "shift (ref sd)", "alert_id"):
        t.add_column(c)
    for topic, r, _ in records:
        if topic == topics["alerts"] and r.get("type") == "drift_alert":
            ev = r["evidence"]
            t.add_row(r["signal"], r["detector"]["name"], str(r["detected_at"]["offset"]),
                      r["detected_at"]["event_id"], f"{ev['reference']['mean']:.4g}",
                      f"{ev['current']['mean']:.4g}", f"{ev['mean_shift_in_reference_std']:+.2f}",
                      r["alert_id"][:12])
    console.print(t)
    quality = [r for topic, r, _ in records
               if topic == topics["alerts"] and r.get("type") == "data_quality_alert"]
    if quality:
        t = Table(title=f"data-quality alerts (topic {topics['alerts']})")
        for c in ("feature", "fault", "offset", "rate before", "rate after", "alert_id"):
            t.add_column(c)
        for r in quality:
            t.add_row(r["feature"], r["indicator"], str(r["detected_at"]["offset"]),
                      f"{r['rate_before']:.2%}", f"{r['rate_after']:.2%}", r["alert_id"][:12])
        console.print(t)
    t = Table(title=f"retrain requests (topic {topics['retrain']})")
    for c in ("model", "rule", "reason", "alerts", "request_id"):
        t.add_column(c)
    for topic, r, _ in records:
        if topic == topics["retrain"]:
            t.add_row(r["model_id"], r["rule"]["name"], r["reason"], str(len(r["alert_ids"])),
                      r["request_id"][:12])
    console.print(t)
    t = Table(title=f"dead letters (topic {topics['dead_letter']})")
    for c in ("offset", "reason_code", "reason", "original value"):
        t.add_column(c)
    for topic, r, _ in records:
        if topic == topics["dead_letter"]:
            t.add_row(str(r["source"]["offset"]), r["reason_code"], r["reason"],
                      (r["original"]["value"] or {}).get("data", "")[:40])
    console.print(t)
