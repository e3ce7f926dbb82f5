"""The fleet scenario (stream_monitor/fleet.py): the generator, and a small fleet of stationary
models through the example config, whose false alarms must stay within the budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from stream_monitor.config import load_config
from stream_monitor.fleet import (
    CATEGORIES,
    FEATURES,
    feature_columns,
    fleet_model,
    model_events,
    poisson_upper,
    replay_fleet,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "stream_monitor" / "examples" / "monitor.yaml"


def test_a_model_is_the_same_bytes_whatever_else_is_generated() -> None:
    a = list(model_events(fleet_model(3, 7), 300))
    b = list(model_events(fleet_model(3, 7), 300))
    assert a == b
    assert a != list(model_events(fleet_model(3, 8), 300))
    assert a != list(model_events(fleet_model(4, 7), 300))


def test_the_marginals_and_the_dependence_are_what_the_fleet_promises() -> None:
    for index in range(4):
        m = fleet_model(11, index)
        assert all(0.5 <= c <= 0.95 for c in m.coef.values())
        assert 0.9 <= m.coef["bursty_flag"] <= 0.95
        cols = feature_columns(m, 20_000)
        for flag in ("rare_flag", "bursty_flag"):
            rate = m.params[f"{flag}_rate"]
            assert 0.005 <= rate <= 0.05
            assert set(np.unique(cols[flag])) <= {0.0, 1.0}
            # Autocorrelated: ones come in runs, so the share of ones is noisy; within 3x.
            assert rate / 3 < cols[flag].mean() < rate * 3
        assert set(np.unique(cols["counts"])) <= set(range(60))
        assert cols["lognormal"].min() > 0
        shares = np.bincount(cols["segment"].astype(int), minlength=6) / 20_000
        assert len(shares) == len(CATEGORIES) and 0 < shares[-1] < 0.03  # a rare category
        for f in ("t3", "gaussian", "uniform", "bimodal", "ar_t3"):
            x = cols[f]
            lag1 = float(np.corrcoef(x[:-1], x[1:])[0, 1])
            assert lag1 > 0.3, (f, lag1)  # dependent, as drawn (0.5-0.95)


def test_events_carry_ten_features_a_score_and_a_label_with_stable_missing_values() -> None:
    m = fleet_model(2, 0)
    events = [orjson.loads(e) for e in model_events(m, 4000)]
    assert {e["model_id"] for e in events} == {m.model_id}
    present = sum(len(e["features"]) for e in events) / (len(events) * len(FEATURES))
    assert abs((1 - present) - m.missing_rate) < 0.01
    assert all(0 < e["prediction"] < 1 and e["label"] in (0, 1) for e in events)
    errors = np.mean([int(e["prediction"] >= 0.5) != e["label"] for e in events])
    assert abs(errors - m.error_rate) < 0.03
    assert {e["features"]["segment"] for e in events if "segment" in e["features"]} <= set(
        CATEGORIES)


def test_poisson_upper_bound() -> None:
    assert poisson_upper(0.0) == 0
    assert poisson_upper(1.0) == 3  # P(X <= 2) = 0.920, P(X <= 3) = 0.981
    assert poisson_upper(9.2) == 14


@pytest.mark.slow
def test_a_small_stationary_fleet_stays_within_the_budget() -> None:
    """8 models x 10 features (+ prediction, inline labels, missing rates, category shares)
    x 5,000 events, 2 seeds, through the example config unchanged: the false drift alerts of
    each seed stay within the budget's Poisson 95% bound, and no retrain request follows."""
    cfg = load_config(EXAMPLE)
    for seed in (101, 102):
        res = replay_fleet(cfg, seed, range(8), 5000)
        expected = sum(v for k, v in res["expected"].items() if k != "quality")
        assert expected > 0
        alerts = [(a["model_id"], a["signal"], a["event"]) for a in res["drift"]]
        assert len(alerts) <= poisson_upper(expected), (seed, expected, alerts)
        assert res["retrain"] == [], (seed, res["retrain"])
