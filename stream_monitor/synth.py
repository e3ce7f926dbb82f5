"""Seeded synthetic inference streams with drift injected at known points.

Used by the demo, the tests and the benchmark. The same seed gives the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Drift", "LabelledSpec", "LabelledStream", "StreamSpec", "category_stream",
           "correlated_stream", "embedding_stream", "generate", "labelled"]


@dataclass(frozen=True, slots=True)
class Drift:
    """From event ``at`` (index within its model) on, ``feature`` has its mean moved by
    ``shift`` of its own standard deviations. ``feature='prediction'`` moves the prediction."""

    at: int
    feature: str
    shift: float


@dataclass(frozen=True)
class StreamSpec:
    models: tuple[str, ...] = ("credit-risk",)
    events_per_model: int = 6000
    n_features: int = 10
    drifts: tuple[Drift, ...] = field(default_factory=lambda: (
        Drift(3000, "amount", 1.5), Drift(3000, "utilization", -1.5),
        Drift(3000, "prediction", 1.0)))
    seed: int = 7
    start_time: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    interval: float = 0.1  # seconds between events of one model


_NAMED = [("amount", 120.0, 35.0), ("utilization", 0.4, 0.12), ("age", 41.0, 11.0),
          ("tenure_months", 30.0, 9.0), ("income_k", 62.0, 18.0)]


def feature_specs(n: int) -> list[tuple[str, float, float]]:
    """(name, mean, std) of each feature: named ones first, then f5, f6, ..."""
    specs = list(_NAMED[:n])
    specs += [(f"f{i}", float(i), 1.0 + i / 10) for i in range(len(specs), n)]
    return specs


def generate(spec: StreamSpec) -> Iterator[bytes]:
    """Yield JSON events, models interleaved round-robin, in a stable order."""
    rng = random.Random(spec.seed)
    feats = feature_specs(spec.n_features)
    by_feature: dict[str, list[Drift]] = {}
    for d in spec.drifts:
        by_feature.setdefault(d.feature, []).append(d)
    for i in range(spec.events_per_model):
        for m, model in enumerate(spec.models):
            features = {}
            for name, mu, sd in feats:
                shift = sum(d.shift for d in by_feature.get(name, ()) if i >= d.at)
                features[name] = round(rng.gauss(mu + shift * sd, sd), 6)
            pshift = sum(d.shift for d in by_feature.get("prediction", ()) if i >= d.at)
            prediction = round(min(1.0, max(0.0, rng.gauss(0.3 + 0.1 * pshift, 0.1))), 6)
            yield orjson.dumps({
                "event_id": f"{model}-{i:08d}",
                "model_id": model,
                "model_version": "1",
                "timestamp": spec.start_time + i * spec.interval + m * 1e-3,
                "features": features,
                "prediction": prediction,
            })


@dataclass(frozen=True)
class LabelledSpec:
    """A classifier whose inputs never change while its error rate jumps at ``concept_drift_at``
    (a concept drift only labels can show), with labels that arrive late and out of order."""

    model: str = "churn-model"
    events: int = 5000
    concept_drift_at: int = 2500
    error_before: float = 0.10
    error_after: float = 0.40
    delay_events: tuple[int, int] = (20, 80)  # a label follows its prediction by this many events
    early_labels: int = 50  # labels of the first events, published before any prediction
    missing_every: int = 25  # every n-th prediction never gets its label
    bogus_labels: int = 30  # labels whose prediction never existed
    seed: int = 5
    start_time: float = 1_767_225_600.0
    interval: float = 1.0
    model_version: str | None = "1"
    first_index: int = 0  # index (and event id) of the first event, for a later segment


@dataclass
class LabelledStream:
    """Records to publish, in order: ``early`` labels first, then ``inference`` and ``labels``
    (each label placed after the prediction it trails)."""

    inference: list[bytes]
    labels: list[bytes]
    early: list[bytes]
    missing: list[int]  # event indices that never get a label
    bogus: list[str]  # event ids of labels with no prediction


def labelled(spec: LabelledSpec) -> LabelledStream:
    rng = random.Random(spec.seed)
    n = spec.events
    pending: list[tuple[int, bytes]] = []  # (publish after event k, label record)
    inference, labels, early, missing, bogus = [], [], [], [], []

    def label(i: int, y: int, t: float, eid: str | None = None) -> bytes:
        return orjson.dumps({"event_id": eid or f"{spec.model}-{i:08d}", "model_id": spec.model,
                             "label": y, "timestamp": t})

    bogus_at = set(rng.sample(range(spec.early_labels, n // 4), spec.bogus_labels))
    for i in range(spec.first_index, spec.first_index + n):
        t = spec.start_time + i * spec.interval
        x = rng.gauss(0.0, 1.0)
        y = int(rng.random() < 0.5)
        p_err = spec.error_before if i - spec.first_index < spec.concept_drift_at else \
            spec.error_after
        score = rng.uniform(0.55, 0.95) if (y == 1) != (rng.random() < p_err) else rng.uniform(
            0.05, 0.45)
        inference.append(orjson.dumps({
            "event_id": f"{spec.model}-{i:08d}", "model_id": spec.model,
            "model_version": spec.model_version, "timestamp": t,
            "features": {"tenure": round(x, 6)}, "prediction": round(score, 6)}))
        if i - spec.first_index < spec.early_labels:
            early.append(label(i, y, t + 0.5))
        elif spec.missing_every and i % spec.missing_every == 0:
            missing.append(i)
        else:
            d = rng.randint(*spec.delay_events)
            pending.append((i + d, label(i, y, t + d * spec.interval)))
        if i - spec.first_index in bogus_at:
            eid = f"{spec.model}-bogus-{i}"
            bogus.append(eid)
            labels.append(label(i, 1, t, eid))
        due = [p for p in pending if p[0] <= i]
        pending = [p for p in pending if p[0] > i]
        labels.extend(rec for _, rec in sorted(due, key=lambda p: p[0]))
    labels.extend(rec for _, rec in pending)
    return LabelledStream(inference, labels, early, missing, bogus)


# ---------------------------------------------------------------------------------------------
# Single-signal streams of many kinds (benchmarks/quality.py, `stream-monitor evaluate` tests).

KINDS = ("gaussian", "ar1", "student_t3", "student_t2", "cauchy", "poisson", "binary",
         "rare_binary", "lognormal", "bimodal", "cycle")


def kind_stream(kind: str, n: int, seed: int, change_at: int | None = None,
                change: str = "mean", size: float = 1.0) -> list[float]:
    """``n`` seeded values of a stationary stream of ``kind`` (see ``KINDS``); from index
    ``change_at`` on, a change: ``mean`` moves the level by ``size`` marginal standard
    deviations (for discrete kinds: the rate, so the values stay counts or flags), ``spread``
    multiplies the deviations from the mean by ``size`` (2: the variance x4; sqrt(2): doubled).

    >>> len(kind_stream("ar1", 100, 1)), kind_stream("binary", 5, 1, 0, "mean", 1.0)[:5]
    (100, [0.0, 0.0, 1.0, 0.0, 1.0])
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    after = np.zeros(n, dtype=bool) if change_at is None else idx >= change_at
    if kind in ("poisson", "binary", "rare_binary"):
        base = {"poisson": 0.7, "binary": 0.1, "rare_binary": 0.02}[kind]
        sd = np.sqrt(base * (1 - base)) if kind != "poisson" else np.sqrt(base)
        rate = np.full(n, base)
        if change == "mean":
            rate[after] = base + size * sd
        elif change == "spread":  # more dispersion at the same mean: a mixture of rates
            lo = base / (1 + size)
            mix = rng.random(n) < 0.5
            rate[after] = np.where(mix[after], lo, 2 * base - lo)
        rate = np.clip(rate, 0.0, 1.0 if kind != "poisson" else None)
        if kind == "poisson":
            return rng.poisson(rate).astype(float).tolist()
        return (rng.random(n) < rate).astype(float).tolist()
    if kind == "gaussian":
        x = rng.standard_normal(n)
        mu, sd = 0.0, 1.0
    elif kind == "ar1":
        e = rng.standard_normal(n) * np.sqrt(1 - 0.81)
        x = np.empty(n)
        prev = rng.standard_normal()
        for i in range(n):
            prev = 0.9 * prev + e[i]
            x[i] = prev
        mu, sd = 0.0, 1.0
    elif kind in ("student_t3", "student_t2"):
        df = 3 if kind == "student_t3" else 2
        x = rng.standard_t(df, n)
        mu, sd = 0.0, 1.0 / 0.7979 if df == 2 else np.sqrt(3.0)  # t2: no variance; MAD-ish
    elif kind == "cauchy":
        x = rng.standard_cauchy(n)
        mu, sd = 0.0, 1.4826  # no moments: the MAD stands in
    elif kind == "lognormal":
        x = rng.lognormal(0.0, 0.75, n)
        mu = float(np.exp(0.75**2 / 2))
        sd = float(np.sqrt((np.exp(0.75**2) - 1) * np.exp(0.75**2)))
    elif kind == "bimodal":
        comp = rng.random(n) < 0.5
        x = np.where(comp, -1.5, 1.5) + 0.5 * rng.standard_normal(n)
        mu, sd = 0.0, float(np.sqrt(1.5**2 + 0.25))
    elif kind == "cycle":
        x = np.sin(2 * np.pi * idx / 200.0) + rng.standard_normal(n)
        mu, sd = 0.0, float(np.sqrt(1.5))
    else:
        raise ValueError(f"unknown stream kind {kind!r}; use one of: {', '.join(KINDS)}")
    if change == "mean":
        x = x + np.where(after, size * sd, 0.0)
    elif change == "spread":
        x = np.where(after, mu + (x - mu) * size, x)
    return [round(float(v), 6) for v in x]


