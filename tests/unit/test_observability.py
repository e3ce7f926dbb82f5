"""Metrics containers on a fresh CollectorRegistry, the health server, and JSON logs."""

from __future__ import annotations

import asyncio
import io
import logging
from collections import deque
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from stream_monitor.contracts import Position, RawRecord
from stream_monitor.observability import (
    HealthServer,
    JsonFormatter,
    NotifierMetrics,
    Readiness,
    WorkerMetrics,
    batch_counts,
    log_context,
    start_http_server,
)

from .notify_samples import drift_alert, retrain_request

NOW = 1_795_000_000.0


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


def _v(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def test_observe_batch_counts_events_dead_letters_alerts(reg: CollectorRegistry) -> None:
    m = WorkerMetrics(reg, clock=lambda: NOW)
    alert = drift_alert()
    m.observe_batch({"credit-risk": 10, "fraud": 2}, {"undecodable": 1, "wrong_type": 0}, 0.04,
                    alerts=[alert], retrain_requests=[retrain_request()],
                    positions={("inference-events", 0): 41})
    m.observe_batch({"credit-risk": 5}, {"undecodable": 2}, 0.01)
    assert _v(reg, "stream_monitor_events_total", model="credit-risk") == 15
    assert _v(reg, "stream_monitor_events_total", model="fraud") == 2
    assert _v(reg, "stream_monitor_dead_letters_total", reason="undecodable") == 3
    assert _v(reg, "stream_monitor_dead_letters_total", reason="wrong_type") is None
    assert _v(reg, "stream_monitor_batch_duration_seconds_count") == 2
    assert _v(reg, "stream_monitor_batch_duration_seconds_sum") == pytest.approx(0.05)
    assert _v(reg, "stream_monitor_batch_events_sum") == 20
    assert _v(reg, "stream_monitor_drift_detections_total", model="credit-risk",
              signal="feature:utilization", detector="page_hinkley") == 1
    assert _v(reg, "stream_monitor_retrain_requests_total", model="credit-risk") == 1
    assert _v(reg, "stream_monitor_model_last_event_timestamp_seconds", model="fraud") == NOW
    # Event-to-alert latency: now minus the event time the detector fired at.
    from stream_monitor.notify.notification import parse_time

    latency = NOW - parse_time(alert["detected_at"]["event_time"])  # type: ignore[operator]
    assert _v(reg, "stream_monitor_event_to_alert_latency_seconds_sum") == pytest.approx(latency)
    assert _v(reg, "stream_monitor_build_info", version="0.1.0", component="worker") == 1


def test_alert_with_event_time_ahead_of_the_clock_is_not_a_latency(reg: CollectorRegistry) -> None:
    m = WorkerMetrics(reg, clock=lambda: 0.0)
    m.observe_alert(drift_alert())
    assert _v(reg, "stream_monitor_event_to_alert_latency_seconds_count") == 0
    assert _v(reg, "stream_monitor_drift_detections_total", model="credit-risk",
              signal="feature:utilization", detector="page_hinkley") == 1


def test_lag_from_highwaters_and_assignment(reg: CollectorRegistry) -> None:
    m = WorkerMetrics(reg)
    m.processed(("in", 0), 99)
    m.processed(SimpleNamespace(topic="in", partition=0), 50)  # older: ignored
    m.lag_from_highwaters({("in", 0): 130, ("in", 1): 20}, positions={("in", 1): 15})
    assert _v(reg, "stream_monitor_consumer_lag_records", topic="in", partition="0") == 30
    assert _v(reg, "stream_monitor_consumer_lag_records", topic="in", partition="1") == 5
    m.set_lag(("in", 2), -3)
    assert _v(reg, "stream_monitor_consumer_lag_records", topic="in", partition="2") == 0
    m.set_assigned([("in", 1)])  # 0 and 2 revoked: their series go
    assert _v(reg, "stream_monitor_assigned_partitions") == 1
    assert _v(reg, "stream_monitor_consumer_lag_records", topic="in", partition="0") is None
    assert _v(reg, "stream_monitor_consumer_lag_records", topic="in", partition="1") == 5


def test_observe_signal_and_models(reg: CollectorRegistry) -> None:
    m = WorkerMetrics(reg)
    m.observe_signal("m", "prediction", reference_size=1000, recent_size=500,
                     reference_mean=0.4, current_mean=float("nan"), detecting=True)
    assert _v(reg, "stream_monitor_signal_window_values", model="m", signal="prediction",
              window="reference") == 1000
    assert _v(reg, "stream_monitor_signal_mean", model="m", signal="prediction",
              window="reference") == 0.4
    assert _v(reg, "stream_monitor_signal_mean", model="m", signal="prediction",
              window="current") is None
    # The core's ModelState/SignalState, read duck-typed.
    sig = SimpleNamespace(signal="feature:amount", reference=[1.0, 2.0, 3.0],
                          recent=deque([4.0, 6.0]), detectors=None)
    m.observe_models([SimpleNamespace(model_id="credit-risk", signals={"feature:amount": sig})])
    assert _v(reg, "stream_monitor_signal_mean", model="credit-risk", signal="feature:amount",
              window="current") == 5.0
    assert _v(reg, "stream_monitor_signal_window_values", model="credit-risk",
              signal="feature:amount", window="recent") == 2
    assert _v(reg, "stream_monitor_signal_detecting", model="credit-risk",
              signal="feature:amount") == 0


def test_observe_models_on_the_real_core() -> None:
    from stream_monitor.config import parse_config
    from stream_monitor.contracts import decode_inference
    from stream_monitor.core import Monitor, MonitorState

    cfg = parse_config({"windows": {"reference_size": 10, "recent_size": 10, "evidence_size": 5},
                        "models": [{"match": "*", "signals": [{"match": "*",
                                                               "detectors": ["adwin"]}]}]})
    events = [decode_inference(RawRecord(orjson.dumps(
        {"event_id": f"e{i}", "model_id": "m", "features": {"x": float(i)}, "prediction": 1.0}),
        Position("t", 0, i))) for i in range(15)]
    state = MonitorState()
    Monitor(cfg).process(events, state)  # type: ignore[arg-type]
    reg = CollectorRegistry()
    WorkerMetrics(reg).observe_models(state.models.values())
    assert _v(reg, "stream_monitor_signal_window_values", model="m", signal="feature:x",
              window="reference") == 10
    assert _v(reg, "stream_monitor_signal_mean", model="m", signal="feature:x",
              window="reference") == 4.5
    assert _v(reg, "stream_monitor_signal_detecting", model="m", signal="prediction") == 1


def test_redis_and_failures(reg: CollectorRegistry) -> None:
    m = WorkerMetrics(reg)
    m.redis_round_trip(0.002)
    m.redis_round_trip(0.0)  # "not measured yet"
    m.state_save_failed()
    m.publish_failed()
    assert _v(reg, "stream_monitor_redis_round_trip_seconds_count") == 1
    assert _v(reg, "stream_monitor_state_save_failures_total") == 1
    assert _v(reg, "stream_monitor_publish_failures_total") == 1


def test_batch_counts_from_pipeline_records() -> None:
    raws = [RawRecord(b"{}", Position("in", 0, i), b"credit-risk") for i in range(5)]
    dl = {"type": "dead_letter", "reason_code": "undecodable",
          "source": {"topic": "in", "partition": 0, "offset": 2}}
    records = [SimpleNamespace(record=dl), SimpleNamespace(record=drift_alert()),
               SimpleNamespace(record=retrain_request())]
    c = batch_counts(raws, records)
    assert c.events_by_model == {"credit-risk": 4}
    assert c.dead_letters_by_reason == {"undecodable": 1}
    assert len(c.alerts) == 1 and len(c.retrain_requests) == 1
    assert c.positions == {("in", 0): 4}


def test_metric_names_follow_prometheus_conventions(reg: CollectorRegistry) -> None:
    WorkerMetrics(reg)
    NotifierMetrics(reg)
    from prometheus_client import generate_latest

    families = list(text_string_to_metric_families(generate_latest(reg).decode()))
    assert families
    for f in families:
        assert f.name.startswith("stream_monitor_"), f.name
        if f.type == "counter":
            assert not f.name.endswith("_total")  # the client appends _total to the samples
        if f.type == "histogram":
            assert f.name.endswith(("_seconds", "_events")), f.name
        assert f.documentation


def test_notifier_metrics(reg: CollectorRegistry) -> None:
    m = NotifierMetrics(reg)
    m.attempt("pd", "retryable")
    m.attempt("pd", "ok")
    m.delivery("pd", "delivered", 1.5)
    m.delivery("slack", "skipped", 0.0)
    m.dead_lettered("hook", "delivery_failed")
    m.rate_limited("pd", 0.25)
    m.set_lag(("drift-alerts", 0), 3)
    assert _v(reg, "stream_monitor_notify_delivery_attempts_total", target="pd", result="ok") == 1
    assert _v(reg, "stream_monitor_notify_deliveries_total", target="pd", outcome="delivered") == 1
    assert _v(reg, "stream_monitor_notify_delivery_duration_seconds_count", target="slack") is None
    assert _v(reg, "stream_monitor_notify_dead_letters_total", target="hook",
              reason="delivery_failed") == 1
    assert _v(reg, "stream_monitor_notify_rate_limit_wait_seconds_total", target="pd") == 0.25
    assert _v(reg, "stream_monitor_notify_consumer_lag_records", topic="drift-alerts",
              partition="0") == 3


# -- health server -------------------------------------------------------------------------------

async def test_health_server_endpoints(reg: CollectorRegistry) -> None:
    m = WorkerMetrics(reg)
    m.observe_batch({"credit-risk": 7}, {}, 0.01)
    state = {"redis": True}

    async def redis_ok() -> tuple[bool, str]:
        return state["redis"], "PONG" if state["redis"] else "connection refused"

    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    readiness = Readiness({"redis": redis_ok, "partitions_assigned": lambda: (True, "1")},
                          cache_seconds=0, timeout_seconds=0.2)
    server = await start_http_server(0, readiness, registry=reg, host="127.0.0.1")
    base = f"http://127.0.0.1:{server.bound_port}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/metrics") as r:
                assert r.status == 200 and r.content_type == "text/plain"
                text = await r.text()
            assert 'stream_monitor_events_total{model="credit-risk"} 7.0' in text
            # prometheus_client's negotiation: OpenMetrics when the scraper asks for it, a
            # name[] filter, and gzip when accepted.
            om = {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8",
                  "Accept-Encoding": "gzip"}
            async with s.get(base + "/metrics", headers=om) as r:
                assert r.status == 200
                assert r.content_type == "application/openmetrics-text"
                assert r.headers["Content-Encoding"] == "gzip"
                text = await r.text()  # aiohttp un-gzips
            assert text.endswith("# EOF\n")
            assert 'stream_monitor_events_total{model="credit-risk"} 7.0' in text
            async with s.get(base + "/metrics",
                             params={"name[]": "stream_monitor_events_total"}) as r:
                text = await r.text()
            assert 'stream_monitor_events_total{model="credit-risk"} 7.0' in text
            assert "stream_monitor_batch_duration_seconds" not in text
            async with s.get(base + "/healthz") as r:
                assert r.status == 200 and (await r.json()) == {"status": "ok"}
            async with s.get(base + "/readyz") as r:
                body = await r.json()
                assert r.status == 200 and body["ready"] is True
                assert body["checks"]["redis"] == {"ok": True, "detail": "PONG"}
            state["redis"] = False
            async with s.get(base + "/readyz") as r:
                body = await r.json()
                assert r.status == 503 and body["ready"] is False
                assert body["checks"]["redis"]["detail"] == "connection refused"
            state["redis"] = True
            readiness.add("slow", hangs)
            async with s.get(base + "/readyz") as r:
                body = await r.json()
                assert r.status == 503
                assert body["checks"]["slow"]["detail"] == "timeout"  # a code (docs/security.md)
    finally:
        await server.stop()


