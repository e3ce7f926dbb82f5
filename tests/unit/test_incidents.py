"""Incidents (core/incidents.py, docs/incidents.md): the grouping in the pure core, one upstream
break over 8 features as exactly one incident, the same records whatever the batching, after a
restart from the store mid-incident and for a redelivered batch, the config's checks and the
retrain policy that counts incidents."""

from __future__ import annotations

import collections
import itertools
from typing import Any

import orjson
import pytest

from stream_monitor.config import parse_config, validate_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.contracts import output_records as orec
from stream_monitor.contracts.schemas import validate_record
from stream_monitor.core.incidents import IncidentBook, incident_id, moved
from stream_monitor.core.plan import IncidentPolicy, MonitorPlan
from stream_monitor.errors import ConfigError
from stream_monitor.pipeline import BatchPipeline, OutputRecord
from stream_monitor.state import MemoryStore
from stream_monitor.synth import Drift, StreamSpec, generate

T0 = 1_767_225_600.0
POLICY = IncidentPolicy(window_seconds=600.0)
EIGHT = ("amount", "utilization", "age", "tenure_months", "income_k", "f5", "f6", "f7")


def alert(signal: str, t: float, offset: int, shift: float | None = 2.0,
          start: int | None = None, model: str = "m") -> orec.DriftAlert:
    from stream_monitor.contracts.records import iso_time, record_id

    eid = None if start is None else f"e{start}"
    change: dict[str, Any] = {"kind": "mean", "start": {
        "signal_index": offset, "offset": start, "event_id": eid}}
    return orec.DriftAlert(
        alert_id=record_id("alert", model, signal, offset), model_id=model, model_version="1",
        signal=signal, detector=orec.FiredDetector("cusum", "cusum", {}),
        detected_at=orec.EventRef(f"e{offset}", "in", 0, offset, iso_time(t), offset),
        evidence={"mean_shift_in_reference_std": shift, "change": change,
                  "standardization": {"mean": 0.0, "std": 1.0}},
        summary="s", sample_rate=1.0)


def resolved(a: orec.DriftAlert, t: float, offset: int) -> orec.DriftResolved:
    from stream_monitor.contracts.records import iso_time

    return orec.DriftResolved(
        resolution_id="r" * 32, fingerprint="f" * 32, model_id=a.model_id,
        model_version=a.model_version, signal=a.signal, detector=orec.DetectorRef("cusum", "c"),
        alert_id=a.alert_id, fired_at=a.detected_at.event_time,
        resolved_at=orec.EventRef(f"e{offset}", "in", 0, offset, iso_time(t), offset),
        folded_alerts=0, evidence={}, rule={}, summary="back", sample_rate=1.0)


# -- the pure core ---------------------------------------------------------------------------

def test_alerts_within_the_window_share_one_incident_and_a_later_one_opens_another() -> None:
    book = IncidentBook()
    signals = ["feature:a", "feature:b", "feature:c", "prediction"]
    a1, r1 = book.on_alert(POLICY, alert("feature:a", T0, 10), T0, signals)
    a2, r2 = book.on_alert(POLICY, alert("feature:b", T0 + 600, 20), T0 + 600, signals)
    a3, r3 = book.on_alert(POLICY, alert("feature:c", T0 + 600.5, 30), T0 + 600.5, signals)
    assert (r1.status, r2.status, r3.status) == ("opened", "updated", "opened")
    assert a1.incident_id == a2.incident_id == r1.incident_id == r2.incident_id
    assert a3.incident_id == r3.incident_id != a1.incident_id
    assert a1.incident_id == incident_id("m", "1", None, a1.alert_id)  # the opening alert's
    assert r2.alert_ids == [a1.alert_id, a2.alert_id]
    assert [len(i.members) for i in book.open] == [2, 1] and book.opened == 2
    for r in (r1, r2, r3):
        validate_record(r)


def test_a_signal_still_out_stays_in_its_incident_after_the_window() -> None:
    book = IncidentBook()
    a1, _ = book.on_alert(POLICY, alert("feature:a", T0, 10), T0, ["feature:a"])
    again, rec = book.on_alert(POLICY, alert("feature:a", T0 + 5000, 900), T0 + 5000,
                               ["feature:a"])
    assert again.incident_id == a1.incident_id and rec.status == "updated"
    assert rec.signals[0]["alerts"] == 2 and rec.signals[0]["alert_id"] == again.alert_id


