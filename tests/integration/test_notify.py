"""The notifier on the real Kafka, against a real Alertmanager and local PagerDuty, Slack and
webhook receivers with injected failures."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream_monitor.adapters.kafka_tools import consume, create_topics, produce
from stream_monitor.contracts import validate_record
from stream_monitor.notify import (
    Notifier,
    fingerprint,
    parse_notify_config,
    resolve_targets,
    verify_signature,
)
from stream_monitor.notify.notification import parse_time
from stream_monitor.observability import NotifierMetrics
from stream_monitor.synth import Drift, StreamSpec, generate

from ..helpers import free_port, stop_process
from ..unit.notify_samples import drift_alert, drift_resolved, retrain_request
from .alertmanager import Alertmanager
from .alertmanager import alertmanager as alertmanager  # the session fixture
from .conftest import TEST_CONFIG, Unique, committed
from .receivers import Receivers, statuses

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-tests"
FAST_RETRY = {"max_attempts": 3, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05}


# -- helpers -------------------------------------------------------------------------------------

def _dlq(u: Unique) -> str:
    return f"t-{u.id}-notify-dlq"


def _config(u: Unique, targets: list[dict[str, Any]]) -> Any:
    return parse_notify_config({"topics": {"alerts": u.topics["alerts"],
                                           "retrain": u.topics["retrain"],
                                           "deployments": u.topics["deployments"],
                                           "dead_letter": _dlq(u)},
                                "consumer_group": f"notify-{u.id}", "targets": targets})


async def _produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> list[bytes]:
    values = [orjson.dumps(r) for r in records]
    await produce(bootstrap, topic, ((r["model_id"].encode(), v) for r, v in zip(records, values,
                                                                                 strict=True)))
    return values


async def _run_until(notifier: Notifier, done: Callable[[], bool], timeout: float = 60) -> None:
    """Run the notifier until ``done()`` (checked every 0.1 s) or the timeout, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done():
            if task.done():
                task.result()  # raise what stopped it
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert done(), f"condition not met within {timeout}s (handled {notifier.handled})"


