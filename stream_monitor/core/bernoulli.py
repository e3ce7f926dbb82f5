"""A calibrated Bernoulli CUSUM for binary signals: one 0/1 value per event.

A binary signal (a fault flag ``quality:<fault>:<feature>``, 0/1 classification errors in
``performance:error``, a numeric signal whose reference holds only 0 and 1) is a sequence of
0/1 values with a reference rate ``p0``. :class:`BernoulliCusum` runs one log-likelihood-ratio
CUSUM per alternative rate ``p1`` (a few odds ratios against ``p0``: small, medium and large
rises, and a fall where the reference can tell one):

    ``S_j = max(0, S_j + (log(p1_j / p0) if x else log((1 - p1_j) / (1 - p0))))``

and fires when a sum crosses its threshold ``h_j``. :func:`calibrate_rate` chooses the
alternatives and thresholds from the reference and the signal's share of the false-alarm budget
(docs/detection.md "Binary signals"):

* **The rate is uncertain, by principle.** The reference gives a posterior for the true rate,
  ``Beta(k_eff + 1/2, n_eff - k_eff + 1/2)`` (Jeffreys' prior; ``k_eff`` and ``n_eff`` the ones
  and values divided by the dependence factor ``tau``), and each threshold is the smallest whose
  false-alarm rate, *averaged over that posterior*, meets the budget. A reference of 200 zeros
  therefore still allows a rate of a few percent, and a first 1 cannot fire: no special case for
  all-zero, all-one or constant references.
* **Dependence that holds for 0/1 data.** Bursty flags come in runs. The reference's
  transitions are fitted as a two-state Markov chain with a Jeffreys prior on each transition
  probability (:func:`dependence`): its lag-one correlation ``lam`` gives ``tau = (1 + lam) /
  (1 - lam)``, raised to the batch-means long-run variance ratio when that is larger (longer
  memory than one step). A reference without a single 1 (or 0) gets ``lam`` of about 1/2 from
  the prior alone: runs cannot be ruled out.
* **Run lengths under that chain.** The false-alarm rate of a sum at true rate ``p`` is
  Siegmund's ``1 / ARL``, ``ARL = (exp(theta h) - theta h - 1) / (-theta mu)``, with ``mu`` the
  mean increment and ``theta`` the non-zero root of the chain's tilted spectral radius
  ``rho(theta) = 1`` (exact exponent for a Markov-dependent sum, not a Gaussian guess).
* **Alternatives the reference can support.** An alternative whose likelihood-ratio crossing
  rate lies inside the posterior of ``p0`` would need an enormous threshold. The smallest rise
  (largest fall) on a grid of odds ratios whose posterior-averaged threshold is at most
  ``H_SLACK`` times its threshold at a known rate is the first alternative; the others are 4 and
  16 times its odds ratio.

All attributes are plain numbers and lists, so the detector is checkpointed like the others
(core/detectors.py).

>>> det = BernoulliCusum(p0=0.01, ratios=[20.0], h=[8.0])
>>> for i, x in enumerate([0] * 100 + [1, 0, 1, 1, 0, 1]):
...     det.update(x)
...     if det.drift_detected:
...         break
>>> i, det.kind
(103, 'rate_up')
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .calibrate import long_run_ratio
from .scan import Floats, Scan, feed_in_chunks

__all__ = [
    "H_SLACK",
    "BernoulliCusum",
    "alternative_rate",
    "calibrate_counts",
    "calibrate_rate",
    "dependence",
    "is_binary_reference",
    "locate_rate",
    "posterior_grid",
]

# An alternative is used when the uncertainty of p0 costs at most this factor on its threshold.
H_SLACK = 1.5
# Odds ratios of the extra up alternatives, as multiples of the smallest usable one.
UP_STEPS = (1.0, 4.0, 16.0)
_OR_GRID = tuple(1.25 ** i for i in range(1, 42))  # 1.25 .. ~9,400
_P_MAX = 0.999
_THETA_MAX = 400.0
_DEFAULT_P0 = 0.01
_DEFAULT_RATIOS = (8.0, 32.0, 128.0)
# Thresholds of the bare detector (no calibration): a 1% iid rate, the default budget.
_DEFAULT_H = (14.0, 14.0, 14.0)


def _alt(p0: float, ratio: float) -> float:
    """The rate whose odds are ``ratio`` times those of ``p0`` (capped inside (0, 1))."""
    o = ratio * p0 / (1.0 - p0)
    return min(max(o / (1.0 + o), 1.0 - _P_MAX), _P_MAX)


class BernoulliCusum:
    """One-sided log-likelihood-ratio CUSUMs of ``p0`` against alternative rates."""

    def __init__(self, p0: float = _DEFAULT_P0, ratios: Sequence[float] | None = None,
                 h: Sequence[float] | None = None, base: Sequence[float] | None = None,
                 given: Sequence[int] | None = None) -> None:
        rs = [float(r) for r in (_DEFAULT_RATIOS if ratios is None else ratios)]
        hs = [float(x) for x in (_DEFAULT_H if h is None else h)]
        bs = [float(p0)] * len(rs) if base is None else [float(b) for b in base]
        gs = [-1] * len(rs) if given is None else [int(g) for g in given]
        if not 0.0 < p0 < 1.0 or not all(0.0 < b < 1.0 for b in bs):
            raise ValueError(f"p0 and base rates must be in (0, 1), got {p0!r}, {bs!r}")
        if not rs or not len(hs) == len(bs) == len(gs) == len(rs):
            raise ValueError("ratios, h, base and given must be lists of the same positive length")
        if not all(r > 0 and r != 1.0 for r in rs) or not all(x > 0 for x in hs):
            raise ValueError("odds ratios must be > 0 and != 1; thresholds > 0")
        if not all(g in (-1, 0, 1) for g in gs):
            raise ValueError("given must hold -1 (every value), 0 or 1 (values after a 0 or a 1)")
        self.p0 = float(p0)
        self.ratios = rs
        self.h = hs
        self.base = bs
        self.given = gs
        self.y1 = [math.log(_alt(q, r) / q) for q, r in zip(bs, rs, strict=True)]
        self.y0 = [math.log((1.0 - _alt(q, r)) / (1.0 - q)) for q, r in zip(bs, rs, strict=True)]
        self.s = [0.0] * len(rs)
        self.prev = -1  # the previous value (0 or 1); -1 before the first
        self.fired = -1
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    @property
    def kind(self) -> str:
        """``rate_up`` or ``rate_down``: the direction of the sum that fired."""
        return "rate_up" if self.fired < 0 or self.ratios[self.fired] > 1.0 else "rate_down"

    def update(self, x: float) -> None:
        if self._drift_detected:
            self.s = [0.0] * len(self.s)
            self.fired = -1
            self._drift_detected = False
        one = x >= 0.5
        inc = self.y1 if one else self.y0
        s = self.s
        h = self.h
        given = self.given
        prev = self.prev
        best = 0.0
        for j in range(len(s)):
            g = given[j]
            if g >= 0 and g != prev:
                continue  # a conditional sum sees only the values after its context
            v = s[j] + inc[j]
            v = v if v > 0.0 else 0.0
            s[j] = v
            if v > h[j] and v / h[j] > best:
                best = v / h[j]
                self.fired = j
        self.prev = 1 if one else 0
        if best > 0.0:
            self._drift_detected = True

    def clone(self) -> BernoulliCusum:
        """An independent copy (the sums are changed in place, so they are copied)."""
        twin = copy.copy(self)
        twin.s = list(self.s)
        return twin

    def feed(self, x: Floats) -> int:
        """Feed values in order, exactly as :meth:`update` one by one would, and stop after
        the first that fires. Returns how many were fed (``len(x)`` when none fired). The
        sums are located in closed form a chunk at a time (core/scan.py, as Cusum.feed)."""
        if self._drift_detected and len(x):  # as update() does first
            self.s = [0.0] * len(self.s)
            self.fired = -1
            self._drift_detected = False
        return feed_in_chunks(self, x)

    def _feed_chunk(self, x: Floats) -> int:
        n = len(x)
        one = x >= 0.5
        prev = np.empty(n, dtype=np.int64)
        if n:
            prev[0] = self.prev
            prev[1:] = one[:-1]
        steps = []
        scans = []
        first = n
        for j, g in enumerate(self.given):
            idx = np.arange(n) if g < 0 else np.flatnonzero(prev == g)
            inc = np.where(one[idx], self.y1[j], self.y0[j])
            sc = Scan(np.array([self.s[j]]), inc.reshape(1, -1, 1))
            k = int(sc.first_over(np.array([self.h[j]]))[0])
            if k < len(idx):
                first = min(first, int(idx[k]))
            steps.append(idx)
            scans.append(sc)
        states = []
        for sc, idx in zip(scans, steps, strict=True):
            st = sc.state_after(int(np.searchsorted(idx, first)))
            if st is None:
                for j in range(n):
                    self.update(float(x[j]))
                    if self._drift_detected:
                        return j + 1
                return n
            states.append(st[0])
        self.s = states
        if first:
            self.prev = 1 if one[first - 1] else 0
        return first


def is_binary_reference(values: Sequence[float]) -> bool:
    """True when every value is 0 or 1 (a binary signal).

    >>> is_binary_reference([0.0, 1.0, 1.0]), is_binary_reference([0.0, 2.0])
    (True, False)
    """
    return len(values) > 0 and all(v == 0.0 or v == 1.0 for v in values)


def dependence(x: np.ndarray) -> tuple[float, float, dict[str, Any]]:
    """``(lam, tau, info)`` of a 0/1 series: the lag-one correlation of a two-state Markov chain
    fitted with a Jeffreys prior on ``P(1 | 0)`` and ``P(1 | 1)``, and the variance inflation
    ``tau`` of the rate's mean, the larger of ``(1 + lam) / (1 - lam)`` and the batch-means
    long-run variance ratio (then ``lam`` is the chain's correlation with that ``tau``).
    ``info`` holds the transition counts behind the posterior of ``P(1 | 1)``.

    >>> lam, tau, _ = dependence(np.zeros(1000))
    >>> round(lam, 2), round(tau, 2)   # no 1 seen: runs of ones cannot be ruled out
    (0.5, 3.0)
    >>> rng = np.random.default_rng(0)
    >>> lam, tau, _ = dependence(rng.random(5000) < 0.2)
    >>> tau < 1.2
    True
    """
    b = np.asarray(x, dtype=bool)
    n = len(b)
    prev, nxt = b[:-1], b[1:]
    n1 = int(prev.sum())
    n0 = len(prev) - n1
    n11 = int((prev & nxt).sum())
    n01 = int((~prev & nxt).sum())
    a = (n01 + 0.5) / (n0 + 1.0)  # P(1 | 0), posterior mean
    bb = (n11 + 0.5) / (n1 + 1.0)  # P(1 | 1)
    lam = min(max(bb - a, 0.0), 0.99)
    tau_markov = (1.0 + lam) / (1.0 - lam)
    tau_bm = 1.0
    f = b.astype(np.float64)
    sd = float(f.std())
    if sd > 0 and n >= 32:
        tau_bm = long_run_ratio((f - f.mean()) / sd)
    tau = max(tau_markov, tau_bm, 1.0)
    if tau > tau_markov:
        lam = min((tau - 1.0) / (tau + 1.0), 0.99)
    info = {"markov_p01": round(a, 6), "markov_p11": round(bb, 6),
            "transitions_from_1": [n11, n1 - n11],
            "markov_tau": round(tau_markov, 4), "batch_means_tau": round(tau_bm, 4)}
    return lam, tau, info


def posterior_grid(alpha: float, beta: float, points: int = 801) -> tuple[np.ndarray, np.ndarray]:
    """Rates and weights (summing to 1) of a quadrature over ``Beta(alpha, beta)``, on a grid
    in log-odds wide enough for its tails (down to about 1e-12)."""
    c = math.log(alpha / beta)
    sd = math.sqrt(1.0 / alpha + 1.0 / beta)
    edge = math.log(1e12)
    lo = max(-edge, c - 10.0 * sd - 28.0 / alpha)
    hi = min(edge, c + 10.0 * sd + 28.0 / beta)
    lg = np.linspace(lo, hi, points)
    logw = alpha * lg - (alpha + beta) * np.logaddexp(0.0, lg)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    return 1.0 / (1.0 + np.exp(-lg)), w


def _log_rho(theta: np.ndarray, a: np.ndarray, b: np.ndarray, y1: float,
             y0: float) -> np.ndarray:
    """log spectral radius of the chain's transition matrix (``a = P(1 | 0)``,
    ``b = P(1 | 1)``) tilted by ``exp(theta * y)``."""
    t0 = theta * y0
    t1 = theta * y1
    m = np.maximum(t0, t1)
    e0 = np.exp(t0 - m)
    e1 = np.exp(t1 - m)
    tr = (1.0 - a) * e0 + b * e1
    det = (b - a) * e0 * e1
    disc = np.maximum(tr * tr - 4.0 * det, 0.0)
    out: np.ndarray = m + np.log(np.maximum(0.5 * (tr + np.sqrt(disc)), 1e-300))
    return out


def _roots(p: np.ndarray, b: np.ndarray, y1: float, y0: float) -> tuple[np.ndarray, np.ndarray]:
    """Per chain (stationary rate ``p``, ``P(1 | 1) = b``): the mean increment ``mu`` and the
    non-zero root ``theta`` of the tilted spectral radius (sign opposite to ``mu``), by
    bisection (vectorized)."""
    a = np.minimum(p * (1.0 - b) / (1.0 - p), 1.0)  # P(1 | 0) that keeps p stationary
    mu = p * y1 + (1.0 - p) * y0
    sign = np.where(mu < 0.0, 1.0, -1.0)
    lo = np.zeros_like(p)
    hi = np.full_like(p, _THETA_MAX)
    # log rho(sign * t) < 0 on (0, root), > 0 beyond it.
    for _ in range(48):
        mid = 0.5 * (lo + hi)
        neg = _log_rho(sign * mid, a, b, y1, y0) < 0.0
        lo = np.where(neg, mid, lo)
        hi = np.where(neg, hi, mid)
    return mu, sign * 0.5 * (lo + hi)


def _rate(h: float, mu: np.ndarray, theta: np.ndarray, var: np.ndarray, w: np.ndarray) -> float:
    """False alarms per value at threshold ``h``, averaged with weights ``w``."""
    th = theta * h
    small = np.abs(th) < 1e-4
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        arl = (np.expm1(np.minimum(th, 700.0)) - th) / (-theta * mu)
        arl = np.where(small, h * h / np.maximum(var, 1e-12), arl)
        r = np.where(np.isfinite(arl) & (arl > 0), 1.0 / np.maximum(arl, 1.0), 0.0)
    return float(np.dot(w, r))


def _threshold(mu: np.ndarray, theta: np.ndarray, var: np.ndarray, w: np.ndarray,
               target: float) -> float:
    """Smallest ``h`` (to 0.1%) whose averaged false-alarm rate is at most ``1 / target``."""
    goal = 1.0 / target
    lo, hi = 0.0, 1.0
    while _rate(hi, mu, theta, var, w) > goal:
        lo, hi = hi, hi * 2.0
        if hi > 1e7:
            return math.inf
    while hi - lo > 1e-3 * hi:
        mid = 0.5 * (lo + hi)
        if _rate(mid, mu, theta, var, w) > goal:
            lo = mid
        else:
            hi = mid
    return hi


class _Posterior:
    """Quadrature nodes over the rate ``p`` the reference leaves unknown (Beta posterior on the
    effective counts), with weights; the chain's ``P(1 | 1)`` at each node keeps the fitted
    lag-one correlation ``lam``. (Averaging over the posterior of ``P(1 | 1)`` as well was
    tried: with a handful of runs in the reference its mass near 1 -- a flag stuck on for
    hundreds of events, which no detector can tell from a change -- made every threshold
    useless. The prior enters through ``lam``'s Jeffreys estimate instead.)"""

    def __init__(self, alpha: float, beta: float, lam: float) -> None:
        self.p, self.w = posterior_grid(alpha, beta, _P_POINTS)
        self.b = self.p + lam * (1.0 - self.p)
        self.p0 = alpha / (alpha + beta)
        self.lam = lam


_P_POINTS = 241


def _sum_threshold(p0: float, ratio: float, post: _Posterior, tau: float,
                   target: float) -> tuple[float, float]:
    """(threshold over the posterior, threshold at the fitted chain) of one alternative."""
    p1 = _alt(p0, ratio)
    y1 = math.log(p1 / p0)
    y0 = math.log((1.0 - p1) / (1.0 - p0))
    b0 = p0 + post.lam * (1.0 - p0)
    pts = np.append(post.p, p0)
    bs = np.append(post.b, b0)
    mu, theta = _roots(pts, bs, y1, y0)
    var = (y1 - y0) ** 2 * pts * (1.0 - pts) * tau
    h_post = _threshold(mu[:-1], theta[:-1], var[:-1], post.w, target)
    h_known = _threshold(mu[-1:], theta[-1:], var[-1:], np.ones(1), target)
    return h_post, h_known


def _conditional(y: np.ndarray, share: float, falls: bool,
                 fixed: Sequence[float] | None) -> tuple[list[float], list[float], dict[str, Any]]:
    """:func:`_conditional_of` through a small cache keyed on the exact 0/1 sequence: the
    conditional sequences of rare flags repeat across signals (the values after a 1 of a flag
    whose ones are isolated are all 0; a reference without a 1 is all 0), and each costs a few
    dozen threshold searches. Same result as without the cache (callers only read it)."""
    b = np.asarray(y, dtype=bool)
    ratios, params, info = _conditional_cached(
        np.packbits(b).tobytes(), len(b), float(share), bool(falls),
        None if fixed is None else tuple(float(r) for r in fixed))
    return list(ratios), list(params), dict(info)


@functools.lru_cache(maxsize=512)
def _conditional_cached(bits: bytes, n: int, share: float, falls: bool,
                        fixed: tuple[float, ...] | None,
                        ) -> tuple[list[float], list[float], dict[str, Any]]:
    y = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=n).astype(bool)
    return _conditional_of(y, share, falls, fixed)


