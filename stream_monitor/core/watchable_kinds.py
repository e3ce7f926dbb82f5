"""Watchability of binary and categorical signals (core/watchable.py does numeric ones).

The question is the numeric one: would the calibrated detector catch a *large* change within
the signal's horizon of ``max(reference_size, 1000)`` values? Only "large" needs a meaning for
rates and mixes, and the expected delay the arithmetic of their detectors.

**The large change: the odds of the minority side rising ``ODDS_RATIO`` (20) fold, or by a
rise of 2 reference sd when that is larger** (:func:`large_factor`). For a
numeric signal the large change is a shift of 2 reference standard deviations. Taken literally
on a 0/1 value, a rise of 2 sd, ``p0 + 2 sqrt(p0 (1 - p0))``, is an odds ratio of 18 to 26 for
rates between 1% and 10% (0.01 -> 0.21, 0.05 -> 0.49, 0.10 -> 0.70) but meaningless from about
20% on, where it passes 1. On the log-odds scale the same size holds at any ``p0``: a 20-fold
rise of the odds (1% -> 17%, 10% -> 69%, 50% -> 95%). Near a rate of 0 the 2 sd rise is the
larger one (a flag never seen set, posterior rate 0.05%: to 4.5%, 95-fold): a 20-fold rise
of a rate that small (to 1%) is a change no detector can see within a horizon at this budget,
and calling every never-missing feature's missing rate "not watchable" would say nothing. It
is a rise of the *minority* value
(the rate of 1s when ``p0 <= 1/2``, else the rate of 0s: which value is called 1 is
arbitrary); a fall of a rare rate by that factor takes hundreds of values to see for any
detector and is not asked for. For a categorical signal the categories are split into two
groups of shares as equal as the reference allows (greedy, most frequent first) and the
smaller group's odds rise 20-fold, each group keeping its inner proportions: with two
categories this is the binary rule, with more it moves mass between two large groups rather
than onto one category, the kind of move a mixture detector sees least per unit of total
variation (a rise of a rare category gives large likelihood ratios per occurrence).

**Binary (Bernoulli CUSUM, core/bernoulli.py).** Under the change both transition rates of the
reference's two-state chain (the onset rate ``P(1 | 0)`` and the continuation rate
``P(1 | 1)``) take the factor on their odds; the changed chain's stationary rate ``pi'`` gives
the share of values each sum sees (an onset sum only the values after a 0, ``1 - pi'``; a
continuation sum those after a 1, ``pi'``). A sum with alternative ``p1`` over base ``q`` and
threshold ``h`` then drifts by ``d = frac (c log(p1 / q) + (1 - c) log((1 - p1) / (1 - q)))``
per value (``c``: the changed rate of its context) and takes about ``h / d`` values (Wald);
the best sum in the change's direction counts. A sum whose threshold the calibration could
not bound (``h`` of 1e7: no alternative the reference supports) counts as never.

**Categorical (multinomial mixture CUSUM, core/multinomial.py).** Its log ratios depend on
the counts since the sum left zero and on a null urn that keeps learning from the watched
values, so the expected statistic is followed value by value under the changed mix (the
detector's own update with every count replaced by its expectation; the null urn absorbs the
new mix at ``1 / tau`` per value). The statistic is bounded: as the urn learns the new mix the
ratios shrink, the more so the smaller the effective reference; a reference of ``n / tau``
effective values can accumulate about ``n / tau`` times the change's Kullback-Leibler
divergence in all. When that stays below ``h`` the change is never caught.

**Not watchable yet** does not pause a rate or a mix (core/signals.py): its detectors keep
watching the short reference's calibration while the reference grows to its full size, where
it is assessed again; the reports say what it lacks.

**What would make it watchable**: the same calibration re-run on a projected reference with
the same rates (shares) and dependence and more values, or with a looser budget (powers of ten
up to the config's 0.01 per value). For rates it repeats the calibration's threshold search
(a few tenths of a second per projection), so it runs only when a report asks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from .bernoulli import alternative_rate as _alt
from .bernoulli import calibrate_counts

__all__ = ["ODDS_RATIO", "assess_mix", "assess_rate", "mix_delay", "rate_delay",
           "remedies_kind", "split_shift"]

ODDS_RATIO = 20.0  # the large change: the minority side's odds rise this many fold
_H_UNBOUNDED = 1e6  # calibrate_rate writes 1e7 for a threshold it could not bound
_MAX_VALUES = 10_000_000  # longer references are not worth proposing
_MAX_BUDGET = 0.01  # the config's limit, false alarms per value
_FOLLOW = 4  # a mix's expected statistic is followed for this many horizons


# -- binary ------------------------------------------------------------------------------------

def rate_delay(sums: Mapping[str, Sequence[float]], onset: float, continuation: float,
               factor: float) -> float:
    """Expected values for the best sum of a Bernoulli CUSUM (``sums``: its ``ratios``, ``h``,
    ``base`` and ``given``) to detect the odds of a 1 changing by ``factor`` in both contexts of
    a chain with reference rates ``onset = P(1 | 0)`` and ``continuation = P(1 | 1)``.

    >>> s = {"ratios": [8.0], "h": [17.5], "base": [0.0117], "given": [0]}
    >>> round(rate_delay(s, 0.0117, 0.0976, 20.0))   # a 1% flag's onset sum: 1.2% -> 19%
    88
    >>> rate_delay({**s, "h": [1e7]}, 0.0117, 0.0976, 20.0)   # no usable alternative
    inf
    """
    a1, b1 = _alt(onset, factor), _alt(continuation, factor)
    pi1 = a1 / (1.0 - b1 + a1)
    best = math.inf
    for r, h, q, g in zip(sums["ratios"], sums["h"], sums["base"], sums["given"], strict=True):
        if (r > 1.0) != (factor > 1.0) or not h < _H_UNBOUNDED:
            continue
        p1 = _alt(q, r)
        y1, y0 = math.log(p1 / q), math.log((1.0 - p1) / (1.0 - q))
        c = _alt(q, factor)
        frac = 1.0 - pi1 if g == 0 else pi1 if g == 1 else 1.0
        if g not in (0, 1):
            c = pi1
        drift = frac * (c * y1 + (1.0 - c) * y0)
        if drift > 0.0:
            best = min(best, h / drift)
    return best


def large_factor(p0: float) -> float:
    """The odds factor of the large change of a rate ``p0``: the minority side's odds rise by
    the larger of ``ODDS_RATIO`` and a rise of 2 reference sd (when that stays below 1); as a
    factor on the odds of a 1 (below 1 when the 0s are the minority).

    >>> round(large_factor(0.05), 1), round(large_factor(0.0005), 1), round(large_factor(0.9), 4)
    (20.0, 94.7, 0.0476)
    """
    m = min(p0, 1.0 - p0)
    up = m + 2.0 * math.sqrt(m * (1.0 - m))
    factor = ODDS_RATIO
    if up < 1.0:
        factor = max(factor, up / (1.0 - up) * (1.0 - m) / m)
    return factor if p0 <= 0.5 else 1.0 / factor


def assess_rate(over: Mapping[str, Any], info: Mapping[str, Any], params: Mapping[str, Any],
                detectors: int, budget: float, horizon: int,
                reference_size: int) -> dict[str, Any] | None:
    """The watchability of a calibrated Bernoulli CUSUM (``over`` its parameters, ``info`` its
    calibration record from :func:`core.bernoulli.calibrate_rate`, ``params`` the configured
    ones); None when the record lacks the Markov-conditional fit."""
    on, co = info.get("onset"), info.get("continuation")
    if not isinstance(on, Mapping) or not isinstance(co, Mapping) or "rate" not in on:
        return None
    p0 = float(over["p0"])
    factor = large_factor(p0)
    delay = rate_delay(over, float(on["rate"]), float(co["rate"]), factor)
    n = int(on["values"]) + int(co["values"]) + 1
    return {
        "watchable": delay <= horizon, "kind": "binary",
        "effective_sample_size": float(info["effective_sample_size"]),
        "reference_values": n, "odds_ratio": round(max(factor, 1.0 / factor), 1),
        "rate_from": round(p0, 6), "rate_to": round(_alt(p0, factor), 6),
        "expected_delay": None if math.isinf(delay) else round(delay, 1),
        "horizon": horizon, "reference_size": reference_size,
        # What the projection needs (remedies_kind works it out when a report asks).
        "onset": [int(on["values"]), int(on["ones"]), float(on["residual_variance_ratio"])],
        "continuation": [int(co["values"]), int(co["ones"]),
                         float(co["residual_variance_ratio"])],
        "fixed": ([list(map(float, params["ratios"])),
                   list(map(int, params.get("given") or [0] * len(params["ratios"])))]
                  if params.get("ratios") else None),
        "detectors": max(1, detectors), "budget_per_value": budget,
    }


def _project_rate(w: Mapping[str, Any], scale: float, share: float) -> float:
    """Expected delay of the large change after calibrating on a reference ``scale`` times as
    long (same conditional rates and dependence) at ``share`` false alarms per value."""
    on, co = ((n * scale, k * scale, tau) for n, k, tau in (w["onset"], w["continuation"]))
    sums = calibrate_counts(on, co, share, w.get("fixed"))
    if not sums["ratios"]:
        return math.inf
    factor = large_factor(float(w["rate_from"]))
    # Each context's rate as the calibration estimates it (posterior mean, Jeffreys' prior).
    a, b = ((k / tau + 0.5) / (n / tau + 1.0) for n, k, tau in (on, co))
    return rate_delay(sums, a, b, factor)


# -- categorical -------------------------------------------------------------------------------

def split_shift(shares: Sequence[float] | np.ndarray,
                factor: float = ODDS_RATIO) -> tuple[np.ndarray, list[int]]:
    """The large change of a mix: the slots split into two groups of shares as equal as
    possible (greedy, largest first), the smaller group's odds multiplied by ``factor``, each
    group keeping its proportions. Returns the changed shares and the slots that rose.

    >>> q, up = split_shift([0.5, 0.5])
    >>> [round(float(v), 3) for v in q], up
    ([0.048, 0.952], [1])
    """
    u = np.asarray(shares, dtype=np.float64)
    u = u / u.sum()
    order = sorted(range(len(u)), key=lambda j: (-u[j], j))
    groups: tuple[list[int], list[int]] = ([], [])
    tot = [0.0, 0.0]
    for j in order:
        g = 0 if tot[0] <= tot[1] else 1
        groups[g].append(j)
        tot[g] += float(u[j])
    small = 0 if tot[0] < tot[1] else 1
    ub = tot[small]
    q = u.copy()
    if not 0.0 < ub < 1.0:
        return q, []
    ub1 = _alt(ub, factor)
    for j in groups[small]:
        q[j] = u[j] * ub1 / ub
    for j in groups[1 - small]:
        q[j] = u[j] * (1.0 - ub1) / (1.0 - ub)
    return q, sorted(groups[small])


def mix_delay(urn: Sequence[float], w: float, inv_tau: float, h: float,
              q: Sequence[float] | np.ndarray, limit: int) -> float:
    """Values a :class:`~stream_monitor.core.multinomial.Multinomial` (null pseudo-counts
    ``urn``, prior weight ``w``, tempering ``inv_tau``, threshold ``h``) takes, in expectation,
    to cross ``h`` when the categories follow ``q`` from now on: its update with the counts
    replaced by their expectations. ``inf`` when it does not within ``limit`` values.

    >>> urn = [500.5, 500.5, 0.5]
    >>> mix_delay(urn, 10.0, 1.0, 13.8, [0.95, 0.0495, 0.0005], 1000) < 60
    True
    >>> mix_delay([5.5, 5.5, 0.5], 10.0, 1.0, 13.8, [0.7, 0.3, 0.0], 1000)  # 10 values
    inf
    """
    u = np.asarray(urn, dtype=np.float64).copy()
    qq = np.asarray(q, dtype=np.float64)
    pos = qq > 0  # categories the change leaves out never come: only the others' terms
    qq, urn_p = qq[pos], u[pos]
    total = float(u.sum())
    add = inv_tau * qq
    s, m = 0.0, 0.0
    c = np.zeros_like(qq)
    for t in range(1, limit + 1):
        uu = urn_p / total
        inc = float(np.dot(qq, np.log((w + c / uu) / (w + m)))) * inv_tau
        if s + inc > 0.0:
            s += inc
            c += qq
            m += 1.0
            if s > h:
                return float(t)
        else:
            s, c, m = 0.0, qq.copy(), 1.0
        urn_p = urn_p + add
        total += inv_tau
    return math.inf


def assess_mix(over: Mapping[str, Any], info: Mapping[str, Any], budget: float, horizon: int,
               reference_size: int) -> dict[str, Any]:
    """The watchability of a calibrated multinomial CUSUM (``over`` its parameters, ``info``
    :func:`core.multinomial.calibrate_multinomial`'s record)."""
    urn = [float(v) for v in over["urn"]]
    u = np.asarray(urn) / sum(urn)
    q, up = split_shift(u)
    # Followed for 4 horizons at most (a few hundredths of a second; beyond: "over" that).
    delay = mix_delay(urn, float(over["w"]), float(over["inv_tau"]), float(over["h"]), q,
                      _FOLLOW * horizon)
    cats = list(info.get("categories") or [])
    return {
        "watchable": delay <= horizon, "kind": "categorical",
        "effective_sample_size": float(info["effective_sample_size"]),
        "reference_values": int(info["reference_values"]), "odds_ratio": ODDS_RATIO,
        "rising": [cats[j] if j < len(cats) else str(j) for j in up],
        "total_variation": round(0.5 * float(np.abs(q - u).sum()), 3),
        "expected_delay": None if math.isinf(delay) else round(delay, 1),
        "delay_limit": _FOLLOW * horizon,
        "horizon": horizon, "reference_size": reference_size,
        # What the projection needs.
        "counts": [int(c) for c in info.get("reference_counts") or []],
        "tau": float(1.0 / float(over["inv_tau"])), "w": float(over["w"]),
        "detectors": 1, "budget_per_value": budget,
    }


def _project_mix(w: Mapping[str, Any], scale: float, budget: float) -> float:
    counts = np.asarray(w["counts"], dtype=np.float64)
    tau = float(w["tau"])
    urn = 0.5 + scale * counts / tau
    q, _ = split_shift(urn / urn.sum())
    return mix_delay(list(urn), float(w["w"]), 1.0 / tau, math.log(1.0 / budget), q,
                     int(w["horizon"]))


# -- remedies ----------------------------------------------------------------------------------

def remedies_kind(w: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """``(more values, budget as 1 per N values)`` that would make a not-watchable binary or
    categorical signal watchable (see the module doc), each None when none within limits does.
    Cached: a report may ask for the same assessment more than once."""
    if w["watchable"]:
        return None, None
    import json

    return _remedies(json.dumps(dict(w), sort_keys=True))


@lru_cache(maxsize=256)
def _remedies(key: str) -> tuple[int | None, int | None]:
    import json

    w = json.loads(key)
    n, horizon = int(w["reference_values"]), int(w["horizon"])
    budget, ndet = float(w["budget_per_value"]), int(w["detectors"])

    def fits(scale: float, p: float) -> bool:
        if w["kind"] == "binary":
            return _project_rate(w, scale, p / ndet) <= horizon
        return _project_mix(w, scale, p) <= horizon

    more = None
    top = _MAX_VALUES / max(n, 1)
    if top > 1.0 and fits(top, budget):  # the smallest longer reference that fits, within 10%
        lo, hi = 1.0, 4.0
        while hi < top and not fits(hi, budget):
            lo, hi = hi, min(hi * 4.0, top)
        while hi - lo > 0.1 * lo:
            mid = math.sqrt(lo * hi) if hi > 2.0 * lo else 0.5 * (lo + hi)
            lo, hi = (lo, mid) if fits(mid, budget) else (mid, hi)
        more = max(1, math.ceil(hi * n) - n)
    loose = None
    p = budget
    while p < _MAX_BUDGET:
        p = min(_MAX_BUDGET, p * 10.0)
        if fits(1.0, p):
            loose = round(1.0 / p)
            break
    return more, loose
