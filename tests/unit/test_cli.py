"""The command line as a new user meets it (issue 14, item 6): --version, user mistakes as one
line with exit code 2 (never a traceback), replay's exit code when nothing was usable,
check-config's plan, every setting in `worker --help`, plot's model check and alert placement,
and the demo's packaged config. Commands run in process (typer's CliRunner) or, where the
process's own stderr and exit code matter, as `python -m stream_monitor`."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from stream_monitor.cli import app, example_config
from stream_monitor.config import load_config
from stream_monitor.plot import place_alerts
from stream_monitor.settings import Settings
from stream_monitor.synth import Drift, LabelledSpec, StreamSpec, generate, labelled

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "monitor.yaml"
SMALL = {"windows": {"reference_size": 100},
         "models": [{"match": "credit-*", "signals": [
             {"match": "feature:*", "detectors": ["page_hinkley"]},
             {"match": "prediction", "detectors": ["adwin"]}]}]}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command, in process."""
    r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception  # a bug: let pytest show its traceback
    return r.exit_code, r.stdout, r.stderr


def one_line(stderr: str) -> str:
    lines = stderr.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small config, a drifting stream of credit-risk and its replayed outputs."""
    d = tmp_path_factory.mktemp("cli")
    cfg = d / "small.yaml"
    cfg.write_bytes(orjson.dumps(SMALL))  # JSON is YAML
    events = d / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in generate(
        StreamSpec(models=("credit-risk",), events_per_model=600, seed=3,
                   drifts=(Drift(300, "amount", 2.0),)))))
    outputs = d / "outputs.jsonl"
    code, _, err = run("replay", str(events), "-c", str(cfg), "-o", str(outputs))
    assert code == 0, err
    return {"dir": d, "config": cfg, "events": events, "outputs": outputs}


# -- 1. --version ---------------------------------------------------------------------------

def test_version_prints_the_installed_package_version() -> None:
    code, out, _ = run("--version")
    version = importlib.metadata.version("stream-monitor")
    assert (code, out) == (0, f"stream-monitor {version}\n")
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


# -- 2. user mistakes: one line on stderr, exit code 2 --------------------------------------

@pytest.mark.parametrize("command", [
    ["replay", "{missing}", "-c", "{config}"],
    ["replay", "{events}", "-c", "{config}", "--labels", "{missing}"],
    ["evaluate", "{missing}", "-c", "{config}", "--changes", "{changes}"],
    ["plot", "{missing}", "{outputs}", "-o", "{png}"],
    ["plot", "{events}", "{missing}", "-o", "{png}"],
    ["simulate", "-c", "{config}", "--rate", "credit-risk=10", "--events", "{missing}"],
    ["check-config", "-c", "{config}", "--events", "{missing}"],
], ids=lambda c: " ".join(c[:3]))
def test_a_missing_input_file_is_one_line_and_exit_2(data: dict[str, Path],
                                                     command: list[str]) -> None:
    changes = data["dir"] / "changes.json"
    changes.write_bytes(b'{"changes": []}')
    missing = data["dir"] / "no-such-file.jsonl"
    args = [a.format(missing=missing, config=data["config"], events=data["events"],
                     outputs=data["outputs"], changes=changes, png=data["dir"] / "x.png")
            for a in command]
    code, _, err = run(*args)
    assert code == 2
    assert one_line(err) == f"error: {missing}: No such file or directory"


def test_a_directory_for_a_file_is_one_line_and_exit_2(data: dict[str, Path]) -> None:
    code, _, err = run("replay", str(data["dir"]), "-c", str(data["config"]))
    assert code == 2 and one_line(err) == f"error: {data['dir']}: Is a directory"


def test_the_process_itself_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    """The installed entry point (not only the in-process runner): no traceback."""
    p = subprocess.run([sys.executable, "-m", "stream_monitor", "replay",
                        str(tmp_path / "missing.jsonl"), "-c", str(EXAMPLE)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2
    assert one_line(p.stderr) == f"error: {tmp_path / 'missing.jsonl'}: No such file or directory"


def test_a_bad_config_prints_each_problem_with_its_field_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("windows: {reference_size: 5, recnt_size: 9}\n"
                   "models:\n  - match: m\n    signals: [{match: '*', detectors: [adwin]}]\n")
    code, out, err = run("check-config", "-c", str(bad))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"invalid {bad}:",
        "  - windows.reference_size: Input should be greater than or equal to 10",
        "  - windows.recnt_size: unknown field; did you mean 'recent_size'? (allowed here: "
        "evidence_size, recent_size, reference_min_size, reference_size)"]
    bad.write_text("models:\n  - match: m\n    signals: [{match: '*', detectors: [adwinn]}]\n")
    code, _, err = run("check-config", "-c", str(bad))
    assert code == 2
    assert err.splitlines() == [
        f"invalid {bad}:",
        "  - models[0].signals[0].detectors[0]: no detector named 'adwinn' in `detectors`; did "
        "you mean 'adwin'?"]


@pytest.mark.parametrize("command", [
    ["plot", "{events}", "{outputs}", "-o", "{png}"],
    ["evaluate", "{events}", "-c", "{config}", "--changes", "{changes}", "--plot", "{png}"],
], ids=["plot", "evaluate --plot"])
def test_without_the_plot_extra_plotting_is_one_line_and_exit_2(
        data: dict[str, Path], command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    changes = data["dir"] / "changes.json"
    changes.write_bytes(b'{"changes": []}')
    png = data["dir"] / "no-extra.png"
    code, _, err = run(*[a.format(events=data["events"], outputs=data["outputs"], png=png,
                                  config=data["config"], changes=changes) for a in command])
    assert code == 2 and not png.exists()
    assert one_line(err) == ("error: plotting needs matplotlib, which is not installed: "
                             "pip install 'stream-monitor[plot]'")


def test_unexpected_errors_keep_their_traceback(data: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Only user mistakes are turned into one line; a bug still shows where it is."""
    import stream_monitor.plan

    def broken(*_: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(stream_monitor.plan, "config_plan", broken)
    r = CliRunner().invoke(app, ["check-config", "-c", str(data["config"])])
    assert r.exit_code == 1 and isinstance(r.exception, KeyError)


# -- 4. replay: nothing usable is a failure --------------------------------------------------

def test_replay_exits_1_when_every_record_was_dead_lettered(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'not json\n[1, 2]\n{"model_id": "credit-risk"}\n')
    code, _, err = run("replay", str(bad), "-c", str(EXAMPLE), "-o", str(tmp_path / "o.jsonl"))
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: nothing in {bad} was usable: 3 of 3 records dead-lettered (undecodable 1, "
        "not_an_object 1, missing_field 1)")
    assert len((tmp_path / "o.jsonl").read_bytes().splitlines()) == 3  # the dead letters


def test_replay_exits_1_on_an_empty_file_and_on_unwatched_models(
        tmp_path: Path, data: dict[str, Path]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, _, err = run("replay", str(empty), "-c", str(EXAMPLE), "-o", str(tmp_path / "o"))
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: {empty}: no records (an empty file); nothing was monitored")
    nobody = tmp_path / "nobody.yaml"
    nobody.write_bytes(orjson.dumps({"models": [{"match": "nobody", "signals": [
        {"match": "*", "detectors": ["adwin"]}]}]}))
    code, _, err = run("replay", str(data["events"]), "-c", str(nobody), "-o",
                       str(tmp_path / "o"))
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: nothing in {data['events']} was usable: 600 events of models no model rule "
        "matches")


def test_replay_warns_when_most_records_were_dead_lettered(tmp_path: Path,
                                                           data: dict[str, Path]) -> None:
    mixed = tmp_path / "mixed.jsonl"
    good = data["events"].read_bytes().splitlines()[:2]
    mixed.write_bytes(b"\n".join([b"x", b"y", b"z", *good]) + b"\n")
    code, _, err = run("replay", str(mixed), "-c", str(data["config"]), "-o",
                       str(tmp_path / "o"))
    assert code == 0
    assert err.strip().splitlines()[-1] == (
        f"warning: most of {mixed} was not usable: 3 of 5 records dead-lettered "
        "(undecodable 3)")


# -- 5. plot ---------------------------------------------------------------------------------

def test_plot_of_an_unknown_model_names_the_models_and_writes_nothing(
        data: dict[str, Path]) -> None:
    png = data["dir"] / "nope.png"
    code, _, err = run("plot", str(data["events"]), str(data["outputs"]), "-o", str(png),
                       "--model", "nope")
    assert code == 2 and not png.exists()
    assert one_line(err) == ("error: no model 'nope' in events.jsonl or outputs.jsonl; "
                             "models there: credit-risk")


def test_plot_writes_the_alerted_signals(data: dict[str, Path]) -> None:
    alerts = [r for r in map(orjson.loads, data["outputs"].read_bytes().splitlines())
              if r["type"] == "drift_alert"]
    assert alerts, "the fixture's stream drifts"
    png = data["dir"] / "signals.png"
    code, _, err = run("plot", str(data["events"]), str(data["outputs"]), "-o", str(png))
    assert code == 0, err
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000


def test_a_label_alert_is_placed_at_its_inference_event_not_its_labels_offset(
        tmp_path: Path) -> None:
    """A performance alert names the label record that completed the pair (topic `labels`,
    its own offset) and the prediction's event id: it is drawn at that event."""
    s = labelled(LabelledSpec(events=3000, concept_drift_at=1500, seed=5))
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    events.write_bytes(b"".join(v + b"\n" for v in s.inference))
    labels.write_bytes(b"".join(v + b"\n" for v in s.early + s.labels))
    outputs = tmp_path / "outputs.jsonl"
    cfg = tmp_path / "labels.yaml"
    cfg.write_bytes(orjson.dumps({"models": [{
        "match": "churn-*", "labels": {"task": "classification"}, "reference_size": 500,
        "signals": [{"match": "performance:*", "detectors": ["adwin"]}]}]}))
    code, _, err = run("replay", str(events), "-c", str(cfg), "--labels", str(labels),
                       "-o", str(outputs))
    assert code == 0, err
    (alert,) = [r for r in map(orjson.loads, outputs.read_bytes().splitlines())
                if r["type"] == "drift_alert"]
    assert alert["signal"] == "performance:error"
    rows = [(i, orjson.loads(x)) for i, x in enumerate(events.read_bytes().splitlines())]
    line = next(i for i, e in rows if e["event_id"] == alert["detected_at"]["event_id"])
    # As the worker reports it: the labels topic and the label's offset there.
    moved = {**alert, "detected_at": {**alert["detected_at"], "topic": "inference-labels",
                                      "offset": 17}}
    unplaced: list[str] = []
    placed = place_alerts(rows, [moved], unplaced=unplaced)
    assert [x for x, _ in placed["performance:error"]] == [line] and not unplaced
    # An alert whose event is not in the file is not drawn (and said so).
    lost = {**alert, "detected_at": {**alert["detected_at"], "event_id": "elsewhere-1"}}
    assert place_alerts(rows, [lost], unplaced=unplaced) == {}
    assert unplaced == ["performance:error (adwin) at event 'elsewhere-1': not in the events "
                        "file"]
    code, _, err = run("plot", str(events), str(outputs), "-o", str(tmp_path / "p.png"))
    assert code == 0 and "not drawn" not in err


# -- 6. check-config prints the plan ---------------------------------------------------------

def test_check_config_prints_the_plan_of_every_model_rule() -> None:
    code, out, _ = run("check-config", "-c", str(EXAMPLE))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"ok: {EXAMPLE}: 3 model rules, 5 detectors"
    budget = ("false-alarm budget 1 false alarm per 1,000,000 values of each signal "
              "(1e-06 per value)")
    for expected in [
        "models[0] 'credit-*': reference 1000 values per signal, recent 500",
        f"  signals 'feature:*': watched after its first 200 values (on a short reference, "
        f"re-based at 1000); {budget}",
        "    adwin(delta=0.002, clock=32): calibrated to the budget on each reference",
        "models[1] 'churn-*': reference 500 values per signal, recent 500",
        "    cusum(k=0.5, k_slow=0.25, scale_k=0.3, clip=3): calibrated to the budget on each "
        "reference (a bernoulli_cusum on a 0/1 signal)",
        "  labels: classification from inference-labels -> performance:error (a prediction "
        "waits 3600 s for its label)",
        "models[2] '*': reference 1000 values per signal, recent 500",
        "  value rules: string features as categorical signals (top 20 categories + other, "
        "multinomial_cusum); fault rates "
        "quality:<missing>:<feature> 0/1 per event, reference 1000 events, detectors cusum",
    ]:
        assert expected in lines, f"{expected!r} not in:\n{out}"


def test_check_config_with_events_lists_the_signals_found_and_what_they_still_need(
        tmp_path: Path, data: dict[str, Path]) -> None:
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(b"\n".join(data["events"].read_bytes().splitlines()[:230]) + b"\n")
    code, out, _ = run("check-config", "-c", str(data["config"]), "--events", str(sample))
    assert code == 0
    lines = out.splitlines()
    at = lines.index(f"signals found in {sample}: 230 records, 0 dead-lettered, 0 of models "
                     "no rule watches")
    assert lines[at + 1] == "  credit-risk version 1 (rule 'credit-*', 230 events):"
    assert "    feature:amount: watched by page_hinkley (230 values)" in lines
    # The reference of a small config is 100 values: every signal is watched after 230 events.
    assert not [x for x in lines if "not yet watched" in x]
    # The example config watches a budgeted signal from its first 200 values (a short
    # reference, windows.reference_min_size): not yet after 150 events, watched after 230.
    short = tmp_path / "short.jsonl"
    short.write_bytes(b"\n".join(data["events"].read_bytes().splitlines()[:150]) + b"\n")
    code, out, _ = run("check-config", "-c", str(EXAMPLE), "--events", str(short))
    assert "    feature:amount: not yet watched: 150 of 200 reference values" in out.splitlines()
    code, out, _ = run("check-config", "-c", str(EXAMPLE), "--events", str(sample))
    assert [x for x in out.splitlines() if x.startswith("    feature:amount: watched by ")], out


def test_check_config_json_has_the_plan_and_the_signals_found(data: dict[str, Path]) -> None:
    code, out, _ = run("check-config", "-c", str(data["config"]), "--events",
                       str(data["events"]), "--json")
    assert code == 0
    doc = orjson.loads(out)
    (rule,) = doc["plan"]["models"]
    assert rule["reference_size"] == 100
    assert [s["match"] for s in rule["signals"]] == ["feature:*", "prediction"]
    assert rule["signals"][0]["detectors"][0]["type"] == "page_hinkley"
    (model,) = doc["observed"]["models"]
    sig = {s["signal"]: s for s in model["signals"]}
    assert sig["prediction"]["watched"] and sig["prediction"]["values"] == 600


# -- 7. worker --help lists every setting ----------------------------------------------------

def test_worker_help_lists_every_setting_with_its_default() -> None:
    code, out, _ = run("worker", "--help", env={"COLUMNS": "400"})
    assert code == 0
    lines = [x.strip() for x in out.splitlines()]
    for name, field in Settings.model_fields.items():
        var = field.validation_alias
        assert isinstance(var, str), name
        line = next((x for x in lines if x.startswith(f"{var} (default ")), None)
        assert line is not None, f"{var} missing from worker --help"
        assert line.split("): ", 1)[1], f"{var} has no description"
    assert "SM_BATCH_MAX (default 5000): Most events per batch" in lines


def test_every_setting_has_a_description() -> None:
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


# -- 3. demo runs outside the repository ------------------------------------------------------

def test_the_demo_config_is_packaged_and_equals_the_example(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no examples/ here
    with example_config() as path:
        assert path.read_bytes() == EXAMPLE.read_bytes(), (
            "stream_monitor/examples/monitor.yaml is a copy of examples/monitor.yaml: copy it "
            "again")
        assert len(load_config(path).models) == 3
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["stream_monitor"]
    assert "examples/monitor.yaml" in package_data
