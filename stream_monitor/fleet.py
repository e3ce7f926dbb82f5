"""A seeded fleet of stationary models: the false-alarm budget checked on a realistic mix.

Every model publishes ten features, a prediction and its true label inline, and nothing ever
changes: every drift alert, data-quality alert and retrain request on this stream is false.
Each feature is an AR(1) latent ``z`` (coefficient drawn per model and feature from 0.5-0.95,
unit marginal variance) pushed through a non-Gaussian marginal (a Gaussian copula: ``u =
Phi(z)``, then the marginal's inverse CDF), so its autocorrelation and its distribution are
both realistic:

==============  ==========================================================================
feature         marginal
==============  ==========================================================================
``t3``          Student t, 3 degrees of freedom (heavy tails)
``lognormal``   lognormal, sigma 0.5-1 (skew)
``counts``      Poisson counts, mean 0.3-5
``rare_flag``   a 0/1 flag at 0.5-5%
``bursty_flag`` a 0/1 flag at 0.5-5% whose latent has coefficient 0.9-0.95: ones come in bursts
``bimodal``     two modes at +-1.5 (sd 0.5)
``uniform``     uniform on [0, 1) times a scale
``gaussian``    Gaussian
``segment``     a string of 6 categories, two of them rare (3% and 1%)
``ar_t3``       an AR(1) with Student t3 innovations (not a copula: heavy-tailed and dependent)
==============  ==========================================================================

The prediction is a logistic score of three features (``gaussian``, ``t3`` and ``uniform``);
the inline ``label`` is the predicted class, flipped with the model's stable error rate
(5-20%); each feature value is missing (absent from the event) with the model's stable rate
(0.5-3%, independently per value). One event per ``interval`` seconds of event time per model.

The same (seed, model) gives the same bytes, whatever other models are generated with it.
``benchmarks/quality.py --fleet`` replays a fleet through the default config and counts the
false alerts against the budget (docs/detection.md "The fleet scenario").
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .core.plan import MonitorPlan

__all__ = ["FEATURES", "FleetModel", "fleet_model", "model_events", "poisson_upper",
           "replay_fleet", "signal_kind", "write_fleet"]

FEATURES = ("t3", "lognormal", "counts", "rare_flag", "bursty_flag", "bimodal", "uniform",
            "gaussian", "segment", "ar_t3")
CATEGORIES = ("web", "mobile", "store", "partner", "phone", "mail")
CATEGORY_P = (0.45, 0.25, 0.16, 0.10, 0.03, 0.01)
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_BURN_IN = 500  # values of the t3-innovation AR(1) dropped before its stationary part


@dataclass(frozen=True)
class FleetModel:
    """The drawn parameters of one model of the fleet (reported with its false alarms)."""

    model_id: str
    seed: int
    index: int
    coef: dict[str, float]  # AR(1) coefficient of each feature's latent
    params: dict[str, float]  # marginal parameters (rates, means, scales)
    missing_rate: float
    error_rate: float
    weights: tuple[float, float, float, float]  # logistic score: bias, gaussian, t3, uniform

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "coef": self.coef, "params": self.params,
                "missing_rate": self.missing_rate, "error_rate": self.error_rate}


def fleet_model(seed: int, index: int) -> FleetModel:
    """Model ``index`` of fleet ``seed``: its parameters, drawn from its own seeded stream."""
    rng = np.random.default_rng([seed, index, 0])
    coef = {f: round(float(rng.uniform(0.5, 0.95)), 4) for f in FEATURES}
    coef["bursty_flag"] = round(float(rng.uniform(0.9, 0.95)), 4)
    params = {
        "lognormal_sigma": round(float(rng.uniform(0.5, 1.0)), 4),
        "counts_mean": round(float(rng.uniform(0.3, 5.0)), 4),
        "rare_flag_rate": round(float(rng.uniform(0.005, 0.05)), 5),
        "bursty_flag_rate": round(float(rng.uniform(0.005, 0.05)), 5),
        "gaussian_mean": round(float(rng.uniform(-50.0, 50.0)), 3),
        "gaussian_sd": round(float(rng.uniform(0.5, 20.0)), 3),
        "uniform_scale": round(float(rng.uniform(1.0, 100.0)), 3),
    }
    w = [round(float(x), 4) for x in rng.normal(0.0, 0.8, 3)]
    return FleetModel(
        model_id=f"fleet-{seed}-{index:03d}", seed=seed, index=index, coef=coef, params=params,
        missing_rate=round(float(rng.uniform(0.005, 0.03)), 5),
        error_rate=round(float(rng.uniform(0.05, 0.20)), 4),
        weights=(round(float(rng.normal(-0.5, 0.5)), 4), w[0], w[1], w[2]))


def _ar1(rng: np.random.Generator, a: float, n: int) -> np.ndarray:
    """A stationary Gaussian AR(1) with unit marginal variance."""
    from scipy.signal import lfilter

    e = rng.standard_normal(n) * math.sqrt(1.0 - a * a)
    z0 = rng.standard_normal()
    return np.asarray(lfilter([1.0], [1.0, -a], e, zi=[a * z0])[0])


def _bimodal_ppf(u: np.ndarray) -> np.ndarray:
    # The mixture 0.5 N(-1.5, 0.5^2) + 0.5 N(1.5, 0.5^2) has no closed-form inverse CDF:
    # interpolate it on a fine grid (exact to ~1e-4, far below the values' rounding).
    from scipy.special import ndtr

    grid = np.linspace(-4.5, 4.5, 20001)
    cdf = 0.5 * ndtr((grid + 1.5) / 0.5) + 0.5 * ndtr((grid - 1.5) / 0.5)
    return np.interp(u, cdf, grid)


def feature_columns(m: FleetModel, n: int) -> dict[str, np.ndarray]:
    """The ``n`` values of each feature of model ``m`` (before missing values are dropped)."""
    from scipy import stats
    from scipy.special import ndtr

    rng = np.random.default_rng([m.seed, m.index, 1])
    p = m.params
    cols: dict[str, np.ndarray] = {}
    for f in FEATURES:
        a = m.coef[f]
        if f == "ar_t3":
            e = rng.standard_t(3, n + _BURN_IN) / math.sqrt(3.0)  # unit-variance innovations
            from scipy.signal import lfilter

            cols[f] = np.asarray(lfilter([1.0], [1.0, -a], e))[_BURN_IN:]
            continue
        z = _ar1(rng, a, n)
        u = np.clip(ndtr(z), 1e-12, 1.0 - 1e-12)
        if f == "t3":
            cols[f] = stats.t.ppf(u, 3)
        elif f == "lognormal":
            cols[f] = np.exp(p["lognormal_sigma"] * z)
        elif f == "counts":
            cols[f] = stats.poisson.ppf(u, p["counts_mean"])
        elif f in ("rare_flag", "bursty_flag"):
            cols[f] = (u > 1.0 - p[f"{f}_rate"]).astype(np.float64)
        elif f == "bimodal":
            cols[f] = _bimodal_ppf(u)
        elif f == "uniform":
            cols[f] = u * p["uniform_scale"]
        elif f == "gaussian":
            cols[f] = p["gaussian_mean"] + p["gaussian_sd"] * z
        elif f == "segment":
            cols[f] = np.searchsorted(np.cumsum(CATEGORY_P)[:-1], u, side="right")
    return cols


def model_events(m: FleetModel, n: int, interval: float = 1.0,
                 probabilities: bool = False) -> Iterator[bytes]:
    """The model's ``n`` inference events as JSON lines, in event-time order. With
    ``probabilities``, each event also carries its score as class probabilities (``{"0": 1 -
    score, "1": score}``, docs/probabilities.md); nothing else changes."""
    cols = feature_columns(m, n)
    rng = np.random.default_rng([m.seed, m.index, 2])
    missing = rng.random((n, len(FEATURES))) < m.missing_rate
    flip = rng.random(n) < m.error_rate
    b0, wg, wt, wu = m.weights
    g = (cols["gaussian"] - m.params["gaussian_mean"]) / m.params["gaussian_sd"]
    t = np.clip(cols["t3"], -5.0, 5.0) / math.sqrt(3.0)
    un = (cols["uniform"] / m.params["uniform_scale"] - 0.5) * math.sqrt(12.0)
    score = 1.0 / (1.0 + np.exp(-(b0 + wg * g + wt * t + wu * un)))
    label = (score >= 0.5).astype(np.int64) ^ flip.astype(np.int64)
    ints = {"counts", "rare_flag", "bursty_flag"}
    rows = {f: (cols[f].astype(np.int64).tolist() if f in ints
                else [CATEGORIES[int(c)] for c in cols[f]] if f == "segment"
                else np.round(cols[f], 6).tolist()) for f in FEATURES}
    scores = np.round(score, 6).tolist()
    labels = label.tolist()
    miss = missing.tolist()
    for i in range(n):
        feats = {f: rows[f][i] for j, f in enumerate(FEATURES) if not miss[i][j]}
        ev = {"event_id": f"{m.model_id}-{i:06d}", "model_id": m.model_id,
              "timestamp": START + i * interval, "features": feats,
              "prediction": scores[i], "label": labels[i]}
        if probabilities:
            ev["probabilities"] = {"0": round(1.0 - scores[i], 6), "1": scores[i]}
        yield orjson.dumps(ev)


def write_fleet(path: Path, seed: int, models: Sequence[int], events: int,
                interval: float = 1.0, probabilities: bool = False) -> list[FleetModel]:
    """Write the events of ``models`` (indices) of fleet ``seed`` to ``path``, one model after
    the other (models are independent: the core keeps no state across them)."""
    out = []
    with path.open("wb") as f:
        for i in models:
            m = fleet_model(seed, i)
            out.append(m)
            for line in model_events(m, events, interval, probabilities):
                f.write(line + b"\n")
    return out


def signal_kind(signal: str) -> str:
    """The fleet feature (or ``prediction``, ``performance``) a signal watches.

    >>> signal_kind("feature:segment=web"), signal_kind("quality:missing:t3")
    ('segment', 't3')
    >>> signal_kind("performance:error"), signal_kind("prediction")
    ('performance', 'prediction')
    >>> signal_kind("probability:1"), signal_kind("performance:estimated_error")
    ('probability', 'estimated_error')
    """
    if signal == "performance:estimated_error":
        return "estimated_error"
    if signal.startswith("probability:"):
        return "probability"
    if signal.startswith("performance:"):
        return "performance"
    if signal.startswith("quality:"):
        return signal.split(":", 2)[2]
    if signal.startswith("feature:"):
        return signal[len("feature:"):].split("=", 1)[0]
    return signal


def poisson_upper(mean: float, level: float = 0.95) -> int:
    """The smallest count ``c`` with ``P(X <= c) >= level`` for ``X ~ Poisson(mean)``: more
    false alarms than that on a seed is unlikely (< 5%) when the budget holds.

    >>> poisson_upper(9.2), poisson_upper(0.0)
    (14, 0)
    """
    if mean <= 0:
        return 0
    c, term = 0, math.exp(-mean)
    total = term
    while total < level:
        c += 1
        term *= mean / c
        total += term
    return c


def replay_fleet(config: MonitorPlan, seed: int, models: Sequence[int], events: int,
                 interval: float = 1.0, probabilities: bool = False) -> dict[str, Any]:
    """Generate ``models`` of fleet ``seed``, replay them through ``config`` (the replay
    adapter: the worker's core with in-memory state) and list what it emitted. Everything it
    emits is false: nothing in the fleet ever changes.

    Returns the drift alerts, data-quality alerts and retrain requests (with the drawn
    parameters of their models), and the budget's expected count of false drift alerts per
    signal kind (``expected``; ``quality`` for the fault rates): each budgeted signal's
    watched values (all but those spent collecting a reference, at the start and after each
    alert) times its budget per value. ``probabilities``: the events carry their score as
    class probabilities too (:func:`model_events`).
    """
    from .adapters.replay import replay_file
    from .core.monitor import not_watchable

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fleet-{seed}-{models[0]}.jsonl"
        specs = {m.model_id: m for m in write_fleet(path, seed, models, events, interval,
                                                    probabilities)}
        t_gen = time.perf_counter() - t0
        out = io.BytesIO()
        states: list[Any] = []
        replay_file(config, path, out, state_out=states)
    drift, quality, retrain = [], [], []
    for line in out.getvalue().splitlines():
        r = orjson.loads(line)
        kind = r.get("type")
        if kind == "drift_alert":
            ev = r["evidence"]
            cal = ev.get("calibration") or {}
            ref = ev.get("reference") or {}  # (a categorical alert's evidence has shares)
            feature = signal_kind(r["signal"])
            drift.append({
                "model_id": r["model_id"], "signal": r["signal"], "kind": feature,
                "detector": r["detector"]["name"], "event": r["detected_at"]["offset"] % events,
                "change": (ev.get("change") or {}).get("kind"),
                "coef": specs[r["model_id"]].coef.get(feature),
                "reference_values": cal.get("reference_values", ref.get("count")),
                "reference_mean": ref.get("mean"),
                "effective_sample_size": cal.get("effective_sample_size"),
                "long_run_variance_ratio": cal.get("long_run_variance_ratio"),
                "summary": r["summary"]})
        elif kind == "data_quality_alert":
            quality.append({"model_id": r["model_id"], "signal": r["signal"],
                            "event": r["detected_at"]["offset"] % events,
                            "rate_before": r["rate_before"], "rate_after": r["rate_after"],
                            "missing_rate": specs[r["model_id"]].missing_rate})
        elif kind == "retrain_request":
            retrain.append({"model_id": r["model_id"], "rule": r["rule"]["name"],
                            "evidence": r.get("evidence"), "signals": r["signals"],
                            "requested_at": r["requested_at"]})
    expected: dict[str, float] = {}
    watched: dict[str, int] = {}
    unbudgeted: set[str] = set()
    for unit in states[0].models.values():
        for sig in unit.signals.values():
            group = "quality" if sig.signal.startswith("quality:") else signal_kind(sig.signal)
            if sig.budget is None:
                unbudgeted.add(sig.signal)
                continue
            w = max(0, sig.n - (sig.generation + 1) * sig.watched_after)
            watched[group] = watched.get(group, 0) + w
            expected[group] = expected.get(group, 0.0) + w * sig.budget
    unwatchable = [{"model_id": r["model_id"], "signal": r["signal"], "watched": r["watched"],
                    "effective_sample_size": r["assessment"]["effective_sample_size"]}
                   for r in not_watchable(states[0])]
    return {"seed": seed, "models": list(models), "events": events * len(models),
            "not_watchable": unwatchable, "drift": drift, "quality": quality, "retrain": retrain,
            "expected": expected,
            "watched": watched, "unbudgeted": sorted(unbudgeted),
            "params": {m: s.describe() for m, s in specs.items()},
            "seconds": round(time.perf_counter() - t0, 1), "generate_seconds": round(t_gen, 1)}
