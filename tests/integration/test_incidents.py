"""Incidents on the real Kafka and Redis (docs/incidents.md): one upstream break that moves 8
features at once, through the worker, is exactly one incident, the records replay gives; the
notifier, reading the worker's topics, pages once for it (PagerDuty, Slack, webhook receivers:
one trigger, one resolve, dedup key = incident id) and forwards none of its 8 drift alerts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream_monitor.adapters.kafka_tools import consume, create_topics, produce
from stream_monitor.contracts import validate_record
from stream_monitor.notify import Notifier, parse_notify_config, resolve_targets
from stream_monitor.synth import Drift, StreamSpec, generate

from ..helpers import replay_records
from .conftest import Unique, wait_committed
from .receivers import Receivers, statuses

pytestmark = pytest.mark.integration

EIGHT = ("amount", "utilization", "age", "tenure_months", "income_k", "f5", "f6", "f7")
CONFIG = {
    "detectors": {"cusum": {"type": "cusum"}},
    "models": [{"match": "credit-*", "signals": [{"match": "*", "detectors": ["cusum"]}],
                "alerts": {"hold_seconds": 10, "dedupe_seconds": 600},
                "incidents": {"window_seconds": 600},
                # One break is one incident: k = 2 incidents asks for no retrain.
                "retrain": {"count": "incidents", "min_incidents": 2}}]}
SECRET = "s3cret-for-tests"


def _stream(model: str) -> list[bytes]:
    drifts = (*(Drift(3000, f, 2.0) for f in EIGHT), *(Drift(5000, f, -2.0) for f in EIGHT))
    return list(generate(StreamSpec(models=(model,), events_per_model=7000, n_features=10,
                                    drifts=drifts)))


async def test_one_break_is_one_incident_and_one_page(
        kafka_bootstrap: str, unique: Unique, start_worker: Any, tmp_path: Path) -> None:
    model = f"credit-{unique.id}"
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    lines = _stream(model)
    await produce(kafka_bootstrap, unique.topics["inference"],
                  ((model.encode(), v) for v in lines))
    worker = start_worker(config, unique)
    await asyncio.to_thread(wait_committed, kafka_bootstrap, unique.app_id,
                            unique.topics["inference"], len(lines), worker, 300)

    # -- the worker's records are replay's ---------------------------------------------------
    expected = await asyncio.to_thread(replay_records, config, lines, tmp_path)
    want = {t: [r for r in expected if r["type"] in types] for t, types in
            (("alerts", ("drift_alert", "drift_resolved")), ("incidents", ("incident",)),
             ("retrain", ("retrain_request",)))}
    assert len(want["incidents"]) >= 3 and want["retrain"] == []
    topics = [unique.topics[t] for t in want]
    msgs = await consume(kafka_bootstrap, topics, timeout=60, until=lambda m: len(m) >= sum(
        len(v) for v in want.values()))
    inference = unique.topics["inference"].encode()
    for t, records in want.items():
        got = [m.value for m in msgs if m.topic == unique.topics[t]]
        # (Replay names its input file where the worker names its topic.)
        assert got == [orjson.dumps(r).replace(b'"events.jsonl"', b'"' + inference + b'"')
                       for r in records], t
    incidents = [orjson.loads(m.value) for m in msgs if m.topic == unique.topics["incidents"]]
    alerts = [orjson.loads(m.value) for m in msgs if m.topic == unique.topics["alerts"]]
    ids = {i["incident_id"] for i in incidents}
    assert len(ids) == 1 and {a["incident_id"] for a in alerts} == ids
    assert sorted(a["signal"] for a in alerts if a["type"] == "drift_alert") == sorted(
        f"feature:{f}" for f in EIGHT)
    assert [i["status"] for i in incidents].count("opened") == 1
    assert incidents[-1]["status"] == "resolved" and len(incidents[-1]["signals"]) == 8
    for i in incidents:
        validate_record(i)
    headers = [dict(m.headers) for m in msgs if m.topic == unique.topics["incidents"]]
    assert {h["incident-id"] for h in headers} == {i.encode() for i in ids}
    assert worker.stop() == 0, worker.tail()

    # -- the notifier pages once ------------------------------------------------------------
    dlq = f"t-{unique.id}-notify-dlq"
    await create_topics(kafka_bootstrap, [dlq])
    recv = await Receivers().start()
    try:
        pd = recv.on("/pagerduty", statuses(202))
        slack = recv.on("/slack", statuses(200))
        hook = recv.on("/hook", statuses(200), webhook_secret=SECRET)
        cfg = parse_notify_config({
            "topics": {"alerts": unique.topics["alerts"], "retrain": unique.topics["retrain"],
                       "deployments": unique.topics["deployments"],
                       "incidents": unique.topics["incidents"], "dead_letter": dlq},
            "consumer_group": f"notify-{unique.id}",
            "targets": [
                {"name": "pagerduty", "type": "pagerduty", "url": pd,
                 "routing_key_env": "PD_KEY"},
                {"name": "slack", "type": "slack", "url_env": "SLACK_URL"},
                {"name": "webhook", "type": "webhook", "url": hook, "secret_env": "HOOK_SECRET"},
            ]})
        env = {"PD_KEY": "pd-key", "SLACK_URL": slack, "HOOK_SECRET": SECRET}
        total = len(msgs)
        async with Notifier(cfg, resolve_targets(cfg, env), kafka_bootstrap) as n:
            stop = asyncio.Event()
            task = asyncio.create_task(n.run(stop))
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and n.handled < total and not task.done():
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.wait_for(task, 30)
        assert n.handled == total
    finally:
        await recv.stop()

    (incident_id,) = ids
    pd_events = [r.json() for r in recv.at("/pagerduty")]
    assert [(e["event_action"], e["dedup_key"]) for e in pd_events] == [
        ("trigger", incident_id), ("resolve", incident_id)]
    assert pd_events[0]["payload"]["class"] == "model_incident"
    texts = [r.json()["text"] for r in recv.at("/slack")]
    assert len(texts) == 2, texts
    assert texts[0].startswith(f":rotating_light: Incident on {model}: 1 signal (")
    assert texts[1].startswith(f":white_check_mark: Resolved: incident on {model}: 8 signals")
    hooks = [r.json() for r in recv.at("/hook")]
    assert [(h["type"], h["status"]) for h in hooks] == [("incident", "opened"),
                                                         ("incident", "resolved")]
    assert sorted(recv.seen_keys["/hook"]) == sorted(
        i["record_id"] for i in incidents if i["status"] != "updated")
