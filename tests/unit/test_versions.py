"""Model versions (README "Model versions"): each version its own detectors and reference, a
post-deploy watch that ends in a deployment check against the previous version, retrain
cooldown and budget carried across a deploy. Whole pipeline, in-memory stores."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from stream_monitor.config import parse_config
from stream_monitor.contracts import Position, RawRecord, validate_record
from stream_monitor.contracts.units import unit_id
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.state.memory import MemoryStore

T0 = 1_767_225_600.0

CONFIG: dict[str, Any] = {
    "windows": {"reference_size": 300, "recent_size": 300},
    "detectors": {"hddm_a": {"type": "hddm_a"}, "page_hinkley": {"type": "page_hinkley"}},
    "models": [{
        "match": "m",
        "labels": {"task": "classification", "ttl_seconds": 3600},
        "signals": [{"match": "performance:*", "detectors": ["hddm_a"]},
                    {"match": "*", "detectors": ["page_hinkley"]}],
        "retrain": {"min_drifted_signals": 1, "cooldown_seconds": 86400},
        "versions": {"watch_events": 300, "min_labeled": 200, "max_wait_seconds": 600},
    }],
}


def stream(plan: list[tuple[str, int, float, float]], seed: int = 3) -> list[RawRecord]:
    """(version, events, amount mean, error rate) segments, one event a second; each label
    follows its prediction by 5 events on the labels topic."""
    rng = random.Random(seed)
    raws: list[RawRecord] = []
    i = 0
    off = {"inference-events": 0, "inference-labels": 0}

    def rec(topic: str, body: dict[str, Any]) -> None:
        raws.append(RawRecord(orjson.dumps(body), Position(topic, 0, off[topic])))
        off[topic] += 1

    pending: list[tuple[int, dict[str, Any]]] = []
    for version, n, amount, err in plan:
        for _ in range(n):
            y = int(rng.random() < 0.5)
            wrong = rng.random() < err
            rec("inference-events", {"event_id": f"e{i}", "model_id": "m",
                                     "model_version": version, "timestamp": T0 + i,
                                     "features": {"amount": rng.gauss(amount, 1.0)},
                                     "prediction": float(y ^ wrong)})
            pending.append((i + 5, {"event_id": f"e{i}", "model_id": "m", "label": y,
                                    "timestamp": T0 + i + 5}))
            for _, lab in [p for p in pending if p[0] <= i]:
                rec("inference-labels", lab)
            pending = [p for p in pending if p[0] > i]
            i += 1
    return raws


def run(raws: list[RawRecord], config: dict[str, Any] = CONFIG, batch: int = 250,
        batches: list[list[RawRecord]] | None = None,
        ) -> tuple[list[dict[str, Any]], BatchPipeline]:
    async def go() -> tuple[list[dict[str, Any]], BatchPipeline]:
        store = MemoryStore()
        pipe = BatchPipeline(parse_config(config), store, clock=lambda: T0 + 1e6)
        recs = []
        chunks = batches or [raws[k:k + batch] for k in range(0, len(raws), batch)]
        for chunk in chunks:
            out = await pipe.run(chunk)
            await store.clear_outbox(out.outbox)
            recs += [r.record for r in out.records]
        return recs, pipe

    return asyncio.run(go())


def test_a_bad_deploy_fails_its_check_and_starts_fresh() -> None:
    """v2 ships with a shifted input and twice the error rate: the check fails and names both;
    v2's detectors start from v2's own reference, so the shift raises no drift alert."""
    recs, pipe = run(stream([("1", 1500, 0.0, 0.1), ("2", 1500, 2.0, 0.3)]))
    checks = [r for r in recs if r.type == "deployment_check"]
    [check] = checks
    validate_record(check)
    assert (check.model_version, check.previous_version) == ("2", "1")
    assert check.verdict == "fail" and check.reason == "watch_complete"
    by = {s["signal"]: s for s in check.signals}
    assert by["feature:amount"]["changed"] and by["feature:amount"]["ks"]["p_value"] < 1e-6
    assert not by["prediction"]["changed"]
    perf = check.performance
    assert perf["degraded"] and perf["previous"]["mean"] < 0.15 < 0.25 < perf["new"]["mean"]
    assert check.summary.startswith("m 2 vs 1: fail")
    # The check comes with the 300th event of v2 (its first window; 200 joined labels are in).
    assert 1500 + 299 <= int(check.trigger.event_id[1:]) < 1500 + 300 + 50
    alerts = [r for r in recs if r.type == "drift_alert"]
    assert not [a for a in alerts if a.signal == "feature:amount"]
    models = pipe.state.models
    assert models[unit_id("m", "2")].signals["feature:amount"].ref_mean > 1.5
    assert models[unit_id("m", "1")].signals["feature:amount"].ref_mean < 0.5


def test_a_good_deploy_passes_and_canary_traffic_is_kept_apart() -> None:
    """v1 and v2 interleaved (a canary), same data: the check passes; each version's signals
    saw only its own events."""
    raws = stream([("1", 1000, 0.0, 0.1)] + [(v, 1, 0.0, 0.1) for _ in range(600)
                                               for v in ("1", "2")], seed=8)
    recs, pipe = run(raws)
    [check] = [r for r in recs if r.type == "deployment_check"]
    validate_record(check)
    assert check.verdict == "pass", check.reasons
    models = pipe.state.models
    assert models[unit_id("m", "1")].events == 1600
    assert models[unit_id("m", "2")].events == 600
    assert models[unit_id("m", "2")].signals["feature:amount"].n == 600


def test_first_version_gets_no_check_and_a_reappearing_version_no_second_one() -> None:
    recs, _ = run(stream([("1", 800, 0.0, 0.1), ("2", 800, 0.0, 0.1), ("1", 200, 0.0, 0.1)]))
    checks = [r for r in recs if r.type == "deployment_check"]
    assert [(c.model_version, c.previous_version) for c in checks] == [("2", "1")]


def test_timeout_without_labels_and_cooldown_carried_across_the_deploy() -> None:
    """No labels for v2 (the labels stop): after max_wait_seconds of event time the check is
    made without performance (a warning). v1 asked for a retrain when its error rose; v2 is
    still inside the cooldown, so its own degradation does not ask again."""
    raws = stream([("1", 1200, 0.0, 0.1), ("1", 800, 0.0, 0.4), ("2", 1500, 0.0, 0.45)])
    raws = [r for r in raws if not (r.position.topic == "inference-labels"
                                    and int(orjson.loads(r.value)["event_id"][1:]) >= 2000)]
    recs, pipe = run(raws)
    [check] = [r for r in recs if r.type == "deployment_check"]
    assert check.reason == "timeout"
    assert check.verdict == "warn"
    assert check.performance["sufficient"] is False
    requests = [r for r in recs if r.type == "retrain_request"]
    assert [r.model_version for r in requests] == ["1"]
    v1, v2 = pipe.state.models[unit_id("m", "1")], pipe.state.models[unit_id("m", "2")]
    assert v2.last_retrain_at == v1.last_retrain_at is not None


def test_versions_kept_together_when_configured() -> None:
    cfg = {**CONFIG, "models": [{**CONFIG["models"][0], "versions": {"separate": False}}]}
    recs, pipe = run(stream([("1", 600, 0.0, 0.1), ("2", 600, 3.0, 0.1)]), config=cfg)
    assert not [r for r in recs if r.type == "deployment_check"]
    assert list(pipe.state.models) == ["m"]
    assert any(r.type == "drift_alert" and r.signal == "feature:amount" for r in recs)


def test_the_check_does_not_depend_on_how_the_stream_was_batched() -> None:
    """One batch holding all of v2's predictions before its labels (a backlog) gives the same
    check as small batches: the wait for labels is timed out only once a batch's labels are in."""
    raws = stream([("1", 1500, 0.0, 0.1), ("2", 1500, 2.0, 0.3)])
    # A backlog: in each batch, the predictions come before the labels (as the worker's join
    # orders them), and the second batch is all of v2.
    split = next(i for i, r in enumerate(raws) if b'"model_version":"2"' in r.value)
    first, rest = raws[:split], raws[split:]
    backlog = [sorted(part, key=lambda r: r.position.topic) for part in (first, rest)]
    small, _ = run(raws, batch=250)
    big, _ = run(raws, batches=backlog)
    got = [[(c.check_id, c.verdict, c.reason, c.performance["degraded"])
            for c in recs if c.type == "deployment_check"] for recs in (small, big)]
    assert got[0] == got[1] and got[0][0][1:] == ("fail", "watch_complete", True)


def test_a_batch_that_holds_the_first_two_versions_still_checks_the_second() -> None:
    """A backlog read in one batch holds v1's first events and v2's: v2 is still watched and
    checked against v1 (the version index was empty when the batch began)."""
    raws = stream([("1", 1500, 0.0, 0.1), ("2", 1500, 2.0, 0.3)])
    small, _ = run(raws)
    one, _ = run(raws, batches=[raws])
    checks = [[r for r in recs if r.type == "deployment_check"] for recs in (small, one)]
    assert [len(c) for c in checks] == [1, 1]
    a, b = checks
    assert (b[0].model_version, b[0].previous_version) == ("2", "1")
    assert b[0].verdict == a[0].verdict == "fail"
    assert {s["signal"] for s in b[0].signals if s["changed"]} == {
        s["signal"] for s in a[0].signals if s["changed"]}
