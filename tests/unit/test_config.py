"""Config loading: the example loads; every bad config names the dotted field and a fix."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_monitor.config import load_config, parse_config, validate_config
from stream_monitor.core.plan import MonitorPlan
from stream_monitor.errors import ConfigError
from stream_monitor.settings import Settings

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "monitor.yaml"
TOPIC_VARS = ("SM_TOPIC_INFERENCE", "SM_TOPIC_ALERTS", "SM_TOPIC_RETRAIN", "SM_TOPIC_DEAD_LETTER")


@pytest.fixture(autouse=True)
def _no_topic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in TOPIC_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_CONFIG.read_text())


def problems_of(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    err = info.value
    for field, msg in err.problems:  # each problem is also in the message, path first
        assert f"  - {field}: {msg}" in str(err)
    return err.problems


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    assert isinstance(cfg, MonitorPlan)
    assert cfg.topics.alerts == "drift-alerts"
    assert set(cfg.detectors) == {"cusum", "adwin", "page_hinkley", "kswin", "hddm_a"}
    assert cfg.false_alarm_budget is not None and cfg.false_alarm_budget.per_events == 1e6
    credit = cfg.model_rule("credit-risk")
    assert credit is not None and credit.match == "credit-*"
    assert credit.retrain.min_drifted_signals == 2 and credit.retrain.within_seconds == 600
    fallback = cfg.model_rule("churn")
    assert fallback is not None and fallback.match == "*"


def test_example_documents_our_defaults(example: dict[str, Any]) -> None:
    """The example says it shows the defaults: it must not drift from the registry."""
    cfg = parse_config(example)
    for name, spec in cfg.detectors.items():
        assert spec.params == dict(spec.effective_params), name
        assert spec.effective_params == parse_config(
            {"detectors": {name: {"type": spec.type}},
             "models": [{"match": "*", "signals": [{"match": "*", "detectors": [name]}]}]}
        ).detectors[name].effective_params


def test_unknown_detector_type(example: dict[str, Any]) -> None:
    example["detectors"]["adwin"]["type"] = "adwn"
    [(field, msg)] = problems_of(example)
    assert field == "detectors.adwin.type"
    assert "unknown detector type 'adwn'" in msg and "use one of: adwin," in msg


@pytest.mark.parametrize(
    ("path", "wrong", "right"),
    [
        (("windows",), "refrence_size", "reference_size"),
        (("models", 0, "retrain"), "cooldown_second", "cooldown_seconds"),
        (("topics",), "alert", "alerts"),
        ((), "detector", "detectors"),
    ],
)
def test_misspelled_field_suggests_the_right_one(example: dict[str, Any], path: tuple[Any, ...],
                                                 wrong: str, right: str) -> None:
    node = example
    for part in path:
        node = node[part]
    node[wrong] = node.pop(right)
    problems = dict(problems_of(example))
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    field = f"{dotted}.{wrong}" if dotted else wrong
    assert field in problems, problems
    assert f"did you mean {right!r}?" in problems[field]


def test_unknown_detector_param(example: dict[str, Any]) -> None:
    example["detectors"]["page_hinkley"]["params"]["treshold"] = 10
    [(field, msg)] = problems_of(example)
    assert field == "detectors.page_hinkley.params.treshold"
    assert "page_hinkley has no parameter 'treshold'" in msg and "threshold" in msg


def test_param_the_detector_rejects(example: dict[str, Any]) -> None:
    example["detectors"]["kswin"]["params"]["stat_size"] = 500  # > window_size
    [(field, msg)] = problems_of(example)
    assert field == "detectors.kswin.params"
    assert "kswin rejected these parameters" in msg


def test_signal_rule_naming_an_undefined_detector(example: dict[str, Any]) -> None:
    example["models"][0]["signals"][1]["detectors"] = ["adwin", "page_hinkly"]
    [(field, msg)] = problems_of(example)
    assert field == "models[0].signals[1].detectors[1]"
    assert "no detector named 'page_hinkly'" in msg and "did you mean 'page_hinkley'?" in msg

    example["models"][0]["signals"][1]["detectors"] = ["ewma"]
    [(field, msg)] = problems_of(example)
    assert field == "models[0].signals[1].detectors[0]"
    assert "define it there or use one of: cusum, adwin, page_hinkley, kswin" in msg


@pytest.mark.parametrize("match", ["amount", "predictions", "x*", "Feature:amount"])
def test_signal_match_that_can_match_nothing(example: dict[str, Any], match: str) -> None:
    example["models"][1]["signals"][0]["match"] = match
    [(field, msg)] = problems_of(example)
    assert field == "models[1].signals[0].match"
    assert f"{match!r} can match no signal" in msg
    assert "'feature:<name>', 'prediction' or 'performance:error'" in msg


@pytest.mark.parametrize("match", ["prediction", "pred*", "prediction*", "feature:amount",
                                   "feature:*", "f*", "*", "?rediction", "[fp]*"])
def test_signal_match_that_can_match_something_is_accepted(example: dict[str, Any],
                                                           match: str) -> None:
    example["models"][1]["signals"][0]["match"] = match
    parse_config(example)


def test_missing_models(example: dict[str, Any]) -> None:
    del example["models"]
    [(field, msg)] = problems_of(example)
    assert field == "models"
    assert "required" in msg and "add it" in msg


def test_several_problems_are_reported_together(example: dict[str, Any]) -> None:
    example["detectors"]["adwin"]["params"]["delt"] = 0.1
    example["models"][0]["signals"][0]["match"] = "amount"
    fields = [f for f, _ in problems_of(example)]
    assert fields == ["detectors.adwin.params.delt", "models[0].signals[0].match"]


def test_not_a_mapping() -> None:
    [(field, msg)] = problems_of(["models"])
    assert field == "(top level)" and "must be a YAML mapping" in msg


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text().splitlines()
    line = next(i for i, t in enumerate(text) if t.startswith("windows:")) + 1
    text[line] = "  reference_size: 1000: 5"  # a second colon
    path = tmp_path / "broken.yaml"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [(where, msg)] = info.value.problems
    assert where == f"line {line + 1}, column 23"
    assert "not valid YAML: mapping values are not allowed here" in msg
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    [(field, msg)] = info.value.problems
    assert field == "--config" and "pass an existing file" in msg


def test_env_overrides_topic_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_TOPIC_ALERTS", "team-a.drift-alerts")
    cfg = load_config(EXAMPLE_CONFIG)
    assert cfg.topics.alerts == "team-a.drift-alerts"
    # The others keep the file's names.
    assert cfg.topics.inference == "inference-events"
    assert cfg.topics.retrain == "retrain-requests"
    assert cfg.topics.dead_letter == "inference-dead-letter"


def test_explicit_settings_override_topic_names() -> None:
    settings = Settings(SM_TOPIC_DEAD_LETTER="dlq", SM_TOPIC_RETRAIN="")  # type: ignore[call-arg]
    cfg = load_config(EXAMPLE_CONFIG, settings)
    assert cfg.topics.dead_letter == "dlq"
    assert cfg.topics.retrain == "retrain-requests"  # empty means not overridden


def test_config_is_frozen(example: dict[str, Any]) -> None:
    cfg = validate_config(copy.deepcopy(example))  # the schema
    with pytest.raises(Exception, match="frozen"):
        cfg.windows.reference_size = 5  # type: ignore[misc]
    plan = parse_config(copy.deepcopy(example))  # and the plan compiled from it
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.windows.reference_size = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.models[0].signals[0].budget = None  # type: ignore[misc]


def test_both_configs_explain_errors_in_the_same_words() -> None:
    """One explainer (stream_monitor/schema_errors.py) serves the monitoring and the notify
    config: a missing field says to add it, a validator's message comes without pydantic's
    'Value error, ' prefix, an unknown field names the closest allowed one."""
    from stream_monitor.notify.config import parse_notify_config

    sig = [{"match": "*", "detectors": ["adwin"]}]
    monitor = dict(problems_of({"models": [{"signals": sig, "retrain": {"within_seconds": None},
                                            "recnt_size": 10}]}))
    assert monitor["models[0].match"] == "this field is required; add it"
    assert monitor["models[0].retrain"].startswith("retrain needs a window")
    assert "did you mean 'recent_size'?" in monitor["models[0].recnt_size"]
    with pytest.raises(ConfigError) as info:
        parse_notify_config({"targets": [{"type": "webhook", "url": "http://x",
                                          "retry": {"max_attemps": 2}}]})
    notify = dict(info.value.problems)
    assert notify["targets[0].name"] == "this field is required; add it"
    assert "did you mean 'max_attempts'?" in notify["targets[0].retry.max_attemps"]
