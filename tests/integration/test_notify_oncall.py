"""OpsGenie, Microsoft Teams and email targets on the real Kafka: OpsGenie and Teams against
local HTTP receivers (tests/integration/receivers.py), email against a real SMTP server
(aiosmtpd) that requires STARTTLS and AUTH. What arrives, repeats, resolutions, retries after
failures and an outage, rejections dead-lettered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from stream_monitor.adapters.kafka_tools import create_topics
from stream_monitor.contracts import validate_record
from stream_monitor.notify import Forwarder, Notifier, fingerprint, resolve_targets
from stream_monitor.notify.notification import notification_from_record
from stream_monitor.observability import NotifierMetrics

from ..unit.notify_samples import drift_alert, drift_resolved, retrain_request
from .conftest import Unique, committed
from .receivers import Receivers, statuses
from .smtp_server import MailServer, make_certificate
from .test_notify import FAST_RETRY, _config, _dlq, _models, _produce, _read, _run_until

pytestmark = pytest.mark.integration

DASHBOARD = "http://127.0.0.1/grafana?var-model={model_id}"
SMTP_USER, SMTP_PASSWORD = "stream-monitor", "mail-s3cret"


def _records(model: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                  dict[str, Any]]:
    """A drift alert, the same problem detected again (a new alert id), a retrain request and
    the resolution of the drift."""
    a1 = drift_alert(model_id=model)
    again = drift_alert(model_id=model, alert_id="a9" * 16)
    return a1, again, retrain_request(model_id=model), drift_resolved(
        a1, "2026-01-01T01:00:00.000Z")


# -- OpsGenie and Teams ----------------------------------------------------------------------------

async def test_opsgenie_and_teams_get_alerts_repeats_and_resolutions(
        kafka_bootstrap: str, unique: Unique, tmp_path: Path) -> None:
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    m1, _ = _models(unique.id)
    a1, again, rt, res = _records(m1)
    recv = await Receivers().start()
    recv.opsgenie_key = "genie-key-for-tests"
    key_file = tmp_path / "opsgenie-key"
    key_file.write_text(recv.opsgenie_key + "\n")  # a mounted secret: OG_KEY_FILE
    try:
        og = recv.on("/opsgenie", statuses(500, 202))  # one failure, then fine
        og_bad = recv.on("/opsgenie-other", statuses(202))  # reached with the wrong key
        # Throttled once, as a connector says it: 200 with "... returned HTTP error 429 ...".
        teams = recv.on("/teams/webhookb2/x", statuses(429, 200))
        cfg = _config(unique, [
            {"name": "og", "type": "opsgenie", "url": og, "api_key_env": "OG_KEY",
             "responders": [{"type": "team", "name": "ml-oncall"}], "retry": FAST_RETRY},
            {"name": "og-bad", "type": "opsgenie", "url": og_bad, "api_key_env": "OG_BAD",
             "retry": FAST_RETRY},
            {"name": "teams", "type": "teams", "url_env": "TEAMS_URL", "retry": FAST_RETRY},
        ]).model_copy(update={"generator_url": DASHBOARD})
        env = {"OG_KEY_FILE": str(key_file), "OG_BAD": "not-the-key", "TEAMS_URL": teams}
        await _produce(kafka_bootstrap, unique.topics["alerts"], [a1, again, res])
        await _produce(kafka_bootstrap, unique.topics["retrain"], [rt])
        async with Notifier(cfg, resolve_targets(cfg, env), kafka_bootstrap) as n:
            await _run_until(n, lambda: n.handled >= 4)
    finally:
        await recv.stop()

    fp = fingerprint(m1, "1", "feature:utilization", "page_hinkley")
    # OpsGenie: three creates and a close by alias (each path fails once first: retried).
    creates = recv.at("/opsgenie/v2/alerts")
    assert sorted(r.status for r in creates) == [202, 202, 202, 500]
    assert {r.headers["Authorization"] for r in creates} == {"GenieKey genie-key-for-tests"}
    closes = recv.at(f"/opsgenie/v2/alerts/{fp}/close")
    assert [r.status for r in closes] == [500, 202]
    assert closes[1].json()["note"] == res["summary"]
    alerts = {a["alias"]: a for a in recv.opsgenie_alerts}
    assert len(recv.opsgenie_alerts) == 2  # the repeat was de-duplicated on the alias
    drift = alerts[fp]
    assert (drift["status"], drift["count"], drift["priority"]) == ("closed", 2, "P3")
    assert drift["message"] == f"Drift on {m1} feature:utilization (warning)"
    assert drift["entity"] == m1 and drift["responders"] == [{"type": "team",
                                                              "name": "ml-oncall"}]
    assert drift["details"]["alert_id"] == a1["alert_id"]  # the first detection's
    assert float(drift["details"]["reference_mean"]) == pytest.approx(
        a1["evidence"]["reference"]["mean"], 1e-5)
    assert drift["details"]["link"] == f"http://127.0.0.1/grafana?var-model={m1}"
    retrain = alerts[fingerprint(m1, "1", "retrain", "min_drifted_signals")]
    assert (retrain["status"], retrain["priority"]) == ("open", "P1")
    assert retrain["message"] == f"Retrain requested: {m1}"

    # The wrong key: 401, a rejection, dead-lettered without retries.
    assert [r.status for r in recv.at("/opsgenie-other/v2/alerts")] == [401] * 3
    assert [r.status for r in recv.requests if r.path.startswith("/opsgenie-other/")
            and r.path.endswith("/close")] == [401]
    dls = await _read(kafka_bootstrap, _dlq(unique), 4)
    assert len(dls) == 4
    for d in dls:
        validate_record(d, "notification-dead-letter")
        assert d["target"] == {"name": "og-bad", "type": "opsgenie"}
        assert (d["reason_code"], d["attempts"], d["last_status"]) == ("rejected", 1, 401)

    # Teams: one card per record (the first throttled and retried), the resolution its own.
    posts = recv.at("/teams/webhookb2/x")
    assert sorted(r.status for r in posts) == [200, 200, 200, 200, 429]
    cards = [r.json()["attachments"][0]["content"] for r in posts if r.status == 200]
    titles = sorted(c["body"][0]["text"] for c in cards)
    assert titles == sorted([f"Drift on {m1} feature:utilization (warning)"] * 2
                            + [f"Retrain requested: {m1}",
                               f"Resolved: drift on {m1} feature:utilization"])
    for c in cards:
        assert c["type"] == "AdaptiveCard" and c["body"][2]["type"] == "FactSet"
        assert c["actions"][0]["url"] == f"http://127.0.0.1/grafana?var-model={m1}"
    first = next(c for c in cards if c["body"][1]["text"] == a1["summary"])
    facts = {f["title"]: f["value"] for f in first["body"][2]["facts"]}
    assert facts["fingerprint"] == fp and facts["offset"] == "inference-events/0@3027"
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["alerts"]) == 3
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["retrain"]) == 1


# -- Email -----------------------------------------------------------------------------------------

@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def _mail_target(server: MailServer, cert: Path, **over: Any) -> dict[str, Any]:
    return {"name": "mail", "type": "email", "host": "127.0.0.1", "port": server.port,
            "security": "starttls", "ca_file": str(cert), "username": SMTP_USER,
            "password_env": "SMTP_PW", "from_address": "Stream Monitor <sm@example.com>",
            "to": ["oncall@example.com", "ml@example.com"], "retry": FAST_RETRY, **over}


async def test_email_over_starttls_and_auth(kafka_bootstrap: str, unique: Unique, tmp_path: Path,
                                            certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = MailServer(cert, key, {SMTP_USER: SMTP_PASSWORD}).start()
    # The relay is busy once (a transient 451): that mail is retried.
    server.script = lambda n: "451 4.3.0 mailbox busy, try again later" if n == 0 else "250 OK"
    password = tmp_path / "smtp-password"
    password.write_text(SMTP_PASSWORD + "\n")
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    m1, _ = _models(unique.id)
    a1, _, rt, res = _records(m1)
    try:
        cfg = _config(unique, [
            _mail_target(server, cert),
            _mail_target(server, cert, name="mail-bad-login", password_env="SMTP_BAD"),
        ]).model_copy(update={"generator_url": DASHBOARD})
        env = {"SMTP_PW_FILE": str(password), "SMTP_BAD": "wrong"}
        # The alert twice: the same record again, as a redelivery brings it.
        await _produce(kafka_bootstrap, unique.topics["alerts"], [a1, a1, res])
        await _produce(kafka_bootstrap, unique.topics["retrain"], [rt])
        async with Notifier(cfg, resolve_targets(cfg, env), kafka_bootstrap) as n:
            await _run_until(n, lambda: n.handled >= 4)
    finally:
        server.stop()

    assert server.data_replies[0].startswith("451") and len(server.data_replies) == 5
    assert len(server.mails) == 4
    for m in server.mails:  # over TLS, logged in, the envelope as configured
        assert (m.tls, m.login, m.mail_from) == (True, SMTP_USER, "sm@example.com")
        assert m.rcpt_tos == ["oncall@example.com", "ml@example.com"]
        assert m.header("From") == "Stream Monitor <sm@example.com>"
        assert m.header("To") == "oncall@example.com, ml@example.com"
        assert m.header("Auto-Submitted") == "auto-generated"
    fp = fingerprint(m1, "1", "feature:utilization", "page_hinkley")
    by_id: dict[str, list[Any]] = {}
    for m in server.mails:
        by_id.setdefault(m.header("Message-ID"), []).append(m)
    # The repeat is the same mail (the same Message-ID): a mailbox keeps one.
    assert sorted(len(v) for v in by_id.values()) == [1, 1, 2]
    [trigger, _] = by_id[f"<{a1['alert_id']}@example.com>"]
    [resolved] = by_id[f"<resolve-{a1['alert_id']}@example.com>"]
    [retrain] = by_id[f"<{rt['request_id']}@example.com>"]
    assert trigger.header("Subject") == (f"[stream-monitor] FIRING: Drift on {m1} "
                                         "feature:utilization (warning)")
    assert trigger.header("X-Stream-Monitor-Fingerprint") == fp
    msg = trigger.message
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert a1["summary"] in text and "inference-events/0@3027" in text
    assert f"Dashboard: http://127.0.0.1/grafana?var-model={m1}" in text
    assert "<th align=\"left\">reference_mean</th>" in page
    # The resolution threads under its alert.
    assert resolved.header("Subject") == (f"[stream-monitor] RESOLVED: Resolved: drift on {m1} "
                                          "feature:utilization")
    assert resolved.header("References") == trigger.header("References") == f"<{fp}@example.com>"
    assert retrain.header("Subject") == f"[stream-monitor] FIRING: Retrain requested: {m1}"

    # A wrong password: 535 from the server, a rejection, no retries, dead-lettered.
    # (smtplib tries each mechanism the relay offers, PLAIN then LOGIN, before it gives up.)
    assert server.logins.count((SMTP_USER, False)) == 4 * 2
    assert server.logins.count((SMTP_USER, True)) == 5  # 4 mails and the 451 (a session each)
    dls = await _read(kafka_bootstrap, _dlq(unique), 4)
    assert len(dls) == 4
    for d in dls:
        validate_record(d, "notification-dead-letter")
        assert d["target"] == {"name": "mail-bad-login", "type": "email"}
        assert (d["reason_code"], d["attempts"], d["last_status"]) == ("rejected", 1, 535)
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["alerts"]) == 3


async def test_email_is_retried_while_the_server_is_down_and_sent_once_it_is_up(
        kafka_bootstrap: str, unique: Unique, tmp_path: Path,
        certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = MailServer(cert, key, {SMTP_USER: SMTP_PASSWORD})  # not started: down
    await create_topics(kafka_bootstrap, [_dlq(unique)])
    a1 = drift_alert(model_id=_models(unique.id)[0])
    await _produce(kafka_bootstrap, unique.topics["alerts"], [a1])
    cfg = _config(unique, [_mail_target(server, cert, retry={
        "max_attempts": 100, "initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.2})])
    reg = CollectorRegistry()

    def errors() -> float:
        return reg.get_sample_value("stream_monitor_notify_delivery_attempts_total",
                                    {"target": "mail", "result": "error"}) or 0.0

    try:
        async with Notifier(cfg, resolve_targets(cfg, {"SMTP_PW": SMTP_PASSWORD}),
                            kafka_bootstrap, metrics=NotifierMetrics(reg)) as n:
            stop = asyncio.Event()
            task = asyncio.create_task(n.run(stop))
            deadline = time.monotonic() + 30
            while errors() < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert errors() >= 3, "the notifier did not try the stopped server"
            assert await committed(kafka_bootstrap, cfg.consumer_group,
                                   unique.topics["alerts"]) == -1  # nothing while it is down
            server.start()  # the relay comes back
            try:
                deadline = time.monotonic() + 30
                while n.handled < 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        server.stop()
    assert n.handled == 1
    assert [m.header("Message-ID") for m in server.mails] == [f"<{a1['alert_id']}@example.com>"]
    assert await committed(kafka_bootstrap, cfg.consumer_group, unique.topics["alerts"]) == 1
    assert reg.get_sample_value("stream_monitor_notify_deliveries_total",
                                {"target": "mail", "outcome": "delivered"}) == 1.0


class _Waits:
    """DeliveryHooks that keep the rate-limit waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def attempt(self, target: str, result: str) -> None:
        pass

    def rate_limited(self, target: str, seconds: float) -> None:
        self.waits.append(seconds)


