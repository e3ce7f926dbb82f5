"""Windowed performance metrics (issue 21 item 3; core/performance.py, docs/metrics.md): each
metric against a straightforward reference computation, the window, the saved state, the
monitor's wiring (alert evidence, watched contributions), the plan's option, replay's summary
and the gauges."""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position, RawRecord, validate_record
from stream_monitor.contracts.output_records import encode_record
from stream_monitor.contracts.readings import ModelReading
from stream_monitor.core.model_state import MonitorState
from stream_monitor.core.monitor import Monitor
from stream_monitor.core.performance import (
    Labelled,
    MetricsState,
    auc_ovr,
    classes_of,
    expected_calibration_error,
)
from stream_monitor.errors import ConfigError
from stream_monitor.synth import classifier_stream

from ..helpers import by_type, pipeline_outputs

# -- references, written the plain way -----------------------------------------------------------


def _ref_auc(score: list[float], positive: list[bool]) -> float:
    """P(score of a positive > score of a negative), ties counting a half: every pair."""
    pos = [s for s, p in zip(score, positive, strict=True) if p]
    neg = [s for s, p in zip(score, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _classification_rows(n: int, classes: int, seed: int) -> list[Labelled]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        p = rng.dirichlet(np.ones(classes))
        p = np.round(p, 2)  # ties in the scores, for the AUC's ranks
        p[-1] = max(0.0, 1.0 - p[:-1].sum())
        probs = {f"c{k}": float(v) for k, v in enumerate(p)}
        true = f"c{int(rng.choice(classes, p=p / p.sum()))}"
        pred = max(probs, key=probs.__getitem__)
        rows.append(Labelled(pred, true, max(probs.values()), probs))
    return rows


def _state(rows: list[Labelled], window: int = 10_000, max_classes: int = 20,
           bins: int = 10, task: str = "classification") -> MetricsState:
    st = MetricsState(window, max_classes, bins)
    for r in rows:
        st.add(task, r)
    return st


def test_classification_metrics_match_a_confusion_matrix() -> None:
    rows = _classification_rows(700, 4, seed=1)
    v = _state(rows).values()
    classes = sorted({r.true for r in rows} | {r.predicted for r in rows})
    idx = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)))
    for r in rows:
        cm[idx[r.true], idx[r.predicted]] += 1
    assert v["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    precision = np.diag(cm) / cm.sum(axis=0)
    recall = np.diag(cm) / cm.sum(axis=1)
    f1 = 2 * precision * recall / (precision + recall)
    for c, i in idx.items():
        got = v["classes"][c]
        assert got["precision"] == pytest.approx(precision[i])
        assert got["recall"] == pytest.approx(recall[i])
        assert got["f1"] == pytest.approx(f1[i])
        assert got["support"] == cm[i].sum()
    assert v["f1_macro"] == pytest.approx(f1.mean())
    assert v["precision_macro"] == pytest.approx(precision.mean())
    assert v["recall_macro"] == pytest.approx(recall.mean())


def test_auc_brier_and_calibration_error_match_plain_computations() -> None:
    rows = _classification_rows(400, 3, seed=2)
    v = _state(rows, bins=5).values()
    ref_auc = np.mean([_ref_auc([r.probabilities[c] for r in rows],  # type: ignore[index]
                                [r.true == c for r in rows]) for c in ("c0", "c1", "c2")])
    assert v["auc"] == pytest.approx(ref_auc)
    ref_brier = np.mean([0.5 * sum((p - (c == r.true)) ** 2
                                   for c, p in (r.probabilities or {}).items()) for r in rows])
    assert v["brier"] == pytest.approx(ref_brier)
    # ECE: each event in its bin by a plain loop.
    bins: dict[int, list[tuple[float, float]]] = {}
    for r in rows:
        assert r.confidence is not None
        b = min(int(r.confidence * 5), 4)
        bins.setdefault(b, []).append((r.confidence, float(r.predicted == r.true)))
    ece = sum(len(x) / len(rows) * abs(np.mean([ok for _, ok in x]) - np.mean([c for c, _ in x]))
              for x in bins.values())
    assert v["ece"] == pytest.approx(ece)


def test_binary_scores_give_the_binary_auc_and_brier() -> None:
    """A score against a 0/1 label: the score is P(class 1); the AUC is the binary one and the
    Brier score the squared error of the score (sklearn's brier_score_loss)."""
    rng = np.random.default_rng(3)
    score = np.round(rng.random(300), 2)
    y = (rng.random(300) < score).astype(int)
    rows = [classes_of(float(s), int(t), 0.5, None) for s, t in zip(score, y, strict=True)]
    assert all(r is not None for r in rows)
    v = _state([r for r in rows if r is not None]).values()
    assert v["auc"] == pytest.approx(_ref_auc(score.tolist(), (y == 1).tolist()))
    assert v["brier"] == pytest.approx(float(np.mean((score - y) ** 2)))
    assert v["accuracy"] == pytest.approx(float(np.mean((score >= 0.5) == y)))


def test_regression_metrics() -> None:
    rng = np.random.default_rng(4)
    p, y = rng.normal(10, 3, 500), rng.normal(10, 3, 500)
    y[:5] = 0.0  # left out of MAPE
    v = _state([Labelled(prediction=float(a), label=float(b)) for a, b in zip(p, y, strict=True)],
               task="regression").values()
    e = p - y
    assert v["rmse"] == pytest.approx(float(np.sqrt(np.mean(e ** 2))))
    assert v["mae"] == pytest.approx(float(np.mean(np.abs(e))))
    assert v["mape"] == pytest.approx(float(np.mean(np.abs(e[5:]) / np.abs(y[5:]))))
    assert v["mape_left_out"] == 5 and "accuracy" not in v


def test_edge_cases() -> None:
    assert MetricsState(10, 5, 10).values() == {"task": "", "window": 0}
    one_class = [Labelled("a", "a", 0.9, {"a": 0.9, "b": 0.1})] * 5
    v = _state(one_class).values()
    assert "auc" not in v and v["accuracy"] == 1.0  # no negatives: no AUC
    assert auc_ovr([Labelled("a", "b")]) is None  # no probabilities
    assert expected_calibration_error([1.0], [1.0], 10) == 0.0  # 1.0 is in the last bin
    assert classes_of(None, 1, 0.5, None) is None
    r = classes_of("cat", "dog", 0.5, None)
    assert r is not None and r.confidence is None and r.probabilities is None


# -- the window ------------------------------------------------------------------------------------

def test_only_the_last_window_counts() -> None:
    rows = _classification_rows(300, 3, seed=5)
    st = _state(rows, window=100)
    assert st.values() == _state(rows[-100:]).values() | {}
    assert len(st.rows) == 100 and st.labelled == 300


def test_the_classes_reported_are_capped_by_support() -> None:
    rows = ([Labelled("a", "a")] * 5 + [Labelled("b", "b")] * 3 + [Labelled("c", "c")] * 2
            + [Labelled("d", "a")])
    v = _state(rows, max_classes=2).values()
    assert sorted(v["classes"]) == ["a", "b"] and v["classes_left_out"] == 2
    # The macro averages count every class.
    assert v["f1_macro"] == pytest.approx((2 * 5 / 6 / (1 + 5 / 6) + 1 + 1 + 0) / 4)


def test_a_change_of_task_starts_over() -> None:
    st = _state([Labelled("a", "a")] * 3)
    st.add("regression", Labelled(prediction=1.0, label=2.0))
    assert st.values()["window"] == 1 and st.values()["mae"] == 1.0


def test_the_state_round_trips_and_gives_the_same_figures() -> None:
    rows = _classification_rows(250, 3, seed=6)
    st = _state(rows, window=200)
    back = MetricsState(200, 20, 10)
    back.restore(orjson.loads(orjson.dumps(st.meta())))
    assert back.values() == st.values() and back.labelled == 250
    # A smaller window after a config change keeps the newest rows.
    small = MetricsState(50, 20, 10)
    small.restore(st.meta())
    assert list(small.rows) == list(st.rows)[-50:]


def test_values_are_a_copy() -> None:
    st = _state(_classification_rows(50, 3, seed=7))
    v = st.values()
    v["classes"].clear()
    assert st.values()["classes"]


# -- the plan's option -----------------------------------------------------------------------------

SIGNALS = [{"match": "performance:error", "detectors": ["adwin"]},
           {"match": "feature:*", "detectors": ["adwin"]}]
BASE: dict[str, Any] = {"windows": {"reference_size": 200, "recent_size": 200},
                        "models": [{"match": "clf-*", "signals": SIGNALS}]}


def _performance_signal(signal: str) -> bool:
    return signal.startswith("performance:") or signal == "estimate_gap"


def _cfg(performance: Any = None, **extra: Any) -> Any:
    model = dict(BASE["models"][0])
    if performance is not None or "performance" in extra:
        model["performance"] = performance
    return parse_config({**BASE, "models": [model]})


def test_defaults_and_off() -> None:
    mp = _cfg().model_rule("clf-1").performance
    assert mp is not None and (mp.window, mp.max_classes, mp.bins) == (500, 20, 10)
    assert not mp.watch
    assert parse_config({**BASE, "models": [{**BASE["models"][0], "performance": None}]}
                        ).model_rule("clf-1").performance is None


@pytest.mark.parametrize(("value", "field"), [
    ({"window": 5}, "performance.window"),
    ({"max_classes": 0}, "performance.max_classes"),
    ({"calibration_bins": 1}, "performance.calibration_bins"),
    ({"watch": ["accuracy"]}, "performance.watch"),
    ({"windw": 100}, "performance.windw"),
])
def test_bad_values_fail_naming_the_field(value: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        _cfg(value)
    assert field in str(e.value)


def test_a_watched_contribution_gets_the_default_calibrated_rule() -> None:
    rule = _cfg({"watch": ["brier"]}).model_rule("clf-1")
    sr = rule.signal_rule("performance:brier")
    assert sr is not None and sr.budget is not None  # under the model's budget
    assert rule.signal_rule("performance:squared_error") is None  # not asked for


# -- in the monitor --------------------------------------------------------------------------------

def _inference(evs: list[dict[str, Any]]) -> list[InferenceEvent]:
    return [InferenceEvent(e["event_id"], e["model_id"], e["features"], e["prediction"],
                           Position("t", 0, i), timestamp=e["timestamp"], label=e.get("label"),
                           probabilities=e["probabilities"]) for i, e in enumerate(evs)]


def test_inline_labels_fill_the_window_and_alerts_carry_the_metrics() -> None:
    cfg = parse_config({**BASE, "models": [{**BASE["models"][0], "performance": {
        "window": 300, "watch": ["brier"]}}]})
    evs = classifier_stream(5000, 6, concept_at=3000)
    mon, state = Monitor(cfg), MonitorState()
    out = mon.process(_inference(evs), state)
    model = state.models["clf-1"]
    assert model.performance is not None and len(model.performance.rows) == 300
    # The window equals the plain computation over the last 300 labelled events.
    last = evs[-300:]
    acc = np.mean([e["prediction"] == e["label"] for e in last])
    assert model.performance.values()["accuracy"] == pytest.approx(acc)
    perf = [a for a in out.alerts if _performance_signal(a.signal)]
    assert {"performance:error", "performance:brier"} <= {a.signal for a in perf}
    assert min(a.detected_at.offset for a in perf) >= 3000  # none before the concept drift
    for a in perf:
        validate_record(orjson.loads(encode_record(a)))
        assert a.performance is not None and a.performance["task"] == "classification"
        assert 0 < a.performance["window"] <= 300
    assert all("performance" not in a.evidence for a in out.alerts
               if not _performance_signal(a.signal))
    brier = model.signals["performance:brier"]
    assert brier.calibration is not None  # calibrated to the budget like any numeric signal


def test_no_privacy_leak_with_evidence_none() -> None:
    cfg = parse_config({**BASE, "privacy": {"alert_evidence": "none"}})
    out = Monitor(cfg).process(_inference(classifier_stream(4000, 6, concept_at=2000)),
                               MonitorState())
    perf = [a for a in out.alerts if a.signal == "performance:error"]
    assert perf and all(a.performance is None for a in perf)


def test_regression_inline_labels_and_their_contributions() -> None:
    cfg = parse_config({**BASE, "models": [{"match": "reg", "signals": SIGNALS, "performance": {
        "watch": ["squared_error", "percentage_error"]}}]})
    rng = np.random.default_rng(9)
    evs = []
    for i in range(1500):
        y = float(rng.normal(50, 5))
        p = y + float(rng.normal(0, 1 if i < 1000 else 4))
        evs.append(InferenceEvent(f"e{i}", "reg", {"x": 1.0}, p, Position("t", 0, i),
                                  timestamp=1e9 + i, label=y))
    mon, state = Monitor(cfg), MonitorState()
    out = mon.process(evs, state)
    v = state.models["reg"].performance.values()  # type: ignore[union-attr]
    last = evs[-500:]
    e = np.array([float(x.prediction) - float(x.label) for x in last])  # type: ignore[arg-type]
    assert v["rmse"] == pytest.approx(float(np.sqrt(np.mean(e ** 2))))
    fired = {a.signal for a in out.alerts if a.detected_at.offset >= 1000}
    assert "performance:squared_error" in fired
    assert not [a for a in out.alerts if a.detected_at.offset < 1000]
    for a in out.alerts:
        validate_record(orjson.loads(encode_record(a)))


def test_joined_labels_fill_the_window_and_replay_prints_the_summary(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from stream_monitor.adapters.replay import replay_file
    from stream_monitor.cli import app

    evs = classifier_stream(2000, 8)
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    events.write_bytes(b"".join(orjson.dumps({k: v for k, v in e.items() if k != "label"})
                                + b"\n" for e in evs))
    labels.write_bytes(b"".join(orjson.dumps({
        "event_id": e["event_id"], "model_id": e["model_id"], "label": e["label"],
        "timestamp": e["timestamp"] + 30}) + b"\n" for e in evs))
    raw = {"windows": {"reference_size": 300, "recent_size": 300},
           "models": [{"match": "clf-*", "signals": SIGNALS,
                       "labels": {"task": "classification", "ttl_seconds": 600}}]}
    cfg = parse_config(raw)
    states: list[MonitorState] = []
    total = replay_file(cfg, events, io.BytesIO(), labels=labels, state_out=states)
    assert total.pairs > 1900
    st = states[0].models["clf-1"].performance
    assert st is not None and len(st.rows) == 500
    v = st.values()
    by_id = {e["event_id"]: e for e in evs}
    assert [r.true for r in st.rows] == [str(e["label"]) for e in evs[-500:]]  # in log order
    # The joined pairs carry the prediction's probabilities (3 classes): AUC, Brier, ECE.
    assert {"ece", "auc", "brier"} <= v.keys()
    assert 0.0 <= v["ece"] < 0.1  # a calibrated classifier
    last = [by_id[r] for r in [e["event_id"] for e in evs][-500:]]
    ref_brier = np.mean([0.5 * sum((p - (c == e["label"])) ** 2
                                   for c, p in e["probabilities"].items()) for e in last])
    assert v["brier"] == pytest.approx(ref_brier)
    assert v["window"] == 500 and sum(by_id[e]["prediction"] == by_id[e]["label"]
                                      for e in by_id) > 0
    path = tmp_path / "config.json"
    path.write_bytes(orjson.dumps(raw))
    res = CliRunner().invoke(app, ["replay", str(events), "--config", str(path), "--labels",
                                   str(labels), "-o", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("performance: clf-1"))
    assert f"accuracy {v['accuracy']:.4f}" in line and "over the last 500 labelled" in line


def test_the_window_survives_restarts_through_the_store() -> None:
    """The pipeline on a memory store, restarted mid-stream: the same outputs (alerts carry
    the metrics in their evidence, so a lost window would show)."""
    cfg = parse_config({**BASE, "models": [{**BASE["models"][0], "performance": {
        "window": 150, "watch": ["brier"]}}]})
    raws = [RawRecord(orjson.dumps(e), Position("t", 0, i))
            for i, e in enumerate(classifier_stream(2500, 11, concept_at=1500))]
    once = pipeline_outputs(cfg, raws)
    again = pipeline_outputs(cfg, raws, restart_at=(150, 700, 1600), batch=211)
    assert by_type(once) == by_type(again)
    alerts = [orjson.loads(r) for r in once if b'"performance' in r]
    assert any("performance" in a.get("evidence", {}) for a in alerts)


def test_a_state_saved_without_metrics_restores() -> None:
    """A model saved by a version without windowed metrics (no `performance` in its meta)
    restores with an empty window."""
    from stream_monitor.core.model_state import StateBuilder

    cfg = parse_config(BASE)
    mon, state = Monitor(cfg), MonitorState()
    mon.process(_inference(classifier_stream(300, 1)), state)
    model = state.models["clf-1"]
    meta = model.meta()
    assert "performance" in meta
    del meta["performance"]
    builder = StateBuilder(cfg)
    fresh = builder.restore_model(orjson.loads(orjson.dumps(meta)))
    assert fresh is not None
    assert fresh.performance is not None and not fresh.performance.rows
    # And with it, the very same window.
    fresh2 = builder.restore_model(orjson.loads(orjson.dumps(model.meta())))
    assert fresh2 is not None and fresh2.performance is not None
    assert fresh2.performance.values() == model.performance.values()  # type: ignore[union-attr]


# -- gauges ----------------------------------------------------------------------------------------

def test_gauges_per_model_and_metric_with_classes_capped() -> None:
    from stream_monitor.observability import WorkerMetrics

    reg = CollectorRegistry()
    wm = WorkerMetrics(reg, max_models=1, max_signal_series=3)
    classes = tuple((f"c{k}", m, 0.5) for k, m in itertools.product(range(5),
                                                                     ("precision", "f1")))
    wm.observe_readings([ModelReading("m1", (), (("accuracy", 0.9), ("auc", 0.8)), classes),
                         ModelReading("m2", (), (("accuracy", 0.1),), ())])
    text = generate_latest(reg).decode()
    assert 'stream_monitor_model_performance{metric="accuracy",model="m1"} 0.9' in text
    assert 'model="m2"' not in text and "__other__" not in text.split("model_performance")[-1]
    series = {line.split("{")[1].split("}")[0] for line in text.splitlines()
              if line.startswith("stream_monitor_model_class_performance{")}
    assert len({s.split("class=")[1].split(",")[0] for s in series}) == 3  # the series cap


def test_the_pipeline_reads_the_metrics_of_the_models_it_touched() -> None:
    """What the worker's gauges are set from (pipeline.model_readings)."""
    from stream_monitor.pipeline import model_readings

    cfg = parse_config({**BASE, "models": [{**BASE["models"][0],
                                            "performance": {"max_classes": 2}}]})
    mon, state = Monitor(cfg), MonitorState()
    mon.process(_inference(classifier_stream(600, 2)), state)
    (reading,) = model_readings(state.models.values())
    v = state.models["clf-1"].performance.values()  # type: ignore[union-attr]
    assert dict(reading.performance)["accuracy"] == v["accuracy"]
    assert {"auc", "brier", "ece", "f1_macro"} <= dict(reading.performance).keys()
    assert len({c for c, _, _ in reading.classes}) == 2  # the rule's max_classes


def test_windowed_values_are_autocorrelated_their_contributions_are_not() -> None:
    """Why the contributions are watched (docs/metrics.md): on a stationary stream the
    calibration's long-run variance ratio of the per-event Brier scores is about 1, that of
    the same scores averaged over a window of 100 is about the window's length."""
    from stream_monitor.core.calibrate import long_run_ratio
    from stream_monitor.core.performance import brier

    ev = classifier_stream(4000, 5)
    b = np.array([brier(e["probabilities"], e["label"]) for e in ev])  # type: ignore[arg-type]
    windowed = np.convolve(b, np.ones(100) / 100, mode="valid")

    def tau(x: np.ndarray) -> float:
        x = x[-2000:]
        return long_run_ratio((x - x.mean()) / x.std())

    assert tau(b) < 2.0
    assert tau(windowed) > 50.0


def test_check_config_shows_the_window_and_what_is_watched() -> None:
    from stream_monitor.plan import config_plan, render_plan

    plan = config_plan(_cfg({"window": 300, "watch": ["brier", "squared_error"]}))
    pf = plan["models"][0]["performance"]
    assert pf["window"] == 300 and pf["watch"] == ["performance:brier",
                                                   "performance:squared_error"]
    text = "\n".join(render_plan(plan))
    assert "performance: metrics over the last 300 labelled events; watched: performance:brier" \
        in text
