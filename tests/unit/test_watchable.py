"""What can be watched (core/watchable.py): a reference too short or too dependent to support
the budget is reported as not watchable yet, with its effective sample and what it needs, and
keeps growing until it can be watched. Series are seeded AR(1) with coefficients 0.95+ and
105-774 values, like the short real series of issue 18."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from stream_monitor.cli import app
from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position
from stream_monitor.core import Monitor, MonitorState
from stream_monitor.core.monitor import not_watchable
from stream_monitor.core.watchable import describe, remedies
from stream_monitor.core.watchable_kinds import large_factor
from stream_monitor.observability.metrics import WorkerMetrics

T0 = 1_767_225_600.0


def ar1(n: int, a: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    x, p = [], float(rng.standard_normal())
    for e in rng.standard_normal(n):
        p = a * p + np.sqrt(1 - a * a) * e
        x.append(round(10.0 + 3.0 * float(p), 6))
    return x


def config(reference_min: int = 200, reference: int = 1000, per_events: float = 1e6) -> Any:
    return {"windows": {"reference_size": reference, "reference_min_size": reference_min},
            "false_alarm_budget": {"per_events": per_events},
            "detectors": {"cusum": {"type": "cusum"}},
            "models": [{"match": "*", "signals": [{"match": "feature:*", "detectors": ["cusum"]}]}]}


def events(xs: list[float]) -> list[InferenceEvent]:
    return [InferenceEvent(f"e{i}", "m", {"x": x}, 0.0, Position("t", 0, i), timestamp=T0 + i)
            for i, x in enumerate(xs)]


def run(cfg: dict[str, Any], xs: list[float]) -> tuple[Any, MonitorState]:
    state = MonitorState()
    out = Monitor(parse_config(cfg)).process(events(xs), state)
    return out, state


@pytest.mark.parametrize(("n", "a", "seed"), [(105, 0.95, 1), (240, 0.97, 2), (400, 0.95, 3),
                                              (774, 0.96, 4), (774, 0.98, 5)])
def test_short_strongly_autocorrelated_series_are_not_watchable_yet(n: int, a: float,
                                                                    seed: int) -> None:
    """Watched from 100 values on (reference_min_size lowered for a short series): the reference
    cannot support the default budget, so the signal is not watched; it says why and what it
    needs, and its reference keeps growing (it is assessed again at 1.5 times the values)."""
    out, state = run(config(reference_min=100), ar1(n, a, seed))
    assert out.alerts == []
    [row] = not_watchable(state)
    assert row["signal"] == "feature:x" and not row["watched"]
    w = row["assessment"]
    assert w["effective_sample_size"] < 40
    assert w["expected_delay"] is None or w["expected_delay"] > w["horizon"] == 1000
    sig = state.models["m"].signals["feature:x"]
    assert sig.detectors is None and len(sig.reference) == n  # still growing
    assert sig.watched_after > w["reference_values"]  # the next assessment point
    more, loose = remedies(w)
    assert more is not None or loose is not None
    text = describe(w)
    assert f"effective sample {w['effective_sample_size']:g} of {w['reference_values']}" in text
    assert "; needs " in text


def test_an_independent_series_is_watchable_from_its_short_reference() -> None:
    xs = [round(float(x), 6) for x in np.random.default_rng(9).normal(10, 3, 400)]
    _, state = run(config(), xs)
    sig = state.models["m"].signals["feature:x"]
    assert sig.detectors is not None and sig.ref_used == 200
    assert sig.watch is not None and sig.watch["watchable"]
    assert sig.calibration is not None and sig.calibration["watchable"]["watchable"] is True
    assert not_watchable(state) == []


def test_the_reference_keeps_growing_until_the_signal_can_be_watched() -> None:
    """AR(1) 0.9: at 200 values the reference cannot support the budget; it grows (assessed at
    300, 450, 675, ...) until a 2 sd shift would be caught within the horizon, then is watched;
    a 3 sd shift after that is caught."""
    xs = ar1(3000, 0.9, 21)
    _, state = run(config(), xs[:200])
    sig = state.models["m"].signals["feature:x"]
    assert sig.detectors is None and sig.watched_after == 300
    mon = Monitor(parse_config(config()))
    state = MonitorState()
    mon.process(events(xs[:1000]), state)
    sig = state.models["m"].signals["feature:x"]
    assert sig.detectors is not None and sig.watch is not None and sig.watch["watchable"]
    assert 200 < sig.watch["reference_values"] <= 1000
    shifted = xs[:2000] + [x + 9.0 for x in xs[2000:]]
    out = mon.process(events(shifted)[1000:], state)
    assert [a.signal for a in out.alerts] == ["feature:x"]
    assert out.alerts[0].detected_at.offset >= 2000


def test_lowering_the_budget_is_what_the_report_proposes() -> None:
    """The loosened budget the assessment names makes the same reference watchable."""
    xs = ar1(100, 0.95, 31)
    _, state = run(config(reference_min=100), xs)
    [row] = not_watchable(state)
    _, loose = remedies(row["assessment"])
    assert loose is not None and loose < 1_000_000
    _, state = run(config(reference_min=100, per_events=float(loose)), xs)
    assert not_watchable(state) == []
    sig = state.models["m"].signals["feature:x"]
    assert sig.detectors is not None and sig.watch is not None and sig.watch["watchable"]


def test_growing_reference_survives_a_checkpoint_as_if_it_had_stayed() -> None:
    xs = ar1(1200, 0.9, 21)
    mon = Monitor(parse_config(config()))
    whole = MonitorState()
    a = mon.process(events(xs), whole)
    state = MonitorState()
    mon.process(events(xs[:250]), state)
    model = state.models["m"]
    sig = model.signals["feature:x"]
    assert sig.watch_next == 300
    meta = json.loads(json.dumps(sig.meta()))
    restored_model = mon.restore_model(json.loads(json.dumps(model.meta())))
    assert restored_model is not None
    restored = mon.restore_signal(restored_model, meta, list(sig.recent), list(sig.reference))
    assert restored is not None and restored.watch_next == 300 and restored.detectors is None
    state.models["m"] = restored_model
    b = mon.process(events(xs)[250:], state)
    ws, rs = whole.models["m"].signals["feature:x"], restored_model.signals["feature:x"]
    assert (ws.ref_used, ws.watch, ws.overrides) == (rs.ref_used, rs.watch, rs.overrides)
    assert [x.alert_id for x in a.alerts] == [x.alert_id for x in b.alerts]


def test_metrics_show_watchability_per_signal() -> None:
    _, state = run(config(reference_min=100), ar1(300, 0.96, 41))
    reg = CollectorRegistry()
    WorkerMetrics(reg).observe_models(state.models.values())
    labels = {"model": "m", "signal": "feature:x"}
    assert reg.get_sample_value("stream_monitor_signal_watchable", labels) == 0
    n_eff = reg.get_sample_value("stream_monitor_signal_effective_sample_size", labels)
    assert n_eff is not None and 0 < n_eff < 40


def test_replay_and_check_config_say_what_cannot_be_watched(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(orjson.dumps(config(reference_min=100)))
    ev = tmp_path / "e.jsonl"
    ev.write_bytes(b"".join(orjson.dumps({"event_id": f"e{i}", "model_id": "m",
                                          "timestamp": T0 + i, "features": {"x": x},
                                          "prediction": 0.0}) + b"\n"
                            for i, x in enumerate(ar1(500, 0.97, 51))))
    r = CliRunner().invoke(app, ["replay", str(ev), "-c", str(cfg), "-o", str(tmp_path / "o")],
                           env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.stderr
    assert "not watchable yet: 1 signals" in r.stderr
    assert "m feature:x (reference still growing): effective sample" in r.stderr
    r = CliRunner().invoke(app, ["check-config", "-c", str(cfg), "--events", str(ev)],
                           env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.stderr
    assert "not watchable yet: effective sample" in r.stdout + r.stderr


def test_a_signal_rule_can_lower_its_own_reference_minimum() -> None:
    cfg = config()
    cfg["models"][0]["signals"] = [
        {"match": "feature:short", "detectors": ["cusum"], "reference_min_size": 50},
        {"match": "feature:*", "detectors": ["cusum"]}]
    rng = np.random.default_rng(61)
    evs = [InferenceEvent(f"e{i}", "m", {"short": float(rng.normal()), "x": float(rng.normal())},
                          0.0, Position("t", 0, i), timestamp=T0 + i) for i in range(60)]
    state = MonitorState()
    Monitor(parse_config(cfg)).process(evs, state)
    sigs = state.models["m"].signals
    assert sigs["feature:short"].reference_min == 50 and sigs["feature:short"].ref_used == 50
    assert sigs["feature:x"].reference_min == 200 and sigs["feature:x"].detectors is None


def test_evaluate_compares_what_a_looser_budget_buys(tmp_path: Path) -> None:
    """`evaluate --budget`: the not-watchable count per budget option."""
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(orjson.dumps(config(reference_min=100)))
    ev = tmp_path / "e.jsonl"
    ev.write_bytes(b"".join(orjson.dumps({"event_id": f"e{i}", "model_id": "m",
                                          "timestamp": T0 + i, "features": {"x": x},
                                          "prediction": 0.0}) + b"\n"
                            for i, x in enumerate(ar1(101, 0.95, 31))))
    changes = tmp_path / "ch.json"
    changes.write_text('{"changes": []}')
    out = tmp_path / "ev.json"
    r = CliRunner().invoke(app, ["evaluate", str(ev), "-c", str(cfg), "--changes", str(changes),
                                 "--budget", "1000", "--json", str(out)], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.stderr
    assert "1 signals not watchable at their budget" in " ".join(r.stderr.split())
    data = orjson.loads(out.read_bytes())
    assert [(o["option"], o["summary"]["not_watchable"]) for o in data["options"]] == [
        ("as configured", 1), ("budget 1 per 1,000 values", 0)]


# -- binary and categorical signals (core/watchable_kinds.py) ----------------------------------

def flag_events(xs: list[Any], name: str = "x") -> list[InferenceEvent]:
    return [InferenceEvent(f"e{i}", "m", {name: x}, 0.0, Position("t", 0, i), timestamp=T0 + i)
            for i, x in enumerate(xs)]


def bursts(n: int, seed: int) -> list[float]:
    """0/1 values in long runs (runs of 0s of 20-60 values, of 1s of 10-40): extremely
    dependent, about 8 effective values in 300."""
    rng = np.random.default_rng(seed)
    x: list[float] = []
    while len(x) < n:
        x += [0.0] * int(rng.integers(20, 60)) + [1.0] * int(rng.integers(10, 40))
    return x[:n]


@pytest.mark.parametrize(("xs", "why"), [([0.0] * 200, "constant"), (bursts(400, 7), "bursts")])
def test_a_binary_reference_that_cannot_support_the_budget_is_not_watchable_yet(
        xs: list[float], why: str) -> None:
    """A constant 200-value flag (the prior still allows a rate of a few tenths of a percent,
    so only a very large rise could fire) and a flag of long runs (a handful of effective
    values): a 20-fold rise of the odds would take thousands of values. Reported with the
    effective sample and a remedy; still watched on its short reference (its calibration meets
    the budget) while the reference keeps growing to its full size."""
    _, state = run(config(), xs)
    [row] = not_watchable(state)
    assert row["signal"] == "feature:x" and row["watched"] and row["growing"]
    w = row["assessment"]
    assert w["kind"] == "binary" and 0 < w["effective_sample_size"] < 80
    assert w["expected_delay"] is None or w["expected_delay"] > w["horizon"] == 1000
    assert w["reference_values"] == 200
    sig = state.models["m"].signals["feature:x"]
    assert sig.kinds == ("bernoulli_cusum",) and sig.detectors is not None and sig.growing
    assert sig.watch_next == 0 and len(sig.reference) == len(xs)
    more, loose = remedies(w)
    assert loose is not None and loose < 1_000_000
    if why == "bursts":
        assert more is not None
    text = describe(w)
    assert text.startswith(f"effective sample {w['effective_sample_size']:g} of "
                           f"{w['reference_values']} values: a rate rise from ")
    factor = large_factor(w["rate_from"])
    assert w["odds_ratio"] == round(factor, 1) and (factor > 20.0) == (why == "constant")
    assert f"({w['odds_ratio']:g}x the odds) would take ~" in text and "; needs " in text


def test_the_budget_the_report_proposes_makes_the_flag_watchable() -> None:
    xs = bursts(400, 7)
    _, state = run(config(), xs)
    [row] = not_watchable(state)
    _, loose = remedies(row["assessment"])
    assert loose is not None
    _, state = run(config(per_events=float(loose)), xs)
    sig = state.models["m"].signals["feature:x"]
    assert not_watchable(state) == [] and sig.watch is not None and sig.watch["watchable"]


def test_an_ordinary_one_percent_flag_of_1000_values_is_watchable() -> None:
    xs = [float(v) for v in np.random.default_rng(11).random(1000) < 0.01]
    assert 3 <= sum(xs) <= 20
    _, state = run(config(reference_min=0), xs)
    sig = state.models["m"].signals["feature:x"]
    assert sig.kinds == ("bernoulli_cusum",) and sig.detectors is not None
    w = sig.watch
    assert w is not None and w["watchable"] and w["kind"] == "binary"
    assert w["expected_delay"] is not None and w["expected_delay"] < 200
    assert sig.calibration is not None and sig.calibration["watchable"]["watchable"] is True
    assert not_watchable(state) == [] and remedies(w) == (None, None)


def test_a_flag_reference_grows_until_it_can_be_watched_then_catches_a_rise() -> None:
    """200 zeros (not watchable), then a 5% rate: the reference grows to its full size, which
    supports the budget; a rise to 50% after that is caught."""
    rng = np.random.default_rng(12)
    xs = [0.0] * 200 + [float(v) for v in rng.random(2800) < 0.05]
    xs[2000:] = [float(v) for v in rng.random(1000) < 0.5]
    mon = Monitor(parse_config(config()))
    state = MonitorState()
    mon.process(flag_events(xs[:999]), state)
    [row] = not_watchable(state)
    assert row["watched"] and row["growing"] and row["assessment"]["reference_values"] == 200
    mon.process(flag_events(xs)[999:1000], state)
    sig = state.models["m"].signals["feature:x"]
    assert sig.detectors is not None and sig.watch is not None and sig.watch["watchable"]
    assert sig.watch["reference_values"] == 1000 and not sig.growing
    assert not_watchable(state) == []
    out = mon.process(flag_events(xs)[1000:], state)
    assert [a.signal for a in out.alerts][:1] == ["feature:x"]
    assert 2000 <= out.alerts[0].detected_at.offset < 2100


def cat_config(reference_min: int = 200) -> Any:
    return {"windows": {"reference_size": 1000, "reference_min_size": reference_min},
            "false_alarm_budget": {"per_events": 1e6},
            "detectors": {"cusum": {"type": "cusum"}},
            "models": [{"match": "*", "quality": {"categorical": True},
                        "signals": [{"match": "feature:*", "detectors": ["cusum"]}]}]}


def sticky(n: int, stay: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    x = ["a"]
    for _ in range(n - 1):
        x.append(x[-1] if rng.random() < stay else str("abcd"[int(rng.integers(0, 4))]))
    return x


def test_categories_in_long_runs_are_not_watchable_yet_and_say_so() -> None:
    """Sticky categories (stay 0.97: about 4 effective values in 200): the mixture CUSUM's
    null urn would learn a changed mix before the evidence reaches the threshold. Reported,
    and watched on the short reference while it grows."""
    state = MonitorState()
    out = Monitor(parse_config(cat_config())).process(flag_events(sticky(300, 0.97, 3), "c"),
                                                      state)
    assert out.alerts == []
    [row] = not_watchable(state)
    w = row["assessment"]
    assert row["signal"] == "feature:c" and row["watched"] and row["growing"]
    assert w["kind"] == "categorical"
    assert 0 < w["effective_sample_size"] < 20
    assert w["expected_delay"] is None or w["expected_delay"] > 1000
    sig = state.models["m"].signals["feature:c"]
    assert sig.detectors is not None and sig.growing and w["reference_values"] == 200
    text = describe(w)
    assert text.startswith(f"effective sample {w['effective_sample_size']:g} of 200 values: a "
                           "mix change of total variation ")
    assert "20x) would take " in text
    reg = CollectorRegistry()
    WorkerMetrics(reg).observe_models(state.models.values())
    labels = {"model": "m", "signal": "feature:c"}
    assert reg.get_sample_value("stream_monitor_signal_watchable", labels) == 0


def test_independent_categories_are_watchable_from_their_short_reference() -> None:
    rng = np.random.default_rng(13)
    cats = [str(c) for c in rng.choice(list("abcd"), 400, p=[0.4, 0.3, 0.2, 0.1])]
    state = MonitorState()
    Monitor(parse_config(cat_config())).process(flag_events(cats, "c"), state)
    sig = state.models["m"].signals["feature:c"]
    assert sig.detectors is not None and sig.ref_used == 200
    w = sig.watch
    assert w is not None and w["watchable"] and w["kind"] == "categorical"
    assert w["expected_delay"] is not None and w["expected_delay"] < 150
    assert 0.3 < w["total_variation"] < 0.6 and not_watchable(state) == []


def test_a_short_category_reference_is_told_what_it_needs() -> None:
    """20 independent values of 4 categories (13 effective: the dependence estimate's error
    is charged): the urn learns a changed mix before the evidence reaches the threshold. The
    budget the report names makes the same reference watchable."""
    from stream_monitor.core.multinomial import calibrate_multinomial
    from stream_monitor.core.watchable import assess

    codes = [float(c) for c in np.random.default_rng(14).integers(0, 4, 20)]
    over, info = calibrate_multinomial(codes, list("abcd"), 1e-6, {}, 20)
    w = assess(info, [over], ({"__type__": "multinomial_cusum"},), 1e-6, 1000)
    assert w is not None and not w["watchable"] and w["reference_values"] == 20
    more, loose = remedies(w)
    assert more is not None and 0 < more < 100 and loose is not None and loose < 1_000_000
    assert f"; needs ~{more} more values, or a budget of 1 per {loose:,} values" in describe(w)
    over, info = calibrate_multinomial(codes, list("abcd"), 1.0 / loose, {}, 20)
    w = assess(info, [over], ({"__type__": "multinomial_cusum"},), 1.0 / loose, 1000)
    assert w is not None and w["watchable"]


def test_metrics_show_watchability_of_a_flag() -> None:
    _, state = run(config(), [0.0] * 250)
    reg = CollectorRegistry()
    WorkerMetrics(reg).observe_models(state.models.values())
    labels = {"model": "m", "signal": "feature:x"}
    assert reg.get_sample_value("stream_monitor_signal_watchable", labels) == 0
    assert reg.get_sample_value("stream_monitor_signal_effective_sample_size", labels) == 67.1


def test_replay_and_check_config_say_what_a_flag_needs(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(orjson.dumps(config()))
    ev = tmp_path / "e.jsonl"
    ev.write_bytes(b"".join(orjson.dumps({"event_id": f"e{i}", "model_id": "m",
                                          "timestamp": T0 + i, "features": {"x": 0},
                                          "prediction": 0.0}) + b"\n" for i in range(250)))
    r = CliRunner().invoke(app, ["replay", str(ev), "-c", str(cfg), "-o", str(tmp_path / "o")],
                           env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stderr.split())
    # A flag never seen set: the large change is the 2 sd rise (about 29-fold), not 20-fold.
    assert re.search(r"m feature:x \(watched slowly, reference still growing\): effective "
                     r"sample 67.1 of 200 values: a rate rise from 0.73% to 1[78]% "
                     r"\(29\.\dx the odds\) would take ~\d+ values", text), text
    assert "needs a budget of 1 per 10,000 values" in text
    r = CliRunner().invoke(app, ["check-config", "-c", str(cfg), "--events", str(ev)],
                           env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.stderr
    text = " ".join((r.stdout + r.stderr).split())
    assert "not watchable at this budget: effective sample 67.1 of 200 values: a rate rise" in text


def test_a_growing_flag_survives_a_checkpoint_as_if_it_had_stayed() -> None:
    xs = [0.0] * 350 + [float(v) for v in np.random.default_rng(15).random(1650) < 0.05]
    xs[1500:] = [float(v) for v in np.random.default_rng(16).random(500) < 0.4]
    mon = Monitor(parse_config(config()))
    whole = MonitorState()
    a = mon.process(flag_events(xs), whole)
    state = MonitorState()
    mon.process(flag_events(xs[:250]), state)
    model = state.models["m"]
    sig = model.signals["feature:x"]
    assert sig.growing and sig.detectors is not None and sig.watch is not None
    assert not sig.watch["watchable"]
    meta = json.loads(json.dumps(sig.meta()))
    restored_model = mon.restore_model(json.loads(json.dumps(model.meta())))
    assert restored_model is not None
    restored = mon.restore_signal(restored_model, meta, list(sig.recent), list(sig.reference))
    assert restored is not None and restored.growing and restored.watch == sig.watch
    state.models["m"] = restored_model
    b = mon.process(flag_events(xs)[250:], state)
    ws, rs = whole.models["m"].signals["feature:x"], restored_model.signals["feature:x"]
    assert (ws.ref_used, ws.watch, ws.overrides) == (rs.ref_used, rs.watch, rs.overrides)
    assert a.alerts and [x.alert_id for x in a.alerts] == [x.alert_id for x in b.alerts]


def test_a_flag_not_watchable_yet_still_catches_a_jump_while_its_reference_grows() -> None:
    """200 zeros, then 30% from value 500: the short reference cannot support the budget for
    a 20-fold rise, but its calibrated sums still catch a jump this large while the reference
    grows (a flag paused until its full reference would absorb the jump into it and miss it)."""
    rng = np.random.default_rng(1000)
    xs = [0.0] * 3000
    xs[500:] = [float(v) for v in rng.random(2500) < 0.3]
    out, _ = run(config(), xs)
    offsets = [a.detected_at.offset for a in out.alerts]
    assert offsets and 500 < offsets[0] < 1000


def test_evaluate_says_a_growing_flag_is_watched_meanwhile(tmp_path: Path) -> None:
    """evaluate's rows carry `growing`, as replay's do: the same 200-zero flag is reported as
    watched slowly while its reference grows (it printed "watched, slowly" before)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(orjson.dumps(config()))
    ev = tmp_path / "e.jsonl"
    ev.write_bytes(b"".join(orjson.dumps({"event_id": f"e{i}", "model_id": "m",
                                          "timestamp": T0 + i, "features": {"x": 0},
                                          "prediction": 0.0}) + b"\n" for i in range(250)))
    changes = tmp_path / "changes.json"
    changes.write_bytes(b'{"changes": []}')
    r = CliRunner().invoke(app, ["evaluate", str(ev), "-c", str(cfg), "--changes", str(changes)],
                           env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stderr.split())
    assert "not watchable: m feature:x (watched slowly, reference still growing): " in text
