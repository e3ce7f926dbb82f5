"""A categorical signal after its alert: the retrain persistence check, the incident's return
check and the deployment check compare category mixes (core/mixshift.py), not a mean.

Seeded category streams through the pure core; exact outcomes; no services."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from stream_monitor.config import RetrainRule, parse_config
from stream_monitor.contracts import InferenceEvent, Position, RawRecord, validate_record
from stream_monitor.core import Monitor, MonitorState
from stream_monitor.core.mixshift import mix_shift, reference_mix
from stream_monitor.core.plan import MonitorPlan
from stream_monitor.core.retrain import Evidence, RetrainState
from stream_monitor.synth import category_stream

from ..helpers import pipeline_outputs

NOW = 1_767_225_600.0
MIX = ([0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4])
PERSIST = {"min_drifted_signals": 1, "within_seconds": 1e9, "cooldown_seconds": 0,
           "persistence": {"values": 50, "min_shift": 0.5}}


def cfg(per_events: float = 1e6, retrain: dict[str, Any] | None = None,
        alerts: dict[str, Any] | None = None) -> MonitorPlan:
    rule: dict[str, Any] = {"match": "m*",
                            "signals": [{"match": "feature:*", "detectors": ["cusum"]}],
                            "quality": {"categorical": True, "indicators": []},
                            "retrain": retrain or PERSIST}
    if alerts is not None:
        rule["alerts"] = alerts
    return parse_config({
        "windows": {"reference_size": 1000, "reference_min_size": 200, "recent_size": 2000},
        "false_alarm_budget": {"per_events": per_events},
        "detectors": {"cusum": {"type": "cusum"}},
        "models": [rule]})


def events(seq: list[str], start: int = 0) -> list[InferenceEvent]:
    return [InferenceEvent(f"e{i}", "m", {"seg": s}, 0.5, Position("t", 0, i), None,
                           NOW + i, None) for i, s in enumerate(seq, start)]


def stationary(seed: int, n: int = 20_000, stay: float = 0.0) -> list[str]:
    return category_stream(MIX[0], n, seed, stay=stay)


def changed(seed: int, n: int = 8000, at: int = 5000, stay: float = 0.0) -> list[str]:
    return category_stream(MIX[0], n, seed, at, MIX[1], stay)


# -- the distance -------------------------------------------------------------------------------

def test_the_distance_of_two_categories_is_the_shift_of_their_indicator() -> None:
    """For two categories the Mahalanobis distance is |f - p| / sqrt(p (1 - p)): the numeric
    shift of the 0/1 indicator, so min_shift keeps its meaning."""
    mix = reference_mix({"categories": ["a", "b", "(other)"], "reference_counts": [700, 300, 0],
                         "long_run_variance_ratio": 1.0})
    assert mix is not None
    p = mix[1][0]
    r = mix_shift([0.0] * 50 + [1.0] * 50, ["a", "b"], mix)
    # (the third slot, "other", holds 0.5 / 1001.5 of the reference: a small correction)
    assert abs(r.raw - abs(0.5 - p) / (p * (1 - p)) ** 0.5) < 0.01
    assert abs(r.total_variation - (p - 0.5)) < 1e-3
    # Categories the mix has no slot for, and codes past the cap, count as "other".
    r = mix_shift([2.0, -1.0, 0.0, 1.0], ["a", "b", "zzz"], mix)
    assert r.shares[2] == 0.5


@pytest.mark.parametrize("slots", [4, 21])
def test_the_sampling_noise_is_removed(slots: int) -> None:
    """A mix that follows its reference reads at the plug-in distance of its own noise,
    sqrt((K - 1) / k) on average; the debiased distance is about 0 on average."""
    import numpy as np

    shares = [1.0 / slots] * slots
    mix = [[str(j) for j in range(slots - 1)] + ["(other)"], shares, 1.0]
    rng = np.random.default_rng(5)
    raw, debiased = [], []
    for _ in range(400):
        r = mix_shift(rng.integers(0, slots, 50).astype(float), mix[0][:-1], mix)
        raw.append(r.raw ** 2)
        debiased.append(r.distance)
    assert abs(np.mean(raw) - (slots - 1) / 50) < 0.15 * (slots - 1) / 50
    assert np.mean(np.asarray(debiased) >= 0.5) < 0.05


# -- retrain persistence --------------------------------------------------------------------------

@pytest.mark.parametrize(("seed", "stay", "alerts"), [(0, 0.0, 2), (5, 0.0, 4), (6, 0.0, 3),
                                                      (2, 0.6, 8), (4, 0.6, 3)])
def test_false_alarms_on_a_stationary_mix_do_not_persist(seed: int, stay: float,
                                                         alerts: int) -> None:
    """A loose budget (1 per 100 values) makes the multinomial CUSUM raise false alarms on a
    stationary mix (sticky too); 50 effective values later the mix is back at its reference,
    so each is dropped as transient and no retrain is requested. (Before, a categorical alert
    was always confirmed: these seeds gave a retrain request per alert.)"""
    state = MonitorState()
    out = Monitor(cfg(100)).process(events(stationary(seed, stay=stay)), state)
    assert len(out.alerts) == alerts
    assert out.retrain_requests == []
    assert state.models["m"].retrain.transient == alerts


@pytest.mark.parametrize(("seed", "stay"), [(0, 0.0), (1, 0.0), (2, 0.6)])
def test_a_mix_that_stays_changed_is_confirmed(seed: int, stay: float) -> None:
    out = Monitor(cfg()).process(events(changed(seed, stay=stay)), MonitorState())
    [alert] = out.alerts
    [req] = out.retrain_requests
    validate_record(req)
    [ev] = req.evidence
    assert ev["alert_id"] == alert.alert_id
    assert ev["persistence"]["values"] >= 50
    # .4/.3/.2/.1 -> .1/.2/.3/.4 is a distance of 1.1; read on 50 x tau values
    assert ev["persistence"]["mean_shift_in_reference_std"] > 0.75


@pytest.mark.parametrize("seed", [0, 3])
def test_a_mix_that_came_back_is_dropped(seed: int) -> None:
    """The mix changes for 120 values and returns: the alert fires inside the change, the
    check (200 x tau values later, after the return) finds the reference mix again."""
    seq = changed(seed, n=8000, at=5000)
    back = category_stream(MIX[0], 8000, 99)
    seq = seq[:5120] + back[5120:]
    state = MonitorState()
    out = Monitor(cfg(retrain={**PERSIST, "persistence": {"values": 200, "min_shift": 0.5}})
                  ).process(events(seq), state)
    [alert] = out.alerts
    assert 5000 < alert.detected_at.offset < 5120
    assert out.retrain_requests == [] and state.models["m"].retrain.transient == 1


def test_evidence_keeps_its_mix_across_a_checkpoint_and_older_evidence_restores() -> None:
    state = MonitorState()
    Monitor(cfg()).process(events(changed(0)[:5100]), state)  # the alert, still pending
    rs = state.models["m"].retrain
    [e] = rs.evidence
    assert e.confirmed_at is None and e.mix is not None
    assert e.mix[0] == ["c0", "c1", "c2", "c3", "(other)"]
    back = RetrainState.restore(json.loads(json.dumps(rs.meta())))
    assert back.meta() == rs.meta() and back.evidence[0].mix == e.mix
    old = e.meta()[:15]  # a checkpoint from before the mix: the alert's own shift decides
    assert Evidence.restore(old).mix is None
    rule = RetrainRule(**PERSIST)
    assert rule.persistence.values == 50


def _raws(seq: list[str]) -> list[RawRecord]:
    out = []
    for ev in events(seq):
        rec = {"event_id": ev.event_id, "model_id": ev.model_id, "timestamp": ev.event_time,
               "features": ev.features, "prediction": ev.prediction}
        out.append(RawRecord(orjson.dumps(rec), Position("in", 0, ev.position.offset, None),
                             b"m", ()))
    return out


def replay(c: MonitorPlan, raws: list[RawRecord], restart_at: Iterable[int],
           size: int) -> list[bytes]:
    """What a pipeline publishes, rebuilt from its store at ``restart_at`` (a worker restart)."""
    return pipeline_outputs(c, raws, restart_at, size, NOW)


@pytest.mark.parametrize(("cuts", "batch"), [((5100,), 700), ((5150, 5190), 333)])
def test_a_restart_during_the_persistence_check_gives_the_same_outputs(
        cuts: tuple[int, ...], batch: int) -> None:
    c = cfg()
    raws = _raws(changed(0, n=5600))
    whole = replay(c, raws, (), 10_000)
    types = [orjson.loads(v)["type"] for v in whole]
    assert "retrain_request" in types
    assert replay(c, raws, cuts, batch) == whole


# -- the alert lifecycle --------------------------------------------------------------------------

LIFE = {"resolve_values": 50, "resolve_max_shift": 0.5, "hold_seconds": 100}


def went_back(seed: int, n: int = 9000, until: int = 5600) -> list[str]:
    """The mix changes at 5000 and is back (a fresh draw of the reference mix) at ``until``."""
    return changed(seed, n=n, at=5000)[:until] + category_stream(MIX[0], n, 99 + seed)[until:]


@pytest.mark.parametrize(("seed", "fired", "resolved", "distance"),
                         [(0, 5048, 5797, 0.0), (5, 5067, 5814, 0.194)])
def test_a_mix_that_went_back_resolves_its_incident(seed: int, fired: int, resolved: int,
                                                    distance: float) -> None:
    """The way back folds into the incident, and once the last 50 values' mix is within 0.5 of
    the reference mix for 100 s the incident resolves, with the shares in the record. (Before,
    a categorical incident was never resolved.)"""
    state = MonitorState()
    out = Monitor(cfg(alerts=LIFE)).process(events(went_back(seed)), state)
    [alert] = out.alerts
    assert alert.detected_at.offset == fired
    [res] = out.resolved
    validate_record(res)
    assert res.alert_id == alert.alert_id and res.folded_alerts == 1
    assert res.resolved_at.offset == resolved
    ev = res.evidence
    assert round(ev["mean_shift_in_reference_std"], 3) == distance
    assert ev["current"] == {"count": 50}
    cats = ev["categories"]
    assert [s["category"] for s in cats["shares"]] == ["c0", "c1", "c2", "c3", "(other)"]
    assert cats["total_variation"] < 0.2
    assert "category mix back within 0.5" in res.summary
    assert state.models["m"].lifecycle.incidents == {}


@pytest.mark.parametrize("seed", [0, 3])
def test_a_mix_that_stays_changed_keeps_its_incident_open(seed: int) -> None:
    state = MonitorState()
    out = Monitor(cfg(alerts=LIFE)).process(events(changed(seed, n=12_000)), state)
    assert len(out.alerts) == 1 and out.resolved == []
    [inc] = state.models["m"].lifecycle.incidents.values()
    assert inc.mix is not None and inc.mix[0][-1] == "(other)"


def test_an_incident_checkpointed_without_a_mix_stays_open() -> None:
    """An incident from a checkpoint written before categorical incidents had a reference mix
    restores (mix None) and is left open, as before, rather than judged by a mean."""
    from stream_monitor.core.lifecycle import LifecycleState

    state = MonitorState()
    mon = Monitor(cfg(alerts=LIFE))
    seq = went_back(0)
    mon.process(events(seq[:5100]), state)
    lc = state.models["m"].lifecycle
    meta = json.loads(json.dumps(lc.meta()))
    assert LifecycleState.restore(meta).meta() == lc.meta()
    for i in meta["incidents"]:
        del i["mix"]
    state.models["m"].lifecycle = LifecycleState.restore(meta)
    out = mon.process(events(seq[5100:], 5100), state)
    assert out.resolved == [] and len(state.models["m"].lifecycle.incidents) == 1


@pytest.mark.parametrize(("cuts", "batch"), [((5700,), 500), ((5650, 5750, 5810), 111)])
def test_a_restart_during_the_return_check_or_the_hold_gives_the_same_outputs(
        cuts: tuple[int, ...], batch: int) -> None:
    c = cfg(alerts=LIFE)
    raws = _raws(went_back(0, n=6200))
    whole = replay(c, raws, (), 10_000)
    assert "drift_resolved" in [orjson.loads(v)["type"] for v in whole]
    # The same records byte for byte (a batch lists its alerts before its retrain requests and
    # resolutions, so their order across kinds follows the batches).
    assert sorted(replay(c, raws, cuts, batch)) == sorted(whole)


# -- deployment checks ----------------------------------------------------------------------------

def _versions(pred_after: list[float], seg_after: list[float] | None = None,
              seed: int = 7) -> list[RawRecord]:
    """v1 for 1500 events, then v2 for 1500: class-label predictions (.6/.3/.1 on v1) and a
    categorical feature (the 4-category mix); v2's prediction mix `pred_after`, its feature
    mix `seg_after` (default: unchanged). The new version's table codes the labels in its own
    order of first appearance."""
    classes = ["no", "yes", "maybe"]
    p1 = category_stream([0.6, 0.3, 0.1], 1500, seed, labels=classes)
    p2 = category_stream(pred_after, 1500, seed + 1, labels=classes)
    s1 = category_stream(MIX[0], 1500, seed + 2)
    s2 = category_stream(seg_after or MIX[0], 1500, seed + 3)
    out = []
    for i, (p, s) in enumerate(zip(p1 + p2, s1 + s2, strict=True)):
        rec = {"event_id": f"e{i}", "model_id": "m", "model_version": "1" if i < 1500 else "2",
               "timestamp": NOW + i, "features": {"seg": s}, "prediction": p}
        out.append(RawRecord(orjson.dumps(rec), Position("inference-events", 0, i)))
    return out


def _check(raws: list[RawRecord], privacy: str = "full") -> dict[str, Any]:
    c = parse_config({
        "windows": {"reference_size": 500, "recent_size": 500},
        "privacy": {"alert_evidence": privacy}, "detectors": {"cusum": {"type": "cusum"}},
        "models": [{"match": "m", "signals": [{"match": "*", "detectors": ["cusum"]}],
                    "quality": {"categorical": True, "indicators": []},
                    "versions": {"watch_events": 500}}]})
    [check] = [orjson.loads(v) for v in replay(c, raws, (), 250)
               if orjson.loads(v)["type"] == "deployment_check"]
    validate_record(check)
    return check


def test_a_class_label_mix_that_moved_between_versions_is_reported() -> None:
    """v2 predicts .4/.3/.3 instead of .6/.3/.1 (total variation 0.2): the prediction's
    category mix changed (a warning: not an input), with the shares per class. (Before,
    categorical signals were left out of the check.)"""
    check = _check(_versions([0.4, 0.3, 0.3]))
    assert check["verdict"] == "warn"
    by = {s["signal"]: s for s in check["signals"]}
    pred = by["prediction"]
    assert pred["changed"] and pred["ks"] is None
    cats = pred["categories"]
    assert cats["test"]["p_value"] < 1e-6 and cats["test"]["df"] == 2
    assert 0.15 < cats["total_variation"] < 0.25
    moved = {r["category"]: r for r in cats["shares"]}
    assert moved["no"]["change"] < -0.1 and moved["maybe"]["change"] > 0.1
    assert pred["previous"] == {"count": 500} and pred["new"] == {"count": 500}
    assert not by["feature:seg"]["changed"]
    assert "prediction category mix changed" in check["summary"]


def test_an_input_mix_that_moved_fails_the_check() -> None:
    check = _check(_versions([0.6, 0.3, 0.1], seg_after=MIX[1]))
    assert check["verdict"] == "fail"
    by = {s["signal"]: s for s in check["signals"]}
    assert by["feature:seg"]["changed"] and not by["prediction"]["changed"]


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_an_unchanged_mix_passes(seed: int) -> None:
    check = _check(_versions([0.6, 0.3, 0.1], seed=seed))
    assert check["verdict"] == "pass", check["reasons"]
    assert {s["signal"] for s in check["signals"]} == {"prediction", "feature:seg"}


def test_privacy_none_keeps_the_test_and_withholds_the_shares() -> None:
    check = _check(_versions([0.4, 0.3, 0.3]), privacy="none")
    pred = {s["signal"]: s for s in check["signals"]}["prediction"]
    assert set(pred["categories"]) == {"total_variation", "test"} and pred["changed"]


def test_the_version_test_holds_its_error_rate_on_unchanged_mixes() -> None:
    """Two windows of 1000 values of one 6-category mix with rare levels (2%, 1%), plain and
    sticky: the chi-square test (scaled by the dependence) rejects at most at its alpha, and the
    check never calls them changed; a class-label mix moved by total variation 0.2 is."""
    from stream_monitor.core.mixshift import compare_mix

    labels = [f"c{i}" for i in range(6)]

    def draw(seed: int, stay: float, shares: list[float]) -> list[float]:
        return [float(c[1:]) for c in category_stream(shares, 1000, seed, stay=stay)]

    shares = [0.55, 0.25, 0.12, 0.05, 0.02, 0.01]
    for stay in (0.0, 0.8):
        rejected = changed_ = 0
        for s in range(60):
            r = compare_mix("x", draw(2 * s, stay, shares), labels,
                            draw(2 * s + 1, stay, shares), labels, alpha=0.05, min_shift=0.0,
                            min_values=30)
            rejected += r["categories"]["test"]["p_value"] < 0.05
            changed_ += r["changed"]
        assert rejected <= 3 and changed_ == rejected  # at most alpha (60 x 0.05)
    hits = sum(compare_mix("p", draw(2 * s, 0.0, [0.6, 0.3, 0.1]), labels[:3],
                           draw(2 * s + 1, 0.0, [0.4, 0.3, 0.3]), labels[:3], alpha=0.01,
                           min_shift=0.5, min_values=30)["changed"] for s in range(20))
    assert hits >= 19
