"""The notifier's pure parts: config errors, record interpretation, payloads, signatures,
backoff and rate limits; and one target's retries against a loopback HTTP receiver."""

from __future__ import annotations

import email.utils
import random
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from stream_monitor.contracts import validate_record
from stream_monitor.contracts.output_records import TriggerEvent
from stream_monitor.errors import ConfigError
from stream_monitor.notify import (
    DeliveryResult,
    Forwarder,
    SignatureError,
    TokenBucket,
    UnsupportedRecord,
    backoff_delay,
    build_request,
    fingerprint,
    load_notify_config,
    notification_from_record,
    parse_notify_config,
    resolve_targets,
    sign,
    verify_signature,
)
from stream_monitor.notify.config import RateLimit, RetryPolicy
from stream_monitor.notify.delivery import retry_after_seconds
from stream_monitor.notify.service import dead_letter_record
from tests.helpers import record_json

from .notify_samples import drift_alert, drift_resolved, retrain_request

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notify.yaml"
NOW = 1_795_000_000.0  # 2026-11-16, after the samples' event times


def _cfg(*targets: dict[str, Any], **top: Any) -> Any:
    return parse_notify_config({"targets": list(targets), **top})


AM = {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093"}
PD = {"name": "pd", "type": "pagerduty", "routing_key_env": "PD_KEY", "url": "http://127.0.0.1:1/pd"}
SLACK = {"name": "slack", "type": "slack", "url_env": "SLACK_URL"}
HOOK = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:1/hook",
        "secret_env": "HOOK_SECRET"}
ENV = {"PD_KEY": "R0UTING", "SLACK_URL": "http://127.0.0.1:1/slack", "HOOK_SECRET": "s3cret"}


def _targets(*specs: dict[str, Any]) -> Any:
    return {t.name: t for t in resolve_targets(_cfg(*specs), ENV)}


# -- config ------------------------------------------------------------------------------------

def test_example_config_loads_and_resolves() -> None:
    cfg = load_notify_config(EXAMPLE)
    env = {"PAGERDUTY_ROUTING_KEY": "k", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/x",
           "RETRAIN_WEBHOOK_SECRET": "s", "OPSGENIE_API_KEY": "g", "SMTP_PASSWORD": "p",
           "TEAMS_WEBHOOK_URL": "https://example.webhook.office.com/webhookb2/x"}
    resolved = resolve_targets(cfg, env)
    assert [t.spec.type for t in resolved] == ["alertmanager", "pagerduty", "opsgenie", "slack",
                                               "teams", "email", "webhook"]
    assert resolved[1].url == "https://events.pagerduty.com/v2/enqueue"
    env["RETRAIN_WEBHOOK_SECRET"] = "do-not-print-me"
    assert "do-not-print-me" not in repr(resolve_targets(cfg, env))


