"""The request each kind of target gets for a notification. Pure: no I/O, clock injected.

* Alertmanager API v2: ``POST /api/v2/alerts`` with one alert (labels, annotations,
  ``startsAt`` = the detection's event time, ``endsAt`` = when it resolves).
* PagerDuty Events API v2: ``trigger`` with the evidence in ``custom_details``; ``resolve``;
  ``dedup_key`` = the fingerprint either way.
* OpsGenie Alert API v2: create (``POST /v2/alerts``) with ``alias`` = the fingerprint;
  close (``POST /v2/alerts/<fingerprint>/close?identifierType=alias``); ``GenieKey`` auth.
* Slack incoming webhook: Block Kit text with the evidence, and a plain ``text`` fallback.
* Microsoft Teams webhook: an Adaptive Card (title, summary, facts, a link); a resolution is a
  card of its own.
* Email: a :class:`MailRequest`, text and HTML, ``Message-ID`` from the record's idempotency
  key (the same on every retry and redelivery) and ``References`` from the fingerprint, so a
  resolution threads under its alert.
* Generic webhook: the record's bytes exactly as on the topic, signed:
  ``X-Stream-Monitor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
  and ``Idempotency-Key`` (the alert/request id), the same on every retry and redelivery.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Literal
from urllib.parse import quote

import orjson

from ..contracts.records import iso_time
from .config import (
    AlertmanagerTarget,
    EmailTarget,
    OpsGenieTarget,
    PagerDutyTarget,
    ResolvedTarget,
    SlackTarget,
    TeamsTarget,
    WebhookTarget,
)
from .notification import Notification

__all__ = [
    "HttpRequest",
    "MailRequest",
    "Reply",
    "SignatureError",
    "alertmanager_request",
    "build_request",
    "effective_status",
    "email_request",
    "opsgenie_request",
    "pagerduty_request",
    "sign",
    "slack_request",
    "teams_request",
    "verify_signature",
    "webhook_request",
]

USER_AGENT = "stream-monitor-notify/1"
_JSON = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
# Clock skew allowance: an event time a little ahead of our clock is taken as "now".
_FUTURE_SKEW_S = 5.0


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True, slots=True)
class MailRequest:
    """One mail for an SMTP relay: the message, its envelope sender and recipients."""

    message: EmailMessage
    sender: str
    recipients: tuple[str, ...]


Request = HttpRequest | MailRequest
Verdict = Literal["ok", "retryable", "rejected"]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a target answered to one attempt: its status (HTTP status or SMTP reply code; None
    when the refusal is ours, e.g. a relay that offers no STARTTLS), whether the request was
    taken, may be retried, or was rejected, a short text for logs and dead letters, and the
    server's Retry-After in seconds."""

    status: int | None
    verdict: Verdict
    detail: str = ""
    retry_after: float | None = None


def _link(template: str | None, n: Notification) -> str | None:
    if not template:
        return None
    values = {"model_id": n.model_id, "signal": n.signal or "", "alert_id":
              n.record.get("alert_id", ""), "fingerprint": n.fingerprint,
              "model_version": n.model_version or ""}
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError):
        return template


def _title(n: Notification) -> str:
    """A one-line headline (Slack's header, the Teams card's title, the mail's subject)."""
    if n.record_type == "retrain_request":
        return f"Retrain requested: {n.model_id}"
    if n.record_type.startswith("incident"):
        n_signals = len(n.record.get("signals") or [])
        head = "Resolved: incident" if n.action == "resolve" else "Incident"
        return (f"{head} on {n.model_id}: {n_signals} signal{'s' if n_signals != 1 else ''} "
                f"({n.severity})")
    if n.record_type == "deployment_check":
        return (f"Deployment check {n.details.get('verdict', '?')}: {n.model_id} "
                f"version {n.model_version or '-'} ({n.severity})")
    if n.action == "resolve":
        return f"Resolved: drift on {n.model_id} {n.signal}"
    return f"Drift on {n.model_id} {n.signal} ({n.severity})"


def _facts(n: Notification) -> list[tuple[str, str]]:
    """The alert's identity, then its evidence, as (name, value) pairs."""
    head = [("model", n.model_id), ("model_version", n.model_version or "-")]
    if n.signal is not None:
        head.append(("signal", n.signal))
    if n.detector is not None:
        head.append(("rule" if n.record_type == "retrain_request" else "detector", n.detector))
    head += [("severity", n.severity), ("fingerprint", n.fingerprint)]
    return head + [(k, v) for k, v in n.details.items() if k not in ("rule",)]


