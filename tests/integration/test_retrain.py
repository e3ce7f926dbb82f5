"""Retraining decisions on the real Kafka and Redis: an incident with many alerts gives exactly
one retrain request, and the cooldown and the daily budget hold (README "Retraining decisions")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as redis_sync
import yaml

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import validate_record
from stream_monitor.contracts.units import unit_id
from stream_monitor.state.base import unit_key

from .conftest import wait_committed

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
INCIDENT_AT = 400
BUDGET_DRIFTS = (400, 700, 1000, 1300, 1600, 1900)

CONFIG = {
    "windows": {"reference_size": 100, "recent_size": 100, "evidence_size": 20},
    "models": [
        {   # Four features shift together: many alerts, one incident.
            "match": "incident-*",
            "signals": [{"match": "feature:*", "detectors": ["adwin", "page_hinkley"]}],
            "retrain": {"min_drifted_signals": 2, "within_seconds": 600, "cooldown_seconds": 0,
                        "persistence": {"values": 30, "min_shift": 1.0}},
        },
        {   # One feature, a new shift every 300 s of event time.
            "match": "budget-*",
            "signals": [{"match": "feature:*", "detectors": ["page_hinkley"]}],
            "retrain": {"min_drifted_signals": 1, "cooldown_seconds": 400, "max_per_day": 2},
        },
    ],
}


def _events(model: str, n: int, features: dict[str, tuple[int, ...]]) -> list[bytes]:
    """One event a second; each feature a zero-mean cycle plus 10 per shift so far."""
    out = []
    for i in range(n):
        feats = {f: float((i * (j + 2)) % 5 - 2 + 10 * sum(i >= s for s in shifts))
                 for j, (f, shifts) in enumerate(features.items())}
        out.append(orjson.dumps({"event_id": f"{model}-{i}", "model_id": model,
                                 "model_version": "1", "timestamp": T0 + i,
                                 "features": feats, "prediction": 0.0}))
    return out


def _shift(at: dict[str, Any]) -> int:
    """The injected shift an alert (or request) of budget-a follows, from its event id (both
    models share the partition, so offsets are not event indices)."""
    i = int(at["event_id"].rsplit("-", 1)[1])
    return max(s for s in BUDGET_DRIFTS if s <= i)


def test_one_incident_one_request_and_cooldown_and_budget_hold(
        kafka_bootstrap, redis_url, unique, start_worker, tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    incident = _events("incident-a", 1200, {f: (INCIDENT_AT,) for f in ("a", "b", "c", "d")})
    budget = _events("budget-a", 2200, {"x": BUDGET_DRIFTS})
    worker = start_worker(config, unique)
    records = [(b"incident-a", v) for v in incident] + [(b"budget-a", v) for v in budget]
    asyncio.run(produce(kafka_bootstrap, unique.topics["inference"], records))
    wait_committed(kafka_bootstrap, unique.app_id, unique.topics["inference"],
                   len(incident) + len(budget), worker)
    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["alerts"], unique.topics["retrain"]],
                               timeout=30, idle=5))
    alerts = [orjson.loads(m.value) for m in msgs if m.topic == unique.topics["alerts"]]
    requests: dict[str, list[dict[str, Any]]] = {}
    for m in msgs:
        if m.topic == unique.topics["retrain"]:
            rec = orjson.loads(m.value)
            validate_record(rec)
            assert dict(m.headers)["request-id"] == rec["request_id"].encode()
            requests.setdefault(rec["model_id"], []).append(rec)

    # The incident: at least one alert per feature, exactly one request naming >= 2 of them,
    # each confirmed by the persistence check (30 values after its alert, still shifted).
    inc_alerts = [a for a in alerts if a["model_id"] == "incident-a"]
    assert {a["signal"] for a in inc_alerts} == {f"feature:{f}" for f in "abcd"}
    [req] = requests["incident-a"]
    assert req["rule"]["name"] == "min_drifted_signals" and req["rule"]["out_of"] == 4
    assert len(req["signals"]) >= 2
    assert set(req["alert_ids"]) <= {a["alert_id"] for a in inc_alerts}
    assert all(e["persistence"]["values"] >= 30 for e in req["evidence"])
    assert req["triggered_by"]["signal_index"] is None  # a persistence check completed the rule

    # Cooldown and budget: alerts at every shift; requests at the first shift, not the second
    # (300 s later: cooldown 400 s), at the third, then none (2 a day).
    bud_alerts = [a for a in alerts if a["model_id"] == "budget-a"]
    shifts_seen = sorted({_shift(a["detected_at"]) for a in bud_alerts})
    assert shifts_seen == list(BUDGET_DRIFTS)
    got = [(_shift(r["triggered_by"]), r["budget"]["left_today"]) for r in requests["budget-a"]]
    assert got == [(400, 1), (1000, 0)]

    # The policy's bookkeeping is in the model meta in Redis.
    r = redis_sync.Redis.from_url(redis_url)
    meta = orjson.loads(r.get(unit_key(unique.prefix, unit_id("budget-a", "1")) + ":model"))
    assert meta["retrain_requests"] == 2
    # Blocked: the shifts at 700 and 1300 by the cooldown, at 1600 and 1900 by the budget.
    assert meta["retrain"]["suppressed_cooldown"] == 2
    assert meta["retrain"]["suppressed_budget"] == 2
    assert meta["retrain"]["day_count"] == 2