def test_an_incident_keeps_its_newest_100_alert_ids() -> None:
    book = IncidentBook()
    for i in range(150):  # a signal that never comes back alerts again and again
        a, rec = book.on_alert(POLICY, alert("feature:a", T0 + 4000 * i, 10 + i), T0 + 4000 * i,
                               ["feature:a"])
    assert len(rec.alert_ids) == 100 and rec.alert_ids[-1] == a.alert_id
    assert rec.signals[0]["alerts"] == 150 and len(book.open) == 1


def test_signals_rank_by_evidence_then_change_start() -> None:
    book = IncidentBook()
    names = ["feature:small", "feature:late", "feature:early", "feature:none"]
    cases = [("feature:small", 0.8, 5), ("feature:late", -3.0, 9), ("feature:early", 3.0, 2),
             ("feature:none", None, 1)]
    for i, (name, shift, start) in enumerate(cases):
        _, rec = book.on_alert(POLICY, alert(name, T0 + i, 10 + i, shift, start), T0 + i, names)
    assert [s["signal"] for s in rec.signals] == [
        "feature:early", "feature:late", "feature:small", "feature:none"]
    assert [s["rank"] for s in rec.signals] == [1, 2, 3, 4]
    assert rec.signals[0]["change_start_offset"] == 2


def test_resolved_when_every_signal_is_back() -> None:
    book = IncidentBook()
    sigs = ["feature:a", "feature:b"]
    a, _ = book.on_alert(POLICY, alert("feature:a", T0, 10), T0, sigs)
    b, _ = book.on_alert(POLICY, alert("feature:b", T0 + 1, 11), T0 + 1, sigs)
    za, ra = book.on_resolved(POLICY, resolved(a, T0 + 100, 50), sigs)
    assert za.incident_id == a.incident_id and ra is not None and ra.status == "updated"
    assert ra.resolved_at is None and book.open
    zb, rb = book.on_resolved(POLICY, resolved(b, T0 + 120, 60), sigs)
    assert rb is not None and rb.status == "resolved" and zb.incident_id == a.incident_id
    assert rb.resolved_at == zb.resolved_at.event_time and not book.open
    assert [s["resolved"] for s in rb.signals] == [True, True]
    assert len({ra.record_id, rb.record_id}) == 2
    validate_record(rb)
    # A new alert after the resolution opens a new incident, even within the old window.
    c, rc = book.on_alert(POLICY, alert("feature:a", T0 + 130, 70), T0 + 130, sigs)
    assert rc.status == "opened" and c.incident_id != a.incident_id


def test_the_book_restores_from_its_meta() -> None:
    book = IncidentBook()
    sigs = ["feature:a", "feature:b"]
    book.on_alert(POLICY, alert("feature:a", T0, 10), T0, sigs)
    copy = IncidentBook.restore(orjson.loads(orjson.dumps(book.meta())))
    _, r1 = book.on_alert(POLICY, alert("feature:b", T0 + 3, 13), T0 + 3, sigs)
    _, r2 = copy.on_alert(POLICY, alert("feature:b", T0 + 3, 13), T0 + 3, sigs)
    assert r1 == r2 and copy.meta() == book.meta()


def test_moved_says_true_false_or_not_watched() -> None:
    book = IncidentBook()
    _, rec = book.on_alert(POLICY, alert("prediction", T0, 10), T0,
                           ["prediction", "feature:a", "performance:error"])
    assert rec.moved == {"prediction": True, "estimated_performance": None,
                         "realized_performance": False}
    assert "prediction moved" in rec.summary and "realized performance did not move" in rec.summary
    members = list(book.open[0].members.values())
    assert moved(members, ["performance:estimated_accuracy"])["estimated_performance"] is False


# -- one upstream break over 8 features, through the pipeline ---------------------------------