async def _read(bootstrap: str, topic: str, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    msgs = await consume(bootstrap, [topic], until=lambda m: len(m) >= n, timeout=timeout)
    return [orjson.loads(m.value) for m in msgs]


async def _poll(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 20) -> Any:
    """Call ``fn`` (blocking I/O, in a thread) until ``ok(result)`` or the timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(fn)
        if ok(last):
            return last
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s; last answer: {str(last)[:2000]}")


def _am_query(am: Alertmanager, path: str, **matchers: str) -> Any:
    qs = "&".join("filter=" + urllib.parse.quote(f'{k}="{v}"') for k, v in matchers.items())
    return am.get(f"{path}?{qs}")


def _models(uid: str) -> tuple[str, str]:
    return f"credit-{uid}", f"fraud-{uid}"


# -- Alertmanager ----------------------------------------------------------------------------------

async def test_alertmanager_gets_labelled_grouped_alerts_that_resolve(
        alertmanager: Alertmanager, kafka_bootstrap: str, unique: Unique) -> None:
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    m1, m2 = _models(unique.id)
    a1 = drift_alert(model_id=m1)
    a2 = drift_alert(model_id=m1, signal="feature:amount", alert_id="a2" * 16)
    a3 = drift_alert(model_id=m2, signal="prediction", alert_id="a3" * 16)
    await _produce(kafka_bootstrap, unique.topics["alerts"], [a1, a2, a3])
    cfg = _config(unique, [{"name": "am", "type": "alertmanager", "url": alertmanager.url,
                            "retry": FAST_RETRY}])
    async with Notifier(cfg, resolve_targets(cfg, {}), kafka_bootstrap) as n:
        await _run_until(n, lambda: n.handled >= 3)

    # The alerts, with their labels and evidence.
    alerts = await _poll(lambda: _am_query(alertmanager, "/api/v2/alerts", model=m1),
                         lambda a: len(a) == 2 and all(x["status"]["state"] != "unprocessed"
                                                       for x in a))
    by_signal = {x["labels"]["signal"]: x for x in alerts}
    got = by_signal["feature:utilization"]
    assert got["labels"] == {"alertname": "ModelDrift", "model": m1, "model_version": "1",
                             "signal": "feature:utilization", "detector": "page_hinkley",
                             "severity": "warning"}
    ann = got["annotations"]
    assert ann["summary"] == a1["summary"] and ann["alert_id"] == a1["alert_id"]
    assert ann["offset"] == "inference-events/0@3027"
    assert float(ann["reference_mean"]) == pytest.approx(a1["evidence"]["reference"]["mean"], 1e-5)
    assert float(ann["current_mean"]) == pytest.approx(a1["evidence"]["current"]["mean"], 1e-5)
    assert "reference mean" in ann["description"]
    assert parse_time(got["startsAt"]) == pytest.approx(parse_time(a1["detected_at"]["event_time"]))
    assert parse_time(got["endsAt"]) > time.time() + 3600  # firing until resolved
    assert got["status"]["state"] == "active"
    assert [r["name"] for r in got["receivers"]] == ["stream-monitor-default"]

    # Grouped by (alertname, model), as deploy/alertmanager/alertmanager.yml says.
    def groups() -> dict[str, list[Any]]:
        gs = _am_query(alertmanager, "/api/v2/alerts/groups", alertname="ModelDrift")
        return {g["labels"].get("model"): g for g in gs
                if g["labels"].get("model") in (m1, m2)}

    gs = await _poll(groups, lambda g: len(g) == 2)
    assert gs[m1]["labels"] == {"alertname": "ModelDrift", "model": m1}
    assert sorted(x["labels"]["signal"] for x in gs[m1]["alerts"]) == ["feature:amount",
                                                                       "feature:utilization"]
    assert [x["labels"]["signal"] for x in gs[m2]["alerts"]] == ["prediction"]

    # A drift_resolved record with the same fingerprint fields resolves exactly that alert.
    now_iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    await _produce(kafka_bootstrap, unique.topics["alerts"], [drift_resolved(a1, now_iso)])
    async with Notifier(cfg, resolve_targets(cfg, {}), kafka_bootstrap) as n:
        await _run_until(n, lambda: n.handled >= 1)
    left = await _poll(lambda: _am_query(alertmanager, "/api/v2/alerts", model=m1),
                       lambda a: len(a) == 1)
    assert left[0]["labels"]["signal"] == "feature:amount"
    gs = await _poll(groups, lambda g: len(g.get(m1, {}).get("alerts", [])) == 1)
    assert gs[m1]["alerts"][0]["labels"]["signal"] == "feature:amount"
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["alerts"]) == 4


async def test_failed_deployment_check_reaches_alertmanager_and_a_pass_does_not(
        alertmanager: Alertmanager, kafka_bootstrap: str, unique: Unique) -> None:
    from tests.unit.test_notify import _deployment_check

    await create_topics(kafka_bootstrap, [_dlq(unique)])
    m1, m2 = _models(unique.id)
    fail = {**_deployment_check("fail"), "model_id": m1}
    ok = {**_deployment_check("pass"), "model_id": m2}
    await _produce(kafka_bootstrap, unique.topics["deployments"], [fail, ok])
    cfg = _config(unique, [{"name": "am", "type": "alertmanager", "url": alertmanager.url}])
    async with Notifier(cfg, resolve_targets(cfg, {}), kafka_bootstrap) as n:
        await _run_until(n, lambda: n.handled >= 2)
    alerts = await _poll(lambda: _am_query(alertmanager, "/api/v2/alerts",
                                           alertname="ModelDeploymentCheck"),
                         lambda a: any(x["labels"]["model"] == m1 for x in a))
    mine = [x for x in alerts if x["labels"]["model"] in (m1, m2)]
    assert [x["labels"] for x in mine] == [{
        "alertname": "ModelDeploymentCheck", "model": m1, "model_version": "2",
        "detector": "deployment_check", "severity": "critical"}]
    assert mine[0]["annotations"]["verdict"] == "fail"
    assert await committed(kafka_bootstrap, cfg.consumer_group,
                            unique.topics["deployments"]) == 2


async def test_retrain_request_inhibits_the_models_warning_drift_alerts(
        alertmanager: Alertmanager, kafka_bootstrap: str, unique: Unique) -> None:
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    m1, _ = _models(unique.id)
    await _produce(kafka_bootstrap, unique.topics["alerts"], [drift_alert(model_id=m1)])
    await _produce(kafka_bootstrap, unique.topics["retrain"], [retrain_request(model_id=m1)])
    cfg = _config(unique, [{"name": "am", "type": "alertmanager", "url": alertmanager.url}])
    async with Notifier(cfg, resolve_targets(cfg, {}), kafka_bootstrap) as n:
        await _run_until(n, lambda: n.handled >= 2)
    alerts = await _poll(
        lambda: _am_query(alertmanager, "/api/v2/alerts", model=m1),
        lambda a: len(a) == 2 and {x["status"]["state"] for x in a} == {"active", "suppressed"})
    by_name = {x["labels"]["alertname"]: x for x in alerts}
    retrain = by_name["RetrainRequested"]
    assert retrain["labels"] == {"alertname": "RetrainRequested", "model": m1,
                                 "model_version": "1", "severity": "critical"}
    assert retrain["annotations"]["request_id"] == retrain_request()["request_id"]
    assert [r["name"] for r in retrain["receivers"]] == ["ml-oncall"]
    assert by_name["ModelDrift"]["status"]["inhibitedBy"] == [retrain["fingerprint"]]


# -- PagerDuty, Slack, webhooks: retries, dead letters, signatures -----------------------------

async def test_retries_dead_letters_and_signatures(kafka_bootstrap: str, unique: Unique) -> None:
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    m1, _ = _models(unique.id)
    a1 = drift_alert(model_id=m1)
    rt = retrain_request(model_id=m1)
    res = drift_resolved(a1, "2026-01-01T01:00:00.000Z")
    recv = await Receivers().start()
    try:
        pd = recv.on("/pagerduty/enqueue", statuses(500, 500, 202))  # two failures, then fine
        slack = recv.on("/slack/T000/B000/XXX", statuses(500))  # always down
        hook = recv.on("/hook", statuses(200), webhook_secret=SECRET)
        recv.on("/hook-wrong-secret", statuses(200), webhook_secret=SECRET)
        targets = [
            {"name": "pd", "type": "pagerduty", "url": pd, "routing_key_env": "PD_KEY",
             "retry": FAST_RETRY},
            {"name": "slack", "type": "slack", "url_env": "SLACK_URL", "retry": FAST_RETRY},
            {"name": "hook", "type": "webhook", "url": hook, "secret_env": "HOOK_SECRET",
             "retry": FAST_RETRY},
            {"name": "hook-bad", "type": "webhook", "url": recv.base + "/hook-wrong-secret",
             "secret_env": "HOOK_BAD", "retry": FAST_RETRY},
        ]
        env = {"PD_KEY": "pd-routing-key", "SLACK_URL": slack, "HOOK_SECRET": SECRET,
               "HOOK_BAD": "not-the-secret"}
        cfg = _config(unique, targets)
        values = await _produce(kafka_bootstrap, unique.topics["alerts"], [a1])
        values += await _produce(kafka_bootstrap, unique.topics["retrain"], [rt])
        values += await _produce(kafka_bootstrap, unique.topics["alerts"], [res])
        reg = CollectorRegistry()
        async with Notifier(cfg, resolve_targets(cfg, env), kafka_bootstrap,
                            metrics=NotifierMetrics(reg)) as n:
            await _run_until(n, lambda: n.handled >= 3)
    finally:
        await recv.stop()

    fp = fingerprint(m1, "1", "feature:utilization", "page_hinkley")
    # PagerDuty: the first event after two 500s, then the others; trigger and resolve share
    # the fingerprint as dedup_key.
    pd_reqs = recv.at("/pagerduty/enqueue")
    assert [r.status for r in pd_reqs][:3] == [500, 500, 202]
    events = [r.json() for r in pd_reqs if r.status == 202]
    by_action: dict[str, list[Any]] = {}
    for e in events:
        by_action.setdefault(e["event_action"], []).append(e)
    assert len(by_action["trigger"]) == 2 and len(by_action["resolve"]) == 1
    drift = next(e for e in by_action["trigger"] if e["payload"]["class"] == "model_drift")
    assert drift["dedup_key"] == fp == by_action["resolve"][0]["dedup_key"]
    assert drift["routing_key"] == "pd-routing-key"
    assert drift["payload"]["summary"] == a1["summary"]
    assert drift["payload"]["custom_details"]["offset"] == "inference-events/0@3027"
    assert float(drift["payload"]["custom_details"]["reference_mean"]) == pytest.approx(
        a1["evidence"]["reference"]["mean"], 1e-5)

    # Slack: always 500, so each record was tried max_attempts times, then dead-lettered.
    assert [r.status for r in recv.at("/slack/T000/B000/XXX")] == [500] * 9

    # Webhook: the record's own bytes, a valid signature, the record's id as idempotency key.
    hook_reqs = recv.at("/hook")
    assert sorted(r.body for r in hook_reqs) == sorted(values)
    for r in hook_reqs:
        verify_signature(SECRET, r.body, r.headers["X-Stream-Monitor-Signature"], time.time())
    assert sorted(recv.seen_keys["/hook"]) == sorted(
        [a1["alert_id"], rt["request_id"], "resolve-" + a1["alert_id"]])
    # A wrong secret is refused by the receiver (401): a rejection, dead-lettered at once.
    assert [r.status for r in recv.at("/hook-wrong-secret")] == [401] * 3

    dls = await _read(kafka_bootstrap, _dlq(unique), 6)
    assert len(dls) == 6
    for d in dls:
        validate_record(d, "notification-dead-letter")
    slack_dl = sorted((d for d in dls if d["target"]["name"] == "slack"),
                      key=lambda d: (d["source"]["topic"], d["source"]["offset"]))
    assert [(d["reason_code"], d["attempts"], d["last_status"]) for d in slack_dl] == [
        ("delivery_failed", 3, 500)] * 3
    assert {d["original"]["value"]["data"].encode() for d in slack_dl} == set(values)
    bad = [d for d in dls if d["target"]["name"] == "hook-bad"]
    assert [(d["reason_code"], d["attempts"], d["last_status"]) for d in bad] == [
        ("rejected", 1, 401)] * 3
    assert "signature" in bad[0]["reason"]

    # Offsets: every record was delivered or dead-lettered, so all are committed.
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["alerts"]) == 2
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["retrain"]) == 1
    v = reg.get_sample_value
    assert v("stream_monitor_notify_deliveries_total",
             {"target": "pd", "outcome": "delivered"}) == 3
    assert v("stream_monitor_notify_deliveries_total",
             {"target": "slack", "outcome": "failed"}) == 3
    assert v("stream_monitor_notify_delivery_attempts_total",
             {"target": "pd", "result": "retryable"}) == 2
    assert v("stream_monitor_notify_dead_letters_total",
             {"target": "hook-bad", "reason": "rejected"}) == 3


async def test_offset_is_not_committed_before_delivery(kafka_bootstrap: str,
                                                       unique: Unique) -> None:
    """A notifier stopped while it is still retrying commits nothing; the next one delivers the
    same record, with the same idempotency key."""
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    a1 = drift_alert(model_id=_models(unique.id)[0])
    await _produce(kafka_bootstrap, unique.topics["alerts"], [a1])
    recv = await Receivers().start()
    down = {"on": True}
    try:
        hook = recv.on("/hook", lambda n, body: 503 if down["on"] else 200, webhook_secret=SECRET)
        cfg = _config(unique, [{"name": "hook", "type": "webhook", "url": hook,
                                "secret_env": "S", "retry": {
                                    "max_attempts": 100, "initial_backoff_seconds": 0.02,
                                    "max_backoff_seconds": 0.05}}])
        targets = resolve_targets(cfg, {"S": SECRET})
        async with Notifier(cfg, targets, kafka_bootstrap) as n:
            stop = asyncio.Event()
            task = asyncio.create_task(n.run(stop))
            for _ in range(300):  # until the receiver has refused it a few times (<= 30 s)
                if len(recv.at("/hook")) >= 3:
                    break
                await asyncio.sleep(0.1)
            task.cancel()  # stopped mid-retry, as a crash would
            with pytest.raises(asyncio.CancelledError):
                await task
        assert len(recv.at("/hook")) >= 3
        assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["alerts"]) == -1
        down["on"] = False
        async with Notifier(cfg, targets, kafka_bootstrap) as n:
            await _run_until(n, lambda: n.handled >= 1)
    finally:
        await recv.stop()
    assert recv.seen_keys["/hook"] == [a1["alert_id"]]
    assert {r.headers["Idempotency-Key"] for r in recv.at("/hook")} == {a1["alert_id"]}
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["alerts"]) == 1


async def test_unreadable_records_are_dead_lettered_and_skipped(kafka_bootstrap: str,
                                                                unique: Unique) -> None:
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    await produce(kafka_bootstrap, unique.topics["alerts"], [
        (b"m", b"\xff not json"), (b"m", b'{"type": "dead_letter"}'),
        (b"m", orjson.dumps(drift_alert(model_id=_models(unique.id)[0])))])
    recv = await Receivers().start()
    try:
        hook = recv.on("/hook", statuses(200), webhook_secret=SECRET)
        cfg = _config(unique, [{"name": "hook", "type": "webhook", "url": hook,
                                "secret_env": "S"}])
        async with Notifier(cfg, resolve_targets(cfg, {"S": SECRET}), kafka_bootstrap) as n:
            await _run_until(n, lambda: len(recv.at("/hook")) >= 1 and n.handled >= 1)
    finally:
        await recv.stop()
    dls = await _read(kafka_bootstrap, _dlq(unique), 2)
    assert sorted(d["reason_code"] for d in dls) == ["undecodable", "unsupported_type"]
    assert all(d["target"] is None for d in dls)
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["alerts"]) == 3


# -- end to end: the worker's drift alerts reach every kind of target -----------------------------

async def _http_get(url: str) -> tuple[int, bytes]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.read()


@pytest.mark.slow
async def test_demo_drift_reaches_alertmanager_pagerduty_slack_and_webhook(
        alertmanager: Alertmanager, kafka_bootstrap: str, redis_url: str, unique: Unique,
        tmp_path: Path, start_worker: Any) -> None:
    """The worker on a drifting stream, then `stream-monitor notify` as its own process."""
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    model = f"credit-{unique.id}"
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(TEST_CONFIG))
    spec = StreamSpec(models=(model,), events_per_model=2400, seed=11,
                      drifts=(Drift(1200, "amount", 1.5), Drift(1200, "utilization", -1.5)))
    await produce(kafka_bootstrap, unique.topics["inference"],
                  ((model.encode(), v) for v in generate(spec)))
    worker = start_worker(config, unique)

    recv = await Receivers().start()
    notify_proc = None
    try:
        pd = recv.on("/pagerduty", statuses(500, 202))
        slack = recv.on("/slack", statuses(200))
        hook = recv.on("/hook", statuses(200), webhook_secret=SECRET)
        targets = tmp_path / "notify.yaml"
        targets.write_text(yaml.safe_dump({
            "topics": {"alerts": unique.topics["alerts"], "retrain": unique.topics["retrain"],
                       "dead_letter": _dlq(unique)},
            "consumer_group": f"notify-{unique.id}",
            "generator_url": "http://127.0.0.1/grafana?var-model={model_id}",
            "targets": [
                {"name": "alertmanager", "type": "alertmanager", "url": alertmanager.url},
                {"name": "pagerduty", "type": "pagerduty", "url": pd,
                 "routing_key_env": "PD_KEY", "retry": FAST_RETRY},
                {"name": "slack", "type": "slack", "url_env": "SLACK_URL"},
                {"name": "webhook", "type": "webhook", "url": hook, "secret_env": "HOOK_SECRET"},
            ]}))
        port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, PD_KEY="pd-key",
                   SLACK_URL=slack, HOOK_SECRET=SECRET, SM_NOTIFY_HTTP_HOST="127.0.0.1",
                   SM_NOTIFY_HTTP_PORT=str(port), SM_LOG_FORMAT="json")
        log = (tmp_path / "notify.log").open("wb")
        notify_proc = subprocess.Popen(
            [sys.executable, "-m", "stream_monitor", "notify", "--targets", str(targets)],
            env=env, stdout=log, stderr=subprocess.STDOUT)

        def delivered() -> bool:
            kinds = [r.json().get("type") for r in recv.at("/hook")]
            return kinds.count("drift_alert") >= 2 and "retrain_request" in kinds

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not delivered():
            assert notify_proc.poll() is None, (tmp_path / "notify.log").read_text()[-3000:]
            assert worker.proc.poll() is None, worker.tail()
            await asyncio.sleep(0.5)
        assert delivered(), (tmp_path / "notify.log").read_text()[-3000:]

        # The notifier's own health and metrics.
        status, body = await _http_get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
        status, body = await _http_get(f"http://127.0.0.1:{port}/metrics")
        assert b'stream_monitor_notify_deliveries_total{outcome="delivered",target="webhook"}' \
            in body
    finally:
        if notify_proc is not None:
            stop_process(notify_proc, timeout=30)
        await recv.stop()
    assert notify_proc.returncode == 0, (tmp_path / "notify.log").read_text()[-3000:]
    lines = [orjson.loads(x) for x in (tmp_path / "notify.log").read_text().splitlines()
             if x.startswith("{")]
    assert any(x.get("model") == model and "offset" in x for x in lines)  # structured context

    alerts = [r.json() for r in recv.at("/hook") if r.json()["type"] == "drift_alert"]
    signals = {a["signal"] for a in alerts}
    assert {"feature:amount", "feature:utilization"} <= signals
    am = await _poll(lambda: _am_query(alertmanager, "/api/v2/alerts", model=model,
                                       alertname="ModelDrift"),
                     lambda a: {x["labels"]["signal"] for x in a} >= signals)
    for x in am:
        a = next(y for y in alerts if y["signal"] == x["labels"]["signal"])
        assert x["annotations"]["alert_id"] == a["alert_id"]
        assert x["generatorURL"] == f"http://127.0.0.1/grafana?var-model={model}"
    pd_events = [r.json() for r in recv.at("/pagerduty") if r.status == 202]
    assert {e["dedup_key"] for e in pd_events if e["payload"]["class"] == "model_drift"} == {
        fingerprint(model, "1", a["signal"], a["detector"]["name"]) for a in alerts}
    slack_texts = [r.json()["text"] for r in recv.at("/slack")]
    assert any("Drift on " + model in t for t in slack_texts)
    assert any("Retrain requested: " + model in t for t in slack_texts)