async def test_liveness_callable_and_a_single_readiness_callable(
        reg: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> bool:
        raise RuntimeError("loop stalled")

    server = await HealthServer(reg, lambda: False, liveness=boom, host="127.0.0.1",
                                port=0).start()
    base = f"http://127.0.0.1:{server.bound_port}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/healthz") as r:
                # A reason code on the unauthenticated port; the exception's text in the log.
                assert r.status == 503 and (await r.json())["detail"] == "check_failed"
            assert "loop stalled" in caplog.text
            async with s.get(base + "/readyz") as r:
                assert r.status == 503
    finally:
        await server.stop()


async def test_readiness_without_checks_is_not_ready() -> None:
    assert (await Readiness().report())["ready"] is False


# -- JSON logs -----------------------------------------------------------------------------------

def _logger(stream: io.StringIO) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(f"test.json.{id(stream)}")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def test_json_log_lines_carry_context_and_exceptions() -> None:
    stream = io.StringIO()
    log = _logger(stream)
    with log_context(model="credit-risk", topic="in", partition=3):
        with log_context(offset=1200, signal="prediction"):
            log.info("batch done %d", 5, extra={"alerts": 2})
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    log.warning("outside")
    lines = [orjson.loads(x) for x in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "batch done 5"
    assert {k: lines[0][k] for k in ("model", "signal", "topic", "partition", "offset", "alerts")} \
        == {"model": "credit-risk", "signal": "prediction", "topic": "in", "partition": 3,
            "offset": 1200, "alerts": 2}
    assert "offset" not in lines[1] and "ValueError: bad" in lines[1]["exc"]
    assert "model" not in lines[2] and lines[2]["level"] == "WARNING"


async def test_log_context_is_per_task() -> None:
    stream = io.StringIO()
    log = _logger(stream)

    async def work(p: int) -> None:
        with log_context(partition=p):
            await asyncio.sleep(0.01)
            log.info("x")

    await asyncio.gather(work(0), work(1))
    got = sorted(orjson.loads(x)["partition"] for x in stream.getvalue().splitlines())
    assert got == [0, 1]


def test_unserializable_extra_is_stringified() -> None:
    stream = io.StringIO()
    _logger(stream).info("x", extra={"thing": object()})
    line: dict[str, Any] = orjson.loads(stream.getvalue())
    assert line["thing"].startswith("<object object")


def test_model_label_cardinality_is_bounded() -> None:
    """Past SM_METRICS_MAX_MODELS models share model="__other__", and per-signal gauges stop at
    SM_METRICS_MAX_SIGNAL_SERIES pairs: 10,000 model ids do not make 10,000 series."""
    from prometheus_client import CollectorRegistry

    from stream_monitor.observability import WorkerMetrics

    reg = CollectorRegistry()
    m = WorkerMetrics(reg, max_models=3, max_signal_series=4)
    m.observe_batch({f"m{i}": 1 for i in range(10_000)}, {}, 0.01)
    for i in range(10):
        m.observe_signal(f"m{i}", "prediction", reference_size=1, recent_size=1,
                         reference_mean=1e308, current_mean=None)
    names = {s.labels.get("model") for f in reg.collect() for s in f.samples
             if f.name == "stream_monitor_events"}
    assert names == {"m0", "m1", "m2", "__other__"}
    assert reg.get_sample_value("stream_monitor_events_total", {"model": "__other__"}) == 9_997
    series = {s.labels["model"] for f in reg.collect() for s in f.samples
              if f.name == "stream_monitor_signal_window_values"}
    assert series == {"m0", "m1", "m2"}  # only admitted models, at most 4 pairs
    assert reg.get_sample_value("stream_monitor_metrics_label_overflows_total",
                                {"kind": "model"}) > 0


def test_label_overflows_are_counted_exactly_once_observed() -> None:
    """The overflows `wants_signal` finds (counted in bulk, not one `inc` each) are all in
    ``metrics_label_overflows`` once the batch's readings are observed."""
    from prometheus_client import CollectorRegistry

    from stream_monitor.observability import WorkerMetrics

    reg = CollectorRegistry()
    m = WorkerMetrics(reg, max_models=2, max_signal_series=3)
    wanted = [m.wants_signal(f"m{i}", s) for i in range(5) for s in ("a", "b")]
    assert wanted == [True, True, True, False] + [False] * 6
    m.observe_readings([])

    def overflows(kind: str) -> float | None:
        return reg.get_sample_value("stream_monitor_metrics_label_overflows_total",
                                    {"kind": kind})

    # m1/b and every pair after it: over the series cap (the model cap is not asked then).
    assert overflows("signal") == 7 and overflows("model") == 0
    m.observe_batch({"m0": 1, "m9": 2, "m8": 1}, {}, 0.01)
    assert overflows("model") == 2
