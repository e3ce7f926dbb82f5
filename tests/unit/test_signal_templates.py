"""A new signal is built from a per-rule template compiled once (core/model_state.py
``SignalTemplate``): the same signal as the rule lookups on every call built before, for each
kind of rule (numeric, categorical by kind or by the first value, budgeted with a short
reference, a period in values, a period of event time, unwatched), and no two signals share
what one of them may change."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from stream_monitor.config import parse_config
from stream_monitor.core.categories import CodeTable
from stream_monitor.core.model_state import ModelState, StateBuilder
from stream_monitor.core.seasonal import TimedSignalState
from stream_monitor.core.signals import SignalState


def _reference_new_signal(model: ModelState, signal: str,
                          categorical: bool = False) -> SignalState | None:
    """StateBuilder.new_signal of 2026-12-07 (numeric and categorical signals), kept as the
    reference: every call looked the rule up and built the parameters again."""
    sr = model.rule.signal_rule(signal)
    if sr is None:
        return None
    reference_size = sr.reference_size
    mq = model.value_rules
    table = None
    if categorical or sr.categorical:
        names: tuple[str, ...] = (sr.category_detector,)
        params: tuple[Mapping[str, Any], ...] = (sr.category_params,)
        binary: tuple[bool, ...] = (False,)
        top_k = mq.rule.max_categories if mq is not None else 20
        table = CodeTable(max(64, 4 * top_k))
        least = sr.categorical_watched_after
    else:
        names, params, binary = sr.detectors, sr.detector_params, sr.binary
        least = sr.watched_after
    timed = sr.period_seconds if table is None else 0.0
    sig = (TimedSignalState if timed else SignalState)(
        signal=signal, detector_names=names, detector_params=tuple(dict(p) for p in params),
        binary=binary, reference_size=reference_size,
        recent=deque(maxlen=model.rule.recent_size), base_events=max(model.events - 1, 0),
        table=table)
    if table is not None:
        sig.top_k = top_k
    if sr.period_values:
        sig.period = sr.period_values
    if sr.budget is not None:
        sig.budget = sr.budget.per_value()
        sig.budget_config = sr.budget.describe()
    if isinstance(sig, TimedSignalState):
        sig.period_seconds = timed
    if least < reference_size:
        sig.reference_min = least
    return sig


def _plan() -> Any:
    return parse_config({
        "false_alarm_budget": {"per_events": 1e5},
        "windows": {"reference_size": 1000, "reference_min_size": 200, "recent_size": 300},
        "detectors": {"cusum": {"type": "cusum", "params": {"k": 0.4}}, "adwin": {"type": "adwin"},
                      "page_hinkley": {"type": "page_hinkley"},
                      "mn": {"type": "multinomial_cusum", "params": {"w": 5.0}}},
        "models": [
            {"match": "q*", "quality": {"categorical": True, "indicators": ["unseen_category"]},
             "signals": [{"match": "feature:c*", "kind": "categorical", "detectors": ["mn"]},
                         {"match": "feature:p*", "detectors": ["cusum"], "period": 24},
                         {"match": "feature:t*", "detectors": ["cusum"], "period": "1d"},
                         {"match": "*", "detectors": ["cusum", "page_hinkley"]}]},
            {"match": "*", "signals": [{"match": "prediction", "detectors": ["adwin"]}]}]})


def _state(sig: SignalState) -> dict[str, Any]:
    out = {}
    for f in fields(sig):
        v = getattr(sig, f.name)
        if isinstance(v, deque):
            v = (list(v), v.maxlen)
        elif isinstance(v, CodeTable):
            v = (v.cap, list(v.labels))
        out[f.name] = v
    return out


def test_a_template_builds_the_signal_the_rule_lookups_built() -> None:
    plan = _plan()
    builder = StateBuilder(plan)
    cases = [("q1", "feature:c1", False), ("q1", "feature:p1", False),
             ("q1", "feature:t1", False), ("q1", "feature:x", False), ("q1", "feature:x", True),
             ("q1", "prediction", False), ("m1", "prediction", False), ("m1", "feature:x", False),
             ("m1", "prediction", True)]
    for _round in range(2):  # the second round from the cached templates
        for mid, signal, categorical in cases:
            a, b = builder.new_model(mid), builder.new_model(mid)
            assert a is not None and b is not None
            a.events = b.events = 7
            want = _reference_new_signal(a, signal, categorical)
            got = builder.new_signal(b, signal, categorical)
            if want is None:
                assert got is None and signal not in b.signals
                continue
            assert got is not None and type(got) is type(want)
            assert _state(got) == _state(want), (mid, signal, categorical)
            assert b.signals[signal] is got and b.dirty
            assert (got in b.timed) == isinstance(want, TimedSignalState)
    q = builder.new_model("q1")
    assert q is not None
    kinds = {type(builder.new_signal(q, s)) for s in ("feature:t1", "feature:x")}
    assert kinds == {TimedSignalState, SignalState}


def test_signals_of_one_template_share_nothing_they_change() -> None:
    builder = StateBuilder(_plan())
    m = builder.new_model("q1")
    assert m is not None
    x, y = builder.new_signal(m, "feature:x"), builder.new_signal(m, "feature:y")
    assert x is not None and y is not None
    for name in ("recent", "reference", "budget_config"):
        assert getattr(x, name) is not getattr(y, name), name
    x.recent.append(1.0)
    x.reference.append(2.0)
    assert x.budget_config is not None
    x.budget_config["changed"] = 1
    assert not y.recent and not y.reference and y.budget_config is not None
    assert "changed" not in y.budget_config
