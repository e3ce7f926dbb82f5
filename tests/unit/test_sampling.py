"""Per-model sample rates (docs/scaling.md "Sampling a hot model"): the hash of event_id picks
the same events in every process and in replay; outputs state the rate."""

from __future__ import annotations

import asyncio
import io
import random
import subprocess
import sys
from hashlib import blake2b
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_monitor.adapters.replay import replay_file
from stream_monitor.config import parse_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.contracts.schemas import validate_record
from stream_monitor.core.gate import EventGate, QualityCounters
from stream_monitor.core.sampling import hash_unit, sampled
from stream_monitor.errors import ConfigError
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.state.memory import MemoryStore
from stream_monitor.synth import Drift, LabelledSpec, StreamSpec, generate, labelled


def _rule(rate: float | None, **more: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"match": "m*", "signals": [{"match": "*", "detectors": ["adwin"]}]}
    if rate is not None:
        rule["sample_rate"] = rate
    rule.update(more)
    return rule


def _ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"req-{rng.getrandbits(64):016x}" for _ in range(n)]


def test_hash_is_blake2b_of_the_id_bytes() -> None:
    # Pinned to the documented definition, so a change of hash (which would change which
    # events every deployed worker watches) cannot pass unnoticed.
    for eid in ("e1", "credit-risk-00000042", "ünïcode-id"):
        digest = blake2b(eid.encode(), digest_size=8).digest()
        assert hash_unit(eid) == int.from_bytes(digest, "big") / 2**64
    assert 0.0 <= hash_unit("") < 1.0


def test_same_decisions_in_another_process() -> None:
    """Python's hash() is salted per process; ours must not be."""
    ids = _ids(200, seed=3)
    here = [sampled(i, 0.3) for i in ids]
    code = ("import sys, json; from stream_monitor.core.sampling import sampled; "
            "ids = json.load(sys.stdin); print(json.dumps([sampled(i, 0.3) for i in ids]))")
    proc = subprocess.run([sys.executable, "-c", code], input=orjson.dumps(ids), check=True,
                          capture_output=True, env={"PYTHONHASHSEED": "12345"})
    assert orjson.loads(proc.stdout) == here


@pytest.mark.parametrize("rate", [0.5, 0.1, 0.01])
def test_kept_fraction_is_within_binomial_tolerance(rate: float) -> None:
    n = 50_000
    for seed in (1, 2, 3):
        kept = sum(sampled(i, rate) for i in _ids(n, seed))
        sd = (n * rate * (1 - rate)) ** 0.5
        assert abs(kept - n * rate) < 4 * sd, (seed, kept)


def test_lower_rates_keep_subsets() -> None:
    ids = _ids(5000, seed=9)
    at = {r: {i for i in ids if sampled(i, r)} for r in (0.1, 0.5, 1.0)}
    assert at[0.1] < at[0.5] < at[1.0] == set(ids)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), "half"])
def test_config_rejects_rates_outside_zero_one(bad: Any) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"models": [_rule(bad)]})
    assert "models[0].sample_rate" in str(err.value)


def test_gate_drops_unsampled_events_before_the_duplicate_check() -> None:
    cfg = parse_config({"models": [_rule(0.25)], "quality": {"duplicates": {"window_seconds": 60}}})
    gate, counters = EventGate(cfg), QualityCounters()
    ids = _ids(4000, seed=5)
    raws = [RawRecord(orjson.dumps({"event_id": eid, "model_id": "m1", "features": {"x": 1.0},
                                    "prediction": 0.5}), Position("t", 0, k))
            for k, eid in enumerate(ids)]
    events, dead = gate.admit(raws, now=0.0, counters=counters)
    assert not dead
    assert [e.event_id for e in events] == [i for i in ids if sampled(i, 0.25)]
    assert counters.sampled_out[("m1", "inference")] == len(ids) - len(events)
    # The claims for the duplicate window are only those of the kept events.
    _, claims = gate.claims(events)
    assert len(claims) == len(events)


def test_rate_one_and_unwatched_models_are_not_sampled() -> None:
    cfg = parse_config({"models": [_rule(None)]})
    gate = EventGate(cfg)
    assert not gate.samples
    cfg = parse_config({"models": [_rule(0.5)]})
    gate, counters = EventGate(cfg), QualityCounters()
    raws = [RawRecord(orjson.dumps({"event_id": f"e{k}", "model_id": "other", "features": {},
                                    "prediction": 1}), Position("t", 0, k)) for k in range(50)]
    events, _ = gate.admit(raws, now=0.0, counters=counters)
    assert len(events) == 50 and not counters.sampled_out