async def test_email_implicit_tls_rate_limit_and_a_relay_without_starttls(
        tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    """The forwarder alone (no Kafka): ``security: tls`` speaks TLS from the first byte, under
    the target's rate limit like any other; ``security: starttls`` refuses a relay that does
    not offer STARTTLS instead of sending the password in clear."""
    cert, key = certificate
    tls = MailServer(cert, key, {SMTP_USER: SMTP_PASSWORD}, implicit_tls=True).start()
    plain = MailServer(cert, key, {SMTP_USER: SMTP_PASSWORD}, offer_starttls=False).start()
    u = Unique.__new__(Unique)
    u.id, u.topics = "x", {"alerts": "a", "retrain": "r", "deployments": "d"}
    try:
        cfg = _config(u, [_mail_target(tls, cert, security="tls",
                                       rate_limit={"per_second": 1, "burst": 1}),
                          _mail_target(plain, cert, name="plain")])
        targets = {t.name: t for t in resolve_targets(cfg, {"SMTP_PW": SMTP_PASSWORD})}
        alerts = [notification_from_record(drift_alert(alert_id=f"{i:032x}")) for i in range(3)]
        hooks = _Waits()
        async with aiohttp.ClientSession() as session:
            fw = Forwarder(targets["mail"], session, hooks=hooks)
            sent = [await fw.deliver(n) for n in alerts]
            refused = await Forwarder(targets["plain"], session).deliver(alerts[0])
    finally:
        tls.stop()
        plain.stop()
    assert [(r.outcome, r.status) for r in sent] == [("delivered", 250)] * 3
    assert [(m.tls, m.login) for m in tls.mails] == [(True, SMTP_USER)] * 3
    # A burst of 1 at 1 a second: the 2nd and 3rd mail waited for their token (a mail to the
    # loopback relay takes far less than the second).
    assert len(hooks.waits) == 2 and all(0.3 < w <= 1.0 + 1e-6 for w in hooks.waits)
    assert (refused.outcome, refused.attempts, refused.status) == ("rejected", 1, None)
    assert "STARTTLS" in refused.error and plain.mails == [] and plain.logins == []
