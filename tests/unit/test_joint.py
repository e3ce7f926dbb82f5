"""Joint drift (issue 21 item 5): the fit, the value, the signal under the budget, the alert's
evidence naming the features, the config's option and its errors, restore (core/joint.py,
docs/joint-drift.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position, RawRecord, validate_record
from stream_monitor.contracts.output_records import encode_record
from stream_monitor.core.joint import RIDGE, JointState, fit, row_of
from stream_monitor.core.model_state import MonitorState
from stream_monitor.core.monitor import Monitor
from stream_monitor.errors import ConfigError
from stream_monitor.synth import correlated_stream

from ..helpers import by_type, pipeline_outputs

# -- the fit ------------------------------------------------------------------------------------


def test_the_fit_recovers_the_precision_and_contributions_sum_to_the_distance() -> None:
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 1.0]])
    x = rng.multivariate_normal([5.0, -2.0, 0.0], cov * 4.0, size=20_000)
    f = fit(["a", "b", "c"], x.tolist())
    assert f is not None and f.features == ("a", "b", "c")
    assert np.allclose(f.mean, [5.0, -2.0, 0.0], atol=0.05)
    assert np.allclose(f.scale, [2.0, 2.0, 2.0], atol=0.05)
    assert np.allclose(f.precision, np.linalg.inv(cov + RIDGE * np.eye(3)), atol=0.1)
    assert np.allclose(f.ref_contrib, 1.0, atol=0.01)  # in-sample, up to the ridge
    row = np.array([6.0, -3.0, 1.0])
    z = (row - f.mean) / f.scale
    c = f.contributions(row)
    assert c.sum() == pytest.approx(float(z @ f.precision @ z))
    assert f.value(c) == pytest.approx((c.sum() / 3) ** (1 / 3))


def test_constant_features_are_left_out_and_two_must_vary() -> None:
    rng = np.random.default_rng(1)
    rows = [[float(v), 3.0, float(w)] for v, w in rng.standard_normal((200, 2))]
    f = fit(["a", "k", "b"], rows)
    assert f is not None and f.features == ("a", "b")
    assert fit(["a", "k"], [[r[0], 3.0] for r in rows]) is None


def test_a_row_needs_every_feature_as_a_finite_number() -> None:
    assert row_of({"a": 1.5, "b": 2, "c": True}, ["a", "b", "c"]) == [1.5, 2.0, 1.0]
    assert row_of({"a": 1.5}, ["a", "b"]) is None
    assert row_of({"a": 1.5, "b": "x"}, ["a", "b"]) is None
    assert row_of({"a": float("nan"), "b": 1.0}, ["a", "b"]) is None
    assert row_of({"a": None, "b": 1.0}, ["a", "b"]) is None


def test_the_state_takes_the_first_events_numeric_features_and_fits_once_full() -> None:
    js = JointState(fit_size=50, max_features=3, recent_size=10)
    assert js.value({"a": 1.0, "s": "x"}) is None and js.features == ()  # one numeric: wait
    rng = np.random.default_rng(2)
    got = []
    for _ in range(60):
        v = rng.standard_normal(4).tolist()
        got.append(js.value({"d": v[0], "c": v[1], "b": v[2], "a": v[3], "s": "x"}))
    assert js.features == ("a", "b", "c")  # sorted, capped at max_features
    assert got[:50] == [None] * 50 and all(isinstance(g, float) for g in got[50:])
    assert js.fitted is not None and len(js.recent) == 10
    assert js.value({"a": 1.0, "b": 1.0}) is None  # a watched feature missing: no value


def test_named_features_are_the_ones_watched_and_a_refit_starts_over() -> None:
    js = JointState(fit_size=50, max_features=32, recent_size=10, named=("y", "x"))
    rng = np.random.default_rng(3)
    for _ in range(55):
        js.value({"x": float(rng.standard_normal()), "y": float(rng.standard_normal()),
                  "z": 1.0})
    assert js.fitted is not None and js.fitted.features == ("y", "x")
    js.refit()
    assert js.fitted is None and js.rows == [] and not js.recent and js.features == ("y", "x")


def test_the_state_round_trips_its_meta() -> None:
    js = JointState(fit_size=50, max_features=32, recent_size=10)
    rng = np.random.default_rng(4)
    for _ in range(57):
        a, b, c = rng.standard_normal(3).tolist()
        js.value({"a": a, "b": b, "c": c})
    back = JointState(fit_size=50, max_features=32, recent_size=10)
    back.restore(orjson.loads(orjson.dumps(js.meta())))
    assert back.meta() == js.meta() and back.evidence(5) == js.evidence(5)
    row = {"a": 0.3, "b": -1.0, "c": 2.0}
    assert back.value(row) == js.value(row)
    half = JointState(fit_size=50, max_features=32, recent_size=10)  # a fit still forming
    for _ in range(20):
        half.value({"a": 1.0, "b": float(rng.standard_normal())})
    again = JointState(fit_size=50, max_features=32, recent_size=10)
    again.restore(orjson.loads(orjson.dumps(half.meta())))
    assert again.meta() == half.meta()


def test_the_evidence_ranks_the_features_whose_contribution_grew() -> None:
    js = JointState(fit_size=500, max_features=32, recent_size=200)
    for e in correlated_stream(700, 5, flip_at=500):
        js.value(e["features"])
    ev = js.evidence(200)
    assert {t["feature"] for t in ev["top"][:2]} == {"a", "b"}
    assert ev["top"][0]["ratio"] > 2.0 and ev["top"][2]["ratio"] < 1.6
    assert all(abs(t["mean_shift_in_reference_std"]) < 0.3 for t in ev["top"][:2])
    assert ev["rows"] == 200 and ev["features"] == ["a", "b", "x0", "x1", "x2", "x3"]


# -- the plan -----------------------------------------------------------------------------------

RULE = {"match": "joint-*", "signals": [{"match": "feature:*", "detectors": ["cusum"]},
                                        {"match": "prediction", "detectors": ["cusum"]}]}
CONFIG: dict[str, Any] = {"detectors": {"cusum": {"type": "cusum"}},
                          "windows": {"reference_size": 500, "recent_size": 200},
                          "models": [{**RULE, "joint": {}}]}


def test_off_by_default_and_compiled_when_on() -> None:
    off = parse_config({**CONFIG, "models": [RULE]}).models[0]
    assert off.joint is None and off.signal_rule("joint") is None
    cfg = parse_config({"models": [{"match": "m", "signals": [
        {"match": "feature:*", "detectors": ["adwin"]}], "joint": {"features": ["a", "b"]}}]})
    rule = cfg.models[0]
    jp = rule.joint
    assert jp is not None and jp.features == ("a", "b") and jp.fit_size == 1000
    assert rule.signal_rule("joint") is jp.default_rule
    assert jp.detector.type == "cusum" and jp.default_rule.budget is not None
    assert cfg.detector(jp.detector.name, rule) == jp.detector


def test_a_signal_rule_that_names_joint_wins() -> None:
    cfg = parse_config({"models": [{"match": "m", "joint": {}, "signals": [
        {"match": "joint", "detectors": ["page_hinkley"]},
        {"match": "feature:*", "detectors": ["adwin"]}]}]})
    sr = cfg.models[0].signal_rule("joint")
    assert sr is not None and sr.detectors == ("page_hinkley",)


@pytest.mark.parametrize(("value", "field", "words"), [
    ({"features": ["a"]}, "joint", "at least 2"),
    ({"features": ["a", "a"]}, "joint", "named twice"),
    ({"features": ["a", "b", "c"], "max_features": 2}, "joint", "over max_features"),
    ({"features": ["a", "b"], "fit_size": 50, "max_features": 20}, "joint", None),
    ({"max_features": 20, "fit_size": 60}, "joint", "at least 5 per feature"),
    ({"max_features": 1}, "joint.max_features", None),
    ({"fit_size": 10}, "joint.fit_size", None),
    ({"featurs": ["a", "b"]}, "joint.featurs", None),
])
def test_bad_values_fail_naming_the_field(value: dict[str, Any], field: str,
                                          words: str | None) -> None:
    raw = {"models": [{**RULE, "joint": value}], "detectors": {"cusum": {"type": "cusum"}}}
    if value.get("fit_size") == 50 and words is None and "features" in value:
        parse_config(raw)  # 50 events fit 2 named features: fine
        return
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    assert f"models[0].{field}" in str(exc.value)
    if words:
        assert words in str(exc.value)


def test_joint_is_a_signal_name_rules_can_match() -> None:
    parse_config({"models": [{"match": "m", "joint": {}, "signals": [
        {"match": "joint", "detectors": ["adwin"]}]}]})


# -- the signal ---------------------------------------------------------------------------------

def _inference(evs: list[dict[str, Any]]) -> list[InferenceEvent]:
    return [InferenceEvent(e["event_id"], e["model_id"], e["features"], e["prediction"],
                           Position("t", 0, i), timestamp=e["timestamp"])
            for i, e in enumerate(evs)]


@pytest.mark.parametrize("seed", range(4))
def test_a_correlation_flip_is_caught_by_the_joint_signal_alone(seed: int) -> None:
    mon, state = Monitor(parse_config(CONFIG)), MonitorState()
    out = mon.process(_inference(correlated_stream(5000, seed, flip_at=3000)), state)
    fired = [(a.signal, a.detected_at.offset) for a in out.alerts]
    assert [s for s, _ in fired] == ["joint"], fired  # no marginal moved: no feature alert
    alert = out.alerts[0]
    assert 3000 <= alert.detected_at.offset < 3300
    validate_record(orjson.loads(encode_record(alert)))
    assert alert.detector.type == "cusum" and alert.evidence["calibration"] is not None
    top = alert.evidence["joint"]["top"]
    assert {t["feature"] for t in top[:2]} == {"a", "b"}
    assert "features that moved it most: " in alert.summary
    assert " a (x" in alert.summary and " b (x" in alert.summary


@pytest.mark.parametrize("seed", range(4))
def test_an_unchanged_stream_gives_no_alert(seed: int) -> None:
    mon, state = Monitor(parse_config(CONFIG)), MonitorState()
    out = mon.process(_inference(correlated_stream(8000, 100 + seed)), state)
    assert out.alerts == []
    assert state.models["joint-1"].signals["joint"].n == 8000 - 500


def test_events_missing_a_feature_feed_nothing() -> None:
    evs = correlated_stream(1200, 7)
    for e in evs[600:900]:
        del e["features"]["b"]
    mon, state = Monitor(parse_config(CONFIG)), MonitorState()
    mon.process(_inference(evs), state)
    assert state.models["joint-1"].signals["joint"].n == 1200 - 500 - 300


def test_the_batch_path_gives_the_same_alerts() -> None:
    cfg = parse_config(CONFIG)
    evs = _inference(correlated_stream(4000, 8, flip_at=2500))

    def run(vectorised: bool) -> list[tuple[str, int, str]]:
        mon, state = Monitor(cfg), MonitorState()
        mon.vectorised = vectorised
        got = []
        for lo in range(0, len(evs), 300):
            got += [(a.signal, a.detected_at.offset, a.alert_id)
                    for a in mon.process(evs[lo:lo + 300], state).alerts]
        return got

    got = run(True)
    assert got == run(False) and [s for s, _, _ in got] == ["joint"]


def test_restarts_through_the_store_change_nothing() -> None:
    cfg = parse_config(CONFIG)
    raws = [RawRecord(orjson.dumps(e), Position("t", 0, i))
            for i, e in enumerate(correlated_stream(3500, 9, flip_at=2500))]
    once = pipeline_outputs(cfg, raws)
    again = pipeline_outputs(cfg, raws, restart_at=(250, 520, 2600), batch=211)
    assert by_type(once) == by_type(again)
    assert any(b'"signal":"joint"' in r for r in once)


def test_a_checkpoint_without_joint_state_restores_and_fits_afresh() -> None:
    """A model saved by a version without joint signals (its meta has no ``joint``) restores;
    its joint fit then forms from the events that follow."""
    mon = Monitor(parse_config(CONFIG))
    model = mon.new_model("joint-1")
    assert model is not None
    meta = model.meta()
    meta.pop("joint")
    back = mon.restore_model(orjson.loads(orjson.dumps(meta)))
    assert back is not None and back.joint is not None and back.joint.fitted is None
    old = Monitor(parse_config({**CONFIG, "models": [RULE]}))
    plain = old.new_model("joint-1")
    assert plain is not None and "joint" not in plain.meta()
    assert mon.restore_model(orjson.loads(orjson.dumps(plain.meta()))) is not None


# -- embeddings ---------------------------------------------------------------------------------

def _emb_event(embeddings: Any, event_id: str = "e1") -> bytes:
    return orjson.dumps({"event_id": event_id, "model_id": "emb-1", "features": {"x": 1.0},
                         "prediction": 0.5, "embeddings": embeddings})


def test_an_embedding_is_read_as_floats_and_empty_is_absent() -> None:
    from stream_monitor.contracts.records import decode_inference

    ev = decode_inference(RawRecord(_emb_event([0.5, 1, -2.0]), Position("t", 0, 1)))
    assert isinstance(ev, InferenceEvent) and ev.embeddings == [0.5, 1.0, -2.0]
    for empty in (None, []):
        ev = decode_inference(RawRecord(_emb_event(empty), Position("t", 0, 1)))
        assert isinstance(ev, InferenceEvent) and ev.embeddings is None


@pytest.mark.parametrize("raw", [
    _emb_event([0.5, "1"]), _emb_event([0.5, True]), _emb_event([0.5, None]),
    _emb_event({"a": 1.0}), _emb_event("0.5,1.0"), _emb_event([[0.5], [1.0]]),
    b'{"event_id":"e","model_id":"m","features":{},"prediction":1,"embeddings":[1.0,NaN]}',
])
def test_a_bad_embedding_is_a_dead_letter_with_its_reason(raw: bytes) -> None:
    from stream_monitor.contracts.records import DeadLetter, decode_inference

    dead = decode_inference(RawRecord(raw, Position("t", 0, 1)))
    assert isinstance(dead, DeadLetter) and dead.reason_code == "embedding_not_numeric"
    assert "embeddings" in dead.reason


def test_a_too_long_embedding_is_the_gates_cap() -> None:
    from stream_monitor.contracts.schemas import load_schema
    from stream_monitor.core.gate import EventGate, QualityCounters

    cfg = parse_config({"quality": {"max_embedding_length": 4}, "models": [RULE],
                        "detectors": {"cusum": {"type": "cusum"}}})
    ok = RawRecord(_emb_event([0.1] * 4), Position("t", 0, 1))
    long = RawRecord(_emb_event([0.1] * 5, "e2"), Position("t", 0, 2))
    events, dead = EventGate(cfg).admit([ok, long], 0.0, QualityCounters())
    assert [e.event_id for e in events] == ["e1"]
    assert [d.reason_code for d in dead] == ["embedding_too_long"]
    assert "max_embedding_length = 4" in dead[0].reason
    enum = load_schema("dead-letter")["properties"]["reason_code"]["enum"]
    assert {"embedding_too_long", "embedding_not_numeric"} <= set(enum)


def test_the_projection_is_fixed_and_keeps_distances() -> None:
    from stream_monitor.core.joint import project, projection

    m = projection(64, 16)
    assert m.shape == (64, 16) and set(np.unique(np.abs(m) * 4).tolist()) == {1.0}
    assert projection(64, 16) is m  # cached
    # Recomputed from nothing (the cache cleared): the same matrix, hence the same values
    # after a restart in another process.
    from stream_monitor.core import joint as j
    j._PROJECTIONS.clear()
    assert np.array_equal(projection(64, 16), m)
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(512), rng.standard_normal(512)
    pu, pv = project(u.tolist(), 64), project(v.tolist(), 64)
    d = np.linalg.norm(np.array(list(pu.values())) - np.array(list(pv.values())))
    assert d == pytest.approx(np.linalg.norm(u - v), rel=0.35)


EMB_CONFIG: dict[str, Any] = {**CONFIG, "windows": {"reference_size": 1000, "recent_size": 300},
                              "models": [{**RULE, "match": "emb-*", "embeddings": {}}]}


def _emb_inference(evs: list[dict[str, Any]]) -> list[InferenceEvent]:
    return [InferenceEvent(e["event_id"], e["model_id"], e["features"], e["prediction"],
                           Position("t", 0, i), timestamp=e["timestamp"],
                           embeddings=e["embeddings"]) for i, e in enumerate(evs)]


def test_embeddings_config_off_by_default_and_its_errors() -> None:
    assert parse_config({**CONFIG, "models": [RULE]}).models[0].embedding is None
    rule = parse_config(EMB_CONFIG).models[0]
    assert rule.embedding is not None and rule.embedding.max_features == 16
    assert rule.signal_rule("embedding") is rule.embedding.default_rule
    with pytest.raises(ConfigError) as exc:
        parse_config({**EMB_CONFIG, "models": [{**RULE, "embeddings": {"components": 40,
                                                                       "fit_size": 100}}]})
    assert "models[0].embeddings" in str(exc.value) and "at least 5 per" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        parse_config({**EMB_CONFIG, "models": [{**RULE, "embeddings": {"components": 1}}]})
    assert "models[0].embeddings.components" in str(exc.value)


@pytest.mark.parametrize("seed", range(3))
def test_an_embedding_shift_is_caught_and_a_steady_one_is_quiet(seed: int) -> None:
    from stream_monitor.synth import embedding_stream

    mon, state = Monitor(parse_config(EMB_CONFIG)), MonitorState()
    out = mon.process(_emb_inference(embedding_stream(8000, seed, shift_at=5000)), state)
    assert [a.signal for a in out.alerts] == ["embedding"]
    alert = out.alerts[0]
    assert 5000 <= alert.detected_at.offset < 5300
    validate_record(orjson.loads(encode_record(alert)))
    assert "projections that moved it most: c" in alert.summary
    assert alert.evidence["joint"]["features"] == [f"c{j}" for j in range(16)]
    mon, state = Monitor(parse_config(EMB_CONFIG)), MonitorState()
    out = mon.process(_emb_inference(embedding_stream(8000, 50 + seed)), state)
    assert out.alerts == [] and state.models["emb-1"].signals["embedding"].n == 7000


def test_an_embedding_of_another_length_is_skipped() -> None:
    from stream_monitor.synth import embedding_stream

    evs = embedding_stream(1500, 4)
    for e in evs[1100:1200]:
        e["embeddings"] = e["embeddings"][:32]
    mon, state = Monitor(parse_config(EMB_CONFIG)), MonitorState()
    mon.process(_emb_inference(evs), state)
    m = state.models["emb-1"]
    assert m.embedding is not None and m.embedding.dim == 64
    assert m.signals["embedding"].n == 1500 - 1000 - 100


def test_embedding_restarts_through_the_store_change_nothing() -> None:
    from stream_monitor.synth import embedding_stream

    cfg = parse_config({**EMB_CONFIG, "windows": {"reference_size": 400, "recent_size": 300}})
    raws = [RawRecord(orjson.dumps(e), Position("t", 0, i))
            for i, e in enumerate(embedding_stream(2500, 2, dim=32, shift_at=1800))]
    once = pipeline_outputs(cfg, raws)
    again = pipeline_outputs(cfg, raws, restart_at=(200, 450, 1850), batch=173)
    assert by_type(once) == by_type(again)
    assert any(b'"signal":"embedding"' in r for r in once)


def test_avro_and_protobuf_events_carry_embeddings_and_their_checks() -> None:
    import io
    from pathlib import Path

    import fastavro

    import stream_monitor.contracts as contracts
    from stream_monitor.contracts.proto import message_class, message_to_obj
    from stream_monitor.contracts.records import DeadLetter, decode_inference
    from stream_monitor.contracts.wire import Framed, decode_payload, parse_schema

    def decode(obj: Any) -> Any:
        return decode_inference(RawRecord(b"\x00framed", Position("t", 0, 1), decoded=obj))

    avsc = (Path(contracts.__file__).parent / "schemas" / "inference-event.avsc").read_text()
    schema = parse_schema("avro", "AVRO", avsc)
    base = {"event_id": "e1", "model_id": "m", "features": {"x": 1.0}, "prediction": 0.5}
    for emb, want in (([0.5, -1.0], [0.5, -1.0]), (None, None), ([], None)):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(orjson.loads(avsc)),
                                   {**base, "embeddings": emb})
        ev = decode(decode_payload(schema, Framed(1, (), buf.getvalue())))
        assert isinstance(ev, InferenceEvent) and ev.embeddings == want
    msg = message_class("InferenceEvent")(event_id="e1", model_id="m")
    msg.prediction.number = 0.5
    msg.embeddings.extend([0.25, 0.75])
    ev = decode(message_to_obj(msg))
    assert isinstance(ev, InferenceEvent) and ev.embeddings == [0.25, 0.75]
    msg.embeddings.append(float("inf"))
    dl = decode(message_to_obj(msg))
    assert isinstance(dl, DeadLetter) and dl.reason_code == "embedding_not_numeric"
    msg.ClearField("embeddings")
    ev = decode(message_to_obj(msg))
    assert isinstance(ev, InferenceEvent) and ev.embeddings is None
