"""OpsGenie, Microsoft Teams and email targets: config validation, secrets from files, and the
payload each gets, compared with the shapes their APIs document:

* OpsGenie Alert API v2: ``POST /v2/alerts`` with ``message`` (<= 130 chars), ``alias``,
  ``description``, ``responders``, ``tags``, ``details``, ``entity``, ``source``, ``priority``
  (P1-P5), ``Authorization: GenieKey <key>``; close with
  ``POST /v2/alerts/<alias>/close?identifierType=alias`` and ``source``/``user``/``note``.
* Teams: ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <AdaptiveCard>}]}``.
* Email: an RFC 5322 message, multipart/alternative (text/plain + text/html).
"""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_monitor.errors import ConfigError
from stream_monitor.notify import (
    MailRequest,
    build_request,
    fingerprint,
    load_notify_config,
    notification_from_record,
    parse_notify_config,
    resolve_targets,
)
from stream_monitor.notify.smtp import smtp_verdict

from .notify_samples import drift_alert, drift_resolved, retrain_request

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notify.yaml"
NOW = 1_795_000_000.0
FP = fingerprint("credit-risk", "1", "feature:utilization", "page_hinkley")

OG = {"name": "og", "type": "opsgenie", "api_key_env": "OG_KEY"}
TEAMS = {"name": "teams", "type": "teams", "url_env": "TEAMS_URL"}
MAIL = {"name": "mail", "type": "email", "host": "smtp.example.com",
        "from_address": "Stream Monitor <stream-monitor@example.com>",
        "to": ["oncall@example.com", "ml@example.com"],
        "username": "sm", "password_env": "SMTP_PASSWORD"}
ENV = {"OG_KEY": "genie-key-1", "TEAMS_URL": "https://example.webhook.office.com/webhookb2/x",
       "SMTP_PASSWORD": "pw"}


