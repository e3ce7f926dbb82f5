"""Delayed labels on the real Kafka and Redis (README "Delayed labels").

A classifier's inputs never change, but its error rate jumps from 10% to 40%: only the labels
show it. Labels arrive 20-80 events late and out of order; 50 arrive before their predictions,
every 25th prediction never gets one, 30 labels belong to no prediction, and 2 are malformed.
The worker joins them in Redis, the joined errors drift on `performance:error`, exactly one
retrain request follows, and every case is counted (Redis totals and /metrics).
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stream_monitor.adapters.kafka_io import consume, produce
from stream_monitor.contracts import Position, RawRecord, validate_record
from stream_monitor.contracts.records import decode_label
from stream_monitor.core.labels import LabelBook, LabelOp
from stream_monitor.synth import LabelledSpec, labelled

from .conftest import committed, wait_committed

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    phases.append(("labels", labels + [b'{"event_id": "x", "model_id": "churn-model"}',
                                       b"not json"]))
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


def test_concept_drift_through_late_out_of_order_labels(kafka_bootstrap, redis_url, unique,
                                                        start_worker, tmp_path: Path) -> None:
    stream = labelled(SPEC)
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    port = _free_port()
    worker = start_worker(config, unique, SM_METRICS_PORT=str(port),
                          SM_METRICS_HOST="127.0.0.1")
    phases = _phases(stream)
    sent = {"inference": 0, "labels": 0}
    for kind, values in phases:
        if not values:
            continue
        topic = unique.topics[kind]
        asyncio.run(produce(kafka_bootstrap, topic, [(SPEC.model.encode(), v) for v in values]))
        sent[kind] += len(values)
        wait_committed(kafka_bootstrap, unique.app_id, topic, sent[kind], worker)
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
    assert all(d["source"]["topic"] == unique.topics["labels"] for d in dead)

    # Every case counted, exactly as the pure join counts the same operations.
    want = _expected_stats(phases).stats
    assert want.labels_before_prediction == SPEC.early_labels
    assert want.unmatched_labels == SPEC.bogus_labels
    assert 0 < want.expired_predictions <= len(stream.missing)
    samples = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
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
