"""Class probabilities (issue 21 items 1 and 2): decoding and its dead-letter reasons in every
input format, the plan's option, the signals they feed, the calibration and the
confidence-based performance estimate (core/probabilities.py, docs/probabilities.md)."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import fastavro
import numpy as np
import orjson
import pytest

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position, RawRecord, validate_record
from stream_monitor.contracts.output_records import encode_record
from stream_monitor.contracts.proto import message_class, message_to_obj
from stream_monitor.contracts.records import REASON_CODES, DeadLetter, decode_inference
from stream_monitor.contracts.schemas import load_schema
from stream_monitor.contracts.wire import Framed, decode_payload, parse_schema
from stream_monitor.core.gate import EventGate, QualityCounters
from stream_monitor.core.model_state import MonitorState
from stream_monitor.core.monitor import Monitor
from stream_monitor.core.probabilities import (
    CALIBRATED_LR,
    EstimateState,
    arg_max,
    calibrate,
    fit_logistic,
    gap_score,
    uniform_of,
)
from stream_monitor.errors import ConfigError
from stream_monitor.synth import classifier_stream

from ..helpers import by_type, pipeline_outputs

POS = Position("t", 0, 1)


def _event(probabilities: Any, **extra: Any) -> bytes:
    return orjson.dumps({"event_id": "e1", "model_id": "m", "features": {"x": 1.0},
                         "prediction": "a", "probabilities": probabilities, **extra})


def _decode(value: bytes) -> InferenceEvent | DeadLetter:
    return decode_inference(RawRecord(value, POS))


# -- decoding -----------------------------------------------------------------------------------

def test_a_valid_map_is_read_as_floats() -> None:
    ev = _decode(_event({"a": 0.7, "b": 0.3}))
    assert isinstance(ev, InferenceEvent)
    assert ev.probabilities == {"a": 0.7, "b": 0.3}
    ev = _decode(_event({"a": 1, "b": 0}))  # integers are numbers
    assert isinstance(ev, InferenceEvent) and ev.probabilities == {"a": 1.0, "b": 0.0}
    assert all(type(v) is float for v in ev.probabilities.values())


@pytest.mark.parametrize("value", [None, {}])
def test_null_or_empty_is_absent(value: Any) -> None:
    ev = _decode(_event(value))
    assert isinstance(ev, InferenceEvent) and ev.probabilities is None
    ev = _decode(orjson.dumps({"event_id": "e", "model_id": "m", "features": {},
                               "prediction": 1}))
    assert isinstance(ev, InferenceEvent) and ev.probabilities is None


@pytest.mark.parametrize(("raw", "code"), [
    (_event({"a": "0.5", "b": 0.5}), "probability_not_numeric"),
    (_event({"a": True, "b": 0.0}), "probability_not_numeric"),
    (_event({"a": None, "b": 1.0}), "probability_not_numeric"),
    (_event([0.5, 0.5]), "probability_not_numeric"),
    (_event("a"), "probability_not_numeric"),
    (b'{"event_id":"e","model_id":"m","features":{},"prediction":"a",'
     b'"probabilities":{"a":NaN,"b":0.5}}', "probability_not_numeric"),
    (_event({"a": -0.1, "b": 1.1}), "probability_out_of_range"),
    (_event({"a": 1.5, "b": -0.5}), "probability_out_of_range"),
    (_event({"a": 0.5, "b": 0.6}), "probabilities_not_normalized"),
    (_event({"a": 0.3, "b": 0.3}), "probabilities_not_normalized"),
    (_event({"a": 0.98}), "probabilities_not_normalized"),
])
def test_invalid_maps_are_dead_letters_with_their_reason(raw: bytes, code: str) -> None:
    dl = _decode(raw)
    assert isinstance(dl, DeadLetter), raw
    assert dl.reason_code == code, dl.reason
    assert code in REASON_CODES
    assert code in load_schema("dead-letter")["properties"]["reason_code"]["enum"]


def test_the_sum_tolerance_accepts_rounding() -> None:
    assert isinstance(_decode(_event({"a": 0.3333, "b": 0.3333, "c": 0.3333})), InferenceEvent)
    assert isinstance(_decode(_event({"a": 0.995})), InferenceEvent)  # within 0.01


def test_too_many_classes_is_the_gates_cap() -> None:
    cfg = parse_config({"quality": {"max_classes_per_event": 3},
                        "models": [{"match": "*", "signals": [{"match": "*",
                                                                "detectors": ["adwin"]}]}]})
    gate = EventGate(cfg)
    ok = RawRecord(_event({"a": 0.5, "b": 0.25, "c": 0.25}), POS)
    many = RawRecord(_event({c: 0.25 for c in "abcd"}), Position("t", 0, 2))
    events, dead = gate.admit([ok, many], 0.0, QualityCounters())
    assert [e.event_id for e in events] == ["e1"]
    assert [d.reason_code for d in dead] == ["too_many_classes"]
    assert "max_classes_per_event = 3" in dead[0].reason
    assert "too_many_classes" in load_schema("dead-letter")["properties"]["reason_code"]["enum"]


def test_the_json_schema_takes_what_the_decoder_takes() -> None:
    import jsonschema

    schema = load_schema("inference-event")
    good = orjson.loads(_event({"a": 0.25, "b": 0.75}))
    jsonschema.validate(good, schema)
    bad = orjson.loads(_event({"a": 1.5, "b": -0.5}))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# -- registry formats ---------------------------------------------------------------------------

def _avro_payload(record: dict[str, Any]) -> tuple[Any, bytes]:
    from pathlib import Path

    import stream_monitor.contracts as contracts

    avsc = (Path(contracts.__file__).parent / "schemas" / "inference-event.avsc").read_text()
    schema = parse_schema("avro", "AVRO", avsc)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(orjson.loads(avsc)), record)
    return schema, buf.getvalue()


def _registry_decode(obj: Any) -> InferenceEvent | DeadLetter:
    return decode_inference(RawRecord(b"\x00framed", POS, decoded=obj))


def test_avro_events_carry_probabilities_and_their_checks() -> None:
    base = {"event_id": "e1", "model_id": "m", "features": {"x": 1.0}, "prediction": "a"}
    for probs, want in (({"a": 0.6, "b": 0.4}, {"a": 0.6, "b": 0.4}), (None, None)):
        schema, payload = _avro_payload({**base, "probabilities": probs})
        obj = decode_payload(schema, Framed(1, (), payload))
        ev = _registry_decode(obj)
        assert isinstance(ev, InferenceEvent) and ev.probabilities == want
    schema, payload = _avro_payload({**base})  # written without the field: its default
    ev = _registry_decode(decode_payload(schema, Framed(1, (), payload)))
    assert isinstance(ev, InferenceEvent) and ev.probabilities is None
    schema, payload = _avro_payload({**base, "probabilities": {"a": 0.9, "b": 0.9}})
    dl = _registry_decode(decode_payload(schema, Framed(1, (), payload)))
    assert isinstance(dl, DeadLetter) and dl.reason_code == "probabilities_not_normalized"


def test_protobuf_events_carry_probabilities_and_their_checks() -> None:
    msg = message_class("InferenceEvent")(event_id="e1", model_id="m")
    msg.prediction.text = "a"
    msg.probabilities["a"] = 0.25
    msg.probabilities["b"] = 0.75
    ev = _registry_decode(message_to_obj(msg))
    assert isinstance(ev, InferenceEvent) and ev.probabilities == {"a": 0.25, "b": 0.75}
    msg.ClearField("probabilities")  # unset: none
    ev = _registry_decode(message_to_obj(msg))
    assert isinstance(ev, InferenceEvent) and ev.probabilities is None
    msg.probabilities["a"] = -0.5
    msg.probabilities["b"] = 1.5
    dl = _registry_decode(message_to_obj(msg))
    assert isinstance(dl, DeadLetter) and dl.reason_code == "probability_out_of_range"
    msg.probabilities["a"] = math.nan
    msg.probabilities["b"] = 0.5
    dl = _registry_decode(message_to_obj(msg))
    assert isinstance(dl, DeadLetter) and dl.reason_code == "probability_not_numeric"


def test_json_schema_format_events_are_checked_by_the_decoder_too() -> None:
    # A producer's own JSON Schema may allow anything: the decoder's checks still apply.
    schema = parse_schema("json_schema", "JSON", '{"type": "object"}')
    for probs, code in (({"a": 0.5, "b": 0.5}, None), ({"a": 0.5, "b": 0.2},
                                                        "probabilities_not_normalized")):
        payload = orjson.dumps({"event_id": "e1", "model_id": "m", "features": {},
                                "prediction": "a", "probabilities": probs})
        got = _registry_decode(decode_payload(schema, Framed(1, (), payload)))
        if code is None:
            assert isinstance(got, InferenceEvent) and got.probabilities == probs
        else:
            assert isinstance(got, DeadLetter) and got.reason_code == code


def test_a_field_mapping_can_name_where_the_probabilities_are() -> None:
    cfg = parse_config({"input": {"inference": {"fields": {"probabilities": "out.probs"}}},
                        "models": [{"match": "*", "signals": [{"match": "*",
                                                                "detectors": ["adwin"]}]}]})
    raw = RawRecord(orjson.dumps({"event_id": "e", "model_id": "m", "features": {},
                                  "prediction": "a", "out": {"probs": {"a": 1.0}}}), POS)
    events, dead = EventGate(cfg).admit([raw], 0.0, QualityCounters())
    assert not dead and events[0].probabilities == {"a": 1.0}


# -- the plan -----------------------------------------------------------------------------------

RULE = {"match": "m", "signals": [{"match": "feature:*", "detectors": ["adwin"]}]}


def test_defaults_and_off() -> None:
    cfg = parse_config({"models": [RULE]})
    pp = cfg.models[0].probabilities
    assert pp is not None
    assert set(cfg.detectors) == {"adwin", "page_hinkley"}  # the config's, no more
    assert pp.detector.type == "cusum" and pp.default_rule.detectors == (pp.detector.name,)
    assert cfg.detector(pp.detector.name, cfg.models[0]) is pp.detector
    assert (pp.classes, pp.confidence, pp.class_mix, pp.estimate) == (True, True, True, True)
    assert pp.max_classes == 20 and pp.calibration_size == 1000
    assert pp.default_rule.budget is not None  # a calibrated cusum under the default budget
    off = parse_config({"models": [{**RULE, "probabilities": None}]}).models[0]
    assert off.probabilities is None
    assert off.signal_rule("confidence") is None


def test_a_signal_rule_that_names_a_probability_signal_wins() -> None:
    cfg = parse_config({"models": [{"match": "m", "signals": [
        {"match": "confidence", "detectors": ["page_hinkley"]},
        {"match": "feature:*", "detectors": ["adwin"]}]}]})
    rule = cfg.models[0]
    conf = rule.signal_rule("confidence")
    assert conf is not None and conf.detectors == ("page_hinkley",)
    other = rule.signal_rule("probability:a")
    assert rule.probabilities is not None and other is rule.probabilities.default_rule
    assert rule.signal_rule("feature:unknown") is not None
    assert rule.signal_rule("unrelated") is None


@pytest.mark.parametrize(("value", "field"), [
    ({"max_classes": 0}, "max_classes"),
    ({"calibration_size": 5}, "calibration_size"),
    ({"estimate": "maybe"}, "estimate"),
    ({"clases": True}, "clases"),
])
def test_bad_values_fail_naming_the_field(value: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"models": [{**RULE, "probabilities": value}]})
    assert f"models[0].probabilities.{field}" in str(exc.value)


# -- signals ------------------------------------------------------------------------------------

CONFIG = {"windows": {"reference_size": 200, "reference_min_size": 0, "recent_size": 100},
          "false_alarm_budget": {"per_events": 100000},
          "models": [{"match": "m", "signals": [{"match": "feature:*", "detectors": ["adwin"]},
                                                 {"match": "prediction",
                                                  "detectors": ["adwin"]}]}]}


def _events(n: int, shift_at: int, *, classes: int = 3, numeric: bool = False,
            seed: int = 3) -> list[InferenceEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        w = [rng.random() + (3.0 if (i >= shift_at and c == 0) else 0.0) for c in range(classes)]
        s = sum(w)
        probs = {f"k{c}": v / s for c, v in enumerate(w)}
        top = max(probs, key=probs.__getitem__)
        out.append(InferenceEvent(f"e{i}", "m", {"x": rng.gauss(0, 1)},
                                  float(top[1:]) if numeric else top, Position("t", 0, i),
                                  probabilities=probs))
    return out


def test_each_class_the_confidence_and_the_class_mix_are_signals() -> None:
    mon, state = Monitor(parse_config(CONFIG)), MonitorState()
    out = mon.process(_events(1200, 800, numeric=True), state)
    sigs = set(state.models["m"].signals)
    assert {"probability:k0", "probability:k1", "probability:k2", "confidence",
            "predicted_class"} <= sigs
    assert state.models["m"].signals["predicted_class"].table is not None  # categorical
    fired = {a.signal for a in out.alerts}
    assert {"probability:k0", "confidence", "predicted_class"} <= fired
    assert min(a.detected_at.offset for a in out.alerts) >= 800  # none before the change
    for a in out.alerts:
        validate_record(orjson.loads(encode_record(a)))  # the drift-alert schema names them
        if a.signal in ("feature:x", "prediction"):
            continue
        assert a.detector.type in ("cusum", "multinomial_cusum")
        assert a.evidence["calibration"] is not None  # under the budget


def test_a_class_label_prediction_is_the_class_mix() -> None:
    mon, state = Monitor(parse_config(CONFIG)), MonitorState()
    mon.process(_events(300, 10_000), state)
    sigs = state.models["m"].signals
    assert "predicted_class" not in sigs and sigs["prediction"].table is not None


def test_classes_beyond_the_cap_get_no_signal_also_after_a_reload() -> None:
    cfg = parse_config({**CONFIG, "models": [{**CONFIG["models"][0],
                                             "probabilities": {"max_classes": 2}}]})
    mon, state = Monitor(cfg), MonitorState()
    evs = _events(400, 10_000, classes=5)
    mon.process(evs[:200], state)
    classes = sorted(s for s in state.models["m"].signals if s.startswith("probability:"))
    assert classes == ["probability:k0", "probability:k1"]
    # A fresh worker (empty caches) restored from the saved meta decides the same.
    model = state.models["m"]
    model.by_class.clear()
    mon.process(evs[200:], state)
    assert sorted(s for s in state.models["m"].signals
                  if s.startswith("probability:")) == classes


def test_parts_off_feed_nothing() -> None:
    cfg = parse_config({**CONFIG, "models": [{**CONFIG["models"][0], "probabilities": {
        "classes": False, "confidence": False, "class_mix": False, "estimate": False}}]})
    mon, state = Monitor(cfg), MonitorState()
    mon.process(_events(300, 10_000, numeric=True), state)
    assert set(state.models["m"].signals) == {"feature:x", "prediction"}
    assert state.models["m"].estimate is None


def test_probability_events_are_the_same_on_the_batch_path() -> None:
    cfg = parse_config(CONFIG)
    evs = _events(1500, 900, numeric=True)

    def run(vectorised: bool) -> list[tuple[str, int, str]]:
        mon, state = Monitor(cfg), MonitorState()
        mon.vectorised = vectorised
        got = []
        for lo in range(0, len(evs), 300):
            got += [(a.signal, a.detected_at.offset, a.alert_id)
                    for a in mon.process(evs[lo:lo + 300], state).alerts]
        return got

    assert run(True) == run(False)


# -- calibration --------------------------------------------------------------------------------

def test_the_logistic_fit_recovers_a_known_recalibration() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.34, 1.0, 20_000)
    z = 2.0 * np.log(conf / (1 - conf)) - 0.5  # over-confident at the top, under at the bottom
    correct = (rng.random(20_000) < 1 / (1 + np.exp(-z))).astype(float)
    cal, lr = fit_logistic(conf.tolist(), correct.tolist())
    assert abs(cal.a - 2.0) < 0.1 and abs(cal.b + 0.5) < 0.1 and lr > CALIBRATED_LR
    for c in (0.5, 0.7, 0.9):
        want = 1 / (1 + math.exp(-(2.0 * math.log(c / (1 - c)) - 0.5)))
        assert abs(cal(c) - want) < 0.02


def test_a_calibrated_model_keeps_its_confidence_a_miscalibrated_one_is_fitted() -> None:
    rng = np.random.default_rng(4)
    conf = rng.uniform(0.34, 1.0, 1000)
    calibrated = calibrate(conf.tolist(), (rng.random(1000) < conf).astype(float).tolist())
    assert calibrated.identity and calibrated(0.61) == 0.61
    over = calibrate(conf.tolist(), (rng.random(1000) < conf ** 3).astype(float).tolist())
    assert not over.identity and over(0.9) < 0.85  # fitted: over-confident at the top
    rejected = sum(fit_logistic(conf.tolist(), (rng.random(1000) < conf).astype(float).tolist())[1]
                   >= CALIBRATED_LR for _ in range(200))
    assert rejected <= 8  # the test's 1% level: about 2 of 200 calibrated references


def test_the_gap_score_is_standard_normal_when_the_estimate_holds() -> None:
    rng = np.random.default_rng(1)
    for e in (0.02, 0.2, 0.5):
        errs = rng.random(20_000) < e
        scores = np.array([gap_score(float(err), e, rng.random()) for err in errs])
        assert abs(scores.mean()) < 0.03 and abs(scores.std() - 1.0) < 0.03, e
    # errors twice as frequent as estimated push it up
    errs = rng.random(5000) < 0.4
    assert np.mean([gap_score(float(err), 0.2, rng.random()) for err in errs]) > 0.2


def test_uniform_of_is_uniform_and_deterministic() -> None:
    us = [uniform_of(f"e{i}") for i in range(20_000)]
    assert abs(np.mean(us) - 0.5) < 0.01 and min(us) > 0 and max(us) < 1
    assert uniform_of("x") == uniform_of("x")


def test_arg_max_takes_the_first_of_equals() -> None:
    assert arg_max({"a": 0.5, "b": 0.5}) == ("a", 0.5)


def test_estimate_state_round_trips_its_meta() -> None:
    est = EstimateState(calibration_size=50, window=20)
    rng = random.Random(2)
    for i in range(120):
        c = rng.uniform(0.4, 1.0)
        est.label(c, float(rng.random() > c), uniform_of(str(i)))
    assert est.calibration is not None and len(est.recent) == 20
    back = EstimateState(50, 20)
    back.restore(orjson.loads(orjson.dumps(est.meta())))
    assert back.meta() == est.meta() and back.summary() == est.summary()


# -- the estimate -------------------------------------------------------------------------------

EST_CONFIG = {"windows": {"reference_size": 1000, "recent_size": 2000},
              "false_alarm_budget": {"per_events": 100000},
              "models": [{"match": "clf-*", "signals": [{"match": "feature:*",
                                                         "detectors": ["adwin"]}]}]}


def _inference(evs: list[dict[str, Any]]) -> list[InferenceEvent]:
    return [InferenceEvent(e["event_id"], e["model_id"], e["features"], e["prediction"],
                           Position("t", 0, i), timestamp=e["timestamp"], label=e.get("label"),
                           probabilities=e["probabilities"]) for i, e in enumerate(evs)]


def test_the_estimate_tracks_accuracy_under_covariate_shift() -> None:
    """A calibrated classifier, its inputs moved towards the class boundaries: the estimate
    (calibrated on the first 1,000 labelled events) is within 0.02 of the realized error after
    the shift, the estimated error rises and alerts, and the estimate is not called wrong."""
    evs = classifier_stream(12_000, 5, covariate_at=6000)
    mon, state = Monitor(parse_config(EST_CONFIG)), MonitorState()
    out = mon.process(_inference(evs), state)
    summary = state.models["clf-1"].estimate.summary()  # the last 2,000 labelled events
    assert summary["calibrated_on"] == 1000 and summary["window"] == 2000
    assert abs(summary["gap"]) < 0.02, summary
    assert summary["realized_error"] > 0.28  # the shift did lower the accuracy
    fired = [(a.signal, a.detected_at.offset) for a in out.alerts]
    est = [o for s, o in fired if s == "performance:estimated_error"]
    assert est and min(est) >= 6000
    assert "estimate_gap" not in {s for s, _ in fired}


def test_concept_drift_makes_the_estimate_untrustworthy() -> None:
    evs = classifier_stream(8000, 6, concept_at=5000)
    mon, state = Monitor(parse_config(EST_CONFIG)), MonitorState()
    out = mon.process(_inference(evs), state)
    gaps = [a for a in out.alerts if a.signal == "estimate_gap"]
    assert gaps and gaps[0].detected_at.offset >= 5000
    validate_record(orjson.loads(encode_record(gaps[0])))
    assert gaps[0].evidence["change"]["kind"] in ("mean_up", "mean", "level")
    est = state.models["clf-1"].estimate
    assert est.calibrations >= 1
    assert "performance:estimated_error" not in {
        a.signal for a in out.alerts if a.detected_at.offset < gaps[0].detected_at.offset}


def test_the_estimate_survives_restarts_through_the_store() -> None:
    cfg = parse_config({**EST_CONFIG, "windows": {"reference_size": 300, "recent_size": 300}})
    raws = [RawRecord(orjson.dumps(e), Position("t", 0, i))
            for i, e in enumerate(classifier_stream(3000, 7, covariate_at=1800))]
    once = pipeline_outputs(cfg, raws)
    again = pipeline_outputs(cfg, raws, restart_at=(150, 700, 1900), batch=211)
    assert by_type(once) == by_type(again)  # (where batches are cut decides how kinds mix)
    assert any(b'"performance:estimated_error"' in r for r in once)


def test_the_estimate_is_calibrated_from_the_labels_topic_too(tmp_path: Any) -> None:
    """Predictions joined to their labels from the labels topic carry the prediction's
    confidence through the join: the estimate calibrates and compares as with inline labels."""
    from stream_monitor.adapters.replay import replay_file

    evs = classifier_stream(4000, 8, covariate_at=2500)
    events = tmp_path / "events.jsonl"
    labels = tmp_path / "labels.jsonl"
    events.write_bytes(b"".join(orjson.dumps({k: v for k, v in e.items() if k != "label"})
                                + b"\n" for e in evs))
    labels.write_bytes(b"".join(orjson.dumps({
        "event_id": e["event_id"], "model_id": e["model_id"], "label": e["label"],
        "timestamp": e["timestamp"] + 30}) + b"\n" for e in evs))
    cfg = parse_config({"windows": {"reference_size": 500, "recent_size": 1000},
                        "models": [{"match": "clf-*", "signals": [
                            {"match": "performance:error", "detectors": ["adwin"]},
                            {"match": "feature:*", "detectors": ["adwin"]}],
                            "labels": {"task": "classification", "ttl_seconds": 600}}]})
    states: list[MonitorState] = []
    total = replay_file(cfg, events, io.BytesIO(), labels=labels, state_out=states)
    assert total.pairs > 3900
    est = states[0].models["clf-1"].estimate
    assert est is not None and est.calibrated_on == 500
    s = est.summary()
    assert s["window"] == 1000 and abs(s["gap"]) < 0.04, s
    assert states[0].models["clf-1"].signals["estimate_gap"].n > 3000


def test_an_incident_says_the_estimated_performance_moved() -> None:
    """Incidents (core/incidents.py) and the estimate together: after a covariate shift the
    incident holding the shift's alerts says whether `performance:estimated_error` moved with
    them; before the estimate exists it says the model watches none (null)."""
    cfg = {**EST_CONFIG, "models": [{**EST_CONFIG["models"][0],
                                     "alerts": {"hold_seconds": 10, "dedupe_seconds": 600},
                                     "incidents": {"window_seconds": 600}}]}
    evs = classifier_stream(12_000, 5, covariate_at=6000)
    mon, state = Monitor(parse_config(cfg)), MonitorState()
    out = mon.process(_inference(evs), state)
    fired = {a.signal for a in out.alerts}
    assert "performance:estimated_error" in fired
    est_alerts = {a.alert_id for a in out.alerts if a.signal == "performance:estimated_error"}
    holding = [i for i in out.incidents if est_alerts & set(i.alert_ids)]
    assert holding and all(i.moved["estimated_performance"] is True for i in holding)
    for i in out.incidents:
        validate_record(orjson.loads(encode_record(i)))
