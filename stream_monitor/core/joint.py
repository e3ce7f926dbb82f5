"""Joint drift: one signal per model over its numeric features together. Pure. docs/joint-drift.md
says what it catches and what it costs.

A shift of the *joint* distribution can leave every marginal unchanged (two features whose
correlation flips from +0.8 to -0.8 keep their means and spreads): no per-feature signal can
see it. The ``joint`` signal can:

* **The fit.** The first ``fit_size`` events of the model that carry every watched feature as a
  finite number form the fit reference. From them: each feature's mean and standard deviation,
  and the precision matrix ``P`` (the inverse of the features' correlation matrix, with a small
  ridge so that collinear features do not make it singular).
* **The value.** Each later event with all the watched features gives the Mahalanobis distance
  of its standardized features ``z``: ``d2 = z' P z``, fed to the signal as the Wilson-Hilferty
  transform ``(d2 / p) ** (1/3)`` (near normal for a chi-square, so a mean cusum is at home).
  The ``joint`` signal then forms its own reference from these values, like any signal, and is
  watched by a calibrated cusum under the model's false-alarm budget (docs/detection.md).
  When it fires (and rebaselines), the fit is made again from the next ``fit_size`` events, so
  that the new reference is of distances to the new distribution.
* **The evidence.** ``d2`` is the sum of per-feature contributions ``c_i = z_i (P z)_i``, each
  of mean 1 on the fit reference (in-sample, up to the ridge). The alert lists the features
  whose mean contribution over the last events grew most against the reference's, and each
  one's marginal mean shift (near 0 for a correlation change, which only the joint view sees).

The watched features are the rule's ``features`` when it names them, else the numeric features
of the first event that has at least two (sorted by name, at most ``max_features``).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..contracts.signals import EMBEDDING, JOINT

__all__ = ["EMBEDDING", "JOINT", "RIDGE", "JointFit", "JointState", "fit", "project", "projection",
           "row_of"]

# Added to the correlation matrix's diagonal before it is inverted (collinear features).
RIDGE = 1e-3
# A feature whose reference spread is below this is constant: it is left out of the fit.
_MIN_STD = 1e-12

_F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class JointFit:
    """The fit reference's summary: per feature its mean and scale, and the precision matrix
    of the standardized features; ``ref_contrib``: each feature's mean contribution to ``d2``
    over the fit rows (near 1)."""

    features: tuple[str, ...]
    mean: _F64
    scale: _F64
    precision: _F64
    ref_contrib: _F64

    def contributions(self, x: _F64) -> _F64:
        """Per-feature contributions ``z_i (P z)_i`` of one row (their sum is ``d2``)."""
        z = (x - self.mean) / self.scale
        out: _F64 = z * (self.precision @ z)
        return out

    def value(self, contrib: _F64) -> float:
        """The signal's value of a row's contributions: ``(d2 / p) ** (1/3)``."""
        d2 = max(float(contrib.sum()), 0.0)
        return float((d2 / len(self.features)) ** (1.0 / 3.0))

    def meta(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "precision": self.precision.tolist(),
                "ref_contrib": self.ref_contrib.tolist()}

    @classmethod
    def restore(cls, m: Mapping[str, Any]) -> JointFit:
        return cls(features=tuple(map(str, m["features"])),
                   mean=np.asarray(m["mean"], dtype=np.float64),
                   scale=np.asarray(m["scale"], dtype=np.float64),
                   precision=np.asarray(m["precision"], dtype=np.float64),
                   ref_contrib=np.asarray(m["ref_contrib"], dtype=np.float64))


def fit(features: Sequence[str], rows: Sequence[Sequence[float]]) -> JointFit | None:
    """The fit of ``rows`` (one list of values per event, in ``features``' order); constant
    features are left out. None when fewer than two features vary."""
    x = np.asarray(rows, dtype=np.float64)
    std = x.std(axis=0)
    keep = std > _MIN_STD
    if int(keep.sum()) < 2:
        return None
    x = x[:, keep]
    names = tuple(f for f, k in zip(features, keep.tolist(), strict=True) if k)
    mean = x.mean(axis=0)
    scale = std[keep]
    z = (x - mean) / scale
    corr = (z.T @ z) / len(z)
    p = len(names)
    precision = np.linalg.inv(corr + RIDGE * np.eye(p))
    contrib = z * (z @ precision)  # P is symmetric: (P z)_i per row
    return JointFit(names, mean, scale, precision, contrib.mean(axis=0))


def row_of(features: Mapping[str, Any], names: Sequence[str]) -> list[float] | None:
    """The values of ``names`` in an event's features, None unless all are finite numbers."""
    out: list[float] = []
    for n in names:
        v = features.get(n)
        t = type(v)
        if t is float:
            if not math.isfinite(v):  # type: ignore[arg-type]  # t is float: checked above
                return None
            out.append(v)  # type: ignore[arg-type]  # t is float
        elif t is int or t is bool:
            out.append(float(v))  # type: ignore[arg-type]  # t is int or bool
        else:
            return None
    return out


def _numeric_names(features: Mapping[str, Any], cap: int) -> list[str]:
    names = sorted(n for n, v in features.items()
                   if (type(v) is float and math.isfinite(v)) or type(v) in (int, bool))
    return names[:cap]


@dataclass(slots=True)
class JointState:
    """A model's joint signal state: the watched features, the rows collecting for the fit,
    the fit, and the last rows (the alert's evidence)."""

    fit_size: int
    max_features: int
    recent_size: int
    named: tuple[str, ...] = ()  # the rule's features (empty: found from the first events)
    dim: int = 0  # of an embedding: the vectors' length (set by the first; 0: features)
    features: tuple[str, ...] = ()
    rows: list[list[float]] = field(default_factory=list)
    fitted: JointFit | None = None
    recent: deque[list[float]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.recent = deque(self.recent, maxlen=self.recent_size)
        if self.named and not self.features:
            self.features = self.named

    def value(self, features: Mapping[str, Any]) -> float | None:
        """An event's value of the ``joint`` signal: None while the fit forms (the event's row
        then joins it when complete) or when the event lacks a watched feature."""
        f = self.fitted
        if f is None:
            if not self.features:
                names = _numeric_names(features, self.max_features)
                if len(names) < 2:
                    return None
                self.features = tuple(names)
            row = row_of(features, self.features)
            if row is None:
                return None
            self.rows.append(row)
            if len(self.rows) >= self.fit_size:
                self.fitted = fit(self.features, self.rows)
                self.rows = []
                if self.fitted is None:
                    # Fewer than two features vary: start again (a later reference may).
                    self.features = self.named
            return None
        row = row_of(features, f.features)
        if row is None:
            return None
        self.recent.append(row)
        z = (np.asarray(row, dtype=np.float64) - f.mean) / f.scale
        d2 = float(z @ f.precision @ z)
        return float((max(d2, 0.0) / len(f.features)) ** (1.0 / 3.0))

    def evidence(self, last: int, top: int = 3) -> dict[str, Any]:
        """Which features moved the joint signal: per feature, the mean contribution to
        ``d2`` over the last ``last`` rows against the fit reference's (their ratio ranks
        them), and the marginal mean shift over those rows in reference standard deviations.
        """
        f = self.fitted
        if f is None or not self.recent:
            return {}
        rows = list(self.recent)[-last:]
        z = (np.asarray(rows, dtype=np.float64) - f.mean) / f.scale
        c = (z * (z @ f.precision)).mean(axis=0)
        shift = z.mean(axis=0)
        ratio = c / np.maximum(f.ref_contrib, 1e-9)
        order = np.argsort(-ratio, kind="stable")
        ranked = [{"feature": f.features[j], "contribution": round(float(c[j]), 4),
                   "reference_contribution": round(float(f.ref_contrib[j]), 4),
                   "ratio": round(float(ratio[j]), 3),
                   "mean_shift_in_reference_std": round(float(shift[j]), 3)}
                  for j in order[:top].tolist()]
        return {"features": list(f.features), "rows": len(rows),
                "d2_per_feature": round(float(c.sum()) / len(f.features), 4),
                "top": ranked}

    def refit(self) -> None:
        """Fit again from the next events (after an alarm: the ``joint`` signal rebaselines,
        and its new reference must be of distances to a fit of the new distribution)."""
        self.fitted = None
        self.rows = []
        self.recent.clear()
        self.features = self.named
        self.dim = 0

    def meta(self) -> dict[str, Any]:
        return {"features": list(self.features), "dim": self.dim, "rows": self.rows,
                "fit": None if self.fitted is None else self.fitted.meta(),
                "recent": list(self.recent)}

    def restore(self, m: Mapping[str, Any]) -> None:
        self.features = tuple(map(str, m.get("features", ()))) or self.named
        self.dim = int(m.get("dim", 0))
        self.rows = [[float(v) for v in r] for r in m.get("rows", [])]
        fm = m.get("fit")
        self.fitted = None if fm is None else JointFit.restore(fm)
        self.recent = deque(([float(v) for v in r] for r in m.get("recent", [])),
                            maxlen=self.recent_size)


# -- embeddings ---------------------------------------------------------------------------------

_PROJECTIONS: dict[tuple[int, int], _F64] = {}


def projection(dim: int, k: int) -> _F64:
    """A fixed ``dim x k`` random projection (Achlioptas: entries +-1/sqrt(k), the signs from
    SHA-256 of the shape, the same in every process and version): it keeps the distances
    between vectors up to a small distortion, so ``k`` projections watched together see a
    change of the embeddings' distribution."""
    hit = _PROJECTIONS.get((dim, k))
    if hit is not None:
        return hit
    need = (dim * k + 7) // 8
    out = bytearray()
    counter = 0
    while len(out) < need:
        out += hashlib.sha256(f"embedding-projection:{dim}:{k}:{counter}".encode()).digest()
        counter += 1
    bits = np.unpackbits(np.frombuffer(bytes(out[:need]), dtype=np.uint8))[:dim * k]
    m = (bits.astype(np.float64) * 2.0 - 1.0).reshape(dim, k) / math.sqrt(k)
    if len(_PROJECTIONS) >= 16:
        _PROJECTIONS.clear()
    _PROJECTIONS[(dim, k)] = m
    return m


def project(vector: Sequence[float], k: int) -> dict[str, float]:
    """An embedding's ``k`` projections as named values ``c0``... (core/monitor.py feeds them
    to the embedding's :class:`JointState` as features)."""
    y = np.asarray(vector, dtype=np.float64) @ projection(len(vector), k)
    return {f"c{j}": float(v) for j, v in enumerate(y.tolist())}