CONFIG: dict[str, Any] = {
    "version": 1, "detectors": {"cusum": {"type": "cusum"}},
    "models": [{"match": "*", "signals": [{"match": "*", "detectors": ["cusum"]}],
                "alerts": {"hold_seconds": 10, "dedupe_seconds": 600},
                "incidents": {"window_seconds": 600}}]}
BATCH = 500


@pytest.fixture(scope="module")
def plan() -> MonitorPlan:
    return parse_config(CONFIG)


@pytest.fixture(scope="module")
def raws() -> list[RawRecord]:
    """10 features; 8 of them move by 2 std at event 3000 (one upstream break) and come back
    at 5000."""
    drifts = (*(Drift(3000, f, 2.0) for f in EIGHT), *(Drift(5000, f, -2.0) for f in EIGHT))
    lines = generate(StreamSpec(events_per_model=7000, n_features=10, drifts=drifts))
    return [RawRecord(v, Position("inference-events", 0, i, int(T0 * 1000) + i))
            for i, v in enumerate(lines)]


async def run(plan: MonitorPlan, raws: list[RawRecord], bounds: list[int],
              restart_at: frozenset[int] = frozenset()) -> list[OutputRecord]:
    store = MemoryStore()
    pipeline = BatchPipeline(plan, store, clock=lambda: T0)
    out: list[OutputRecord] = []
    for lo, hi in itertools.pairwise(bounds):
        if lo in restart_at:  # a restarted worker: nothing in memory, all from the store
            pipeline = BatchPipeline(plan, store, clock=lambda: T0)
        res = await pipeline.run(raws[lo:hi])
        out += res.records
        await store.clear_outbox(res.outbox)
    return out


def by_topic(records: list[OutputRecord]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = collections.defaultdict(list)
    for r in records:
        out[r.topic].append(r.value)
    return dict(out)


@pytest.fixture(scope="module")
def uninterrupted(plan: MonitorPlan, raws: list[RawRecord]) -> list[OutputRecord]:
    import asyncio

    return asyncio.run(run(plan, raws, [*range(0, len(raws), BATCH), len(raws)]))


def test_one_break_over_eight_features_is_one_incident(uninterrupted: list[OutputRecord],
                                                       ) -> None:
    alerts = [r.record for r in uninterrupted if r.record.type == "drift_alert"]
    incidents = [r.record for r in uninterrupted if r.record.type == "incident"]
    back = [r.record for r in uninterrupted if r.record.type == "drift_resolved"]
    assert sorted(a.signal for a in alerts) == sorted(f"feature:{f}" for f in EIGHT)
    assert {a.incident_id for a in alerts} == {incidents[0].incident_id}
    assert {z.incident_id for z in back} == {incidents[0].incident_id}
    assert [i.status for i in incidents].count("opened") == 1
    assert [i.status for i in incidents].count("resolved") == 1
    assert incidents[-1].status == "resolved"
    assert len({i.incident_id for i in incidents}) == 1
    last_open = [i for i in incidents if i.status == "updated"][-1]
    assert len(last_open.signals) == 8
    shifts = [abs(s["mean_shift_in_reference_std"]) for s in last_open.signals]
    assert shifts == sorted(shifts, reverse=True)
    assert last_open.moved == {"prediction": False, "estimated_performance": None,
                               "realized_performance": None}
    assert all(r.topic == "model-incidents" and dict(r.headers)["status"] == r.record.status
               .encode() for r in uninterrupted if r.record.type == "incident")
    for i in incidents:
        validate_record(i)


@pytest.mark.parametrize("cut", [3005, 3012, 3600, 5150])
async def test_batching_and_a_restart_mid_incident_give_the_same_records(
        plan: MonitorPlan, raws: list[RawRecord], uninterrupted: list[OutputRecord],
        cut: int) -> None:
    """Other batch bounds, and a new pipeline on the same store at ``cut`` (mid-incident:
    after the first alerts, while the signals are out, while they come back)."""
    bounds = sorted({*range(0, len(raws), 700), cut, len(raws)})
    out = await run(plan, raws, bounds, frozenset({cut}))
    assert by_topic(out) == by_topic(uninterrupted)


async def test_a_redelivered_batch_mid_incident_changes_nothing(
        plan: MonitorPlan, raws: list[RawRecord], uninterrupted: list[OutputRecord]) -> None:
    store = MemoryStore()
    first = BatchPipeline(plan, store, clock=lambda: T0)
    out: list[OutputRecord] = []
    for lo in range(0, 3100, 100):
        res = await first.run(raws[lo:lo + 100])
        out += res.records
        await store.clear_outbox(res.outbox)
    assert any(r.record.type == "incident" for r in out)
    second = BatchPipeline(plan, store, clock=lambda: T0)
    again = await second.run(raws[2900:3100])
    assert again.records == [] and again.redelivered == 200
    for lo in range(3100, len(raws), 1000):
        res = await second.run(raws[lo:lo + 1000])
        out += res.records
        await store.clear_outbox(res.outbox)
    assert by_topic(out) == by_topic(uninterrupted)


# -- the config, and the retrain policy counting incidents -------------------------------------

def _model(**extra: Any) -> dict[str, Any]:
    return {"version": 1, "models": [{"match": "m", "signals": [
        {"match": "*", "detectors": ["adwin"]}], **extra}]}


def test_incidents_need_the_alert_lifecycle() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\].*incidents needs the alert lifecycle"):
        validate_config(_model(incidents={"window_seconds": 60}), "x")
    with pytest.raises(ConfigError, match=r"retrain.count: incidents needs the model's incidents"):
        validate_config(_model(alerts={}, retrain={"count": "incidents"}), "x")
    with pytest.raises(ConfigError, match=r"window_seconds"):
        validate_config(_model(alerts={}, incidents={"window_seconds": 0}), "x")