def category_stream(shares: list[float], n: int, seed: int, change_at: int | None = None,
                    after: list[float] | None = None, stay: float = 0.0,
                    labels: list[str] | None = None) -> list[str]:
    """``n`` seeded categories (``labels``, default ``c0``, ``c1``, ...) drawn with ``shares``;
    from index ``change_at`` on with the shares ``after``. ``stay`` > 0 makes the sequence a
    sticky Markov chain: each value repeats the previous one with probability ``stay``, else
    is drawn afresh (the shares stay the stationary distribution; runs of ~1/(1-stay)).

    >>> category_stream([0.5, 0.5], 6, 1)
    ['c1', 'c1', 'c0', 'c1', 'c0', 'c0']
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    names = labels or [f"c{i}" for i in range(len(shares))]
    p0 = np.asarray(shares, dtype=np.float64) / sum(shares)
    draws = rng.choice(len(names), size=n, p=p0)
    if change_at is not None and after is not None:
        p1 = np.asarray(after, dtype=np.float64) / sum(after)
        k = max(n - change_at, 0)
        draws[n - k:] = rng.choice(len(names), size=k, p=p1)
    if stay > 0:
        keep = rng.random(n) < stay
        for i in range(1, n):
            if keep[i]:
                draws[i] = draws[i - 1]
    return [names[int(i)] for i in draws]


CLASSIFIER_CLASSES = ("a", "b", "c")


def classifier_stream(n: int, seed: int, *, model_id: str = "clf-1",
                      covariate_at: int | None = None, covariate_scale: float = 0.5,
                      concept_at: int | None = None, concept_noise: float = 0.4,
                      label_every: int = 1, t0: float = 1_767_225_600.0
                      ) -> list[dict[str, object]]:
    """``n`` seeded events of a *calibrated* 3-class classifier (docs/probabilities.md): two
    features, a softmax of a fixed linear model as ``probabilities`` (which *are* p(y | x)),
    the arg-max class as ``prediction`` and a true class drawn from them as an inline ``label``
    (on every ``label_every``-th event).

    * From ``covariate_at`` on, a **covariate shift**: the features shrink by
      ``covariate_scale`` towards the origin, where the classes overlap; confidence and
      accuracy fall, and p(y | x) is unchanged (the estimate holds).
    * From ``concept_at`` on, **concept drift**: with probability ``concept_noise`` the true
      class is drawn uniformly instead; the model's probabilities do not know (the estimate is
      wrong).

    >>> ev = classifier_stream(3, 1)[0]
    >>> sorted(ev), round(sum(ev["probabilities"].values()), 4)
    (['event_id', 'features', 'label', 'model_id', 'prediction', 'probabilities', 'timestamp'], 1.0)
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    w = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = rng.standard_normal((n, 2)) * 1.2
    if covariate_at is not None:
        x[covariate_at:] *= covariate_scale
    logits = x @ w.T
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(n)
    y = (u[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    y = np.minimum(y, 2)
    if concept_at is not None:
        noisy = (rng.random(n) < concept_noise) & (np.arange(n) >= concept_at)
        y = np.where(noisy, rng.integers(0, 3, n), y)
    out: list[dict[str, object]] = []
    names = CLASSIFIER_CLASSES
    for i in range(n):
        probs = [round(float(v), 6) for v in p[i]]
        ev: dict[str, object] = {
            "event_id": f"{model_id}-{i}", "model_id": model_id, "timestamp": t0 + i,
            "features": {"x1": round(float(x[i, 0]), 6), "x2": round(float(x[i, 1]), 6)},
            "prediction": names[int(np.argmax(p[i]))],
            "probabilities": dict(zip(names, probs, strict=True))}
        if label_every and i % label_every == 0:
            ev["label"] = names[int(y[i])]
        out.append(ev)
    return out


def correlated_stream(n: int, seed: int, *, model_id: str = "joint-1", flip_at: int | None = None,
                      rho: float = 0.8, others: int = 4) -> list[dict[str, Any]]:
    """``n`` seeded events whose features ``a`` and ``b`` are standard normal with correlation
    ``rho``, plus ``others`` independent standard normal features ``x0``... (docs/joint-drift.md).
    From ``flip_at`` on the correlation is ``-rho``: every marginal (and the prediction, a
    noisy function of ``x0`` only) keeps its distribution; only the joint one moves.

    >>> evs = correlated_stream(3, 1)
    >>> sorted(evs[0]["features"])
    ['a', 'b', 'x0', 'x1', 'x2', 'x3']
    """
    import math

    import numpy as np

    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, 2 + others))
    out = []
    s = math.sqrt(1.0 - rho * rho)
    for i in range(n):
        r = -rho if flip_at is not None and i >= flip_at else rho
        a = float(u[i, 0])
        b = r * a + s * float(u[i, 1])
        feats = {"a": round(a, 6), "b": round(b, 6)}
        for j in range(others):
            feats[f"x{j}"] = round(float(u[i, 2 + j]), 6)
        pred = round(0.5 * feats["x0"] + 0.1 * float(rng.standard_normal()), 6) if others \
            else 0.0
        out.append({"event_id": f"{model_id}-{i}", "model_id": model_id,
                    "timestamp": 1_767_225_600.0 + i, "features": feats, "prediction": pred})
    return out


