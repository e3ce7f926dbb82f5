"""A calibrated multinomial CUSUM: one categorical signal, the whole category mix at once.

A categorical signal (a string feature watched as categories, a class-label prediction) gets
one value per event: a category, coded as a small integer by the signal's code table
(core/categories.py). This detector compares the mix of the categories that follow with the
reference mix, all categories jointly, so a change is one alert (not one per category).

The statistic is a CUSUM of log-likelihood ratios with a *predictable* alternative:

* **Null**: the reference shares with a Dirichlet prior. Slot ``j`` (one of the ``K`` most
  frequent reference categories, or "other") has pseudo-count ``a + n_j / tau``
  (``a``: Jeffreys' 1/2; ``n_j``: its reference count; ``tau``: the dependence factor below).
  The probability of the next category is the Polya-urn predictive ``urn_j / sum(urn)``, and
  every watched value joins the urn (weight ``1 / tau``): it is the exact predictive of the
  values under "no change" with the reference shares unknown. A category never seen in the
  reference, or seen once, so gets a probability by principle, not by a special case.
* **Alternative**: the counts ``c_j`` since the sum was last at zero (the value that left
  it there included), shrunk toward the null with
  weight ``w``: ``q_j = (w u_j + c_j) / (w + m)`` (``u`` the null predictive, ``m = sum c``).
  This is the predictive of a Dirichlet mixture centred on the null: a mixture CUSUM that
  adapts to whatever mix the categories moved to.
* ``S = max(0, S + log(q_x / u_x) / tau)``; an alarm when ``S > h``.

**Calibration.** ``q`` is computed before the value is seen, so ``E[q_x / u_x] = 1`` under
the null predictive: each product of ratios from a start on is a non-negative martingale, and
by Ville's inequality crosses ``e^h`` with probability at most ``e^-h``. A union over starts
gives at most ``m e^-h`` false alarms in ``m`` values: ``h = log(1 / p)`` meets a budget of
``p`` false alarms per value for *any* reference shares (averaged over their posterior) with
no simulation. Dependence (sticky categories: runs) breaks the martingale; the long-run
variance ratio ``tau`` of the one-hot indicators (:func:`category_long_run_ratio`: the
larger of a Markov-chain estimate and batch means) tempers the log ratios by ``1 / tau`` (as
the numeric CUSUM divides its root by ``tau``), and the reference counts by ``tau`` (``n / tau``
effective values). For its own estimation error ``tau`` is inflated by ``1 + 2 sqrt(tau / n)``,
and it is at least the bound that the reference's number of category switches allows
(:func:`_switch_bound`): a reference that switched category only a few times cannot show that
the categories are independent.

All attributes are plain numbers and lists, so the detector is checkpointed like the others
(core/detectors.py).

>>> det = Multinomial(slot_of=[0, 1, 2], urn=[40.5, 30.5, 20.5, 0.5], h=13.8)
>>> import random
>>> rng = random.Random(0)
>>> mix = ([0] * 4 + [1] * 3 + [2] * 2 + [3]) # .4/.3/.2/.1 -> slot 3 is "other"
>>> n = 0
>>> while not det.drift_detected and n < 1000:
...     det.update(float(rng.choice([3, 3, 3, 3, 2, 2, 2, 1, 1, 0])))  # .1/.2/.3/.4
...     n += 1
>>> det.drift_detected, n < 100
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stream_monitor.core.calibrate import ar_spectral_ratio

__all__ = [
    "DEFAULT_BUDGET",
    "JEFFREYS",
    "Multinomial",
    "calibrate_multinomial",
    "category_long_run_ratio",
    "locate_mix",
]

JEFFREYS = 0.5  # Dirichlet prior per slot
DEFAULT_BUDGET = 1e-6  # false alarms per value when the signal has no budget
TAU_SES = 2.0  # tau inflated by this many relative standard errors


class Multinomial:
    """Mixture CUSUM over category codes against a Dirichlet-urn reference (see module doc).

    ``slot_of[code]`` is the slot of a code (codes past its end, and negative codes, go to the
    last slot, "other"); ``urn`` the null pseudo-counts per slot; ``w`` the alternative's prior
    weight; ``inv_tau`` the tempering; ``h`` the threshold."""

    def __init__(self, w: float = 10.0, slot_of: list[int] | None = None,
                 urn: list[float] | None = None, inv_tau: float = 1.0,
                 h: float = math.log(1.0 / DEFAULT_BUDGET)) -> None:
        if not w > 0:
            raise ValueError(f"w must be > 0, got {w!r}")
        urn = [JEFFREYS, JEFFREYS] if urn is None else [float(u) for u in urn]
        if len(urn) < 1 or not all(u > 0 for u in urn):
            raise ValueError("urn must be positive pseudo-counts, one per slot")
        if not 0 < inv_tau <= 1 or not h > 0:
            raise ValueError("inv_tau must be in (0, 1] and h > 0")
        self.w = float(w)
        # (Without a calibration: code j is slot j, and codes past the urn's slots are "other".)
        self.slot_of = (list(range(len(urn) - 1)) if slot_of is None
                        else [int(s) for s in slot_of])
        if any(not 0 <= s < len(urn) for s in self.slot_of):
            raise ValueError("slot_of names a slot the urn has not")
        self.urn = urn
        self.total = math.fsum(urn)
        self.inv_tau = float(inv_tau)
        self.h = float(h)
        self.n = 0  # values seen
        self._reset()

    def _reset(self) -> None:
        self.s = 0.0
        self.counts = [0.0] * len(self.urn)
        self.m = 0.0
        self.since = self.n  # value count where the current candidate segment starts
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    def update(self, x: float) -> None:
        """Feed one category code (a float holding a small integer)."""
        if self._drift_detected:
            self._reset()
        self.n += 1
        i = int(x)
        so = self.slot_of
        j = so[i] if 0 <= i < len(so) else len(self.urn) - 1
        urn = self.urn
        u = urn[j] / self.total
        w = self.w
        c = self.counts
        s = self.s + math.log((w + c[j] / u) / (w + self.m)) * self.inv_tau
        if s > 0.0:
            c[j] += 1.0
            self.m += 1.0
            self.s = s
            if s > self.h:
                self._drift_detected = True
        else:
            # The sum is back at zero: a new candidate segment starts with this value (its
            # count is the next value's alternative; its own ratio was against the old one).
            self.s = 0.0
            if self.m != 1.0 or c[j] != 1.0:
                self.counts = c = [0.0] * len(urn)
                c[j] = 1.0
                self.m = 1.0
            self.since = self.n - 1
        it = self.inv_tau
        urn[j] += it
        self.total += it


def _one_hot_sums(slots: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(slots), k))
    out[np.arange(len(slots)), slots] = 1.0
    return out


def category_long_run_ratio(slots: Sequence[int] | np.ndarray, k: int) -> float:
    """``tau`` of a category sequence (slot indices in ``[0, k)``): long-run variance over
    variance of its one-hot indicators, pooled over categories (>= 1).

    The larger of (a) a Markov-chain (AR(1)) estimate from the pooled lag-1 autocorrelation
    ``rho = (P(x_t = x_{t-1}) - sum p_j^2) / (1 - sum p_j^2)`` (exact for "stay, else redraw
    from p" chains), ``(1 + rho) / (1 - rho)``, and (b) batch means of the pooled indicators at
    batch sizes 8, 16, ... up to n/16 (slower dependence, cycles).

    >>> rng = np.random.default_rng(4)
    >>> round(category_long_run_ratio(rng.integers(0, 4, 4000), 4), 1) < 1.3
    True
    >>> x = [0]
    >>> for _ in range(3999):
    ...     x.append(x[-1] if rng.random() < 0.8 else int(rng.integers(0, 4)))
    >>> 6.0 < category_long_run_ratio(x, 4) < 14.0  # stay 0.8 + redraw: rho 0.85, tau 12
    True
    """
    a = np.asarray(slots, dtype=np.int64)
    n = len(a)
    if n < 8 or k < 2:
        return 1.0
    p = np.bincount(a, minlength=k) / n
    g = 1.0 - float(np.dot(p, p))  # sum of the indicators' variances
    if not g > 1e-12:
        return 1.0
    same = float(np.mean(a[1:] == a[:-1]))
    rho = (same - (1.0 - g)) / g
    rho += (1.0 + 3.0 * rho) / n  # Kendall's bias correction, as for numeric signals
    rho = min(max(rho, -0.99), 0.99)
    tau = (1.0 + rho) / (1.0 - rho)
    x = _one_hot_sums(a, k) - p
    cs = np.vstack([np.zeros((1, k)), np.cumsum(x, axis=0)])
    b = 8
    while b <= n // 16:
        means = (cs[b:] - cs[:-b]) / b
        tau = max(tau, b * float(np.mean(np.sum(means * means, axis=1))) / g)
        b *= 2
    tau = max(tau, persistent_score_ratio(a, k))
    return max(1.0, min(tau, n / 4.0))


def persistent_score_ratio(slots: np.ndarray, k: int) -> float:
    """``tau`` of the most persistent score of the categories: the detector's increments are
    a score ``sum_j v_j 1{x_t = j}`` (``v_j = log(q_j / u_j) / tau``), and its sum drifts as
    much as that score's long-run variance allows. Pooled over categories (trace ratios), an
    ordinal latent (categories cut from one autoregressive variable: a sojourn low moves
    shares between neighbouring categories) hides in the fast-switching common categories.
    The score with the largest lag-1 autocorrelation (the top generalized eigenvector of the
    indicators' lag-1 and lag-0 covariances) is found, and its ``tau`` taken from an
    autoregressive fit (:func:`~stream_monitor.core.calibrate.ar_spectral_ratio`), which sees
    slow components a lag-1 or pooled estimate misses.

    >>> rng = np.random.default_rng(3)
    >>> z = np.zeros(2000)
    >>> for i in range(1, 2000):
    ...     z[i] = 0.9 * z[i - 1] + rng.standard_normal() * 0.44
    >>> cut = np.searchsorted([-1.0, 0.0, 1.0], z)  # 4 categories cut from an AR(1) 0.9
    >>> category_long_run_ratio(cut, 4) > 10.0
    True
    """
    n = len(slots)
    present = np.flatnonzero(np.bincount(slots, minlength=k))
    if n < 20 or len(present) < 2:
        return 1.0
    # One indicator column per present category but the last (the columns sum to 1).
    x = (slots[:, None] == present[None, :-1]).astype(np.float64)
    x -= x.mean(axis=0)
    g0 = x.T @ x / n
    g1 = x[1:].T @ x[:-1] / n
    g1 = (g1 + g1.T) / 2.0
    chol = np.linalg.cholesky(g0 + 1e-12 * float(np.trace(g0)) * np.eye(len(g0)))
    inv = np.linalg.inv(chol)
    _, vecs = np.linalg.eigh(inv @ g1 @ inv.T)
    return ar_spectral_ratio(x @ (inv.T @ vecs[:, -1]))


def _switch_bound(slots: np.ndarray, k: int) -> float:
    """An upper bound on ``tau`` from how often the reference switches category: under "stay,
    else redraw from p" the switches are about ``(n - 1) g (1 - rho)`` (``g = 1 - sum p_j^2``),
    a count that is Poisson-like, so ``TAU_SES`` standard errors below it
    (``(sqrt(switches) - TAU_SES / 2)^2``) bound ``1 - rho`` from below. A reference with few
    switches (a rare level seen in one or two runs) so says little about dependence, and gets
    a large ``tau`` rather than an optimistic one. 1 for a reference of one category.

    >>> _switch_bound(np.array([0, 1] * 500), 2) < 1.2  # switches all the time
    True
    >>> _switch_bound(np.array([0] * 190 + [1] * 3 + [0] * 7), 2) > 50  # one run: little known
    True
    """
    n = len(slots)
    if n < 2 or k < 2:
        return 1.0
    p = np.bincount(slots, minlength=k) / n
    g = 1.0 - float(np.dot(p, p))
    if not g > 1e-12:
        # One category: no switch to count, and nothing to bound. (Taking the worst case here
        # would leave a constant feature that suddenly takes new values unwatched for good.)
        return 1.0
    switches = float(np.count_nonzero(slots[1:] != slots[:-1]))
    low = max(math.sqrt(switches) - TAU_SES / 2.0, 0.0) ** 2
    one_minus_rho = min(max(low / ((n - 1) * g), 1e-9), 1.0)
    rho = 1.0 - one_minus_rho
    return (1.0 + rho) / one_minus_rho


def calibrate_multinomial(codes: Sequence[float], labels: Sequence[str], budget: float | None,
                          params: Mapping[str, Any], top_k: int,
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parameters of a :class:`Multinomial` for a reference of category ``codes`` (floats
    holding indices into ``labels``; -1: past the code table's cap) and the JSON-able account
    of the calibration (alert evidence).

    The slots are the ``top_k`` most frequent reference categories (ties: first code first)
    and "other" (the rest, later categories, overflow). ``h = log(1 / budget)``.

    >>> over, info = calibrate_multinomial([0.0, 1.0] * 100, ["a", "b"], 1e-6, {}, 20)
    >>> info["categories"], info["reference_shares"], round(info["threshold"], 2)
    (['a', 'b', '(other)'], [0.4986, 0.4986, 0.0028], 13.82)
    """
    x = np.asarray(codes, dtype=np.float64).astype(np.int64)
    n = len(x)
    ncodes = len(labels)
    counts = np.bincount(np.where(x >= 0, x, ncodes), minlength=ncodes + 1)[:ncodes]
    ranked = sorted((c for c in range(ncodes) if counts[c] > 0), key=lambda c: (-counts[c], c))
    top = ranked[:max(1, top_k)]
    other = len(top)
    slot_of = [other] * ncodes
    for s, c in enumerate(top):
        slot_of[c] = s
    slots = np.array([slot_of[c] if 0 <= c < ncodes else other for c in x], dtype=np.int64)
    k = other + 1
    tau_est = category_long_run_ratio(slots, k)
    tau = max(tau_est * (1.0 + TAU_SES * math.sqrt(tau_est / max(n, 1))),
              _switch_bound(slots, k))
    tau = max(1.0, min(tau, n / 4.0)) if n >= 8 else tau
    ref_counts = np.bincount(slots, minlength=k).astype(np.float64)
    urn = JEFFREYS + ref_counts / tau
    p = budget if budget is not None and budget > 0 else DEFAULT_BUDGET
    h = math.log(1.0 / p)
    w = float(params.get("w", 10.0))
    over = {"w": w, "slot_of": slot_of, "urn": [round(float(u), 9) for u in urn],
            "inv_tau": round(1.0 / tau, 9), "h": round(h, 6)}
    shares = urn / urn.sum()
    info = {
        "budget_per_value": p,
        "reference_values": n,
        "long_run_variance_ratio": round(tau, 4),
        "long_run_variance_ratio_estimate": round(tau_est, 4),
        "effective_sample_size": round(n / tau, 1),
        "detectors": [{"type": "multinomial_cusum", "share_per_value": p,
                       "threshold": round(h, 4), "prior_weight": w,
                       "dirichlet_prior": JEFFREYS, "bound": "ville"}],
        "threshold": round(h, 4),
        "categories": [labels[c] for c in top] + ["(other)"],
        "reference_counts": [int(c) for c in ref_counts],
        "reference_shares": [round(float(s), 4) for s in shares],
    }
    return over, info


def locate_mix(slots: np.ndarray, shares: np.ndarray, tau: float = 1.0,
               interval: float = 3.0) -> dict[str, Any] | None:
    """Where the category mix changed: the start ``t`` (index into ``slots``) maximizing the
    multinomial log-likelihood ratio of "the values from ``t`` on follow their own mix" against
    the reference ``shares``, ``sum_j c_j log(c_j / (m p_j))`` (``c_j``: counts from ``t`` on,
    ``m`` their number), divided by ``tau``; its profile-likelihood interval
    ``{t : L(t_hat) - L(t) <= interval}``. None for no values.

    >>> s = np.array([0, 1] * 100 + [1] * 40)
    >>> est = locate_mix(s, np.array([0.5, 0.5]))
    >>> est["start"], est["low"] <= 200 <= est["high"]
    (199, True)
    """
    n = len(slots)
    if n < 1:
        return None
    k = len(shares)
    oh = _one_hot_sums(np.asarray(slots, dtype=np.int64), k)
    c = np.cumsum(oh[::-1], axis=0)[::-1]  # counts from t on
    m = np.arange(n, 0, -1, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(c > 0, c * np.log(c / (m * shares[None, :])), 0.0)
    llr = terms.sum(axis=1) / max(tau, 1.0)
    start = int(np.argmax(llr))
    inside = np.nonzero(llr >= llr[start] - interval)[0]
    return {"start": start, "low": int(inside.min()), "high": int(inside.max()),
            "llr": round(float(llr[start]), 3)}
