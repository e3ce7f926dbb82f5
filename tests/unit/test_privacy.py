"""Privacy controls (config `privacy` and `metrics`): with `none` evidence and `hash` dead
letters, no raw input value appears in the outputs, the logs or /metrics.

The search is for the input values themselves, as they appear in the input (each feature and
prediction value, and the payload of the malformed records), as whole tokens. With `full` the
same search finds them (min and max of a window are input values; dead letters quote the
record), so the search can fail.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_monitor.adapters.replay import iter_file
from stream_monitor.config import parse_config
from stream_monitor.contracts import validate_record
from stream_monitor.contracts.output_records import DetectorRef, DriftResolved, EventRef
from stream_monitor.core.privacy import redact_record
from stream_monitor.observability import WorkerMetrics
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.state.memory import MemoryStore
from stream_monitor.synth import Drift, StreamSpec, generate

pytestmark = pytest.mark.security

BAD = [b"customer 4111-1111-1111-1111 ssn 123-45-6789 not json",
       b'{"event_id": "secret-evt-0077", "features": {"amount": 31337.424242}}',
       b'{"event_id": "x-9", "model_id": "credit-risk", "timestamp": "not-a-time-2718281",'
       b' "features": {"amount": 1.5}}']
BAD_TOKENS = ["4111-1111-1111-1111", "123-45-6789", "secret-evt-0077", "31337.424242",
              "not-a-time-2718281"]

CONFIG: dict[str, Any] = {
    "windows": {"reference_size": 300, "recent_size": 200, "evidence_size": 30},
    "models": [{"match": "credit-*",
                "signals": [{"match": "*", "detectors": ["adwin", "page_hinkley"]}],
                "retrain": {"min_drifted_signals": 2, "within_seconds": 600},
                "alerts": {"resolve_values": 50, "hold_seconds": 0}}],
}


def _events(tmp_path: Path) -> tuple[Path, list[str]]:
    spec = StreamSpec(models=("credit-risk",), events_per_model=2400, seed=5,
                      drifts=(Drift(1200, "amount", 1.5), Drift(1200, "utilization", -1.5)))
    lines = list(generate(spec))
    values: set[str] = set()
    for line in lines:
        ev = orjson.loads(line)
        values |= {repr(v) for v in ev["features"].values()}
        values.add(repr(ev["prediction"]))
    lines[50:50] = BAD
    p = tmp_path / "events.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    # Only values distinctive enough to be found by chance nowhere else (6+ digits).
    return p, sorted(v for v in values if len(v.replace(".", "").lstrip("-0")) >= 6)


def _run(cfg: dict[str, Any], events: Path) -> tuple[list[Any], BatchPipeline]:
    pipeline = BatchPipeline(parse_config(cfg), MemoryStore())
    records: list[Any] = []

    async def go() -> None:
        for raws in iter_file(events, 500):
            res = await pipeline.run(raws)
            records.extend(res.records)
            await pipeline.store.clear_outbox(res.outbox)

    asyncio.run(go())
    return records, pipeline


def _text(records: list[Any]) -> str:
    parts = []
    for r in records:
        parts.append(r.value.decode("utf-8", "replace"))
        parts.append((r.key or b"").decode("utf-8", "replace"))
        parts += [v.decode("utf-8", "replace") for _, v in r.headers]
    return "\n".join(parts)


def _found(text: str, tokens: list[str]) -> list[str]:
    pattern = re.compile(r"(?<![\d.])(" + "|".join(re.escape(t) for t in tokens) + r")(?![\d])")
    return sorted(set(pattern.findall(text)))


def _metrics_text(pipeline: BatchPipeline, records: list[Any], cfg: dict[str, Any]) -> str:
    rule = parse_config(cfg).metrics
    m = WorkerMetrics(CollectorRegistry(), signal_gauges=rule.signal_gauges,
                      signals=rule.signals)
    alerts = [r.record for r in records if r.record.type == "drift_alert"]
    m.observe_batch({"credit-risk": 2400}, {"undecodable": 1}, 0.1, alerts=alerts)
    m.observe_models(pipeline.state.models.values())
    return generate_latest(m.registry).decode()


@pytest.mark.parametrize("level", ["none", "aggregate"])
def test_no_raw_value_leaves_with_none_evidence_and_hashed_dead_letters(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, level: str) -> None:
    events, values = _events(tmp_path)
    assert len(values) > 10_000
    cfg = {**CONFIG, "privacy": {"alert_evidence": level, "dead_letter_payload": "hash"},
           "metrics": {"signal_gauges": False, "signals": ["prediction", "feature:amount"]}}
    with caplog.at_level(logging.DEBUG):
        records, pipeline = _run(cfg, events)
    kinds = [r.record.type for r in records]
    assert kinds.count("drift_alert") >= 2 and "retrain_request" in kinds
    assert kinds.count("dead_letter") == len(BAD)
    for r in records:
        validate_record(r.record)
    out = _text(records)
    logs = "\n".join(rec.getMessage() for rec in caplog.records)
    metrics = _metrics_text(pipeline, records, cfg)
    for where, text in (("outputs", out), ("logs", logs), ("/metrics", metrics)):
        assert _found(text, values) == [], where
        assert _found(text, BAD_TOKENS) == [], where
    for r in records:
        rec = r.record
        if rec.type == "drift_alert":
            ev = rec.evidence
            if level == "none":
                assert set(ev) == {"mean_shift_in_reference_std"}
            else:
                assert {k: set(ev[k]) for k in ("reference", "current", "recent")} == {
                    k: {"count", "mean", "std"} for k in ("reference", "current", "recent")}
        if rec.type == "dead_letter":
            v = rec.original["value"]
            assert v["data"] == "" and v["truncated"] and len(v["sha256"]) == 64
    # The metrics show no statistic of any signal, and label only the allowed signals.
    assert not re.search(r"^stream_monitor_signal_(mean|window_values)\{", metrics, re.M)
    labels = set(re.findall(r'signal="([^"]+)"', metrics))
    assert labels <= {"prediction", "feature:amount", "other"} and "other" in labels


def test_full_evidence_and_dead_letters_do_show_input_values(tmp_path: Path) -> None:
    """The control: the same search finds raw values when privacy is off (the default)."""
    events, values = _events(tmp_path)
    records, pipeline = _run(CONFIG, events)
    out = _text(records)
    assert len(_found(out, values)) >= 4  # min and max of windows are input values
    assert set(_found(out, BAD_TOKENS)) >= {"123-45-6789", "secret-evt-0077"}
    metrics = _metrics_text(pipeline, records, CONFIG)
    assert 'stream_monitor_signal_mean{model="credit-risk",signal="feature:amount"' in metrics


def test_truncated_dead_letters_keep_only_a_head(tmp_path: Path) -> None:
    events, _ = _events(tmp_path)
    cfg = {**CONFIG, "privacy": {"dead_letter_payload": "truncated",
                                 "dead_letter_truncated_bytes": 8}}
    records, _ = _run(cfg, events)
    dead = [r.record for r in records if r.record.type == "dead_letter"]
    assert [d.original["value"]["data"] for d in dead] == [b.decode()[:8] for b in BAD]
    assert all(d.original["value"]["length"] == len(b) for d, b in zip(dead, BAD, strict=True))


@pytest.mark.parametrize("payload", ["hash", "full"])
def test_an_internal_error_dead_letter_keeps_the_privacy_setting(payload: str) -> None:
    """An event the core raised on is dead-lettered by the worker, not the batch: with
    `hash` it still carries neither the record's bytes nor its key (with `full` it does, so
    the check can fail)."""
    from stream_monitor.adapters.worker import _internal_error
    from stream_monitor.contracts.records import Position, RawRecord

    plan = parse_config({**CONFIG, "privacy": {"dead_letter_payload": payload}})
    raw = RawRecord(BAD[1], Position("inference-events", 0, 7), b"secret-key-42")
    out = _internal_error(plan, raw)
    (rec,) = out.records
    text = _text([rec])
    leaked = _found(text, ["secret-evt-0077", "31337.424242", "secret-key-42"])
    assert rec.record.reason_code == "internal_error"
    assert dict(rec.headers)["reason-code"] == b"internal_error"
    assert leaked == ([] if payload == "hash" else ["31337.424242", "secret-evt-0077",
                                                    "secret-key-42"])


def test_privacy_config_is_validated() -> None:
    from stream_monitor.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({**CONFIG, "privacy": {"alert_evidence": "some"}})
    assert "privacy.alert_evidence" in str(info.value)


def test_a_resolution_keeps_its_count_and_shift_without_the_reference_mean() -> None:
    rec = DriftResolved(
        resolution_id="r", fingerprint="f", model_id="m", model_version=None,
        signal="feature:x", detector=DetectorRef("cusum", "cusum"), alert_id="a1", fired_at="t",
        resolved_at=EventRef("e", "t", 0, 90, "t", 1), folded_alerts=0,
        rule={"resolve_max_shift": 0.5},
        evidence={"reference": {"mean": 1.0, "std": 0.5}, "current": {"mean": 1.1, "count": 50},
                  "mean_shift_in_reference_std": 0.2},
        summary="m feature:x: back within 0.5 reference std of the reference mean 1 ...",
        sample_rate=1.0)
    assert redact_record(rec, "aggregate") == rec  # no min, max or quantiles to cut
    none = redact_record(rec, "none")
    assert none.evidence == {"current": {"count": 50}, "mean_shift_in_reference_std": 0.2}
    assert none.summary == ("m feature:x: back within 0.5 reference std of the reference "
                               "mean (+0.20 std over the last 50 values); resolved at offset 90")
    assert rec.evidence["reference"] == {"mean": 1.0, "std": 0.5}  # the input is unchanged
