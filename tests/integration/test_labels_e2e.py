"""Delayed labels on the real Kafka and Redis (README "Delayed labels").

A classifier's inputs never change, but its error rate jumps from 10% to 40%: only the labels
show it. Labels arrive 20-80 events late and out of order; 50 arrive before their predictions,
every 25th prediction never gets one, 30 labels belong to no prediction, and 2 are malformed.
The worker joins them in Redis, the joined errors drift on `performance:error`, exactly one
retrain request follows, and every case is counted (Redis totals and /metrics).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
import redis as redis_sync
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stream_monitor.adapters.kafka_tools import consume, produce
from stream_monitor.contracts import Position, RawRecord, validate_record
from stream_monitor.contracts.output_records import DriftAlert, RetrainRequest
from stream_monitor.contracts.records import decode_label
from stream_monitor.contracts.units import unit_id
from stream_monitor.core.label_join import LabelBook, LabelOp
from stream_monitor.state.base import unit_key
from stream_monitor.synth import LabelledSpec, labelled

from ..helpers import free_port, http_get
from .conftest import committed

pytestmark = pytest.mark.integration

SPEC = LabelledSpec(model="churn-model", events=5000, concept_drift_at=2500)
TTL, BUCKET, CHUNK = 1000.0, 10.0, 500

CONFIG = {
    "windows": {"reference_size": 500, "recent_size": 200},
    # HDDM_A and ADWIN on the 0/1 errors: River's DDM and EDDM with their defaults raise false
    # alarms on this stationary 10% error stream (README "Delayed labels").
    "detectors": {"hddm_a": {"type": "hddm_a"}, "adwin": {"type": "adwin"},
                  "page_hinkley": {"type": "page_hinkley"}},
    "models": [{
        "match": "churn-*",
        "labels": {"task": "classification", "ttl_seconds": TTL, "bucket_seconds": BUCKET},
        "signals": [{"match": "performance:*", "detectors": ["hddm_a", "adwin"]},
                    {"match": "feature:*", "detectors": ["page_hinkley"]}],
        "retrain": {"min_drifted_signals": 2, "persistence": {"values": 100}},
    }],
}


def _phases(stream) -> list[tuple[str, list[bytes]]]:
    """Early labels; then per chunk of 500 events, the predictions, then the labels due by its
    end. Each phase is processed before the next is sent, so the join order is known."""
    phases = [("labels", stream.early)]
    times = [orjson.loads(v)["timestamp"] for v in stream.inference]
    labels = list(stream.labels)
    for c in range(0, len(stream.inference), CHUNK):
        phases.append(("inference", stream.inference[c:c + CHUNK]))
        end = times[min(c + CHUNK, len(times)) - 1]
        due = [v for v in labels if orjson.loads(v)["timestamp"] <= end + 0.5]
        labels = labels[len(due):] if due == labels[:len(due)] else [v for v in labels
                                                                     if v not in set(due)]
        phases.append(("labels", due))
    bad = [b'{"event_id": "x", "model_id": "churn-model"}', b"not json"]
    phases.append(("labels", [*labels, *bad]))
    return phases


def _expected_stats(phases) -> LabelBook:
    """The pure join run on the same operations in the same order: what Redis must hold."""
    book = LabelBook(SPEC.model)
    off = {"inference": 0, "labels": 0}
    for kind, values in phases:
        ops = []
        for v in values:
            pos = Position(kind, 0, off[kind])
            off[kind] += 1
            if kind == "inference":
                o = orjson.loads(v)
                ops.append(LabelOp("prediction", o["model_id"], o["event_id"], o["prediction"],
                                   o["timestamp"], kind, 0, pos.offset, o["model_version"]))
            else:
                lab = decode_label(RawRecord(v, pos))
                if hasattr(lab, "label"):
                    ops.append(LabelOp("label", lab.model_id, lab.event_id, lab.label,
                                       lab.event_time, kind, 0, pos.offset))
        book.apply(ops, ttl_seconds=TTL, bucket_seconds=BUCKET, cursors={})
    return book


def _replay(phases) -> tuple[list[str], list[str]]:
    """The same phases through the in-memory pipeline: the alert and request ids a worker must
    publish (each phase is consumed before the next is sent, so the join order is fixed)."""
    from stream_monitor.config import parse_config
    from stream_monitor.pipeline import BatchPipeline
    from stream_monitor.state.memory import MemoryStore

    async def go() -> tuple[list[str], list[str]]:
        pipe = BatchPipeline(parse_config(CONFIG), MemoryStore(), clock=time.time)
        off = {"inference": 0, "labels": 0}
        alerts, requests = [], []
        topics = pipe.config.topics
        for kind, values in phases:
            topic = topics.inference if kind == "inference" else topics.labels
            raws = []
            for v in values:
                raws.append(RawRecord(v, Position(topic, 0, off[kind])))
                off[kind] += 1
            for k in range(0, len(raws), 700):
                out = await pipe.run(raws[k:k + 700])
                await pipe.store.clear_outbox(out.outbox)
                alerts += [r.record.alert_id for r in out.records
                           if isinstance(r.record, DriftAlert)]
                requests += [r.record.request_id for r in out.records
                             if isinstance(r.record, RetrainRequest)]
        return alerts, requests

    return asyncio.run(go())


def _send_phases(kafka_bootstrap, unique, phases, next_worker) -> dict[str, int]:
    """Send phase after phase, each once the worker has committed the one before. A worker that
    died (a failpoint) is replaced by ``next_worker()``."""
    sent = {"inference": 0, "labels": 0}
    worker = next_worker()
    for kind, values in phases:
        if not values:
            continue
        topic = unique.topics[kind]
        asyncio.run(produce(kafka_bootstrap, topic, [(SPEC.model.encode(), v) for v in values]))
        sent[kind] += len(values)
        deadline = time.monotonic() + 180
        while asyncio.run(committed(kafka_bootstrap, unique.app_id, topic)) < sent[kind]:
            if worker.proc.poll() is not None:
                worker = next_worker()
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.3)
    return sent


def test_concept_drift_through_late_out_of_order_labels(kafka_bootstrap, redis_url, unique,
                                                        start_worker, tmp_path: Path) -> None:
    stream = labelled(SPEC)
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    port = free_port()
    worker = start_worker(config, unique, SM_METRICS_PORT=str(port),
                          SM_METRICS_HOST="127.0.0.1")
    phases = _phases(stream)
    sent = _send_phases(kafka_bootstrap, unique, phases, lambda: worker)
    assert asyncio.run(committed(kafka_bootstrap, unique.app_id, unique.topics["labels"])) == \
        sent["labels"]

    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["alerts"], unique.topics["retrain"],
                                                 unique.topics["dead_letter"]],
                               timeout=30, idle=4))
    by_topic: dict[str, list[dict]] = {}
    for m in msgs:
        rec = orjson.loads(m.value)
        validate_record(rec)
        by_topic.setdefault(m.topic, []).append(rec)
    alerts = by_topic.get(unique.topics["alerts"], [])
    requests = by_topic.get(unique.topics["retrain"], [])
    dead = by_topic.get(unique.topics["dead_letter"], [])

    # The concept drift shows on the performance signal only, soon after its labels arrive.
    assert {a["signal"] for a in alerts} == {"performance:error"}, alerts
    first = alerts[0]
    at = first["detected_at"]
    assert at["topic"] == unique.topics["labels"]
    drift_index = int(at["event_id"].rsplit("-", 1)[1])
    assert SPEC.concept_drift_at <= drift_index < SPEC.concept_drift_at + 400
    assert first["evidence"]["current"]["mean"] > first["evidence"]["reference"]["mean"] + 0.15
    [req] = requests
    assert req["rule"]["name"] == "performance_signal"
    assert req["alert_ids"][0] == first["alert_id"]
    assert sorted(d["reason_code"] for d in dead) == ["missing_field", "undecodable"]
    # Exactly the alerts and the request the in-memory replay of the same records gives.
    assert ([a["alert_id"] for a in alerts], [r["request_id"] for r in requests]) == \
        _replay(phases)
    assert all(d["source"]["topic"] == unique.topics["labels"] for d in dead)

    # Every case counted, exactly as the pure join counts the same operations.
    want = _expected_stats(phases).stats
    assert want.labels_before_prediction == SPEC.early_labels
    assert want.unmatched_labels == SPEC.bogus_labels
    assert 0 < want.expired_predictions <= len(stream.missing)
    samples = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        if samples.get(("stream_monitor_label_join_records",
                        (("model", SPEC.model), ("outcome", "labels")))) == want.labels:
            break
        time.sleep(0.5)
    for outcome in ("predictions", "labels", "joined", "labels_before_prediction",
                    "unmatched_labels", "expired_predictions"):
        got = samples.get(("stream_monitor_label_join_records",
                           (("model", SPEC.model), ("outcome", outcome))))
        assert got == getattr(want, outcome), outcome
    assert samples[("stream_monitor_label_coverage_ratio", (("model", SPEC.model),))] == \
        pytest.approx(want.coverage)
    assert samples[("stream_monitor_label_pairs_total", (("model", SPEC.model),))] == want.joined
    delays = samples[("stream_monitor_label_delay_seconds_sum", (("model", SPEC.model),))]
    assert delays == pytest.approx(want.delay_sum)
    assert samples[("stream_monitor_labels_total", (("model", SPEC.model),))] == \
        sent["labels"] - 2
    # Consumed pairs leave the Redis log (it keeps at most the last batch's until the next).
    r = redis_sync.Redis.from_url(redis_url)
    assert r.hlen(f"{unique.prefix}:{{{SPEC.model}}}:pairs:v:{SPEC.model_version}") < 600


def test_labels_survive_kills_between_join_and_save(kafka_bootstrap, redis_url, unique,
                                                    start_worker, tmp_path: Path) -> None:
    """SIGKILL after the label join and before the state save (twice), and after a save before
    the publish: the restarted workers publish the same alerts and request as the replay, feed
    every joined pair exactly once, and count the same totals."""
    stream = labelled(SPEC)
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    phases = _phases(stream)
    kills = iter(["after_join:2", "after_join:3", "after_save:2"])
    started: list[str] = []

    def next_worker():
        point = next(kills, None)
        started.append(point or "none")
        return start_worker(config, unique, **({"SM_FAILPOINT": point} if point else {}))

    _send_phases(kafka_bootstrap, unique, phases, next_worker)
    assert started == ["after_join:2", "after_join:3", "after_save:2", "none"]
    msgs = asyncio.run(consume(kafka_bootstrap, [unique.topics["alerts"], unique.topics["retrain"]],
                               timeout=30, idle=4))
    alerts: dict[str, dict] = {}
    requests: dict[str, dict] = {}
    for m in msgs:
        rec = orjson.loads(m.value)
        if rec["type"] == "drift_alert":
            alerts.setdefault(rec["alert_id"], rec)
        elif rec["type"] == "retrain_request":
            requests.setdefault(rec["request_id"], rec)
    want_alerts, want_requests = _replay(phases)
    assert (list(alerts), list(requests)) == (want_alerts, want_requests)
    want = _expected_stats(phases).stats
    r = redis_sync.Redis.from_url(redis_url)
    base = unit_key(unique.prefix, unit_id(SPEC.model, SPEC.model_version))
    perf = orjson.loads(r.get(base + ":sig:performance:error"))
    assert perf["n"] == want.joined  # every joined pair fed once, none twice
    stats = {k.decode(): float(v) for k, v in
             r.hgetall(f"{unique.prefix}:{{{SPEC.model}}}:labels:stats").items()}
    for f in ("predictions", "labels", "joined", "labels_before_prediction",
              "unmatched_labels", "expired_predictions"):
        assert stats[f] == getattr(want, f), f