def _problems(*targets: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        parse_notify_config({"targets": list(targets)})
    return dict(e.value.problems)


def _resolved(spec: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    [t] = resolve_targets(parse_notify_config({"targets": [spec]}), ENV if env is None else env)
    return t


# -- config ------------------------------------------------------------------------------------

def test_example_config_has_every_target_type() -> None:
    cfg = load_notify_config(EXAMPLE)
    env = {"PAGERDUTY_ROUTING_KEY": "k", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/x",
           "RETRAIN_WEBHOOK_SECRET": "s", "OPSGENIE_API_KEY": "g",
           "TEAMS_WEBHOOK_URL": "https://example.webhook.office.com/webhookb2/x",
           "SMTP_PASSWORD": "p"}
    resolved = {t.spec.type: t for t in resolve_targets(cfg, env)}
    assert set(resolved) == {"alertmanager", "pagerduty", "opsgenie", "slack", "teams", "email",
                             "webhook"}
    assert resolved["opsgenie"].url == "https://api.eu.opsgenie.com"
    assert resolved["email"].url == "smtp://smtp.example.com:587"


def test_opsgenie_region_chooses_the_api_base() -> None:
    assert _resolved(OG).url == "https://api.opsgenie.com"
    assert _resolved({**OG, "region": "eu"}).url == "https://api.eu.opsgenie.com"
    assert _resolved({**OG, "url": "http://127.0.0.1:1/og"}).url == "http://127.0.0.1:1/og"


def test_opsgenie_config_errors_name_the_field_and_the_fix() -> None:
    p = _problems(
        {**OG, "region": "eu", "url": "https://api.eu.opsgenie.com"},
        {**OG, "name": "b", "region": "asia"},
        {**OG, "name": "c", "priorities": {"warning": "P9"}},
        {**OG, "name": "d", "responders": [{"type": "team"}]},
        {**OG, "name": "e", "responders": [{"type": "team", "username": "x"}]},
        {"name": "f", "type": "opsgenie", "api_key": "literal-key"},
        {**OG, "name": "g", "tags": ["x" * 51]},
    )
    assert "either region or url" in p["targets[0]"]
    assert "'us' or 'eu'" in p["targets[1].region"]
    assert "'P1', 'P2', 'P3', 'P4' or 'P5'" in p["targets[2].priorities.warning"]
    assert "exactly one of id, name or username" in p["targets[3].responders[0]"]
    assert "username is for type: user" in p["targets[4].responders[0]"]
    assert "did you mean 'api_key_env'" in p["targets[5].api_key"]
    assert "required" in p["targets[5].api_key_env"]
    assert "at most 50 characters" in p["targets[6].tags[0]"]


def test_teams_needs_its_webhook_url() -> None:
    assert "set url" in _problems({"name": "t", "type": "teams"})["targets[0]"]
    with pytest.raises(ConfigError) as e:
        _resolved(TEAMS, {})
    assert "TEAMS_URL is not set" in dict(e.value.problems)["targets[0].url_env"]


def test_email_config_errors_name_the_field_and_the_fix() -> None:
    p = _problems(
        {**MAIL, "password_env": None},
        {**MAIL, "name": "b", "username": None},
        {**MAIL, "name": "c", "security": "none"},
        {**MAIL, "name": "d", "security": "ssl"},
        {**MAIL, "name": "e", "to": ["not an address"]},
        {**MAIL, "name": "f", "to": []},
        {**MAIL, "name": "g", "from_address": "nobody"},
        {**MAIL, "name": "h", "url": "smtp://x"},
        {**MAIL, "name": "i", "port": 0},
    )
    assert "add password_env" in p["targets[0]"]
    assert "add the SMTP user name" in p["targets[1]"]
    assert "password in clear" in p["targets[2]"] and "starttls" in p["targets[2]"]
    assert "'starttls', 'tls' or 'none'" in p["targets[3].security"]
    assert "is not a mail address" in p["targets[4].to"]
    assert "at least 1" in p["targets[5].to"]
    assert "is not a mail address" in p["targets[6].from_address"]
    assert "unknown field" in p["targets[7].url"]
    assert "greater than or equal to 1" in p["targets[8].port"]


def test_email_ports_by_security_and_a_missing_ca_file(tmp_path: Path) -> None:
    assert _resolved({**MAIL, "security": "tls"}).url == "smtps://smtp.example.com:465"
    assert _resolved({**MAIL, "port": 2525}).url == "smtp://smtp.example.com:2525"
    plain = {k: v for k, v in MAIL.items() if k not in ("username", "password_env")}
    t = _resolved({**plain, "security": "none"}, {})
    assert t.url == "smtp://smtp.example.com:25" and t.secret is None
    with pytest.raises(ConfigError) as e:
        _resolved({**MAIL, "ca_file": str(tmp_path / "missing.pem")})
    assert "is not a readable file" in dict(e.value.problems)["targets[0].ca_file"]


def test_secrets_come_from_the_variable_or_its_file(tmp_path: Path) -> None:
    key = tmp_path / "genie-key"
    key.write_text("from-a-file\n")  # the final newline of `echo` is not part of the key
    assert _resolved(OG, {"OG_KEY_FILE": str(key)}).secret == "from-a-file"
    assert _resolved(OG, {"OG_KEY": "from-env"}).secret == "from-env"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    cases = {
        "both OG_KEY and OG_KEY_FILE are set; keep one": {"OG_KEY": "a", "OG_KEY_FILE": str(key)},
        "OG_KEY_FILE: cannot read": {"OG_KEY_FILE": str(tmp_path / "nope")},
        "is empty": {"OG_KEY_FILE": str(empty)},
        "OG_KEY is not set; export it with the OpsGenie API integration's key (or OG_KEY_FILE":
            {},
    }
    for message, env in cases.items():
        with pytest.raises(ConfigError) as e:
            _resolved(OG, env)
        assert message in dict(e.value.problems)["targets[0].api_key_env"]
    # Every target's secrets take a file, not only the new targets'.
    pw = tmp_path / "smtp"
    pw.write_text("s3cret")
    assert _resolved(MAIL, {"SMTP_PASSWORD_FILE": str(pw)}).secret == "s3cret"
    url = tmp_path / "teams-url"
    url.write_text(ENV["TEAMS_URL"])
    assert _resolved(TEAMS, {"TEAMS_URL_FILE": str(url)}).url == ENV["TEAMS_URL"]
    assert "s3cret" not in repr(_resolved(MAIL, {"SMTP_PASSWORD_FILE": str(pw)}))


# -- OpsGenie ----------------------------------------------------------------------------------

def test_opsgenie_create_has_the_documented_shape() -> None:
    spec = {**OG, "url": "http://127.0.0.1:1/og/", "tags": ["ml", "drift"],
            "responders": [{"type": "team", "name": "ml-oncall"},
                           {"type": "user", "username": "jane@example.com"}]}
    a = drift_alert()
    req = build_request(_resolved(spec), notification_from_record(a), NOW,
                        generator_url="http://grafana/d?var-model={model_id}")
    assert req.url == "http://127.0.0.1:1/og/v2/alerts"
    assert req.headers["Authorization"] == "GenieKey genie-key-1"
    assert req.headers["Content-Type"] == "application/json"
    body = req.json()
    assert set(body) == {"message", "alias", "description", "priority", "source", "entity",
                         "tags", "details", "responders"}
    assert body["message"] == "Drift on credit-risk feature:utilization (warning)"
    assert len(body["message"]) <= 130
    assert body["alias"] == FP and body["priority"] == "P3" and body["entity"] == "credit-risk"
    assert body["source"] == "stream-monitor" and body["tags"] == ["ml", "drift"]
    assert body["responders"] == [{"type": "team", "name": "ml-oncall"},
                                  {"type": "user", "username": "jane@example.com"}]
    assert body["description"].startswith(a["summary"])
    assert "reference mean 0.393942" in body["description"]
    assert "http://grafana/d?var-model=credit-risk" in body["description"]
    d = body["details"]
    assert all(isinstance(v, str) for v in d.values())  # OpsGenie details: string -> string
    assert d["fingerprint"] == FP and d["alert_id"] == a["alert_id"]
    assert d["reference_mean"] == "0.393942" and d["model"] == "credit-risk"
    assert d["link"] == "http://grafana/d?var-model=credit-risk"


def test_opsgenie_priorities_follow_the_severity() -> None:
    t = _resolved({**OG, "priorities": {"critical": "P2", "warning": "P4"}})
    retrain = build_request(t, notification_from_record(retrain_request()), NOW).json()
    assert retrain["priority"] == "P2" and retrain["alias"] == fingerprint(
        "credit-risk", "1", "retrain", "min_drifted_signals")
    assert retrain["message"] == "Retrain requested: credit-risk"
    drift = build_request(t, notification_from_record(drift_alert()), NOW).json()
    assert drift["priority"] == "P4"
    info = build_request(t, notification_from_record(drift_alert(), {"drift_alert": "info"}),
                         NOW).json()
    assert info["priority"] == "P5"  # the default for info
    long = drift_alert(signal="feature:" + "x" * 300)
    assert len(build_request(t, notification_from_record(long), NOW).json()["message"]) == 130


def test_opsgenie_resolve_closes_the_alert_by_alias() -> None:
    t = _resolved({**OG, "region": "eu"})
    a = drift_alert()
    req = build_request(t, notification_from_record(
        drift_resolved(a, "2026-01-01T01:00:00.000Z")), NOW)
    assert req.url == f"https://api.eu.opsgenie.com/v2/alerts/{FP}/close?identifierType=alias"
    assert req.headers["Authorization"] == "GenieKey genie-key-1"
    assert req.json() == {"source": "stream-monitor", "user": "stream-monitor",
                          "note": "credit-risk feature:utilization: back within the reference"}


# -- Teams -------------------------------------------------------------------------------------

def _card(body: dict[str, Any]) -> dict[str, Any]:
    assert body["type"] == "message"
    [att] = body["attachments"]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert att["contentUrl"] is None
    card: dict[str, Any] = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    return card


def test_teams_card_has_title_facts_and_link() -> None:
    a = drift_alert()
    req = build_request(_resolved(TEAMS), notification_from_record(a), NOW,
                        generator_url="http://grafana/d?var-model={model_id}")
    assert req.url == ENV["TEAMS_URL"]
    card = _card(req.json())
    title, summary, factset = card["body"]
    assert title["type"] == "TextBlock" and title["weight"] == "Bolder"
    assert title["text"] == "Drift on credit-risk feature:utilization (warning)"
    assert title["color"] == "Warning"
    assert summary == {"type": "TextBlock", "text": a["summary"], "wrap": True}
    facts = {f["title"]: f["value"] for f in factset["facts"]}
    assert factset["type"] == "FactSet"
    assert facts["model"] == "credit-risk" and facts["fingerprint"] == FP
    assert facts["reference_mean"] == "0.393942" and facts["current_mean"] == "0.320627"
    assert facts["offset"] == "inference-events/0@3027"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open dashboard",
                                "url": "http://grafana/d?var-model=credit-risk"}]