def _problems(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as e:
        parse_notify_config(raw)
    return e.value.problems


def test_errors_name_the_field_and_the_fix() -> None:
    problems = dict(_problems({"targets": [
        {"name": "a", "type": "alertmanger", "url": "http://x"},
        {"name": "b", "type": "pagerduty", "routing_key_envv": "K"},
        {"name": "c", "type": "webhook", "url": "ftp://x", "secret_env": "S",
         "retry": {"max_attempts": 0}},
        {"name": "c", "type": "slack"},
    ]}))
    assert "did you mean 'alertmanager'" in problems["targets[0].type"]
    assert "did you mean 'routing_key_env'" in problems["targets[1].routing_key_envv"]
    assert "required" in problems["targets[1].routing_key_env"]
    assert "http(s) URL" in problems["targets[2].url"]
    assert "greater than or equal to 1" in problems["targets[2].retry.max_attempts"]
    assert "duplicate target name 'c'" in problems["targets[3].name"]
    assert "set url" in problems["targets[3]"]


def test_top_level_errors_and_empty_targets() -> None:
    problems = dict(_problems({"targets": [], "severity": {"drift_alert": "loud"}, "topcs": {}}))
    assert "at least 1" in problems["targets"]
    assert "'critical', 'error', 'warning' or 'info'" in problems["severity.drift_alert"]
    assert "unknown field" in problems["topcs"] and "did you mean 'topics'" in problems["topcs"]


def test_missing_secrets_are_reported_together() -> None:
    cfg = _cfg(PD, SLACK, HOOK)
    with pytest.raises(ConfigError) as e:
        resolve_targets(cfg, {})
    problems = dict(e.value.problems)
    assert "PD_KEY is not set" in problems["targets[0].routing_key_env"]
    assert "SLACK_URL is not set" in problems["targets[1].url_env"]
    assert "HOOK_SECRET is not set" in problems["targets[2].secret_env"]


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "n.yaml"
    p.write_text("targets: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_notify_config(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_notify_config(tmp_path / "missing.yaml")


# -- records -> notifications ------------------------------------------------------------------

def test_drift_alert_notification() -> None:
    a = drift_alert()
    n = notification_from_record(a)
    assert n.action == "trigger" and n.alertname == "ModelDrift"
    assert n.fingerprint == fingerprint("credit-risk", "1", "feature:utilization", "page_hinkley")
    assert n.labels == {"alertname": "ModelDrift", "model": "credit-risk", "model_version": "1",
                        "signal": "feature:utilization", "detector": "page_hinkley",
                        "severity": "warning"}
    assert n.idempotency_key == a["alert_id"]
    assert n.occurred_at_iso == a["detected_at"]["event_time"]
    assert n.details["reference_mean"] == "0.393942"
    assert n.details["offset"] == "inference-events/0@3027"


def test_resolution_has_the_alerts_fingerprint_and_labels() -> None:
    a = drift_alert()
    r = notification_from_record(drift_resolved(a, "2026-01-01T01:00:00.000Z"))
    t = notification_from_record(a)
    assert r.action == "resolve"
    assert r.fingerprint == t.fingerprint and r.labels == t.labels
    assert r.occurred_at_iso == "2026-01-01T01:00:00.000Z"
    # A new model version is a different problem.
    other = notification_from_record(drift_alert(model_version="2"))
    assert other.fingerprint != t.fingerprint


def test_retrain_request_notification() -> None:
    r = retrain_request()
    n = notification_from_record(r, {"retrain_request": "error"})
    assert n.alertname == "RetrainRequested" and n.severity == "error"
    assert n.labels == {"alertname": "RetrainRequested", "model": "credit-risk",
                        "model_version": "1", "severity": "error"}
    assert n.idempotency_key == r["request_id"]
    assert "feature:utilization, feature:amount" in n.details["signals"]


@pytest.mark.parametrize(("record", "code"), [
    ([1], "not_an_object"),
    ({"type": "dead_letter"}, "unsupported_type"),
    ({"type": "drift_alert", "model_id": "m", "signal": "prediction"}, "missing_field"),
])
def test_unsupported_records(record: Any, code: str) -> None:
    with pytest.raises(UnsupportedRecord) as e:
        notification_from_record(record)
    assert e.value.reason_code == code


# -- payloads ----------------------------------------------------------------------------------

def test_alertmanager_payload() -> None:
    t = _targets(AM)["am"]
    a = drift_alert()
    req = build_request(t, notification_from_record(a), NOW,
                        generator_url="http://grafana/d/x?var-model={model_id}")
    assert req.url == "http://127.0.0.1:9093/api/v2/alerts"
    [alert] = req.json()
    assert alert["labels"]["alertname"] == "ModelDrift"
    assert alert["startsAt"] == a["detected_at"]["event_time"]
    assert alert["endsAt"] > alert["startsAt"]  # firing for resolve_after_seconds
    ann = alert["annotations"]
    assert ann["summary"] == a["summary"] and ann["alert_id"] == a["alert_id"]
    assert "reference mean 0.393942" in ann["description"]
    assert all(isinstance(v, str) for v in ann.values())
    assert alert["generatorURL"] == "http://grafana/d/x?var-model=credit-risk"

    [res] = build_request(t, notification_from_record(
        drift_resolved(a, "2026-01-01T01:00:00.000Z")), NOW).json()
    assert "startsAt" not in res and res["endsAt"] == "2026-01-01T01:00:00.000Z"
    assert res["labels"] == alert["labels"]


def test_alertmanager_start_in_the_future_is_clamped_to_now() -> None:
    t = _targets({**AM, "resolve_after_seconds": None})["am"]
    a = drift_alert()
    a["detected_at"]["event_time"] = "2099-01-01T00:00:00.000Z"
    [alert] = build_request(t, notification_from_record(a), NOW).json()
    assert alert["startsAt"] < "2027" and "endsAt" not in alert


def test_pagerduty_trigger_and_resolve() -> None:
    t = _targets(PD)["pd"]
    a = drift_alert()
    body = build_request(t, notification_from_record(a), NOW).json()
    fp = fingerprint("credit-risk", "1", "feature:utilization", "page_hinkley")
    assert body["routing_key"] == "R0UTING" and body["event_action"] == "trigger"
    assert body["dedup_key"] == fp
    p = body["payload"]
    assert p["severity"] == "warning" and p["source"] == "stream-monitor/credit-risk"
    assert p["summary"] == a["summary"] and p["timestamp"] == a["detected_at"]["event_time"]
    assert p["custom_details"]["current_mean"] == "0.320627"
    res = build_request(t, notification_from_record(drift_resolved(a, "2026-01-01T01:00:00Z")),
                        NOW).json()
    assert res == {"routing_key": "R0UTING", "dedup_key": fp, "event_action": "resolve"}


def test_slack_message_is_readable() -> None:
    t = _targets(SLACK)["slack"]
    body = build_request(t, notification_from_record(drift_alert()), NOW).json()
    assert body["text"].startswith(":rotating_light: Drift on credit-risk feature:utilization")
    text = orjson.dumps(body["blocks"]).decode()
    assert "*reference_mean*: 0.393942" in text and "*current_mean*: 0.320627" in text
    body = build_request(t, notification_from_record(retrain_request()), NOW).json()
    assert body["text"].startswith(":rotating_light: Retrain requested: credit-risk")


def test_webhook_forwards_the_record_bytes_signed() -> None:
    t = _targets(HOOK)["hook"]
    raw = orjson.dumps(drift_alert())
    req = build_request(t, notification_from_record(orjson.loads(raw)), NOW, raw=raw)
    assert req.body == raw
    assert req.headers["Idempotency-Key"] == drift_alert()["alert_id"]
    sig = req.headers["X-Stream-Monitor-Signature"]
    assert verify_signature("s3cret", raw, sig, NOW) == int(NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("wrong", raw, req.headers["X-Stream-Monitor-Signature"], NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("s3cret", raw + b" ", req.headers["X-Stream-Monitor-Signature"], NOW)
    with pytest.raises(SignatureError, match="from now"):
        verify_signature("s3cret", raw, sign("s3cret", raw, int(NOW) - 3600), NOW)
    with pytest.raises(SignatureError, match="malformed"):
        verify_signature("s3cret", raw, "sha256=abc", NOW)


def test_dead_letter_record_matches_its_schema() -> None:
    class Msg:
        topic, partition, offset, timestamp = "drift-alerts", 0, 7, 1_795_000_000_000
        key, value, headers = b"credit-risk", b"\xff not json", [("schema", b"drift-alert/v1")]

    rec = dead_letter_record(Msg(), "undecodable", "not valid UTF-8 JSON", NOW)
    validate_record(rec, "notification-dead-letter")
    assert rec["original"]["value"]["encoding"] == "base64" and rec["target"] is None


# -- backoff and rate limit --------------------------------------------------------------------

def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    p = RetryPolicy(initial_backoff_seconds=0.5, max_backoff_seconds=4, multiplier=2)
    rng = random.Random(1)
    for attempt, cap in [(1, 0.5), (2, 1), (3, 2), (4, 4), (5, 4), (9, 4)]:
        delays = [backoff_delay(p, attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # jitter spreads over the whole range
    assert backoff_delay(p, 1, rng, retry_after=2.0) == 2.0
    assert backoff_delay(p, 1, rng, retry_after=60.0) == 4.0


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    ("-5", 0.0),
    # RFC 9110: an HTTP-date (IMF-fixdate), and the obsolete RFC 850 and asctime forms.
    ("Sun, 06 Nov 1994 08:49:37 GMT", 30.0),
    ("Sunday, 06-Nov-94 08:49:37 GMT", 30.0),
    ("Sun Nov  6 08:49:37 1994", 30.0),
    ("Sun, 06 Nov 1994 08:40:00 GMT", 0.0),  # already past: no wait
    (None, None),
    ("", None),
    ("soon", None),
    ("Sun, 99 Foo 1994 25:61:00 GMT", None),
    ("nan", None),
])
def test_retry_after_takes_seconds_or_an_http_date(header: str | None,
                                                   seconds: float | None) -> None:
    now = 784111777.0 - 30.0  # 1994-11-06T08:49:37Z less 30 s
    assert retry_after_seconds(header, now) == seconds


async def test_token_bucket_limits_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(RateLimit(per_second=4, burst=2), clock=lambda: now[0], sleep=sleep)
    waits = [await bucket.acquire() for _ in range(6)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert all(w == pytest.approx(0.25) for w in waits[2:])  # then 4 a second
    assert now[0] == pytest.approx(1.0)


# -- one target against a loopback receiver ------------------------------------------------------

async def _receiver(statuses: list[int], retry_after: dict[int, str] | None = None,
                    ) -> tuple[web.AppRunner, str, list[Any]]:
    """A loopback webhook answering ``statuses`` in turn (then the last one again), with a
    Retry-After header on the statuses ``retry_after`` names (default: "0" on a 429)."""
    seen: list[Any] = []
    retry_after = {429: "0"} if retry_after is None else retry_after

    async def handle(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        status = statuses[min(len(seen) - 1, len(statuses) - 1)]
        after = retry_after.get(status)
        return web.Response(status=status, text="ok" if status < 300 else "nope",
                            headers={"Retry-After": after} if after is not None else None)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook", seen


async def _deliver(statuses: list[int], retry: dict[str, Any],
                   retry_after: dict[int, str] | None = None,
                   **forwarder: Any) -> tuple[DeliveryResult, list[float], list[Any]]:
    """A drift alert delivered to a loopback webhook answering ``statuses``, with the retry
    policy ``retry``: the result, the waits between attempts, the requests the webhook saw."""
    runner, url, seen = await _receiver(statuses, retry_after)
    delays: list[float] = []

    async def sleep(s: float) -> None:
        delays.append(s)

    try:
        spec = {**HOOK, "url": url, "retry": retry}
        async with aiohttp.ClientSession() as session:
            fw = Forwarder(_targets(spec)["hook"], session, sleep=sleep, **forwarder)
            raw = orjson.dumps(drift_alert())
            res = await fw.deliver(notification_from_record(orjson.loads(raw)), raw)
    finally:
        await runner.cleanup()
    return res, delays, seen


@pytest.mark.parametrize(("statuses", "outcome", "attempts"), [
    ([500, 429, 200], "delivered", 3),
    ([503], "failed", 4),
    ([400], "rejected", 1),
])
async def test_forwarder_retries_then_delivers_or_gives_up(statuses: list[int], outcome: str,
                                                           attempts: int) -> None:
    res, delays, seen = await _deliver(statuses, {"max_attempts": 4,
                                                  "initial_backoff_seconds": 1,
                                                  "max_backoff_seconds": 8},
                                       rng=random.Random(3))
    assert (res.outcome, res.attempts, len(seen)) == (outcome, attempts, attempts)
    assert len(delays) == attempts - 1
    assert all(0 <= d <= min(8, 2 ** k) for k, d in enumerate(delays))
    keys = {h["Idempotency-Key"] for h, _ in seen}
    assert keys == {drift_alert()["alert_id"]}  # the same key on every retry
    for headers, body in seen:
        sig = headers["X-Stream-Monitor-Signature"]
        verify_signature("s3cret", body, sig, float(sig.split(",")[0].removeprefix("t=")))


async def test_forwarder_skips_record_types_it_does_not_take() -> None:
    async with aiohttp.ClientSession() as session:
        fw = Forwarder(_targets({**HOOK, "records": ["retrain_request"]})["hook"], session)
        res = await fw.deliver(notification_from_record(drift_alert()))
    assert res.outcome == "skipped" and res.ok and res.attempts == 0


async def test_forwarder_connection_refused_is_retried() -> None:
    async def sleep(s: float) -> None:
        pass

    spec = {**HOOK, "url": "http://127.0.0.1:9/closed", "retry": {"max_attempts": 2}}
    async with aiohttp.ClientSession() as session:
        fw = Forwarder(_targets(spec)["hook"], session, sleep=sleep)
        res = await fw.deliver(notification_from_record(drift_alert()))
    assert res.outcome == "failed" and res.attempts == 2 and res.status is None
    assert "Connect" in res.error or "connect" in res.error


async def test_forwarder_waits_until_a_retry_after_date() -> None:
    now = 1_800_000_000.0
    res, delays, seen = await _deliver(
        [503, 200], {"max_attempts": 3, "initial_backoff_seconds": 1, "max_backoff_seconds": 8},
        retry_after={503: email.utils.formatdate(now + 3.0, usegmt=True)}, clock=lambda: now)
    assert res.outcome == "delivered" and res.attempts == 2 == len(seen)
    assert delays == [3.0]  # the server's date, not our jittered backoff


def test_data_quality_alert_is_forwarded_as_its_own_alertname() -> None:
    from stream_monitor.notify.notification import notification_from_record

    rec = {"type": "data_quality_alert", "alert_id": "a" * 32, "model_id": "m",
           "model_version": "1", "feature": "amount", "indicator": "missing",
           "signal": "quality:missing:amount", "detector": {"name": "adwin", "type": "adwin"},
           "detected_at": {"event_id": "e", "topic": "t", "partition": 0, "offset": 9,
                           "event_time": "2026-01-01T00:00:00.000Z"},
           "rate_before": 0.01, "rate_after": 0.3, "summary": "missing rate rose"}
    n = notification_from_record(rec)
    assert (n.action, n.alertname, n.signal) == ("trigger", "ModelDataQuality",
                                                 "quality:missing:amount")
    assert n.details["feature"] == "amount" and n.details["rate_after"]


def _deployment_check(verdict: str) -> dict[str, Any]:
    from stream_monitor.core.deploy import compare_signal, deployment_check

    shifted = verdict == "fail"
    sig = compare_signal("feature:amount", [float(i % 7) for i in range(300)],
                         [float(i % 7) + (3.0 if shifted else 0.0) for i in range(300)],
                         alpha=0.01, min_shift=0.5, min_values=30)
    signals = [sig] + ([compare_signal("prediction", [1.0] * 5, [1.0] * 5, alpha=0.01,
                                       min_shift=0.5, min_values=30)]
                       if verdict == "warn" else [])
    return record_json(deployment_check(  # as the notifier reads it from the topic
        model_id="churn", model_version="2", previous_version="1", started_at=1.767e9,
        completed_at=1.767e9 + 600, reason="watch_complete",
        trigger=TriggerEvent("e9", "t", 0, 9),
        signals=signals, performance=None,
        rule={"alpha": 0.01, "min_shift": 0.5, "max_error_increase": 0.02, "watch_events": 300,
              "min_labeled": 200, "max_wait_seconds": 3600.0}))


def test_deployment_checks_that_fail_or_warn_are_forwarded_and_a_pass_is_not() -> None:
    fail, warn, ok = (_deployment_check(v) for v in ("fail", "warn", "pass"))
    assert (fail["verdict"], warn["verdict"], ok["verdict"]) == ("fail", "warn", "pass")
    for rec in (fail, warn, ok):
        validate_record(rec)
    n = notification_from_record(fail)
    assert (n.action, n.alertname, n.severity) == ("trigger", "ModelDeploymentCheck", "critical")
    assert n.labels == {"alertname": "ModelDeploymentCheck", "model": "churn",
                        "model_version": "2", "detector": "deployment_check",
                        "severity": "critical"}
    assert n.idempotency_key == fail["check_id"] and "feature:amount" in n.details["reasons"]
    assert notification_from_record(warn).severity == "warning"
    assert notification_from_record(ok) is None
