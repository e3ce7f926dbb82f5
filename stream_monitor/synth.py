"""Seeded synthetic inference streams with drift injected at known points.

Used by the demo, the tests and the benchmark. The same seed gives the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

__all__ = ["Drift", "StreamSpec", "generate"]


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
        Drift(3000, "amount", 1.5), Drift(3000, "utilization", -1.5), Drift(3000, "prediction", 1.0)))
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