def embedding_stream(n: int, seed: int, *, model_id: str = "emb-1", dim: int = 64,
                     shift_at: int | None = None, rank: int = 8) -> list[dict[str, Any]]:
    """``n`` seeded events carrying ``embeddings`` of length ``dim`` (docs/joint-drift.md):
    ``rank`` standard normal latent factors mixed by a fixed random matrix, plus small noise;
    the first two factors correlated at +0.8. From ``shift_at`` on their correlation is -0.8:
    each coordinate's mean stays 0 and its spread moves little, but the vectors' joint
    distribution changes (as when an upstream encoder or the input population changes).
    One numeric feature ``x`` (unchanged) and a prediction that depends on it only.

    >>> ev = embedding_stream(2, 1, dim=8)[0]
    >>> len(ev["embeddings"]), sorted(ev["features"])
    (8, ['x'])
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(12345).standard_normal((rank, dim)) / np.sqrt(rank)
    lat = rng.standard_normal((n, rank))
    r = np.full(n, 0.8)
    if shift_at is not None:
        r[shift_at:] = -0.8
    lat[:, 1] = r * lat[:, 0] + np.sqrt(1 - r * r) * lat[:, 1]
    emb = lat @ mix + 0.1 * rng.standard_normal((n, dim))
    x = rng.standard_normal(n)
    return [{"event_id": f"{model_id}-{i}", "model_id": model_id,
             "timestamp": 1_767_225_600.0 + i, "features": {"x": round(float(x[i]), 6)},
             "prediction": round(float(0.5 * x[i]), 6),
             "embeddings": [round(float(v), 5) for v in emb[i]]} for i in range(n)]
