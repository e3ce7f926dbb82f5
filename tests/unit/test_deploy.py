"""Deployment checks: the KS test, the performance comparison, the verdict and the record."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_monitor.contracts import validate_record
from stream_monitor.contracts.output_records import TriggerEvent
from stream_monitor.contracts.records import record_id
from stream_monitor.core.deploy import (
    compare_performance,
    compare_signal,
    deployment_check,
    ks_2samp,
)

from ..helpers import record_json, replaced

SCHEMA = "deployment-check"
RULE = {"alpha": 0.01, "min_shift": 0.25, "max_error_increase": 0.02, "watch_events": 500,
        "min_labeled": 200, "max_wait_seconds": 3600.0}
TRIGGER = TriggerEvent("e-1234", "inference", 2, 98765)


def brute_force_d(a: list[float], b: list[float]) -> float:
    """max |F_a(x) - F_b(x)| over the pooled values, straight from the ECDF definition."""
    return max(abs(sum(v <= x for v in a) / len(a) - sum(v <= x for v in b) / len(b))
               for x in a + b)


# ---------------------------------------------------------------- KS test


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=40),
       st.lists(st.integers(-5, 5), min_size=1, max_size=40))
@settings(max_examples=300, deadline=None)
def test_ks_statistic_matches_brute_force_ecdf_with_ties(a: list[int], b: list[int]) -> None:
    # A narrow integer range: many ties within and between the samples.
    d, p = ks_2samp(a, b)
    assert d == pytest.approx(brute_force_d([float(v) for v in a], [float(v) for v in b]),
                              abs=1e-12)
    assert 0.0 <= d <= 1.0 and 0.0 <= p <= 1.0
    assert ks_2samp(b, a) == pytest.approx((d, p))


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
       st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_ks_statistic_matches_brute_force_ecdf_floats(a: list[float], b: list[float]) -> None:
    assert ks_2samp(a, b)[0] == pytest.approx(brute_force_d(a, b), abs=1e-12)


def test_ks_statistic_matches_brute_force_on_random_normal_data() -> None:
    rng = np.random.default_rng(20240601)
    for _ in range(20):
        n, m = rng.integers(1, 300, size=2)
        a = rng.normal(0.0, 1.0, size=n).round(2).tolist()  # rounding: some ties
        b = rng.normal(0.3, 1.2, size=m).round(2).tolist()
        assert ks_2samp(a, b)[0] == pytest.approx(brute_force_d(a, b), abs=1e-12)


def test_ks_reference_values() -> None:
    # Disjoint samples of 5: D = 1, and the exact p-value counts the orderings of the 10 values
    # that are this extreme: all of a first or all of b first, 2 of C(10, 5) = 252.
    d, p = ks_2samp([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert d == 1.0
    assert p == pytest.approx(2 / math.comb(10, 5), rel=1e-9)
    assert ks_2samp([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == (0.0, 1.0)
    assert ks_2samp([0, 0, 1], [0, 1, 1])[0] == pytest.approx(1 / 3)
    assert ks_2samp([7.0], [7.0]) == (0.0, 1.0)


def test_ks_p_value_close_to_the_asymptotic_one_on_large_windows() -> None:
    # The exact p-value (what ks_2samp returns up to 10,000 values a sample) against the
    # Kolmogorov limit law with the Numerical Recipes small-sample correction (what this
    # module computed by hand before): close on windows of hundreds of values.
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    for n, m, shift in [(500, 500, 0.0), (200, 300, 0.15), (50, 80, 0.3), (1000, 400, 0.1)]:
        a, b = rng.normal(size=n), rng.normal(shift, 1.0, size=m)
        d, p = ks_2samp(a.tolist(), b.tolist())
        assert d == pytest.approx(brute_force_d(a.tolist(), b.tolist()), abs=1e-12)
        en = math.sqrt(n * m / (n + m))
        assert p == pytest.approx(stats.kstwobign.sf((en + 0.12 + 0.11 / en) * d), abs=0.03)


def test_ks_p_small_for_clearly_different_samples() -> None:
    rng = np.random.default_rng(12345)
    d, p = ks_2samp(rng.normal(0.0, 1.0, 500).tolist(),
                    rng.normal(1.0, 1.0, 500).tolist())
    assert d > 0.3
    assert p < 1e-10


def test_ks_false_positive_rate_near_alpha() -> None:
    # Same distribution: at alpha = 0.05 about 5% of 200 pairs reject (binomial sd ~1.5%).
    # A p-value that is too liberal or far too conservative fails this.
    rng = np.random.default_rng(987)
    ps = [ks_2samp(rng.normal(size=200).tolist(), rng.normal(size=200).tolist())[1]
          for _ in range(200)]
    rate = sum(p < 0.05 for p in ps) / len(ps)
    assert 0.01 <= rate <= 0.10, rate
    assert 0.35 <= float(np.median(ps)) <= 0.65  # p roughly uniform under H0


def test_ks_rejects_empty_samples() -> None:
    with pytest.raises(ValueError):
        ks_2samp([], [1.0])
    with pytest.raises(ValueError):
        ks_2samp([1.0], [])


# ---------------------------------------------------------------- compare_signal


def test_compare_signal_changed_when_shifted() -> None:
    rng = np.random.default_rng(1)
    r = compare_signal("feature:amount", rng.normal(100, 10, 500).tolist(),
                       rng.normal(110, 10, 500).tolist(), alpha=0.01, min_shift=0.25,
                       min_values=100)
    assert r["sufficient"] and r["changed"]
    assert r["ks"]["p_value"] < 1e-10
    assert r["mean_shift_in_previous_std"] == pytest.approx(1.0, abs=0.2)
    assert r["previous"]["count"] == r["new"]["count"] == 500
    assert r["previous"]["mean"] == pytest.approx(100, abs=2)


def test_compare_signal_same_distribution_not_changed() -> None:
    rng = np.random.default_rng(2)
    r = compare_signal("feature:amount", rng.normal(size=500).tolist(),
                       rng.normal(size=500).tolist(), alpha=0.01, min_shift=0.25,
                       min_values=100)
    assert r["sufficient"] and not r["changed"]
    assert r["ks"]["p_value"] > 0.01


def test_compare_signal_needs_a_shift_that_matters() -> None:
    # 20,000 values each: KS rejects a 0.1 std shift, but 0.1 < min_shift.
    rng = np.random.default_rng(3)
    prev, new = rng.normal(0.0, 1.0, 20_000).tolist(), rng.normal(0.1, 1.0, 20_000).tolist()
    r = compare_signal("feature:x", prev, new, alpha=0.01, min_shift=0.25, min_values=100)
    assert r["ks"]["p_value"] < 0.01
    assert abs(r["mean_shift_in_previous_std"]) < 0.25
    assert not r["changed"]
    # A change of shape with the same mean: KS rejects but the mean did not move.
    r = compare_signal("feature:x", rng.normal(0.0, 1.0, 5000).tolist(),
                       rng.normal(0.0, 3.0, 5000).tolist(),
                       alpha=0.01, min_shift=0.25, min_values=100)
    assert r["ks"]["p_value"] < 1e-10 and not r["changed"]


def test_compare_signal_insufficient_and_empty() -> None:
    r = compare_signal("prediction", [1.0, 2.0, 3.0], [5.0, 6.0, 7.0], alpha=0.01,
                       min_shift=0.25, min_values=10)
    assert r["ks"] is None and not r["changed"] and not r["sufficient"]
    assert r["mean_shift_in_previous_std"] == pytest.approx(4.0)  # still shown
    r = compare_signal("prediction", [1.0, 2.0], [], alpha=0.01, min_shift=0.25, min_values=1)
    assert r["mean_shift_in_previous_std"] is None and r["ks"] is None
    assert r["new"]["count"] == 0 and r["new"]["mean"] is None
    with pytest.raises(ValueError):
        compare_signal("prediction", [1.0], [1.0], alpha=0.01, min_shift=0.25, min_values=0)


def test_compare_signal_constant_previous_uses_unit_std() -> None:
    r = compare_signal("feature:flag", [0.0] * 50, [1.0] * 50, alpha=0.01, min_shift=0.25,
                       min_values=20)
    assert r["previous"]["std"] == 0.0
    assert r["mean_shift_in_previous_std"] == 1.0
    assert r["ks"] == {"statistic": 1.0, "p_value": pytest.approx(0.0, abs=1e-15)}
    assert r["changed"]


# ---------------------------------------------------------------- compare_performance


def bernoulli_errors(rate: float, n: int) -> list[float]:
    """Exactly round(rate * n) errors among n predictions."""
    k = round(rate * n)
    return [1.0] * k + [0.0] * (n - k)


def random_errors(rng: np.random.Generator, rate: float, n: int) -> list[float]:
    """n independent 0/1 errors with probability rate."""
    return (rng.random(n) < rate).astype(float).tolist()


def test_performance_detects_error_rate_rise() -> None:
    r = compare_performance("performance:error", bernoulli_errors(0.05, 400),
                            bernoulli_errors(0.20, 400), binary=True, alpha=0.01,
                            max_increase=0.02, min_values=200)
    assert r["degraded"] and r["sufficient"]
    assert r["increase"] == pytest.approx(0.15)
    assert r["previous"] == {"count": 400, "mean": 0.05}
    assert r["new"] == {"count": 400, "mean": 0.2}
    # Pooled two-proportion z-test, by hand: pooled 0.125, se = sqrt(.125 * .875 * 2/400).
    z = 0.15 / math.sqrt(0.125 * 0.875 * (2 / 400))
    assert r["p_value"] == pytest.approx(1 - NormalDist().cdf(z), rel=1e-4)
    assert r["p_value"] < 1e-9


def test_performance_detects_rise_in_random_errors() -> None:
    rng = np.random.default_rng(11)
    r = compare_performance("performance:error", random_errors(rng, 0.05, 400),
                            random_errors(rng, 0.20, 400), binary=True, alpha=0.01,
                            max_increase=0.02, min_values=200)
    assert r["degraded"] and r["p_value"] < 1e-5


def test_performance_same_error_rate_not_flagged() -> None:
    r = compare_performance("performance:error", bernoulli_errors(0.05, 400),
                            bernoulli_errors(0.05, 400), binary=True, alpha=0.01,
                            max_increase=0.02, min_values=200)
    assert not r["degraded"]
    assert r["increase"] == 0.0 and r["p_value"] == pytest.approx(0.5)


def test_performance_false_positive_rate_near_alpha() -> None:
    rng = np.random.default_rng(5)
    ps = [compare_performance("performance:error", random_errors(rng, 0.1, 400),
                              random_errors(rng, 0.1, 400), binary=True, alpha=0.05,
                              max_increase=0.0, min_values=200)["p_value"]
          for _ in range(300)]
    rate = sum(p < 0.05 for p in ps) / len(ps)
    assert 0.01 <= rate <= 0.10, rate


def test_performance_improvement_is_not_degradation() -> None:
    r = compare_performance("performance:error", bernoulli_errors(0.20, 400),
                            bernoulli_errors(0.05, 400), binary=True, alpha=0.01,
                            max_increase=0.02, min_values=200)
    assert r["increase"] == pytest.approx(-0.15)
    assert r["p_value"] > 0.99 and not r["degraded"]


def test_performance_small_rise_below_max_increase() -> None:
    # Significant, but within the tolerated increase.
    r = compare_performance("performance:error", bernoulli_errors(0.10, 20_000),
                            bernoulli_errors(0.11, 20_000), binary=True, alpha=0.01,
                            max_increase=0.02, min_values=200)
    assert r["p_value"] < 0.01 and not r["degraded"]


def test_performance_regression_welch() -> None:
    rng = np.random.default_rng(21)
    prev = np.abs(rng.normal(0, 1.0, 400))
    worse = np.abs(rng.normal(0, 1.5, 400))
    r = compare_performance("performance:error", prev.tolist(), worse.tolist(), binary=False,
                            alpha=0.01, max_increase=0.05, min_values=200)
    assert r["degraded"] and r["p_value"] < 1e-6
    se = math.sqrt(prev.var(ddof=1) / 400 + worse.var(ddof=1) / 400)
    z = (worse.mean() - prev.mean()) / se
    assert r["p_value"] == pytest.approx(1 - NormalDist().cdf(z), rel=1e-4)
    same = compare_performance("performance:error", prev.tolist(),
                               np.abs(rng.normal(0, 1.0, 400)).tolist(),
                               binary=False, alpha=0.01, max_increase=0.05, min_values=200)
    assert not same["degraded"] and same["p_value"] > 0.01


def test_performance_constant_errors() -> None:
    kw: dict[str, Any] = {"alpha": 0.01, "max_increase": 0.02, "min_values": 5}
    r = compare_performance("performance:error", [0.0] * 10, [0.0] * 10, binary=True, **kw)
    assert r["p_value"] == 1.0 and not r["degraded"]
    r = compare_performance("performance:error", [1.0] * 10, [2.0] * 10, binary=False, **kw)
    assert r["p_value"] == 0.0 and r["degraded"]  # no variance: a certain rise


def test_performance_insufficient() -> None:
    r = compare_performance("performance:error", bernoulli_errors(0.05, 400), [1.0] * 10,
                            binary=True, alpha=0.01, max_increase=0.02, min_values=200)
    assert not r["sufficient"] and not r["degraded"]
    assert r["increase"] is None and r["p_value"] is None
    assert r["new"] == {"count": 10, "mean": 1.0}
    r = compare_performance("performance:error", [], [], binary=True, alpha=0.01,
                            max_increase=0.02, min_values=1)
    assert r["previous"] == {"count": 0, "mean": None}


# ---------------------------------------------------------------- the record and its verdict


def _signal(name: str, *, shift: float = 0.0, n: int = 500, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return compare_signal(name, rng.normal(0.0, 1.0, n).tolist(),
                          rng.normal(shift, 1.0, n).tolist(), alpha=0.01, min_shift=0.25,
                          min_values=100)


def _perf(new_rate: float, n: int = 400) -> dict[str, Any]:
    return compare_performance("performance:error", bernoulli_errors(0.05, 400),
                               bernoulli_errors(new_rate, n), binary=True, alpha=0.01,
                               max_increase=0.02, min_values=200)


def _check(signals: list[dict[str, Any]], performance: dict[str, Any] | None, *,
           previous_version: str | None = "v1", model_version: str | None = "v2",
           reason: str = "watch_complete") -> dict[str, Any]:
    record = deployment_check(model_id="fraud", model_version=model_version,
                              previous_version=previous_version, started_at=1_700_000_000.0,
                              completed_at=1_700_000_600.5, reason=reason, trigger=TRIGGER,
                              signals=signals, performance=performance, rule=RULE)
    validate_record(record, SCHEMA)
    return record


def test_verdict_pass() -> None:
    r = _check([_signal("feature:amount", seed=1), _signal("prediction", seed=2)], _perf(0.05))
    assert r.verdict == "pass"
    assert r.reasons == ["none of 2 signals changed",
                            "performance:error did not degrade (0.05 -> 0.05)"]
    assert r.summary.startswith("fraud v2 vs v1: pass - none of 2 signals changed")


def test_verdict_pass_without_labels() -> None:
    r = _check([_signal("feature:amount", seed=1)], None)
    assert r.verdict == "pass" and r.performance is None
    assert "no labels to compare performance" in r.reasons


def test_verdict_fail_on_performance() -> None:
    r = _check([_signal("feature:amount", seed=1)], _perf(0.21))
    assert r.verdict == "fail"
    assert len(r.reasons) == 1
    assert r.reasons[0].startswith("performance:error rose from 0.05 to 0.21 (p=")
    assert r.summary.startswith("fraud v2 vs v1: fail - performance:error rose from 0.05")


def test_verdict_fail_on_feature_change() -> None:
    r = _check([_signal("feature:amount", shift=1.0, seed=3), _signal("prediction", seed=4)],
               _perf(0.05))
    assert r.verdict == "fail"
    assert r.reasons == [r.reasons[0]] and r.reasons[0].startswith(
        "feature:amount changed (KS p=")


def test_verdict_warn_on_prediction_change_only() -> None:
    r = _check([_signal("feature:amount", seed=5), _signal("prediction", shift=1.0, seed=6)],
               _perf(0.05))
    assert r.verdict == "warn"
    assert len(r.reasons) == 1 and r.reasons[0].startswith("prediction changed")


def test_verdict_warn_on_too_few_labels() -> None:
    r = _check([_signal("feature:amount", seed=7)], _perf(0.5, n=20), reason="timeout")
    assert r.verdict == "warn" and r.reason == "timeout"
    assert r.reasons == ["performance:error: too few values to compare (400 before, 20 after)"]


def test_verdict_fail_lists_warnings_too() -> None:
    r = _check([_signal("prediction", shift=1.0, seed=8), _signal("feature:a", shift=1.0, seed=9)],
               _perf(0.21))
    assert r.verdict == "fail"
    assert [x.split(" ")[0] for x in r.reasons] == ["performance:error", "feature:a",
                                                       "prediction"]
    assert r.summary.count(";") == 2


def test_insufficient_signals_warn_but_do_not_fail() -> None:
    # Too few values on a side (the previous version's state expired, or a signal the new
    # version barely has): nothing compared, so no failure, and no silent pass either.
    s = compare_signal("feature:amount", [0.0] * 300, [5.0] * 3, alpha=0.01, min_shift=0.25,
                       min_values=100)
    empty = compare_signal("feature:other", [1.0, 2.0], [], alpha=0.01, min_shift=0.25,
                           min_values=100)
    r = _check([s, empty], None, reason="timeout")
    assert r.verdict == "warn"
    assert r.reasons == ["too few values to compare feature:amount, feature:other"]


def test_first_version_has_nothing_to_compare() -> None:
    r = _check([_signal("feature:amount", shift=3.0)], _perf(0.5), previous_version=None,
               model_version="v1")
    assert r.verdict == "pass"
    assert r.reasons == ["no previous version to compare"]
    assert r.signals == [] and r.performance is None
    assert r.summary == "fraud v1: pass - no previous version to compare"


def test_record_fields_and_deterministic_id() -> None:
    r = _check([_signal("feature:amount", seed=1)], _perf(0.05))
    assert r.schema_version == 1 and r.type == "deployment_check"
    assert r.check_id == record_id("deployment_check", "fraud", "v2", "v1")
    assert r.started_at == "2023-11-14T22:13:20.000Z"
    assert r.completed_at == "2023-11-14T22:23:20.500Z"
    assert r.trigger == TRIGGER  # (a frozen value: no copy needed against aliasing)
    assert r.rule == RULE
    again = _check([_signal("feature:amount", seed=1)], _perf(0.05))
    assert again == r
    assert _check([], None, model_version="v3").check_id != r.check_id
    unversioned = _check([], None, model_version=None)
    assert unversioned.model_version is None
    assert unversioned.check_id == record_id("deployment_check", "fraud", "", "v1")
    assert unversioned.summary.startswith("fraud (no version) vs v1: pass")


# ---------------------------------------------------------------- the schema


@pytest.mark.parametrize(("path", "value"), [
    (("extra",), 1),
    (("verdict",), "maybe"),
    (("reason",), "bored"),
    (("check_id",), "not-hex"),
    (("reasons",), []),
    (("started_at",), "2023-11-14T22:13:20Z"),
    (("trigger", "offset"), -1),
    (("rule", "alpha"), 1.5),
    (("signals", 0, "ks"), None),  # sufficient, yet no test
    (("signals", 0, "ks", "p_value"), 1.5),
    (("signals", 0, "new", "count"), 0),  # an empty window has null statistics
    (("performance", "p_value"), None),  # sufficient, yet no p-value
    (("performance", "previous", "mean"), None),
    (("previous_version",), None),  # then there must be no comparisons
])
def test_schema_rejects_broken_records(path: tuple[Any, ...], value: Any) -> None:
    record = _check([_signal("feature:amount", seed=1)], _perf(0.05))
    with pytest.raises(jsonschema.ValidationError):
        validate_record(replaced(record, path, value), SCHEMA)


def test_schema_insufficient_comparisons_must_not_claim_a_change() -> None:
    s = compare_signal("feature:amount", [0.0] * 3, [5.0] * 3, alpha=0.01, min_shift=0.25,
                       min_values=100)
    p = _perf(0.5, n=20)
    record = _check([s], p)
    bad = record_json(record)
    bad["signals"] = [{**s, "changed": True}]
    with pytest.raises(jsonschema.ValidationError):
        validate_record(bad, SCHEMA)
    bad = record_json(record)
    bad["performance"]["degraded"] = True
    with pytest.raises(jsonschema.ValidationError):
        validate_record(bad, SCHEMA)
