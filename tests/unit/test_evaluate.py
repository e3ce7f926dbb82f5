"""`stream-monitor evaluate` and `simulate`: scoring against labelled change points, and the
command lines' user errors (one line, exit 2). Seeded streams; counts are exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream_monitor.config import parse_config
from stream_monitor.evaluate import ChangePoint, EvaluateError, evaluate, load_changes, simulate
from stream_monitor.synth import kind_stream

CFG = {"false_alarm_budget": {"per_events": 1e6},
       "detectors": {"cusum": {"type": "cusum"}},
       "models": [{"match": "*", "signals": [{"match": "feature:*", "detectors": ["cusum"]}]}]}


def _events(path: Path, streams: dict[str, list[float]]) -> Path:
    with path.open("wb") as f:
        for i in range(max(len(v) for v in streams.values())):
            for m, xs in streams.items():
                f.write(orjson.dumps({"event_id": f"{m}-{i}", "model_id": m, "timestamp": 1e9 + i,
                                      "features": {"x": xs[i]}, "prediction": 0.5}) + b"\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ev")
    events = _events(d / "events.jsonl", {
        "a": kind_stream("gaussian", 3000, 1, change_at=2000, change="mean", size=1.0),
        "b": kind_stream("gaussian", 3000, 2)})
    changes = d / "changes.json"
    changes.write_bytes(orjson.dumps({"changes": [
        {"model_id": "a", "signal": "feature:x", "event_id": "a-2000", "kind": "mean"}]}))
    return events, changes


def test_scores_detection_delay_localization_and_false_alarms(files: tuple[Path, Path]) -> None:
    events, changes = files
    ev = evaluate(parse_config(CFG), events, load_changes(changes), margin=300)
    by = {(s.model_id, s.signal): s for s in ev.signals}
    a, b = by[("a", "feature:x")], by[("b", "feature:x")]
    assert (a.changes, a.detected, a.misses, a.false_alarms) == (1, 1, 0, 0)
    assert 0 < a.delays[0] <= 60 and a.localization_errors[0] <= 15
    assert (a.kinds_right, a.kinds_checked) == (1, 1)
    assert (b.changes, b.false_alarms, b.values) == (0, 0, 3000)
    summ = ev.summary()
    assert summ["f1"] == 1.0 and summ["precision"] == 1.0 and summ["recall"] == 1.0
    # A change labelled where nothing happened is a miss, and the real alert a false alarm.
    ev = evaluate(parse_config(CFG), events, [ChangePoint("a", "feature:x", offset=1000)],
                  margin=300)
    summ = ev.summary()
    assert (summ["misses"], summ["false_alarms"], summ["f1"]) == (1, 1, 0.0)


def test_bad_change_files_are_one_line_errors(tmp_path: Path, files: tuple[Path, Path]) -> None:
    bad = tmp_path / "bad.json"
    for body, msg in [(b"[1]", "must be"), (b'{"changes": [{"model_id": "a"}]}', "model_id and"),
                      (b'{"changes": [{"model_id": "a", "signal": "feature:x"}]}', "exactly one"),
                      (b"{", "not JSON")]:
        bad.write_bytes(body)
        with pytest.raises(EvaluateError, match=msg):
            load_changes(bad)
    bad.write_bytes(b'{"changes": [{"model_id": "a", "signal": "feature:x", "event_id": "zz"}]}')
    with pytest.raises(EvaluateError, match="not in"):
        evaluate(parse_config(CFG), files[0], load_changes(bad))


def test_cli_evaluate_user_errors_exit_2(tmp_path: Path, files: tuple[Path, Path]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(orjson.dumps(CFG))  # JSON is YAML
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{}")
    run = [sys.executable, "-m", "stream_monitor", "evaluate", str(files[0]), "-c", str(cfg)]
    p = subprocess.run([*run, "--changes", str(bad)], capture_output=True, text=True)
    assert p.returncode == 2 and "must be" in p.stderr
    p = subprocess.run([*run, "--changes", str(files[1]), "--json", str(tmp_path / "o.json")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert orjson.loads((tmp_path / "o.json").read_bytes())["summary"]["detected"] == 1


def test_simulate_expected_false_alerts_per_day() -> None:
    cfg = parse_config({**CFG, "models": [
        {"match": "fast", "false_alarm_budget": {"per_events": 1e5},
         "signals": [{"match": "*", "detectors": ["cusum"]}]},
        {"match": "*", "signals": [{"match": "feature:*", "detectors": ["cusum"]}]}]})
    out = simulate(cfg, {"fast": 100.0, "slow": 10.0},
                   {"fast": ["feature:a", "prediction"], "slow": ["feature:a", "prediction"]})
    # fast: 2 signals x 100/s x 86400 s x 1e-5; slow: 1 watched signal x 10/s x 86400 x 1e-6
    assert out["false_alerts_per_day"] == pytest.approx(2 * 100 * 86400 * 1e-5
                                                        + 10 * 86400 * 1e-6)
    assert out["values_per_second"] == 210.0


def test_deployment_budget_gives_its_pages_per_week() -> None:
    cfg = parse_config({**CFG, "false_alarm_budget": {"pages_per_week": 1,
                                                      "values_per_second": 300}})
    out = simulate(cfg, {"m": 100.0}, {"m": ["feature:a", "feature:b", "feature:c"]})
    assert out["false_alerts_per_week"] == pytest.approx(1.0)
