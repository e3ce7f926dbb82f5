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

from .adapters.kafka_clients import describe
from .adapters.kafka_tools import consume, create_topics, produce, wait_for_kafka
from .config import load_config
from .settings import Settings
from .state.connection import redacted_url, redis_client
from .synth import Drift, LabelledSpec, StreamSpec, generate, labelled

CHURN = "churn-model"
BAD_EVENTS = [b"this is not json", b"[1, 2, 3]", b'{"event_id": "x-1", "features": {}}']


async def run_demo(config_path: Path, settings: Settings, *, events: int, timeout: float,
                   console: Console) -> int:
    run = time.strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
    out_dir = Path("out")
    out_dir.mkdir(exist_ok=True)
    topics = {k: f"demo-{run}-{k}" for k in ("inference", "alerts", "retrain", "dead_letter",
                                              "labels", "deployments")}
    env = dict(os.environ, SM_APP_ID=f"stream-monitor-demo-{run}", SM_KEY_PREFIX=f"sm-demo-{run}",
               KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
               REDIS_URL=settings.redis_url,
               **{f"SM_TOPIC_{k.upper()}": v for k, v in topics.items()})
    load_config(config_path)  # fail here, with the field named, before anything starts
    bootstrap = settings  # servers and security (TLS, SASL) for every client: docs/security.md
    console.rule("stream-monitor demo")
    console.print(f"Kafka {describe(settings)}, Redis {redacted_url(settings.redis_url)}, "
                  f"run {run}")
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
        # A classifier with delayed labels: its inputs never change, its error rate goes from
        # 10% to 40% halfway (only the labels show it); then version 2 is deployed.
        churn = [labelled(LabelledSpec(model=CHURN, events=2 * half // 3 * 2,
                                       concept_drift_at=2 * half // 3, seed=11)),
                 labelled(LabelledSpec(model=CHURN, events=half // 2, concept_drift_at=10**9,
                                       model_version="2", first_index=2 * half // 3 * 2,
                                       early_labels=0, bogus_labels=0, seed=9))]
        n_churn = sum(len(c.inference) for c in churn)
        console.print(f"feeding {n_churn} events of {CHURN} with labels 20-80 events late "
                      f"(error 10% -> 40% at event {2 * half // 3}, inputs unchanged; version 2 "
                      f"from event {2 * half // 3 * 2})")
        with console.status("producing the labelled model...") as status:
            for version, c in enumerate(churn, 1):
                # Predictions, then their labels: a label never waits long for its prediction.
                await produce(bootstrap, topics["inference"], ((CHURN.encode(), v)
                                                               for v in c.inference))
                await produce(bootstrap, topics["labels"], ((CHURN.encode(), v)
                                                            for v in c.early + c.labels))
                status.update(f"produced {CHURN} version {version}")

        want_topics = [topics["alerts"], topics["retrain"], topics["dead_letter"],
                       topics["deployments"]]

        def done(msgs: list[Any]) -> bool:
            kinds = [m.topic for m in msgs]
            return (kinds.count(topics["retrain"]) >= 2 and kinds.count(topics["alerts"]) >= 4
                    and kinds.count(topics["dead_letter"]) >= len(BAD_EVENTS)
                    and kinds.count(topics["deployments"]) >= 1)

        with console.status("waiting for the worker's alerts on the output topics..."):
            t0 = time.monotonic()
            msgs = await consume(bootstrap, want_topics, until=done, timeout=timeout)
            # Anything more that is still on its way (e.g. a late alert) within 3 s.
            seen = {(x.topic, x.partition, x.offset) for x in msgs}
            msgs += [m for m in await consume(bootstrap, want_topics, timeout=3.0, idle=3.0)
                     if (m.topic, m.partition, m.offset) not in seen]
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
        from .plot import plot_error_rate, plot_signals

        img = plot_signals(events_path, outputs_path, out_dir / "demo-signals.png",
                           model="credit-risk")
        console.print(f"plot of the drifting signals: {img}")
        img = plot_error_rate(
            _errors(churn), [r for t, r, _ in records if t == topics["alerts"]
                             and r.get("model_id") == CHURN and r.get("type") == "drift_alert"
                             and r["signal"] == "performance:error"],
            out_dir / "demo-labels.png",
            marks={2 * half // 3: "error 10% -> 40%", len(churn[0].inference): "version 2"},
            title=f"{CHURN}: error of predictions joined to their delayed labels")
        console.print(f"plot of {CHURN}'s error rate with its drift points: {img}")
    except ImportError:
        console.print("(install matplotlib to get a plot of the signals)")
    await _show_labels(console, settings, f"sm-demo-{run}")
    alerts = {r["model_id"] for t, r, _ in records
              if t == topics["alerts"] and r.get("type") == "drift_alert"}
    retrains = {r["model_id"] for t, r, _ in records if t == topics["retrain"]}
    checks = [r for t, r, _ in records if t == topics["deployments"]]
    console.print(f"worker exit code {proc.returncode}; outputs in {outputs_path}")
    missing = [what for what, ok in (
        ("a drift alert for credit-risk", "credit-risk" in alerts),
        ("a retrain request for credit-risk", "credit-risk" in retrains),
        (f"a performance alert for {CHURN}", CHURN in alerts),
        (f"a retrain request for {CHURN}", CHURN in retrains),
        (f"a deployment check of {CHURN} version 2", bool(checks))) if not ok]
    if missing:
        console.print(f"[red]demo failed: no {', no '.join(missing)}[/red]")
        return 1
    console.print("[green]demo ok[/green]")
    return 0


def _errors(streams: list[Any]) -> list[tuple[int, float]]:
    """(prediction index, 0/1 error) of the labelled stream, as the worker scores them."""
    from .core.label_join import error_value

    preds = {}
    for s in streams:
        for v in s.inference:
            ev = orjson.loads(v)
            preds[ev["event_id"]] = ev["prediction"]
    out = []
    for s in streams:
        for v in s.early + s.labels:
            lab = orjson.loads(v)
            p = preds.get(lab["event_id"])
            if p is not None:
                out.append((int(lab["event_id"].rsplit("-", 1)[1]),
                            error_value("classification", p, lab["label"]) or 0.0))
    return out


async def _show_labels(console: Console, settings: Settings, prefix: str) -> None:
    """The label join's totals for the labelled model, read from Redis."""
    from .core.label_join import LabelStats
    from .state.base import model_tag

    client = redis_client(settings)
    try:
        raw = await client.hgetall(f"{prefix}:{model_tag(CHURN)}:labels:stats")
    finally:
        await client.aclose()
    st = LabelStats.from_mapping({k.decode(): v.decode() for k, v in raw.items()})
    t = Table(title=f"delayed labels of {CHURN} (Redis {prefix}:{model_tag(CHURN)}:labels:stats)")
    for c in ("predictions", "labels", "joined", "coverage", "mean delay", "label first",
              "unmatched labels", "expired predictions"):
        t.add_column(c)
    t.add_row(str(st.predictions), str(st.labels), str(st.joined),
              f"{st.coverage:.1%}" if st.coverage is not None else "-",
              f"{st.mean_delay:.0f} s" if st.mean_delay is not None else "-",
              str(st.labels_before_prediction), str(st.unmatched_labels),
              str(st.expired_predictions))
    console.print(t)


def _show(console: Console, records: list[tuple[str, dict, dict]], topics: dict[str, str]) -> None:
    t = Table(title=f"drift alerts (topic {topics['alerts']})")
    for c in ("model", "version", "signal", "detector", "offset", "event_id", "reference mean",
              "current mean", "shift (ref sd)", "alert_id"):
        t.add_column(c)
    for topic, r, _ in records:
        if topic == topics["alerts"] and r.get("type") == "drift_alert":
            ev = r["evidence"]
            t.add_row(r["model_id"], str(r["model_version"]), r["signal"], r["detector"]["name"],
                      str(r["detected_at"]["offset"]),
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
    t = Table(title=f"deployment checks (topic {topics['deployments']})")
    for c in ("model", "version", "vs", "verdict", "reason", "summary"):
        t.add_column(c)
    for topic, r, _ in records:
        if topic == topics["deployments"]:
            t.add_row(r["model_id"], str(r["model_version"]), str(r["previous_version"]),
                      r["verdict"], r["reason"], r["summary"])
    console.print(t)
    t = Table(title=f"dead letters (topic {topics['dead_letter']})")
    for c in ("offset", "reason_code", "reason", "original value"):
        t.add_column(c)
    for topic, r, _ in records:
        if topic == topics["dead_letter"]:
            t.add_row(str(r["source"]["offset"]), r["reason_code"], r["reason"],
                      (r["original"]["value"] or {}).get("data", "")[:40])
    console.print(t)