# -- Alertmanager ------------------------------------------------------------------------------

def alertmanager_request(target: ResolvedTarget, n: Notification, now: float,
                         generator_url: str | None = None) -> HttpRequest:
    """One alert for ``POST /api/v2/alerts``. A resolve sends the same labels with ``endsAt``.

    ``startsAt`` is the detection's event time, or now when that lies ahead of our clock
    (Alertmanager rejects an alert that starts after it ends).
    """
    spec = target.spec
    assert isinstance(spec, AlertmanagerTarget)
    annotations = {"summary": n.summary, "fingerprint": n.fingerprint, **n.details}
    description = _description(n)
    if description:
        annotations["description"] = description
    alert: dict[str, Any] = {"labels": n.labels, "annotations": annotations}
    at = min(n.occurred_at, now) if n.occurred_at > 0 else now
    if n.action == "trigger":
        alert["startsAt"] = iso_time(at)
        if spec.resolve_after_seconds is not None:
            alert["endsAt"] = iso_time(now + spec.resolve_after_seconds)
    else:
        # Resolved: endsAt in the past. Alertmanager merges it into the firing alert with the
        # same labels (its fingerprint) and reports it resolved.
        alert["endsAt"] = iso_time(at)
    link = _link(generator_url, n)
    if link:
        alert["generatorURL"] = link
    headers = dict(_JSON)
    if target.secret:
        headers["Authorization"] = f"Bearer {target.secret}"
    return HttpRequest(target.url.rstrip("/") + "/api/v2/alerts", orjson.dumps([alert]), headers)


def _description(n: Notification) -> str:
    d = n.details
    if n.record_type == "retrain_request":
        return f"{d.get('reason', '')} Alerts: {d.get('alert_ids', '')}. At {d.get('offset', '?')}."
    if "reference_mean" in d and "current_mean" in d:
        return (f"reference mean {d['reference_mean']} (std {d.get('reference_std')}, "
                f"n={d.get('reference_count')}) vs current mean {d['current_mean']} "
                f"(std {d.get('current_std')}, n={d.get('current_count')}); shift "
                f"{d.get('mean_shift_in_reference_std', '?')} reference std; at "
                f"{d.get('offset', '?')}, event {d.get('event_id', '?')}")
    return ""


# -- PagerDuty ---------------------------------------------------------------------------------

def pagerduty_request(target: ResolvedTarget, n: Notification, now: float,
                      generator_url: str | None = None) -> HttpRequest:
    spec = target.spec
    assert isinstance(spec, PagerDutyTarget)
    body: dict[str, Any] = {"routing_key": target.secret or "", "dedup_key": n.fingerprint}
    if n.action == "resolve":
        body["event_action"] = "resolve"
    else:
        body["event_action"] = "trigger"
        body["payload"] = {
            "summary": n.summary[:1024],  # PagerDuty's limit
            "source": f"{spec.source}/{n.model_id}",
            "severity": n.severity,
            "timestamp": iso_time(n.occurred_at if n.occurred_at > 0 else now),
            "component": n.model_id,
            "group": n.signal or "retrain",
            "class": ("model_drift" if n.record_type == "drift_alert" else "model_incident"
                      if n.record_type.startswith("incident") else "retrain_request"),
            "custom_details": {**n.labels, **n.details, "fingerprint": n.fingerprint},
        }
        link = _link(generator_url, n)
        if link:
            body["links"] = [{"href": link, "text": f"{n.model_id} dashboard"}]
        body["client"] = "stream-monitor"
    return HttpRequest(target.url, orjson.dumps(body), dict(_JSON))


# -- Slack -------------------------------------------------------------------------------------

def slack_request(target: ResolvedTarget, n: Notification, now: float,
                  generator_url: str | None = None) -> HttpRequest:
    assert isinstance(target.spec, SlackTarget)
    icon = {"trigger": ":rotating_light:", "resolve": ":white_check_mark:"}[n.action]
    title = f"{icon} {_title(n)}"
    lines = [f"*{k}*: {v}" for k, v in n.details.items()]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(n.summary)[:3000]}},
    ]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": _escape("\n".join(lines))[:3000]}})
    ctx = f"model `{n.model_id}` version `{n.model_version or '-'}` · fingerprint `{n.fingerprint}`"
    link = _link(generator_url, n)
    if link:
        ctx += f" · <{link}|dashboard>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": ctx}]})
    text = f"{title}\n{n.summary}"
    return HttpRequest(target.url, orjson.dumps({"text": text, "blocks": blocks}), dict(_JSON))