def _replay(cfg_raw: dict[str, Any], lines: list[bytes], tmp: Path, name: str,
            labels: list[bytes] | None = None) -> list[dict[str, Any]]:
    path = tmp / f"{name}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    lpath = None
    if labels is not None:
        lpath = tmp / f"{name}-labels.jsonl"
        lpath.write_bytes(b"\n".join(labels) + b"\n")
    out = io.BytesIO()
    replay_file(parse_config(cfg_raw), path, out, batch=500, labels=lpath)
    return [orjson.loads(x) for x in out.getvalue().splitlines()]


def test_alerts_state_the_rate_and_validate(tmp_path: Path) -> None:
    spec = StreamSpec(models=("m1",), events_per_model=8000, n_features=2,
                      drifts=(Drift(3000, "amount", 3.0),), seed=11)
    lines = list(generate(spec))
    rule = _rule(0.5, retrain={"min_drifted_signals": 1},
                 alerts={"resolve_values": 50, "hold_seconds": 0})
    records = _replay({"models": [rule]}, lines, tmp_path, "half")
    types = {r["type"] for r in records}
    assert {"drift_alert", "retrain_request"} <= types
    for r in records:
        assert r["sample_rate"] == 0.5, r["type"]
        validate_record(r)
    # Without a rate, records say 1.0: "every event".
    full = _replay({"models": [_rule(None, retrain={"min_drifted_signals": 1})]}, lines,
                   tmp_path, "full")
    assert full and all(r["sample_rate"] == 1.0 for r in full)


def test_alert_ids_do_not_depend_on_batching(tmp_path: Path) -> None:
    """Sampling is per event, so batch boundaries (worker vs replay) change nothing."""
    spec = StreamSpec(models=("m1",), events_per_model=6000, n_features=2,
                      drifts=(Drift(2500, "amount", 3.0),), seed=4)
    lines = list(generate(spec))
    cfg = parse_config({"models": [_rule(0.5)]})

    async def run(batch: int) -> list[str]:
        pipe = BatchPipeline(cfg, MemoryStore())
        ids: list[str] = []
        for k in range(0, len(lines), batch):
            raws = [RawRecord(v, Position("inference-events", 0, k + j))
                    for j, v in enumerate(lines[k:k + batch])]
            out = await pipe.run(raws)
            ids += [o.record.alert_id for o in out.records if o.record.type == "drift_alert"]
        return ids

    big, small = asyncio.run(run(3000)), asyncio.run(run(37))
    assert big and big == small


def test_labels_of_unsampled_predictions_are_left_out(tmp_path: Path) -> None:
    ls = labelled(LabelledSpec(model="m1", events=3000, concept_drift_at=1500, seed=2))
    rule = _rule(0.5, labels={"task": "classification"},
                 signals=[{"match": "performance:*", "detectors": ["adwin"]},
                          {"match": "*", "detectors": ["adwin"]}])
    cfg = parse_config({"models": [rule]})
    pipe = BatchPipeline(cfg, MemoryStore())
    topics = cfg.topics
    raws = [RawRecord(v, Position(topics.labels, 0, k)) for k, v in enumerate(ls.early)]
    raws += [RawRecord(v, Position(topics.inference, 0, k)) for k, v in enumerate(ls.inference)]
    raws += [RawRecord(v, Position(topics.labels, 0, len(ls.early) + k))
             for k, v in enumerate(ls.labels)]
    out = asyncio.run(pipe.run(raws))
    kept_predictions = sum(sampled(orjson.loads(v)["event_id"], 0.5) for v in ls.inference)
    all_labels = [orjson.loads(v)["event_id"] for v in ls.early + ls.labels]
    kept_labels = sum(sampled(i, 0.5) for i in all_labels)
    assert out.quality.sampled_out[("m1", "inference")] == len(ls.inference) - kept_predictions
    assert out.quality.sampled_out[("m1", "label")] == len(all_labels) - kept_labels
    assert out.labels == kept_labels
    # Every kept label of a kept prediction joined (missing/bogus ones excepted).
    assert out.pairs == sum(1 for i in all_labels if sampled(i, 0.5)
                            and i not in set(ls.bogus))


def test_notifications_carry_the_rate(tmp_path: Path) -> None:
    from stream_monitor.notify import notification_from_record

    spec = StreamSpec(models=("m1",), events_per_model=6000, n_features=2,
                      drifts=(Drift(2500, "amount", 3.0),), seed=11)
    records = _replay({"models": [_rule(0.5)]}, list(generate(spec)), tmp_path, "n")
    alert = next(r for r in records if r["type"] == "drift_alert")
    n = notification_from_record(alert)
    assert n is not None and n.details["sample_rate"] == "0.5"