def _conditional_of(y: np.ndarray, share: float, falls: bool,
                    fixed: Sequence[float] | None,
                    ) -> tuple[list[float], list[float], dict[str, Any]]:
    """Alternatives and thresholds of the sums on one conditional sequence ``y`` (the values
    after a 0, or after a 1): iid Bernoulli under a first-order chain, with a residual
    dependence factor (batch means) for memory beyond one step. ``share`` per sum-set is
    resolved by the caller; here ``target`` is per sum."""
    n = len(y)
    k = int(y.sum())
    lam, tau, _ = dependence(y) if n >= 2 else (0.0, 1.0, {})
    alpha, beta = k / tau + 0.5, (n - k) / tau + 0.5
    post = _Posterior(alpha, beta, lam)
    q = post.p0
    if fixed:
        ratios = [float(r) for r in fixed]
    else:
        ratios = _choose_ratios(q, post, tau, share, falls=falls)
    info = {"values": n, "ones": k, "posterior": [round(alpha, 4), round(beta, 4)],
            "rate": round(q, 8), "residual_variance_ratio": round(tau, 4)}
    return ratios, [q, tau, lam], {**info, "_post": post}


def calibrate_rate(reference: Sequence[float] | np.ndarray, share: float,
                   params: dict[str, Any] | None = None,
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parameters of a :class:`BernoulliCusum` (``p0``, ``ratios``, ``h``, ``base``, ``given``)
    meeting ``share`` false alarms per value on 0/1 data like ``reference``, and a JSON-able
    record of the calibration (for ``evidence.calibration``). ``params`` may fix ``ratios``
    (and ``given``: 0 for an onset sum, 1 for a continuation sum; onsets when left out); then
    only their thresholds are calibrated.

    The sums are **Markov-conditional**: under a two-state chain the values after a 0 are iid
    Bernoulli(``a = P(1 | 0)``) and the values after a 1 iid Bernoulli(``b = P(1 | 1)``). The
    onset sums see only the values after a 0 (a burst of any length adds one onset), the
    continuation sums only the values after a 1 (bursts got longer); each set is calibrated
    on the reference's own conditional counts (Jeffreys posterior) with the batch-means
    dependence left in its conditional sequence (near 1 for a first-order chain).

    >>> over, info = calibrate_rate([0.0] * 200, 1e-6)
    >>> over["p0"] < 0.01 and min(over["ratios"]) > 10   # no 1 seen: only large rises
    True
    >>> det = BernoulliCusum(**over)
    >>> det.update(1.0); det.drift_detected   # a first 1 after 200 zeros does not fire
    False
    """
    x = np.asarray(reference, dtype=np.float64) >= 0.5
    n = len(x)
    k = int(x.sum())
    lam, tau, dep = dependence(x)
    n_eff = n / tau
    k_eff = k / tau
    alpha, beta = k_eff + 0.5, n_eff - k_eff + 0.5
    p0 = alpha / (alpha + beta)
    prev, nxt = x[:-1], x[1:]
    fixed = (params or {}).get("ratios")
    m_guess = 2 * (len(UP_STEPS) + 1)
    if fixed:
        fixed_given = list((params or {}).get("given") or [0] * len(fixed))
        ra = [float(r) for r, g in zip(fixed, fixed_given, strict=True) if g == 0]
        rb = [float(r) for r, g in zip(fixed, fixed_given, strict=True) if g == 1]
        _, pa, ia = _conditional(nxt[~prev], share, True, ra or [2.0])
        _, pb, ib = _conditional(nxt[prev], share, True, rb or [2.0])
    else:
        ra, pa, ia = _conditional(nxt[~prev], share / m_guess * 4, True, None)
        rb, pb, ib = _conditional(nxt[prev], share / m_guess * 4, True, None)
    sets = [(r, 0, pa, ia) for r in ra] + [(r, 1, pb, ib) for r in rb]
    if not sets:
        sets = [(_OR_GRID[-1], 0, pa, ia)]
    target = len(sets) / share
    hs, base, given, ratios = [], [], [], []
    for r, g, (q, t, _), inf in sets:
        h_post, _ = _sum_threshold(q, r, inf["_post"], t, target)
        hs.append(round(h_post, 4) if math.isfinite(h_post) else 1e7)
        base.append(q)
        given.append(g)
        ratios.append(round(r, 6))
    over = {"p0": p0, "ratios": ratios, "h": hs, "base": base, "given": given}
    clean = [{kk: v for kk, v in d.items() if not kk.startswith("_")} for d in (ia, ib)]
    info = {
        "type": "bernoulli_cusum", "share_per_value": share, "reference_rate": k / n if n else 0.0,
        "p0": round(p0, 8), "prior": "jeffreys", "posterior": [round(alpha, 4), round(beta, 4)],
        "conditioning": "markov", "onset": clean[0], "continuation": clean[1],
        "given_previous": given,
        "alternatives": [round(_alt(q, r), 6) for q, r in zip(base, ratios, strict=True)],
        "odds_ratios": ratios, "thresholds": hs,
        "markov_lag1_correlation": round(lam, 4), "long_run_variance_ratio": round(tau, 4),
        "effective_sample_size": round(n_eff, 1), **dep,
    }
    return over, info


def alternative_rate(p0: float, ratio: float) -> float:
    """The rate whose odds are ``ratio`` times those of ``p0`` (capped inside (0, 1)).

    >>> round(alternative_rate(0.01, 20.0), 4)
    0.1681
    """
    return _alt(p0, ratio)


def calibrate_counts(onset: Sequence[float], continuation: Sequence[float], share: float,
                     fixed: Sequence[Sequence[float]] | None = None) -> dict[str, list[float]]:
    """The sums :func:`calibrate_rate` chooses (``ratios``, ``h``, ``base``, ``given``) for a
    reference known by the counts of its conditional sequences, ``(values, ones, residual
    variance ratio)`` each (its record's ``onset`` and ``continuation``); ``fixed``: the
    configured ``(ratios, given)``, if any. What a longer reference with the same rates and
    dependence, or another share, would get (core/watchable_kinds.py). Each sequence's
    lag-one correlation follows from its ratio, as in :func:`dependence`.

    >>> rng = np.random.default_rng(0)
    >>> over, info = calibrate_rate(rng.random(1000) < 0.1, 1e-6)
    >>> c = lambda d: (d["values"], d["ones"], d["residual_variance_ratio"])
    >>> again = calibrate_counts(c(info["onset"]), c(info["continuation"]), 1e-6)
    >>> again["ratios"] == over["ratios"] and again["given"] == over["given"]
    True
    >>> max(abs(a / b - 1.0) for a, b in zip(again["h"], over["h"])) < 0.01
    True
    """
    m_guess = 2 * (len(UP_STEPS) + 1)
    sets = []
    posts = []
    for g, (n, k, tau) in enumerate((onset, continuation)):
        lam = min(max((tau - 1.0) / (tau + 1.0), 0.0), 0.99)
        post = _Posterior(k / tau + 0.5, (n - k) / tau + 0.5, lam)
        posts.append((post, tau))
        if fixed is not None:
            ratios = [float(r) for r, gg in zip(fixed[0], fixed[1], strict=True) if gg == g]
        else:
            ratios = _choose_ratios(post.p0, post, tau, share / m_guess * 4, falls=True)
        sets += [(r, g, post, tau) for r in ratios]
    if not sets:  # as calibrate_rate: the largest onset rise on the grid
        sets = [(_OR_GRID[-1], 0, *posts[0])]
    target = len(sets) / share
    out: dict[str, list[float]] = {"ratios": [], "h": [], "base": [], "given": []}
    for r, g, post, tau in sets:
        h, _ = _sum_threshold(post.p0, r, post, tau, target)
        out["ratios"].append(round(r, 6))
        out["h"].append(round(h, 4) if math.isfinite(h) else 1e7)
        out["base"].append(post.p0)
        out["given"].append(g)
    return out


def _first(cands: Sequence[float], usable: Any) -> float | None:
    """The first of ``cands`` (in order) that is ``usable``, None when none is. Usability is
    monotone along the grid (a larger rise, or a deeper fall, depends less on what the
    reference leaves unknown about ``p0``): once usable, every later one is. So a galloping
    search (indices 0, 1, 3, 7, ...) and a bisection find it in about ``2 log2(i)``
    threshold searches instead of ``i`` (the calibration's cost is these searches)."""
    n = len(cands)
    if n == 0:
        return None
    lo, step = -1, 1  # every index <= lo is known not usable
    hi = 0
    while not usable(cands[hi]):
        lo = hi
        if hi == n - 1:
            return None
        hi = min(hi + step, n - 1)
        step *= 2
    while hi - lo > 1:  # cands[hi] usable, cands[lo] not (or lo = -1)
        mid = (lo + hi) // 2
        if usable(cands[mid]):
            hi = mid
        else:
            lo = mid
    return cands[hi]


def _choose_ratios(p0: float, post: _Posterior, tau: float, share: float,
                   falls: bool = True) -> list[float]:
    """The smallest usable rise (and the largest usable fall, if any and ``falls``) on the
    odds-ratio grid; rises also at 4 and 16 times its odds ratio (fewer when capped near a
    rate of 1). Empty when the reference supports none. A ratio is usable when the posterior-
    averaged threshold is at most ``H_SLACK`` times the threshold at a known rate."""
    m_guess = len(UP_STEPS) + 1
    target = m_guess / share

    def usable(r: float) -> bool:
        h_post, h_known = _sum_threshold(p0, r, post, tau, target)
        return h_post <= H_SLACK * h_known

    ups = []
    for r in _OR_GRID:
        if _alt(p0, r) >= _P_MAX:
            break
        ups.append(r)
    up = _first(ups, usable)
    out: list[float] = []
    if up is not None:
        for step in UP_STEPS:
            r = up * step
            if out and _alt(p0, r) >= _P_MAX:
                break
            out.append(r)
    downs = []
    for r in _OR_GRID[:31] if falls else ():  # falls to an odds ratio of 1/1000 at most
        if _alt(p0, 1.0 / r) <= 1.0 - _P_MAX:
            break
        downs.append(1.0 / r)
    down = _first(downs, usable)
    if down is not None:
        out.append(down)
    return out


def locate_rate(x: Sequence[float] | np.ndarray, p0: float, tau: float = 1.0,
                interval: float = 3.0) -> dict[str, Any] | None:
    """Where a rate change began: the start ``t`` maximizing the binomial log-likelihood ratio
    of the values from ``t`` on (their own rate against ``p0``), divided by ``tau``; ``low`` and
    ``high`` bound the starts within ``interval`` of the maximum (profile likelihood). None for
    no values.

    >>> est = locate_rate([0.0] * 300 + [1.0, 0.0, 1.0, 1.0, 0.0, 1.0], 0.01)
    >>> est["start"], round(est["rate_after"], 2)
    (300, 0.67)
    """
    v = np.asarray(x, dtype=np.float64) >= 0.5
    n = len(v)
    if n == 0:
        return None
    m = np.arange(n, 0, -1, dtype=np.float64)  # values from t on
    k = np.cumsum(v[::-1].astype(np.float64))[::-1]
    q = k / m
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(k > 0, k * np.log(np.where(k > 0, q, 1.0) / p0), 0.0)
        t0 = np.where(m - k > 0, (m - k) * np.log(np.where(m > k, 1.0 - q, 1.0) / (1.0 - p0)),
                      0.0)
    llr = (t1 + t0) / max(tau, 1.0)
    start = int(np.argmax(llr))
    inside = np.nonzero(llr >= llr[start] - interval)[0]
    return {"kind": "rate", "start": start, "low": int(inside.min()), "high": int(inside.max()),
            "llr": round(float(llr[start]), 3), "rate_after": float(q[start]),
            "rate_before": float(v[:start].mean()) if start else None}