def _escape(s: str) -> str:
    # Slack mrkdwn control characters.
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- OpsGenie ----------------------------------------------------------------------------------

def opsgenie_request(target: ResolvedTarget, n: Notification, now: float,
                     generator_url: str | None = None) -> HttpRequest:
    """Create an alert (``alias`` = the fingerprint: OpsGenie keeps one open alert per alias and
    counts a repeat on it), or close it by alias. Limits from the API: message 130 characters,
    description 15000, note 25000."""
    spec = target.spec
    assert isinstance(spec, OpsGenieTarget)
    base = target.url.rstrip("/") + "/v2/alerts"
    headers = {**_JSON, "Authorization": f"GenieKey {target.secret or ''}"}
    if n.action == "resolve":
        body: dict[str, Any] = {"source": spec.source, "user": "stream-monitor",
                                "note": n.summary[:25000]}
        url = f"{base}/{quote(n.fingerprint, safe='')}/close?identifierType=alias"
        return HttpRequest(url, orjson.dumps(body), headers)
    link = _link(generator_url, n)
    description = "\n\n".join(x for x in (n.summary, _description(n), link) if x)
    details = {**n.labels, **n.details, "fingerprint": n.fingerprint}
    if link:
        details["link"] = link
    body = {
        "message": _title(n)[:130],
        "alias": n.fingerprint,
        "description": description[:15000],
        "priority": getattr(spec.priorities, n.severity, "P3"),
        "source": spec.source,
        "entity": n.model_id,
        "tags": list(spec.tags),
        "details": details,
    }
    if spec.responders:
        body["responders"] = [r.model_dump(exclude_none=True) for r in spec.responders]
    return HttpRequest(base, orjson.dumps(body), headers)


# -- Microsoft Teams ---------------------------------------------------------------------------

def teams_request(target: ResolvedTarget, n: Notification, now: float,
                  generator_url: str | None = None) -> HttpRequest:
    """A message with one Adaptive Card (schema 1.4): a title coloured by state, the summary, the
    facts, and a button to the dashboard. A resolution is a card of its own."""
    assert isinstance(target.spec, TeamsTarget)
    color = "Good" if n.action == "resolve" else (
        "Attention" if n.severity in ("critical", "error") else "Warning")
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": _title(n), "size": "Large", "weight": "Bolder",
         "color": color, "wrap": True},
        {"type": "TextBlock", "text": n.summary, "wrap": True},
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(n)]},
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4", "body": body, "msteams": {"width": "Full"},
    }
    link = _link(generator_url, n)
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open dashboard", "url": link}]
    message = {"type": "message", "summary": _title(n), "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}
    return HttpRequest(target.url, orjson.dumps(message), dict(_JSON))


# Office 365 connectors (Teams incoming webhooks) answer 200 to every POST and put Teams' own
# refusal in the body: "Webhook message delivery failed with error: Microsoft Teams endpoint
# returned HTTP error 429 with ContextId ...". That code is the answer that counts.
_TEAMS_ERROR = re.compile(r"Microsoft Teams endpoint returned HTTP error (\d{3})")


def effective_status(target: ResolvedTarget, status: int, text: str) -> int:
    """The HTTP status that tells what happened: the one Teams hid in a 200's body, else the
    response's own.

    >>> from .config import TeamsTarget
    >>> t = ResolvedTarget(TeamsTarget(name="t", type="teams", url="https://x.example"), "u")
    >>> body = ("Webhook message delivery failed with error: Microsoft Teams endpoint "
    ...         "returned HTTP error 429 with ContextId tcid=0")
    >>> effective_status(t, 200, body), effective_status(t, 200, "1")
    (429, 200)
    """
    if isinstance(target.spec, TeamsTarget) and 200 <= status < 300:
        m = _TEAMS_ERROR.search(text[:2000])
        if m:
            return int(m.group(1))
    return status


# -- Email -------------------------------------------------------------------------------------

def _mail_domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "stream-monitor.invalid"


_ID_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,200}")


