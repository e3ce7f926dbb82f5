"""Whether a signal's reference can support its false-alarm budget: "watchable", or what it needs.

A reference that is short, strongly autocorrelated or nearly constant has a small effective
sample (``n / tau``, core/calibrate.py). The calibration still meets the budget, by raising
the allowances and the thresholds until the reference's own error cannot fire them; but then
the detectors may need thousands of values to notice even a large change. Such a signal is
watched only in name. This module decides, once per calibration, whether the detectors would
catch a shift of ``SHIFT_SDS`` (2) reference standard deviations within a horizon of
``max(reference_size, MIN_HORIZON)`` values (the signal's full reference, at least 1,000),
from the thresholds the calibration chose: the expected delay of a one-sided CUSUM with
allowance ``k`` and threshold ``h`` on a shift of ``delta`` is about ``h / (delta - k)`` (the
mean drift of its increments), whatever the autocorrelation.

When it would not, the signal is **not watchable yet** (core/signals.py keeps growing its
reference, up to its full size) and :func:`remedies` says what would make it watchable: a
longer reference (same ``tau``) or a looser budget, from a Gaussian-equivalent projection of
the same calibration (``theta = 2 k / tau``).

Binary and categorical signals (a ``cusum`` built as a Bernoulli or multinomial CUSUM) ask the
same question of their own detectors, the large change being a 20-fold rise of the odds of
the minority side: core/watchable_kinds.py. Such a signal is still watched on its short
reference while that grows (its calibration meets the budget whatever the reference; paused, a
flag would miss a jump while its reference grows, and absorb it), and is reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .calibrate import ALLOWANCE_SES, ROOT_SES, expected_threshold
from .watchable_kinds import assess_mix, assess_rate, remedies_kind

__all__ = ["MIN_HORIZON", "SHIFT_SDS", "assess", "delay_for", "describe", "remedies"]

SHIFT_SDS = 2.0  # the change a watchable signal must catch within its horizon
MIN_HORIZON = 1000  # values: the horizon of a signal whose full reference is shorter
_MAX_VALUES = 10_000_000  # longer references are not worth proposing


def _delay(h: float, k: float, delta: float) -> float:
    return h / (delta - k) if delta > k else math.inf


def delay_for(n: float, tau: float, k: float, k_slow: float, budget: float, sums: int,
              delta: float = SHIFT_SDS) -> float:
    """Expected values to detect a shift of ``delta`` sd by the level sums of a cusum calibrated
    on a Gaussian-equivalent reference of ``n`` values with long-run variance ratio ``tau``, at
    ``budget`` false alarms per value shared by ``sums`` one-sided sums (the projection that
    says what a longer reference or a looser budget would buy).

    >>> round(delay_for(1000, 1.0, 0.5, 0.25, 1e-6, 6))
    11
    >>> delay_for(200, 39.0, 0.5, 0.25, 1e-6, 6) > 1000  # AR(1) 0.95: 5 effective values
    True
    """
    nu = max(n / tau - 1.0, 3.0)
    se = math.sqrt(tau / n * nu / (nu - 2.0))
    var = tau * (1.0 + ROOT_SES * math.sqrt(tau / n))
    s_var = math.hypot(math.sqrt(2.0 * tau / n),
                       (tau - 1.0) * (tau + 1.0) / (tau * math.sqrt(n * tau)))
    target = sums / budget
    best = math.inf
    for allowance in (k, k_slow):
        k_used = max(allowance, ALLOWANCE_SES * se)
        if k_used >= delta:
            continue
        best = min(best, _delay(expected_threshold(k_used, var, se, s_var, target), k_used, delta))
    return best


def assess(calibration: Mapping[str, Any], overrides: Sequence[Mapping[str, Any]],
           detector_params: Sequence[Mapping[str, Any]], budget: float,
           reference_size: int) -> dict[str, Any] | None:
    """The watchability of a calibrated signal (None when no ``cusum`` watches it: other
    detectors' thresholds say nothing about the level sums this measures). A binary or
    categorical signal's ``cusum`` (built as a Bernoulli or multinomial CUSUM, as its
    calibration record says) is assessed by core/watchable_kinds.py.

    ``calibration`` and ``overrides`` are :func:`core.calibrate.calibrate`'s (for the configured
    ``detector_params``); ``budget`` is the signal's false alarms per value and
    ``reference_size`` its full reference (the horizon within which a 2 sd shift must be caught
    is that, at least ``MIN_HORIZON`` values).
    """
    horizon = max(reference_size, MIN_HORIZON)
    records = calibration.get("detectors")
    for i, rec in enumerate(records if isinstance(records, list) else ()):
        kind = rec.get("type") if isinstance(rec, Mapping) else None
        if i >= len(overrides) or kind not in ("bernoulli_cusum", "multinomial_cusum"):
            continue
        if kind == "multinomial_cusum":
            return assess_mix(overrides[i], calibration, budget, horizon, reference_size)
        params = detector_params[i] if i < len(detector_params) else {}
        return assess_rate(overrides[i], rec, params, len(detector_params), budget, horizon,
                           reference_size)
    idx = next((i for i, d in enumerate(detector_params) if d.get("__type__") == "cusum"), None)
    if idx is None or idx >= len(overrides):
        return None
    o = overrides[idx]
    h = o.get("h")
    # Only the numeric cusum's six sums (level fast, level slow, spread; up and down): a signal
    # whose kind gives the cusum other arithmetic (0/1 rates, categories) is not assessed here.
    if (not isinstance(h, list | tuple) or len(h) != 6 or "k" not in o or "k_slow" not in o
            or "reference_values" not in calibration
            or "long_run_variance_ratio" not in calibration):
        return None
    n = int(calibration["reference_values"])
    tau = float(calibration["long_run_variance_ratio"])
    # A 2 sd shift of the raw value in the cusum's units u = (a z + b - m) * inv_s (before the
    # clip, which only caps it).
    delta = SHIFT_SDS * float(o.get("a", 1.0)) * float(o.get("inv_s", 1.0))
    k, ks = float(o["k"]), float(o["k_slow"])
    # The worse direction of the better of the fast and slow level sums.
    delay = max(min(_delay(h[0], k, delta), _delay(h[2], ks, delta)),
                min(_delay(h[1], k, delta), _delay(h[3], ks, delta)))
    return {
        "watchable": delay <= horizon,
        "effective_sample_size": round(n / tau, 1),
        "reference_values": n,
        "shift_sds": SHIFT_SDS,
        "expected_delay": None if math.isinf(delay) else round(delay, 1),
        "horizon": horizon,
        "reference_size": reference_size,
        # What the projection needs (remedies() works it out when a report asks).
        "tau": tau, "k": float(detector_params[idx].get("k", 0.5)),
        "k_slow": float(detector_params[idx].get("k_slow", 0.25)),
        "detectors": max(1, len(detector_params)), "budget_per_value": budget,
    }


def remedies(w: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """What would make a not-watchable signal watchable, from the Gaussian-equivalent
    projection of its calibration: ``(more values, budget as 1 per N values)``, each None when
    none within limits does (a longer reference with the same ``tau``, up to 10 million
    values; a looser budget by powers of ten, up to the config's limit of 0.01 per value).
    A report calls it: it costs a few threshold searches. Binary and categorical signals:
    :func:`core.watchable_kinds.remedies_kind`."""
    if w["watchable"]:
        return None, None
    if w.get("kind") in ("binary", "categorical"):
        return remedies_kind(w)
    n, tau, horizon = int(w["reference_values"]), float(w["tau"]), int(w["horizon"])
    budget, ndet = float(w["budget_per_value"]), int(w["detectors"])

    def fits(m: float, p: float) -> bool:
        # The budget ``p`` of the signal is shared by its detectors; a cusum's by its 6 sums.
        return delay_for(m, tau, w["k"], w["k_slow"], p / ndet, 6) <= horizon

    more = None
    if fits(_MAX_VALUES, budget):  # the smallest longer reference that fits, within 10%
        lo, hi = float(n), float(n) * 2.0
        while not fits(hi, budget):
            lo, hi = hi, hi * 2.0
        while hi - lo > 0.1 * lo:
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if fits(mid, budget) else (mid, hi)
        more = math.ceil(hi) - n
    loose = None
    p = budget
    while p < 0.01:
        p = min(0.01, p * 10.0)
        if fits(n, p):
            loose = round(1.0 / p)
            break
    return more, loose


def describe(w: Mapping[str, Any]) -> str:
    """One line for reports: what the signal lacks and what it needs.

    >>> w = {"watchable": False, "effective_sample_size": 9.1, "reference_values": 200,
    ...      "expected_delay": 28650.0, "horizon": 1000, "shift_sds": 2.0, "tau": 22.0,
    ...      "k": 0.5, "k_slow": 0.25, "detectors": 1, "budget_per_value": 1e-6}
    >>> for part in describe(w).replace(": a", "; a").split("; "):
    ...     print(part)
    effective sample 9.1 of 200 values
    a 2 sd shift would take ~28650 values to detect (horizon 1000)
    needs ~650 more values, or a budget of 1 per 10,000 values
    """
    more, loose = remedies(w)
    delay = w.get("expected_delay")
    took = (f"~{delay:.0f} values" if delay is not None else
            f"over {w['delay_limit']} values" if "delay_limit" in w else "forever")
    kind = w.get("kind")
    if kind == "binary":
        change = (f"a rate rise from {100 * w['rate_from']:.2g}% to {100 * w['rate_to']:.2g}%"
                  f" ({w['odds_ratio']:g}x the odds)" if w["rate_to"] > w["rate_from"] else
                  f"a rate fall from {100 * w['rate_from']:.3g}% to {100 * w['rate_to']:.3g}%"
                  f" ({w['odds_ratio']:g}x the odds of a 0)")
    elif kind == "categorical":
        change = (f"a mix change of total variation {w['total_variation']:g} (the odds of "
                  f"{'/'.join(w['rising'][:4])}{'/...' if len(w['rising']) > 4 else ''} "
                  f"{w['odds_ratio']:g}x)")
    else:
        change = f"a {w['shift_sds']:g} sd shift"
    out = (f"effective sample {w['effective_sample_size']:g} of {w['reference_values']} values: "
           f"{change} would take {took} to detect (horizon {w['horizon']})")
    fixes = []
    if more is not None:
        total = int(w["reference_values"]) + more
        # Beyond the full reference the reference cannot grow by itself.
        full = int(w.get("reference_size", w["horizon"]))
        fixes.append(f"~{more} more values" + (f" (a reference_size of {total} or more)"
                                               if total > full else ""))
    if loose is not None:
        fixes.append(f"a budget of 1 per {loose:,} values")
    return out + ("; needs " + ", or ".join(fixes) if fixes else
                  "; no reference length or budget within limits fixes it")