def test_teams_resolve_and_retrain_are_cards_of_their_own() -> None:
    t = _resolved(TEAMS)
    res = _card(build_request(t, notification_from_record(
        drift_resolved(drift_alert(), "2026-01-01T01:00:00.000Z")), NOW).json())
    assert res["body"][0]["text"] == "Resolved: drift on credit-risk feature:utilization"
    assert res["body"][0]["color"] == "Good" and "actions" not in res
    rt = _card(build_request(t, notification_from_record(retrain_request()), NOW).json())
    assert rt["body"][0]["text"] == "Retrain requested: credit-risk"
    assert rt["body"][0]["color"] == "Attention"  # critical
    facts = {f["title"]: f["value"] for f in rt["body"][2]["facts"]}
    assert facts["rule"] == "min_drifted_signals"
    assert facts["signals"] == "feature:utilization, feature:amount"


# -- Email -------------------------------------------------------------------------------------

def _mail(rec: dict[str, Any], now: float = NOW, **spec: Any) -> tuple[MailRequest, EmailMessage]:
    req = build_request(_resolved({**MAIL, **spec}), notification_from_record(rec), now,
                        generator_url="http://grafana/d?var-model={model_id}")
    assert isinstance(req, MailRequest)
    # What a receiver parses from the bytes on the wire. (A long Subject is folded after
    # "Subject:"; the parser keeps the fold's space, which mail clients strip.)
    parsed = message_from_bytes(req.message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return req, parsed


def test_email_alert_is_text_and_html_with_stable_ids() -> None:
    a = drift_alert()
    req, m = _mail(a)
    assert req.sender == "stream-monitor@example.com"
    assert req.recipients == ("oncall@example.com", "ml@example.com")
    assert m["Subject"].strip() == ("[stream-monitor] FIRING: Drift on credit-risk "
                                    "feature:utilization (warning)")
    assert m["From"] == "Stream Monitor <stream-monitor@example.com>"
    assert m["To"] == "oncall@example.com, ml@example.com"
    assert m["Message-ID"] == f"<{a['alert_id']}@example.com>"
    assert m["In-Reply-To"] == m["References"] == f"<{FP}@example.com>"
    assert m["Auto-Submitted"] == "auto-generated"
    assert m["X-Stream-Monitor-Fingerprint"] == FP and m["X-Stream-Monitor-Event"] == "drift_alert"
    assert m.get_content_type() == "multipart/alternative"
    text = m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = m.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert a["summary"] in text and "reference_mean" in text and "0.393942" in text
    assert "Dashboard: http://grafana/d?var-model=credit-risk" in text
    assert "<th align=\"left\">reference_mean</th><td>0.393942</td>" in page
    assert '<a href="http://grafana/d?var-model=credit-risk">' in page
    # A retry or a redelivery later on is the same mail: the same Message-ID.
    _, again = _mail(a, now=NOW + 600)
    assert again["Message-ID"] == m["Message-ID"] and again["Date"] != m["Date"]


def test_email_resolve_threads_under_its_alert_and_html_is_escaped() -> None:
    a = drift_alert(summary="<script>alert(1)</script> & more")
    _, trig = _mail(a)
    _, res = _mail(drift_resolved(a, "2026-01-01T01:00:00.000Z"))
    assert res["Subject"].strip() == ("[stream-monitor] RESOLVED: Resolved: drift on credit-risk "
                              "feature:utilization")
    assert res["Message-ID"] == f"<resolve-{a['alert_id']}@example.com>"
    assert res["References"] == trig["References"]
    page = trig.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    _, rt = _mail(retrain_request(), subject_prefix="[ml]")
    assert rt["Subject"].strip() == "[ml] FIRING: Retrain requested: credit-risk"


def test_email_headers_survive_odd_record_fields() -> None:
    """Header values come from record fields: a line break or an odd resolution id must not
    break the mail (the email package refuses line breaks in headers)."""
    a = drift_alert(signal="feature:a\nBcc: victim@example.com")
    _, m = _mail(a)
    assert "\n" not in m["Subject"] and m["Bcc"] is None
    res = drift_resolved(drift_alert(), "2026-01-01T01:00:00.000Z")
    res["resolution_id"] = "r 1 <x@y>"
    _, r = _mail(res)
    token = r["Message-ID"].removeprefix("<").removesuffix("@example.com>")
    assert len(token) == 32 and all(c in "0123456789abcdef" for c in token)
    _, again = _mail(res, now=NOW + 1)
    assert again["Message-ID"] == r["Message-ID"]  # still stable


def test_smtp_reply_codes() -> None:
    assert [smtp_verdict(c) for c in (250, 354, 421, 451, 452, 535, 550, 554)] == [
        "ok", "ok", "retryable", "retryable", "retryable", "rejected", "rejected", "rejected"]


def test_new_target_types_are_in_the_dead_letter_schema() -> None:
    schema = orjson.loads((Path(__file__).resolve().parents[2] / "stream_monitor" / "contracts"
                           / "schemas" / "notification-dead-letter.schema.json").read_bytes())
    types = schema["properties"]["target"]["properties"]["type"]["enum"]
    from stream_monitor.notify.config import TARGET_TYPES

    assert set(types) == set(TARGET_TYPES)


def test_notify_check_names_the_field_and_the_fix_then_passes(tmp_path: Path) -> None:
    """`stream-monitor notify --check`: the user's mistakes, each with its field (exit 2), then
    the same file with the secrets given, one from a file (exit 0)."""
    from typer.testing import CliRunner

    from stream_monitor.cli import app

    cfg = tmp_path / "notify.yaml"
    cfg.write_bytes(orjson.dumps({"targets": [OG, TEAMS, MAIL]}))  # JSON is YAML
    unset = {k: None for k in ("OG_KEY", "OG_KEY_FILE", "TEAMS_URL", "TEAMS_URL_FILE",
                               "SMTP_PASSWORD", "SMTP_PASSWORD_FILE")}

    def check(env: dict[str, str | None]) -> Any:
        return CliRunner().invoke(app, ["notify", "-t", str(cfg), "--check"],
                                  env={"COLUMNS": "200", **unset, **env})

    r = check({})
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    for field, var in [("targets[0].api_key_env", "OG_KEY"), ("targets[1].url_env", "TEAMS_URL"),
                       ("targets[2].password_env", "SMTP_PASSWORD")]:
        assert f"{field}: environment variable {var} is not set" in r.stderr
        assert f"{var}_FILE naming a file" in r.stderr
    password = tmp_path / "smtp"
    password.write_text("pw\n")
    r = check({"OG_KEY": "k", "TEAMS_URL": ENV["TEAMS_URL"], "SMTP_PASSWORD_FILE": str(password)})
    assert r.exit_code == 0, r.stderr
    assert "ok: 3 targets: og (opsgenie), teams (teams), mail (email)" in r.stderr
