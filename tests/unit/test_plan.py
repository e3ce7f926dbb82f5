"""The compiled monitoring plan (core/plan.py): every default and glob of the YAML config is
resolved once, at load, the way the core used to ask for it while it built signals."""

from __future__ import annotations

from typing import Any

from stream_monitor.config import parse_config
from stream_monitor.core.plan import DEFAULT_BUDGET, Budget

DETECTORS = {"cusum": {"type": "cusum"}, "adwin": {"type": "adwin"}, "kswin": {"type": "kswin"},
             "multi": {"type": "multinomial_cusum", "params": {"h": 12.0}}}


def plan(models: list[dict[str, Any]], **extra: Any) -> Any:
    return parse_config({"detectors": DETECTORS, "models": models, **extra})


def test_a_signal_takes_the_nearest_budget_else_the_default_for_a_cusum() -> None:
    p = plan([{"match": "m", "false_alarm_budget": {"per_events": 5000},
               "signals": [{"match": "feature:a", "detectors": ["adwin"],
                            "false_alarm_budget": {"per_events": 1000}},
                           {"match": "feature:*", "detectors": ["adwin"]}]},
              {"match": "*", "signals": [{"match": "prediction", "detectors": ["cusum"]},
                                         {"match": "*", "detectors": ["adwin"]}]}],
             false_alarm_budget=None)
    m, other = p.models
    assert m.signal_rule("feature:a").budget == Budget(per_events=1000)  # the signal rule's
    assert m.signal_rule("feature:b").budget == Budget(per_events=5000)  # the model rule's
    assert other.signal_rule("prediction").budget == DEFAULT_BUDGET  # a cusum needs one
    assert other.signal_rule("feature:b").budget is None  # adwin alone: not calibrated
    top = plan([{"match": "*", "signals": [{"match": "*", "detectors": ["adwin"]}]}],
               false_alarm_budget={"pages_per_week": 2, "values_per_second": 1000})
    b = top.models[0].signal_rule("x").budget
    assert b is not None and abs(b.per_value() - 2 / (1000 * 7 * 86400)) < 1e-18


def test_globs_are_matched_once_and_the_first_rule_wins() -> None:
    p = plan([{"match": "fraud-*", "signals": [{"match": "feature:*", "detectors": ["adwin"]},
                                               {"match": "*", "detectors": ["cusum"]}]},
              {"match": "*", "signals": [{"match": "prediction", "detectors": ["adwin"]}]}])
    fraud = p.model_rule("fraud-1")
    assert fraud is p.models[0] and p.model_rule("credit") is p.models[1]
    assert fraud.signal_rule("feature:x") is fraud.signals[0]
    assert fraud.signal_rule("prediction") is fraud.signals[1]
    assert p.models[1].signal_rule("feature:x") is None  # not watched
    assert p.model_rule("fraud-1") is fraud  # remembered
    renamed = p.with_topics(alerts="team.alerts", retrain=None)
    assert renamed.topics.alerts == "team.alerts" and renamed.topics.retrain == p.topics.retrain
    assert renamed.model_rule("fraud-1") is fraud


def test_a_categorical_signal_is_watched_by_one_multinomial_cusum() -> None:
    p = plan([{"match": "*", "signals": [
        {"match": "feature:a", "detectors": ["kswin", "cusum"], "kind": "categorical"},
        {"match": "feature:b", "detectors": ["multi"]},
        {"match": "*", "detectors": ["adwin"]}]}])
    a, b, rest = p.models[0].signals
    assert (a.categorical, a.category_detector, dict(a.category_params)) == (
        True, "cusum", {"__type__": "multinomial_cusum"})
    assert (b.categorical, b.category_detector, dict(b.category_params)) == (
        True, "multi", {"__type__": "multinomial_cusum", "h": 12.0})
    # A string first value makes any signal categorical: the rule's first detector names it.
    assert (rest.categorical, rest.category_detector) == (False, "adwin")
    assert rest.detector_params == ({"__type__": "adwin"},) and rest.binary == (False,)


def test_value_rules_are_the_defaults_overlaid_by_the_model_rule() -> None:
    p = plan([{"match": "a", "quality": {"indicators": ["missing"], "detectors": ["cusum"]},
               "signals": [{"match": "*", "detectors": ["adwin"]}]},
              {"match": "*", "signals": [{"match": "*", "detectors": ["adwin"]}]}],
             quality={"defaults": {"sample_events": 5, "reference_samples": 10}})
    a, other = (r.quality for r in p.models)
    assert a.active and a.indicators == ("missing",) and a.sample_events == 5
    assert a.reference_size == 50 and a.budget == DEFAULT_BUDGET  # its cusum: the default
    assert a.detector_params == ({"__type__": "cusum"},)
    assert not other.active


def test_retrain_globs() -> None:
    p = plan([{"match": "*", "signals": [{"match": "*", "detectors": ["adwin"]}],
               "retrain": {"signals": ["feature:*"], "within_events": 10}}])
    r = p.models[0].retrain
    assert r.counts("feature:a") and not r.counts("prediction")
    assert r.is_performance("performance:error") and not r.is_performance("feature:a")
    assert r.window == "events"
