"""The HTTP request each kind of target gets for a notification. Pure: no I/O, clock injected.

* Alertmanager API v2: ``POST /api/v2/alerts`` with one alert (labels, annotations,
  ``startsAt`` = the detection's event time, ``endsAt`` = when it resolves).
* PagerDuty Events API v2: ``trigger`` with the evidence in ``custom_details``; ``resolve``;
  ``dedup_key`` = the fingerprint either way.
* Slack incoming webhook: Block Kit text with the evidence, and a plain ``text`` fallback.
* Generic webhook: the record's bytes exactly as on the topic, signed:
  ``X-Stream-Monitor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
  and ``Idempotency-Key`` (the alert/request id), the same on every retry and redelivery.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..contracts.records import iso_time
from .config import (
    AlertmanagerTarget,
    PagerDutyTarget,
    ResolvedTarget,
    SlackTarget,
    WebhookTarget,
)
from .notification import Notification

__all__ = [
    "HttpRequest",
    "SignatureError",
    "alertmanager_request",
    "build_request",
    "pagerduty_request",
    "sign",
    "slack_request",
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
            "class": "model_drift" if n.record_type == "drift_alert" else "retrain_request",
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
    if n.record_type == "retrain_request":
        title = f"{icon} Retrain requested: {n.model_id}"
    elif n.action == "resolve":
        title = f"{icon} Resolved: drift on {n.model_id} {n.signal}"
    else:
        title = f"{icon} Drift on {n.model_id} {n.signal} ({n.severity})"
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
                  raw: bytes | None = None, generator_url: str | None = None) -> HttpRequest:
    """The request for any target type."""
    spec = target.spec
    if isinstance(spec, AlertmanagerTarget):
        return alertmanager_request(target, n, now, generator_url)
    if isinstance(spec, PagerDutyTarget):
        return pagerduty_request(target, n, now, generator_url)
    if isinstance(spec, SlackTarget):
        return slack_request(target, n, now, generator_url)
    return webhook_request(target, n, now, raw)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (for receivers and tests)."""
    low = name.lower()
    return next((v for k, v in headers.items() if k.lower() == low), None)
