"""The notifier and incidents (docs/incidents.md): an incident pages once (opened), resolves
once (resolved), keyed by its id on every target; its updates reach only the targets that ask
for them; the drift alerts and resolutions of an incident are not forwarded (the incident is)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from stream_monitor.contracts.output_records import encode_record
from stream_monitor.core.incidents import IncidentBook
from stream_monitor.notify import build_request, notification_from_record, resolve_targets
from stream_monitor.notify.config import parse_notify_config
from stream_monitor.notify.delivery import Forwarder

from .test_incidents import POLICY, T0, alert, resolved

NOW = 1_795_000_000.0
ENV = {"PD_KEY": "R0UTING", "SLACK_URL": "http://127.0.0.1:1/slack", "HOOK_SECRET": "s3cret",
       "OG_KEY": "k"}
TARGETS: list[dict[str, Any]] = [
    {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093"},
    {"name": "pd", "type": "pagerduty", "routing_key_env": "PD_KEY",
     "url": "http://127.0.0.1:1/pd"},
    {"name": "og", "type": "opsgenie", "api_key_env": "OG_KEY"},
    {"name": "slack", "type": "slack", "url_env": "SLACK_URL"},
    {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:1/hook",
     "secret_env": "HOOK_SECRET"},
]


def _records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two signals of one incident: (alerts and resolutions, incident records)."""
    book = IncidentBook()
    sigs = ["feature:a", "feature:b", "prediction"]
    a, ra = book.on_alert(POLICY, alert("feature:a", T0, 10), T0, sigs)
    b, rb = book.on_alert(POLICY, alert("feature:b", T0 + 1, 11, shift=3.0), T0 + 1, sigs)
    za, rza = book.on_resolved(POLICY, resolved(a, T0 + 100, 50), sigs)
    zb, rzb = book.on_resolved(POLICY, resolved(b, T0 + 120, 60), sigs)
    assert rza is not None and rzb is not None
    load = lambda r: orjson.loads(encode_record(r))  # noqa: E731
    return [load(x) for x in (a, b, za, zb)], [load(x) for x in (ra, rb, rza, rzb)]


def test_an_incident_triggers_once_and_resolves_once_under_its_id() -> None:
    signals, incidents = _records()
    iid = incidents[0]["incident_id"]
    assert [i["status"] for i in incidents] == ["opened", "updated", "updated", "resolved"]
    for rec in signals:  # its alerts and resolutions: the incident pages for them
        assert rec["incident_id"] == iid
        assert notification_from_record(rec) is None
    notes = [notification_from_record(i) for i in incidents]
    assert all(n is not None for n in notes)
    opened, upd1, upd2, done = notes
    assert opened is not None and done is not None and upd1 is not None and upd2 is not None
    assert (opened.action, opened.record_type) == ("trigger", "incident")
    assert (done.action, done.record_type) == ("resolve", "incident")
    assert {upd1.record_type, upd2.record_type} == {"incident_updated"}
    assert {n.fingerprint for n in notes if n is not None} == {iid}
    assert opened.labels == done.labels == {"alertname": "ModelIncident", "model": "m",
                                            "model_version": "1", "incident": iid,
                                            "severity": "warning"}
    assert opened.details["signals"].startswith("feature:a")
    assert done.details["signals"].startswith("feature:b (3 std, back)")  # ranked
    assert opened.details["prediction_moved"] == "false"
    assert opened.details["estimated_performance_moved"] == "n/a"


def test_every_target_keys_the_incident_by_its_id() -> None:
    _, incidents = _records()
    iid = incidents[0]["incident_id"]
    targets = {t.name: t for t in resolve_targets(parse_notify_config({"targets": TARGETS}), ENV)}
    opened = notification_from_record(incidents[0])
    done = notification_from_record(incidents[-1])
    assert opened is not None and done is not None
    pd = [build_request(targets["pd"], n, NOW).json() for n in (opened, done)]
    assert [(e["event_action"], e["dedup_key"]) for e in pd] == [("trigger", iid),
                                                                 ("resolve", iid)]
    assert pd[0]["payload"]["class"] == "model_incident"
    [fire] = build_request(targets["am"], opened, NOW).json()
    [end] = build_request(targets["am"], done, NOW).json()
    assert fire["labels"] == end["labels"] and fire["labels"]["incident"] == iid
    assert end["endsAt"] == incidents[-1]["at"]["event_time"]
    og = build_request(targets["og"], opened, NOW).json()
    assert og["alias"] == iid
    assert build_request(targets["og"], done, NOW).url.endswith(f"/v2/alerts/{iid}/close"
                                                                "?identifierType=alias")
    slack = [build_request(targets["slack"], n, NOW).json()["text"] for n in (opened, done)]
    assert slack[0].startswith(":rotating_light: Incident on m: 1 signal (")
    assert slack[1].startswith(":white_check_mark: Resolved: incident on m: 2 signals")
    hook = build_request(targets["hook"], opened, NOW, raw=orjson.dumps(incidents[0]))
    assert hook.headers["Idempotency-Key"] == incidents[0]["record_id"]


async def test_updates_reach_only_the_targets_that_ask_for_them() -> None:
    _, incidents = _records()
    upd = notification_from_record(incidents[1])
    assert upd is not None
    cfg = parse_notify_config({"targets": [
        TARGETS[1], {**TARGETS[3], "records": ["incident", "incident_updated"]}]})
    pd, slack = resolve_targets(cfg, ENV)
    assert "incident_updated" not in pd.spec.records and "incident" in pd.spec.records
    async with aiohttp.ClientSession() as session:  # (skipped: no request is made)
        assert (await Forwarder(pd, session).deliver(upd)).outcome == "skipped"
        assert Forwarder(slack, session).wants(upd)
