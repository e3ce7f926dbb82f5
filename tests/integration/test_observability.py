"""A running worker (real Kafka, real Redis) scraped over HTTP: /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_monitor.adapters.kafka_tools import produce
from stream_monitor.synth import Drift, StreamSpec, generate

from ..helpers import free_port, http_get, stop_process
from .alertmanager import install_debian_binary
from .conftest import Unique, WorkerProcess

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


class Prometheus:
    """Debian's Prometheus on loopback, scraping the worker every second with our rules."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = install_debian_binary("prometheus", "prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{free_port()}"
        (workdir / "stream-monitor-rules.yml").write_bytes(
            (DEPLOY / "stream-monitor-rules.yml").read_bytes())
        (workdir / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [stream-monitor-rules.yml]\n"
            "scrape_configs:\n"
            "  - job_name: stream-monitor-worker\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n")
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, q: str) -> list[Any]:
        status, body = _get(f"{self.url}/api/v1/query?query={urllib.parse.quote(q)}")
        assert status == 200, body
        return json.loads(body)["data"]["result"]

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)
        self.log.close()


def _get(url: str) -> tuple[int, str]:
    status, body = http_get(url)
    return status, body.decode()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_running_worker_exposes_health_and_metrics(tmp_path: Path, kafka_bootstrap: str,
                                                    redis_url: str, unique: Unique,
                                                    config_path: Path) -> None:
    model = f"credit-{unique.id}"
    spec = StreamSpec(models=(model,), events_per_model=2400, seed=11,
                      drifts=(Drift(1200, "amount", 1.5), Drift(1200, "utilization", -1.5)))
    events = list(generate(spec))
    events[100:100] = [b"not json", b"[1, 2]"]
    asyncio.run(produce(kafka_bootstrap, unique.topics["inference"],
                        ((model.encode(), v) for v in events)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = WorkerProcess([sys.executable, "-m", "stream_monitor", "worker", "--config",
                            str(config_path)],
                           unique.env(kafka_bootstrap, redis_url, SM_METRICS_PORT=str(port),
                                      SM_METRICS_HOST="127.0.0.1", SM_LOG_FORMAT="json"),
                           tmp_path / "worker.log")
    try:
        # Ready: Kafka and Redis answer, the input partition is assigned.
        deadline = time.monotonic() + 120
        status, body = 0, ""
        while time.monotonic() < deadline:
            assert worker.proc.poll() is None, worker.tail()
            try:
                status, body = _get(base + "/readyz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"{body}\n{worker.tail()}"
        assert '"partitions_assigned":{"ok":true,"detail":"1 partitions assigned"}' in body
        assert _get(base + "/healthz") == (200, '{"status":"ok"}')

        # Every event counted; the lag drains to 0.
        deadline = time.monotonic() + 120
        samples: dict[Any, float] = {}
        while time.monotonic() < deadline:
            samples = _samples(_get(base + "/metrics")[1])
            done = _value(samples, "stream_monitor_events_total", model=model) == 2400
            lag = _value(samples, "stream_monitor_consumer_lag_records",
                         topic=unique.topics["inference"], partition="0")
            if done and lag == 0:
                break
            time.sleep(0.5)
        assert _value(samples, "stream_monitor_events_total", model=model) == 2400, worker.tail()
        assert _value(samples, "stream_monitor_consumer_lag_records",
                      topic=unique.topics["inference"], partition="0") == 0

        # A real Prometheus scrapes the worker and loads the deploy/ rules.
        prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{port}")
        try:
            q = f'stream_monitor_events_total{{model="{model}"}}'
            deadline = time.monotonic() + 60
            result: list[Any] = []
            while time.monotonic() < deadline:
                assert prom.proc.poll() is None, (tmp_path / "prometheus" / "prometheus.log"
                                                  ).read_text()[-3000:]
                try:
                    result = prom.query(q)
                except OSError:
                    result = []
                if result:
                    break
                time.sleep(0.5)
            assert [float(r["value"][1]) for r in result] == [2400.0]
            assert [r["value"][1] for r in prom.query('up{job="stream-monitor-worker"}')] == ["1"]
            status, body = _get(prom.url + "/api/v1/rules")
            names = {r["name"] for g in json.loads(body)["data"]["groups"] for r in g["rules"]}
            assert {"StreamMonitorWorkerDown", "StreamMonitorConsumerLagGrowing",
                    "StreamMonitorDeadLetterRateHigh", "StreamMonitorModelSilent"} <= names
        finally:
            prom.stop()
    finally:
        worker.stop()

    # JSON log lines with partition/offset context (the worker ran with json_logging_config).
    lines = [json.loads(x) for x in worker.log.read_text().splitlines() if x.startswith("{")]
    assert any(x.get("model") == model and x.get("partition") == 0 and "offset" in x
               for x in lines), worker.tail()
    v = _value
    assert v(samples, "stream_monitor_dead_letters_total", reason="undecodable") == 1
    assert v(samples, "stream_monitor_dead_letters_total", reason="not_an_object") == 1
    assert v(samples, "stream_monitor_assigned_partitions") == 1
    assert v(samples, "stream_monitor_batch_duration_seconds_count") >= 1
    assert v(samples, "stream_monitor_redis_round_trip_seconds_count") >= 1
    assert v(samples, "stream_monitor_state_save_failures_total") == 0
    detections = {dict(k[1])["signal"] for k, val in samples.items()
                  if k[0] == "stream_monitor_drift_detections_total" and val > 0}
    assert {"feature:amount", "feature:utilization"} <= detections
    assert v(samples, "stream_monitor_event_to_alert_latency_seconds_count") >= 2
    assert v(samples, "stream_monitor_retrain_requests_total", model=model) == 1
    # Per signal: window sizes and means (the reference is 300 values in TEST_CONFIG).
    ref = v(samples, "stream_monitor_signal_window_values", model=model, signal="feature:amount",
            window="reference")
    assert ref is not None and 0 < ref <= 300
    assert v(samples, "stream_monitor_signal_window_values", model=model, signal="prediction",
             window="recent") == 200
    assert v(samples, "stream_monitor_signal_mean", model=model, signal="feature:amount",
             window="current") is not None
    assert v(samples, "stream_monitor_model_last_event_timestamp_seconds", model=model) > 0


def test_prometheus_rules_check_and_pass_their_unit_tests(tmp_path: Path) -> None:
    promtool = install_debian_binary("prometheus", "promtool")
    for args in (["check", "rules", "stream-monitor-rules.yml"],
                 ["test", "rules", "stream-monitor-rules.test.yml"],
                 ["check", "config", "prometheus.yml"]):
        res = subprocess.run([promtool, *args], cwd=DEPLOY, capture_output=True, text=True,
                             timeout=120, check=False)
        assert res.returncode == 0, f"promtool {' '.join(args)}:\n{res.stdout}\n{res.stderr}"


def test_grafana_dashboard_queries_only_metrics_we_export() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from stream_monitor.observability import NotifierMetrics, WorkerMetrics

    reg = CollectorRegistry()
    WorkerMetrics(reg)
    NotifierMetrics(reg)
    exported = {f.name for f in text_string_to_metric_families(generate_latest(reg).decode())}
    exported |= {n + s for n in exported for s in ("_total", "_bucket", "_sum", "_count",
                                                       "_info")}
    dash = json.loads((DEPLOY.parent / "grafana" / "stream-monitor.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    import re

    used = {m for e in exprs for m in re.findall(r"\b(stream_monitor_[a-z_]+)", e)}
    assert used and used <= exported, used - exported