def _id_token(key: str) -> str:
    """``key`` as the left part of a Message-ID: itself when it is a plain token (ids made by
    the worker are hex), else a hash of it, so a record's odd id can never break the header."""
    if _ID_TOKEN.fullmatch(key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _one_line(s: str) -> str:
    # A header value from record fields: no line breaks (the email package refuses them).
    return " ".join(s.split())


def email_request(target: ResolvedTarget, n: Notification, now: float,
                  generator_url: str | None = None) -> MailRequest:
    """One mail, text and HTML. ``Message-ID`` is the record's idempotency key, the same on every
    retry and redelivery (mail systems drop a repeat); ``In-Reply-To``/``References`` name the
    fingerprint, so an alert's repeats and its resolution thread together."""
    spec = target.spec
    assert isinstance(spec, EmailTarget)
    domain = _mail_domain(spec.from_address)
    state = "RESOLVED" if n.action == "resolve" else "FIRING"
    subject = _one_line(f"{spec.subject_prefix} {state}: {_title(n)}")
    link = _link(generator_url, n)
    facts = _facts(n)
    width = max(len(k) for k, _ in facts)
    text = "\n".join([_title(n), "", n.summary, "", *(f"{k.ljust(width)}  {v}" for k, v in facts),
                      *(["", f"Dashboard: {link}"] if link else [])]) + "\n"
    rows = "".join(f"<tr><th align=\"left\">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in facts)
    color = "#2e7d32" if n.action == "resolve" else "#c62828"
    page = (f"<html><body><h2 style=\"color:{color}\">{html.escape(_title(n))}</h2>"
            f"<p>{html.escape(n.summary)}</p><table>{rows}</table>"
            + (f"<p><a href=\"{html.escape(link, quote=True)}\">Open dashboard</a></p>"
               if link else "") + "</body></html>\n")
    msg = EmailMessage(policy=policy.SMTP)  # CRLF line ends, as on the wire
    msg["Subject"] = subject
    msg["From"] = spec.from_address
    msg["To"] = ", ".join(spec.to)
    msg["Date"] = formatdate(now, usegmt=True)
    msg["Message-ID"] = f"<{_id_token(n.idempotency_key)}@{domain}>"
    thread = f"<{n.fingerprint}@{domain}>"
    msg["In-Reply-To"] = thread
    msg["References"] = thread
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    msg["X-Stream-Monitor-Event"] = n.record_type
    msg["X-Stream-Monitor-Fingerprint"] = n.fingerprint
    msg["X-Stream-Monitor-Severity"] = _one_line(n.severity)
    msg.set_content(text)
    msg.add_alternative(page, subtype="html")
    return MailRequest(msg, parseaddr(spec.from_address)[1],
                       tuple(parseaddr(a)[1] for a in spec.to))


# -- Generic webhook ---------------------------------------------------------------------------

def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value: ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "t.body")>``.

    >>> sign("s3cret", b'{"a":1}', 1700000000)
    't=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940'
    """
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class SignatureError(ValueError):
    """A webhook request's signature is missing, malformed, stale or wrong."""


def verify_signature(secret: str, body: bytes, header: str | None, now: float,
                     tolerance_seconds: float = 300.0) -> int:
    """Check a signature header as a receiver would; return its timestamp. Raises SignatureError.

    Receivers should also keep the ``Idempotency-Key`` of requests they have handled: a retried
    or redelivered record comes again with the same key.
    """
    if not header:
        raise SignatureError("no signature header")
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        raise SignatureError(f"malformed signature header {header!r}") from None
    if abs(now - ts) > tolerance_seconds:
        raise SignatureError(f"signature timestamp {ts} is more than {tolerance_seconds:g}s "
                             "from now")
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match the body")
    return ts


def webhook_request(target: ResolvedTarget, n: Notification, now: float,
                    raw: bytes | None = None) -> HttpRequest:
    spec = target.spec
    assert isinstance(spec, WebhookTarget)
    body = raw if raw is not None else orjson.dumps(n.record)
    headers = dict(_JSON)
    headers[spec.signature_header] = sign(target.secret or "", body, int(now))
    headers["Idempotency-Key"] = n.idempotency_key
    headers["X-Stream-Monitor-Event"] = n.record_type
    headers["X-Stream-Monitor-Fingerprint"] = n.fingerprint
    return HttpRequest(target.url, body, headers)


def build_request(target: ResolvedTarget, n: Notification, now: float, *,
                  raw: bytes | None = None, generator_url: str | None = None) -> Request:
    """The request for any target type."""
    spec = target.spec
    if isinstance(spec, WebhookTarget):
        return webhook_request(target, n, now, raw)
    if isinstance(spec, EmailTarget):
        return email_request(target, n, now, generator_url)
    build = {AlertmanagerTarget: alertmanager_request, PagerDutyTarget: pagerduty_request,
             OpsGenieTarget: opsgenie_request, SlackTarget: slack_request,
             TeamsTarget: teams_request}[type(spec)]
    return build(target, n, now, generator_url)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (for receivers and tests)."""
    low = name.lower()
    return next((v for k, v in headers.items() if k.lower() == low), None)
