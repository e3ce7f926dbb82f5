"""How far a categorical signal's recent mix is from a reference mix, in the unit of a shift.

The persistence check of a retrain (core/retrain.py) and the return check of an incident
(core/lifecycle.py) ask of a numeric signal whether the mean of its last ``k`` values is at least
(or within) some number of *reference standard deviations* from the reference mean. A
categorical signal has no mean; its values are one-hot vectors over the slots the alert was
measured on (the reference's top categories and "other", core/multinomial.py). The same
question in the same unit is the **Mahalanobis distance** of the recent category shares ``f``
from the reference shares ``p`` under one value's covariance ``diag(p) - p p^T``:

    ``d^2 = sum_j (f_j - p_j)^2 / p_j``   (Cohen's ``w^2``, the chi-square divergence)

For two categories it *is* the numeric shift of the 0/1 indicator, ``|f_1 - p_1| /
sqrt(p_1 (1 - p_1))``, so a two-category feature is judged exactly as its binary signal would
be, and ``min_shift`` / ``resolve_max_shift`` keep their meaning. The plug-in ``d^2`` of ``k``
values is biased up by their own sampling noise: under "the values follow ``p``" its mean is
exactly ``(K - 1) / k`` for ``K`` slots, times the dependence ``tau`` of the signal (the
calibration's long-run variance ratio) for sticky categories. Without removing it, a signal
with 20 slots read on 50 values would sit at ``d`` of about 0.63 while following its reference,
so it could never be found back within 0.5 and every false alarm would persist. The distance
used is therefore ``sqrt(max(0, d^2 - tau (K - 1) / k))``.

The total-variation distance ``0.5 sum_j |f_j - p_j|`` (the share of values that would have to
change category) is reported next to it, for people; it is not the test (it weighs a move of
1% the same on a 50% and on a 1% category).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..contracts.output_records import DriftAlert
from .multinomial import JEFFREYS

__all__ = ["MixShift", "compare_mix", "mix_of_alert", "mix_shift", "reference_mix"]


def reference_mix(calibration: Mapping[str, Any]) -> list[Any] | None:
    """``[categories, shares, tau]`` of a categorical calibration record: the slot labels
    (the last is "other"), the reference shares the detector was calibrated on (the Dirichlet
    urn's, recomputed exactly from the reference counts and ``tau``) and ``tau``. None when the
    record is not a categorical one.

    >>> reference_mix({"categories": ["a", "(other)"], "reference_counts": [10, 0],
    ...                "long_run_variance_ratio": 2.0})
    [['a', '(other)'], [0.9166666666666666, 0.08333333333333333], 2.0]
    """
    cats = calibration.get("categories")
    counts = calibration.get("reference_counts")
    if not cats or counts is None or len(cats) != len(counts):
        return None
    tau = max(float(calibration.get("long_run_variance_ratio") or 1.0), 1.0)
    urn = [JEFFREYS + float(c) / tau for c in counts]
    total = math.fsum(urn)
    return [list(cats), [u / total for u in urn], tau]


def mix_of_alert(alert: DriftAlert) -> list[Any] | None:
    """:func:`reference_mix` of a drift alert's calibration (None for a numeric alert)."""
    if alert.detector.type != "multinomial_cusum":
        return None
    cal = alert.calibration
    return reference_mix(cal) if cal else None


class MixShift:
    """The result of :func:`mix_shift`."""

    __slots__ = ("count", "distance", "raw", "shares", "total_variation")

    def __init__(self, distance: float, raw: float, total_variation: float, count: int,
                 shares: list[float]) -> None:
        self.distance = distance  # debiased Mahalanobis distance (reference std units)
        self.raw = raw  # plug-in distance, before removing the sampling noise
        self.total_variation = total_variation
        self.count = count
        self.shares = shares


def mix_shift(codes: Iterable[float], labels: Sequence[str], mix: Sequence[Any]) -> MixShift:
    """The distance of the category mix of ``codes`` (values of a categorical signal: indices
    into its code table's ``labels``; -1 past the table's cap) from the reference ``mix``
    (:func:`reference_mix`). Codes whose category is not one of the mix's own slots count as
    "other" (the last slot). ``codes`` must not be empty.

    >>> mix = [["a", "b", "(other)"], [0.5, 0.5, 1e-9], 1.0]
    >>> r = mix_shift([0.0, 1.0] * 50, ["a", "b"], mix)  # exactly the reference mix
    >>> r.distance, round(r.raw, 3), round(r.total_variation, 3)
    (0.0, 0.0, 0.0)
    >>> r = mix_shift([0.0] * 80 + [1.0] * 20, ["a", "b"], mix)  # .8/.2: shift 0.6 of the 0/1
    >>> round(r.raw, 3), round(r.distance, 3), round(r.total_variation, 3)
    (0.6, 0.583, 0.3)
    """
    cats, shares, tau = mix[0], mix[1], float(mix[2])
    k = len(cats)
    other = k - 1
    slot = {c: j for j, c in enumerate(cats[:-1])}
    of_code = [slot.get(lab, other) for lab in labels]
    counts = [0] * k
    n = 0
    for c in codes:
        i = int(c)
        counts[of_code[i] if 0 <= i < len(of_code) else other] += 1
        n += 1
    if n == 0:
        raise ValueError("mix_shift needs at least one value")
    f = [c / n for c in counts]
    d2 = math.fsum((fj - pj) ** 2 / pj for fj, pj in zip(f, shares, strict=True))
    tv = 0.5 * math.fsum(abs(fj - pj) for fj, pj in zip(f, shares, strict=True))
    bias = tau * (k - 1) / n
    return MixShift(math.sqrt(max(d2 - bias, 0.0)), math.sqrt(d2), tv, n, f)


RARE_EXPECTED = 5.0  # categories expected fewer times than this in a version are pooled (test)


def compare_mix(signal: str, previous: Sequence[float], previous_labels: Sequence[str],
                new: Sequence[float], new_labels: Sequence[str], *, alpha: float,
                min_shift: float, min_values: int) -> dict[str, Any]:
    """A deployment check of a categorical signal: the new version's first window of category
    codes against the previous version's reference window (each coded by its own version's
    table, so categories are matched by label).

    * **Test**: Pearson's chi-square test of homogeneity of the two versions' category counts,
      divided by the dependence ``tau`` (the larger long-run variance ratio of the two windows,
      :func:`~stream_monitor.core.multinomial.category_long_run_ratio`: sticky categories carry
      fewer independent values), referred to chi-square with (cells - 1) degrees of freedom.
      Categories expected fewer than 5 times in either version are pooled into one cell, so
      rare levels do not make the approximation fail.
    * **Effect**: the distance of the new shares from the previous ones in previous-version
      std (the Mahalanobis distance of the shares, less the sampling noise of both windows:
      the unit of ``mean_shift_in_previous_std`` for numbers).
    * ``changed`` when the test rejects at ``alpha`` **and** the distance is at least
      ``min_shift``, as for numeric signals; ``ks`` is null (not a KS test).

    >>> r = compare_mix("prediction", [0.0, 1.0] * 100, ["no", "yes"],
    ...                 [0.0, 1.0, 1.0, 1.0, 1.0] * 40, ["yes", "no"], alpha=0.01, min_shift=0.5,
    ...                 min_values=30)  # .5/.5 -> .2/.8 ("no" is code 1 in the new table)
    >>> r["changed"], r["categories"]["total_variation"], round(r["mean_shift_in_previous_std"], 2)
    (True, 0.3, 0.59)
    """
    from scipy import stats

    from .multinomial import category_long_run_ratio

    if min_values < 1:
        raise ValueError(f"min_values must be at least 1, not {min_values}")
    n1, n2 = len(previous), len(new)
    # Categories by label: the previous version's most frequent first.
    c1: dict[str, int] = {}
    c2: dict[str, int] = {}
    for codes, labels, counts in ((previous, previous_labels, c1), (new, new_labels, c2)):
        for c in codes:
            i = int(c)
            lab = labels[i] if 0 <= i < len(labels) else "(other)"
            counts[lab] = counts.get(lab, 0) + 1
    cats = sorted(set(c1) | set(c2), key=lambda c: (-c1.get(c, 0), -c2.get(c, 0), c))
    k = len(cats)
    sufficient = n1 >= min_values and n2 >= min_values
    out: dict[str, Any] = {"signal": signal, "previous": _count(n1), "new": _count(n2),
                           "mean_shift_in_previous_std": None, "ks": None, "changed": False,
                           "sufficient": sufficient}
    if not (n1 and n2):
        return out
    f1 = [c1.get(c, 0) / n1 for c in cats]
    f2 = [c2.get(c, 0) / n2 for c in cats]
    tv = 0.5 * math.fsum(abs(a - b) for a, b in zip(f1, f2, strict=True))
    index = {c: j for j, c in enumerate(cats)}

    def slots(codes: Sequence[float], labels: Sequence[str]) -> list[int]:
        return [index[labels[int(c)] if 0 <= int(c) < len(labels) else "(other)"]
                for c in codes]

    tau = max(1.0, category_long_run_ratio(slots(previous, previous_labels), k),
              category_long_run_ratio(slots(new, new_labels), k))
    # The previous shares with Jeffreys' prior: a category the previous version never showed
    # has a share, not a zero to divide by.
    p = [(c1.get(c, 0) + JEFFREYS) / (n1 + JEFFREYS * k) for c in cats]
    d2 = math.fsum((b - a) ** 2 / pj for a, b, pj in zip(f1, f2, p, strict=True))
    noise = tau * (k - 1) * (1.0 / n1 + 1.0 / n2)
    distance = math.sqrt(max(d2 - noise, 0.0))
    out["mean_shift_in_previous_std"] = distance
    test: dict[str, Any] | None = None
    if sufficient:
        # Pool the rare categories (expected < RARE_EXPECTED in either version) into one cell.
        total = n1 + n2
        cells: list[list[float]] = []
        rare = [0.0, 0.0]
        for lab in cats:
            a, b = c1.get(lab, 0), c2.get(lab, 0)
            if min(n1, n2) * (a + b) / total < RARE_EXPECTED:
                rare[0] += a
                rare[1] += b
            else:
                cells.append([float(a), float(b)])
        if rare[0] + rare[1] > 0:
            cells.append(rare)
        x2 = 0.0
        for o1, o2 in cells:
            col = o1 + o2
            for obs, n in ((o1, n1), (o2, n2)):
                e = n * col / total
                x2 += (obs - e) ** 2 / e
        df = len(cells) - 1
        stat = x2 / tau
        pv = float(stats.chi2.sf(stat, df)) if df > 0 else 1.0
        test = {"statistic": round(stat, 6), "df": df, "p_value": pv,
                "long_run_variance_ratio": round(tau, 4)}
        out["changed"] = pv < alpha and distance >= min_shift
    out["categories"] = {
        "total_variation": round(tv, 4),
        "test": test,
        "shares": sorted(({"category": c, "previous_share": round(a, 4), "new_share": round(b, 4),
                           "change": round(b - a, 4)}
                          for c, a, b in zip(cats, f1, f2, strict=True)),
                         key=lambda r: -abs(r["change"])),
    }
    return out


def _count(n: int) -> dict[str, Any]:
    """A window's summary: its count (a mean of category codes means nothing)."""
    from .stats import summarize

    return {"count": n} if n else summarize([])