def test_the_plan_holds_the_incident_policy_and_the_count() -> None:
    plan = parse_config(_model(alerts={}, incidents={"window_seconds": 120},
                               retrain={"count": "incidents", "min_incidents": 2}))
    rule = plan.models[0]
    assert rule.incidents == IncidentPolicy(120.0)
    assert (rule.retrain.count, rule.retrain.min_incidents) == ("incidents", 2)
    assert parse_config(_model()).models[0].incidents is None
    assert parse_config(_model()).models[0].retrain.count == "signals"
    assert plan.topics.incidents == "model-incidents"


def _requests(raws: list[RawRecord], retrain: dict[str, Any]) -> list[orec.RetrainRequest]:
    import asyncio

    cfg = orjson.loads(orjson.dumps(CONFIG))
    cfg["models"][0]["retrain"] = retrain
    out = asyncio.run(run(parse_config(cfg), raws, [0, 4000]))
    return [r.record for r in out if isinstance(r.record, orec.RetrainRequest)]


def test_retrain_counting_incidents_sees_one_break_once(raws: list[RawRecord]) -> None:
    # Counting signals, 8 drifted signals pass k = 2; counting incidents they are 1 of 2.
    assert len(_requests(raws, {"min_drifted_signals": 2})) == 1
    assert _requests(raws, {"count": "incidents", "min_incidents": 2}) == []
    reqs = _requests(raws, {"count": "incidents", "min_incidents": 1})
    assert len(reqs) == 1 and reqs[0].rule["name"] == "min_incidents"
    assert reqs[0].reason.startswith("1 incident within 3600s")
    validate_record(reqs[0])


def test_the_worker_counts_incident_records(raws: list[RawRecord],
                                            uninterrupted: list[OutputRecord]) -> None:
    from prometheus_client import CollectorRegistry

    from stream_monitor.observability.metrics import WorkerMetrics, batch_counts

    reg = CollectorRegistry()
    c = batch_counts(raws, uninterrupted)
    WorkerMetrics(reg).observe_batch(c.events_by_model, c.dead_letters_by_reason, 0.1,
                                     incidents=c.incidents)
    got = {s: reg.get_sample_value("stream_monitor_incidents_total",
                                   {"model": "credit-risk", "status": s})
           for s in ("opened", "updated", "resolved")}
    statuses = [r.record.status for r in uninterrupted if isinstance(r.record, orec.IncidentRecord)]
    assert got == {s: float(statuses.count(s)) for s in got}
    assert got["opened"] == got["resolved"] == 1.0
