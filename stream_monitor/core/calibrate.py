"""Calibrate a signal's detectors to a false-alarm budget from its reference window.

Runs once per reference (when it forms and again after each drift), never per value. The
method (docs/detection.md has the derivation and the measured figures):

1. **Robust standardization.** ``r = clip((x - median) / (1.4826 MAD), -c, c)`` (the std when
   the MAD is 0: discrete data; with a Laplace floor for rare values), then centred and scaled
   by the clipped reference's own mean and std: ``u``. Heavy tails then move a sum by at most
   ``c`` per value.
2. **Long-run variance.** ``tau = sigma_LR^2 / sigma^2`` of ``u``: the largest of the AR(1)
   estimate ``(1 + rho) / (1 - rho)`` and overlapping batch-means estimates at batch sizes
   8, 16, 32, ... up to n/16, and at least 1. ``n / tau`` is the reference's effective sample
   size. Autocorrelated and slowly cycling data get a large ``tau``.
3. **Thresholds.** A one-sided CUSUM ``S = max(0, S + y - k)`` on a centred increment ``y``
   crosses ``h`` on average after ``ARL(h) = (exp(theta h) - theta h - 1) / (theta k)`` values
   (Wald / Siegmund, without the overshoot correction, which errs on the safe side), where
   ``theta`` is the positive root of ``E exp(theta (y - k)) = 1``. We solve that equation on
   the reference's own values (so skew, discreteness and the clipped tails count) and divide
   the root by ``tau`` (exact for Gaussian AR(1) data, where ``theta = 2k / tau``). Then ``h``
   is the smallest threshold whose ARL meets the detector's share of the budget; to allow for
   the error of estimating ``theta`` and ``tau`` from ``n / tau`` effective values, ``theta``
   is shrunk by ``1 + 2 / sqrt(n / tau)``.
4. **Budget split.** A signal's budget ``p`` (false alarms per value) is shared equally by its
   detectors, and by the one-sided sums inside a detector: each of a CUSUM's 6 sums gets an
   ARL of ``6 * n_detectors / p``.

Page-Hinkley gets the threshold of a two-sided CUSUM with ``k = delta`` on its (plain
standardized) input. ADWIN gets ``delta = (p_det * clock) ** tau`` (its bound is per check, on
independent values). KSWIN gets ``alpha = p_det / tau``. Binary detectors (DDM family) are not
calibrated: their statistics are their own, and alerts say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .plan import PHASE_BINS

__all__ = [
    "CLIP",
    "ar_spectral_ratio",
    "arl",
    "calibrate",
    "change_kind",
    "cusum_threshold",
    "expected_threshold",
    "long_run_ratio",
    "robust_standardize",
    "theta_root",
]

CLIP = 3.0
ALLOWANCE_SES = 2.0
ROOT_SES = 2.0
_MAX_THETA = 50.0


def robust_standardize(x: np.ndarray, clip: float = CLIP) -> tuple[float, float, np.ndarray]:
    """Median, robust scale and ``clip(( x - median) / scale)`` of a reference.

    >>> med, scale, r = robust_standardize(np.array([0.0, 1.0, 2.0, 3.0, 100.0]))
    >>> med, round(scale, 4), float(r.max())
    (2.0, 1.4826, 3.0)
    """
    med = float(np.median(x))
    dev = np.abs(x - med)
    scale = 1.4826 * float(np.median(dev))
    if not scale > 0 or not math.isfinite(scale):
        # Discrete data (most values equal the median): the std, with a Laplace floor so that a
        # reference with a handful of (or no) off-median values still has a scale.
        off = dev[dev > 0]
        n = len(x)
        typical = float(off.mean()) if len(off) else 1.0
        p = (len(off) + 1.0) / (n + 2.0)
        scale = max(float(x.std()), typical * math.sqrt(p * (1.0 - p)))
    if not scale > 0 or not math.isfinite(scale):
        scale = 1.0
    return med, scale, np.clip((x - med) / scale, -clip, clip)


def long_run_ratio(u: np.ndarray) -> float:
    """``tau``: long-run variance over variance of a centred, unit-variance series (>= 1).

    >>> rng = np.random.default_rng(1)
    >>> round(long_run_ratio(rng.standard_normal(2000)), 1) < 1.5
    True
    """
    n = len(u)
    if n < 8:
        return 1.0
    ss = float(np.dot(u, u))
    if not ss > 0:
        return 1.0
    rho = float(np.dot(u[1:], u[:-1])) / ss
    rho += (1.0 + 3.0 * rho) / n  # Kendall's correction: the estimate is biased low
    rho = min(max(rho, -0.99), 0.99)
    tau = (1.0 + rho) / (1.0 - rho)
    var = ss / n
    cs = np.concatenate(([0.0], np.cumsum(u)))
    b = 8
    while b <= n // 16:
        means = (cs[b:] - cs[:-b]) / b
        # Batch means scatter about the sample mean, not the true one: their variance is low
        # by about b / n of it.
        tau = max(tau, b * float(np.mean(means * means)) / var / (1.0 - b / n))
        b *= 2
    tau = max(tau, ar_spectral_ratio(u))
    return max(1.0, min(tau, n / 4.0))


AR_MAX_ORDER = 30


def ar_spectral_ratio(u: np.ndarray) -> float:
    """``tau`` from an autoregressive fit: Yule-Walker (Levinson-Durbin) up to order
    ``min(AR_MAX_ORDER, n / 10)``, the order chosen by AIC, and the fitted spectral density at
    frequency 0 over the variance, ``sigma_p^2 / (1 - sum a_i)^2`` (the usual effective-sample
    estimate of MCMC output analysis). A lag-1 fit misses slow components mixed with fast ones
    (a score of several features, a nonlinear transform of an autoregressive latent, the
    absolute values of one), whose lag-1 correlation says little about their long-run
    variance; a higher order sees them when the reference does.

    >>> rng = np.random.default_rng(4)
    >>> e = rng.standard_normal(5000)
    >>> x = np.zeros(5000)
    >>> for i in range(1, 5000):
    ...     x[i] = 0.9 * x[i - 1] + e[i]
    >>> round(ar_spectral_ratio(x / x.std()))  # AR(1) 0.9: 19
    19
    """
    n = len(u)
    pmax = min(AR_MAX_ORDER, n // 10)
    if pmax < 1:
        return 1.0
    c = u - u.mean()
    g0 = float(np.dot(c, c))
    if not g0 > 0:
        return 1.0
    r = np.array([float(np.dot(c[k:], c[:n - k])) / g0 for k in range(pmax + 1)])
    r1 = [float(v) for v in r]  # plain floats: tau goes into JSON alerts
    a = np.zeros(0)
    err = 1.0
    best_aic, best_sum, best_err = 0.0, 0.0, 1.0
    for p in range(1, pmax + 1):
        kp = (r1[p] - float(np.dot(a, r[p - 1:0:-1]))) / err
        if not -1.0 < kp < 1.0:
            break
        a = np.concatenate((a - kp * a[::-1], [kp]))
        err *= 1.0 - kp * kp
        aic = n * math.log(err) + 2.0 * p
        if aic < best_aic:
            best_aic, best_sum, best_err = aic, float(a.sum()), err
    d = 1.0 - best_sum
    if not d > 1e-3:
        return n / 4.0
    return float(best_err / (d * d))


def theta_root(y: np.ndarray, k: float) -> float:
    """The positive root of ``mean(exp(theta (y - k))) = 1`` (``y`` centred): Newton's method
    on the convex ``g(theta) = log mean exp(theta (y - k))`` from a point right of the root,
    where it converges monotonically (a handful of steps). ``_MAX_THETA`` when ``y - k`` is
    never positive.

    >>> rng = np.random.default_rng(2)
    >>> y = rng.standard_normal(20000)
    >>> round(theta_root(y - y.mean(), 0.5), 1)  # N(0,1): 2k
    1.0
    """
    d = y - k
    if not float(d.max()) > 0:
        return _MAX_THETA

    def g(t: float) -> tuple[float, float]:
        e = t * d
        mx = float(e.max())
        w = np.exp(e - mx)
        sw = float(w.sum())
        return mx + math.log(sw / len(d)), float(np.dot(w, d)) / sw

    var = float(np.dot(d, d)) / len(d) - k * k
    t = max(4.0 * k / var, 1e-3) if var > 0 else 1.0
    val, slope = g(t)
    while val < 0:
        if t >= _MAX_THETA:
            return _MAX_THETA
        t *= 2.0
        val, slope = g(t)
    for _ in range(50):
        step = val / slope if slope > 0 else t / 2.0
        t_new = t - step
        if t_new <= 0:
            t_new = t / 2.0
        if abs(t_new - t) <= 1e-7 * t:
            t = t_new
            break
        t = t_new
        val, slope = g(t)
    return t


def arl(h: float, theta: float, k: float) -> float:
    """Average run length (values to a false alarm) of a one-sided CUSUM at threshold ``h``.

    >>> round(arl(15.6, 1.0, 0.5) / 1e6, 1)
    11.9
    """
    th = theta * h
    if th > 700:
        return math.inf
    return (math.exp(th) - th - 1.0) / (theta * k)


def cusum_threshold(theta: float, k: float, target_arl: float) -> float:
    """Smallest ``h`` with ``arl(h) >= target_arl``."""
    lo, hi = 0.0, 1.0
    while arl(hi, theta, k) < target_arl:
        lo, hi = hi, hi * 2.0
        if hi > 1e9:
            return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if arl(mid, theta, k) < target_arl:
            lo = mid
        else:
            hi = mid
    return hi


# Gauss-Hermite nodes (probabilists'), weights summing to 1, on a flattened grid: expectations
# over the estimation errors of the reference (its mean; its effective variance).
_MEAN_NODES, _MEAN_W = np.polynomial.hermite_e.hermegauss(20)
_VAR_NODES, _VAR_W = np.polynomial.hermite_e.hermegauss(5)
_GRID_MEAN = np.repeat(_MEAN_NODES, len(_VAR_NODES))
_GRID_VAR = np.tile(_VAR_NODES, len(_MEAN_NODES))
_GRID_W = np.outer(_MEAN_W, _VAR_W).ravel() / (_MEAN_W.sum() * _VAR_W.sum())


def _rates(h: float, mu: np.ndarray, v: np.ndarray) -> float:
    # Siegmund's run length, inverted and averaged; exp is capped (those cases never alarm).
    a = 2.0 * mu / v
    x = a * h
    num = np.expm1(np.minimum(-x, 700.0)) + x
    return float(np.dot(_GRID_W, a * mu / num))


def expected_alarm_rate(h: float, k: float, var: float, se: float, s_var: float) -> float:
    """False alarms per value of a one-sided CUSUM ``S = max(0, S + y - k)`` at threshold
    ``h``, averaged over the error of the reference it was calibrated on.

    ``var`` is the increment's effective (long-run) variance, so that ``theta = 2 k / var``.
    The reference mean is off by ``delta ~ N(0, se^2)``, which shifts every increment by
    ``delta``, and the variance by a factor ``exp(eps)``, ``eps ~ N(0, s_var^2)`` (which also
    scales ``se`` by ``exp(eps / 2)``: both come from the long-run variance). Per case the
    run length is Siegmund's ``(exp(-a h) + a h - 1) / (a mu)`` with drift ``mu = delta - k``
    and ``a = 2 mu / var`` (valid for either sign of ``mu``; without the overshoot correction,
    which errs on the safe side); the rate is its inverse, averaged over both errors by
    Gauss-Hermite quadrature.

    >>> r = expected_alarm_rate(15.6, 0.5, 1.0, 0.0, 0.0)
    >>> round(1 / r / 1e6, 1)
    11.9
    """
    return _rates(h, *_grid(k, var, se, s_var))


def _grid(k: float, var: float, se: float, s_var: float) -> tuple[np.ndarray, np.ndarray]:
    # The two errors are coupled: an underestimated long-run variance also understates how far
    # off the reference mean may be (se = sqrt(tau / n)).
    mu = se * np.exp(0.5 * s_var * _GRID_VAR) * _GRID_MEAN - k
    mu = np.where(np.abs(mu) < 1e-9, -1e-9, mu)  # a drift of exactly 0: its limit
    return mu, var * np.exp(s_var * _GRID_VAR)


def _threshold(k: float, var: float, se: float, s_var: float, target: float) -> float:
    """Smallest ``h`` (to 0.1%) whose expected alarm rate is at most ``1 / target``. The search
    starts at the threshold without estimation error (averaging over the errors only raises
    the rate), so it takes about ten evaluations."""
    goal = 1.0 / target
    mu, v = _grid(k, var, se, s_var)
    lo = cusum_threshold(2.0 * k / var, k, target) * 0.999
    if _rates(lo, mu, v) <= goal:
        lo = 0.0
    hi = max(lo * 1.25, 1.0)
    while _rates(hi, mu, v) > goal:
        lo, hi = hi, hi * 1.25
        if hi > 1e9:
            return hi
    while hi - lo > 1e-3 * hi:
        mid = 0.5 * (lo + hi)
        if _rates(mid, mu, v) > goal:
            lo = mid
        else:
            hi = mid
    return hi


def expected_threshold(k: float, var: float, se: float, s_var: float, target: float) -> float:
    """The threshold the calibration gives a one-sided sum (allowance ``k``, effective variance
    ``var``, reference-mean error ``se``, log-variance error ``s_var``) for an average run length
    of ``target`` values: what core/watchable.py projects a longer reference or a looser budget
    with."""
    return _threshold(k, var, se, s_var, target)


def _var_error(y: np.ndarray, tau: float) -> float:
    """Standard deviation of the log of the estimated effective variance ``tau * sigma^2`` of a
    centred, unit-variance ``y``: that of the sample variance (``std(y^2) sqrt(tau_sq / n)``,
    ``tau_sq`` the long-run ratio of the squares: heavy tails and autocorrelation widen it), and
    that of ``tau`` as an AR(1) estimate, ``2 / sqrt(n (1 - rho^2))``, counted only for the part
    of ``tau`` above 1 (``tau >= 1`` is a floor, not an estimate)."""
    n = len(y)
    sq = y * y - 1.0
    sd_sq = float(sq.std())
    tau_sq = long_run_ratio(sq / sd_sq) if sd_sq > 0 else 1.0
    s_tau = (tau - 1.0) * (tau + 1.0) / (tau * math.sqrt(n * tau))
    return math.hypot(sd_sq * math.sqrt(tau_sq / n), s_tau)


def _side_thresholds(y: np.ndarray, k: float, tau: float, target: float, s_var: float,
                     extra_se: float = 0.0, raise_allowance: bool = True,
                     ) -> tuple[list[float], list[float], float]:
    """Thresholds (up, down) of a CUSUM on ``y`` (centred by the reference's own mean), the
    ``theta`` of each side, and the allowance used.

    The reference mean that centres ``y`` is itself an estimate, off by about
    ``se = sqrt(tau / n)`` (plus ``extra_se`` for a spread statistic, whose scale is estimated
    too). The thresholds meet the target *on average over that error*
    (:func:`expected_alarm_rate`). When the error is large against the allowance (a short or
    strongly autocorrelated reference), the allowance is raised to ``ALLOWANCE_SES * se``: a
    sum whose allowance is within the reference's own uncertainty would need a huge threshold
    and could not tell a shift from the reference's error anyway."""
    n = len(y)
    # With n / tau effective values the standardized mean error is Student-t rather than normal:
    # its variance is larger by nu / (nu - 2) (about 1.25 for a reference of 200 AR(1) 0.9
    # values, whose effective sample is about 10).
    nu = max(n / tau - 1.0, 3.0)
    se = math.hypot(math.sqrt(tau / n * nu / (nu - 2.0)), extra_se)
    k_used = max(k, ALLOWANCE_SES * se) if raise_allowance else k
    hs, thetas = [], []
    # The root is itself solved on n / tau effective values: shrink it by ROOT_SES of its
    # relative error (about 1 / sqrt(n / tau)).
    shrink = 1.0 + ROOT_SES * math.sqrt(tau / n)
    for side in (y, -y):
        # The root on the reference's own values (skew, discreteness, clipped tails count),
        # divided by tau; as a Gaussian-equivalent variance: theta = 2 k / var.
        theta = theta_root(side, k_used) / (tau * shrink)
        var = 2.0 * k_used / theta
        thetas.append(theta)
        hs.append(_threshold(k_used, var, se, s_var, target))
    return hs, thetas, k_used


MAX_PHASE_BINS = PHASE_BINS  # the config checks a period's reference against the same bins


def seasonal_means(z: np.ndarray, period: int, first_phase: int) -> list[float]:
    """Mean of ``z`` per phase bin (at most ``MAX_PHASE_BINS`` bins over a period); value ``j``
    of ``z`` is at phase ``(first_phase + j) % period``. An empty bin gets 0."""
    bins = min(period, MAX_PHASE_BINS)
    phase = (first_phase + np.arange(len(z))) % period
    b = phase * bins // period
    sums = np.bincount(b, weights=z, minlength=bins)
    counts = np.bincount(b, minlength=bins)
    return [float(x) for x in np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)]


def calibrate(reference: Sequence[float] | np.ndarray, mean: float, std: float,
              detector_params: Sequence[Mapping[str, Any]], budget: float,
              period: int = 0, first_phase: int = 0,
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per detector, the parameter overrides that meet ``budget`` (false alarms per value) on
    data like ``reference``, and a JSON-able account of the calibration for alert evidence.

    ``mean`` and ``std`` are the monitor's standardization, ``z = (x - mean) / std``, which is
    what numeric detectors are fed. ``detector_params`` are the configured parameters with
    their ``__type__``.
    """
    x = np.asarray(reference, dtype=np.float64)
    n = len(x)
    z = (x - mean) / std
    season: list[float] | None = None
    if period:
        # Compare each value with the reference at the same phase: calibrate on the
        # reference less its per-phase means (the cusum subtracts them from every value).
        season = seasonal_means(z, period, first_phase)
        bins = len(season)
        idx = ((first_phase + np.arange(n)) % period) * bins // period
        z = z - np.asarray(season)[idx]
        x = mean + z * std
    ndet = max(1, len(detector_params))
    p_det = budget / ndet
    out: list[dict[str, Any]] = []
    info: dict[str, Any] = {"budget_per_value": budget, "reference_values": n}
    if period:
        info["period"] = period
    med, scale, r = robust_standardize(x)
    m = float(r.mean())
    s = float(r.std())
    s = s if s > 0 else 1.0
    u = (r - m) / s
    tau = long_run_ratio(u)
    info.update({"long_run_variance_ratio": round(float(tau), 4),
                 "effective_sample_size": round(n / tau, 1)})
    s_var = _var_error(u, tau)
    zc: np.ndarray | None = None
    tau_z: float | None = None
    for params in detector_params:
        kind = params["__type__"]
        if kind == "cusum":
            clip = float(params.get("clip", CLIP))
            if clip != CLIP:
                med, scale, r = robust_standardize(x, clip)
                m = float(r.mean())
                s = float(r.std()) or 1.0
                u = (r - m) / s
                s_var = _var_error(u, tau)
            w = np.abs(u)
            wm = float(w.mean())
            ws = float(w.std()) or 1.0
            v = (w - wm) / ws
            tau_v = long_run_ratio(v)
            k = float(params.get("k", 0.5))
            ks = float(params.get("k_slow", 0.25))
            kv = float(params.get("scale_k", 0.3))
            target = 6.0 / p_det
            h_fast, th_fast, k = _side_thresholds(u, k, tau, target, s_var)
            h_slow, th_slow, ks = _side_thresholds(u, ks, tau, target, s_var)
            # The reference std that scales u is an estimate too: relative error about
            # sqrt(tau_sq / (2 n)) (tau_sq: long-run ratio of u^2), which moves |u| by that
            # times its mean, in units of its std.
            u2 = u * u - 1.0
            tau_sq = long_run_ratio(u2 / (u2.std() or 1.0))
            rel = math.sqrt(tau_sq / (2.0 * n)) * float(np.std(u * u)) / math.sqrt(2.0)
            h_scale, th_scale, kv = _side_thresholds(v, kv, tau_v, target, _var_error(v, tau_v),
                                                     extra_se=rel * wm / ws)
            h = [round(t, 4) for t in h_fast + h_slow + h_scale]
            over = {"a": std / scale, "b": (mean - med) / scale, "m": m, "inv_s": 1.0 / s,
                    "wm": wm, "inv_ws": 1.0 / ws, "h": h, "k": round(k, 6), "k_slow": round(ks, 6),
                    "scale_k": round(kv, 6)}
            if period and season is not None:
                over.update(period=period, season=[round(v, 6) for v in season],
                            phase=(first_phase + n) % period)
            out.append(over)
            info.setdefault("detectors", []).append({
                "type": kind, "share_per_value": p_det, "thresholds": h,
                "theta": [round(t, 5) for t in th_fast + th_slow + th_scale],
                "spread_long_run_variance_ratio": round(float(tau_v), 4),
                "robust_center": med, "robust_scale": scale})
        elif kind == "page_hinkley":
            if zc is None:
                zc = z - z.mean()
                tau_z = long_run_ratio(zc / (zc.std() or 1.0))
            k = float(params.get("delta", 0.25))
            # Page-Hinkley compares with its own running mean: no allowance for the reference's.
            hs, thetas, _ = _side_thresholds(zc, k, tau_z or 1.0, 2.0 / p_det, s_var,
                                             raise_allowance=False)
            thr = round(max(hs), 4)
            out.append({"threshold": thr})
            info.setdefault("detectors", []).append({
                "type": kind, "share_per_value": p_det, "threshold": thr,
                "theta": [round(t, 5) for t in thetas]})
        elif kind == "adwin":
            clock = int(params.get("clock", 32))
            delta = min(0.5, (p_det * clock) ** tau)
            delta = max(delta, 1e-300)
            out.append({"delta": delta})
            info.setdefault("detectors", []).append({
                "type": kind, "share_per_value": p_det, "delta": delta})
        elif kind == "kswin":
            alpha = max(p_det / tau, 1e-300)
            out.append({"alpha": alpha})
            info.setdefault("detectors", []).append({
                "type": kind, "share_per_value": p_det, "alpha": alpha})
        else:
            out.append({})
            info.setdefault("detectors", []).append({"type": kind, "calibrated": False})
    return out, info


def change_kind(reference: Sequence[float], after: Sequence[float]) -> str:
    """``mean`` or ``spread``: which moved more, in standard errors, between the reference and
    the values after a change, in robust z-scores ``u`` (median/MAD, clipped at 5): the mean of
    ``u`` (standard error ``1/sqrt(n)``) or the log of its standard deviation about its own mean
    (standard error ``1/sqrt(2n)``). A shift moves the mean and leaves the spread about it;
    clipping keeps heavy tails from faking a spread change; when most values are beyond the
    clip on one side, the change is a shift.

    >>> rng = np.random.default_rng(3)
    >>> ref = rng.standard_normal(1000)
    >>> [change_kind(ref, rng.standard_normal(60) + d) for d in (1.0, 3.0, 10.0)]
    ['mean', 'mean', 'mean']
    >>> wide, narrow = rng.standard_normal(60) * 1.5, rng.standard_normal(60) * 0.5
    >>> change_kind(ref, wide), change_kind(ref, narrow)
    ('spread', 'spread')
    """
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(after, dtype=np.float64)
    if len(y) < 3 or len(x) < 2:
        return "mean"
    med, scale, r = robust_standardize(x, 5.0)
    m = float(r.mean())
    s = float(r.std()) or 1.0
    z = (y - med) / scale
    if max(int((z >= 5.0).sum()), int((z <= -5.0).sum())) * 2 > len(z):
        return "mean"  # most values beyond the clip on one side: a shift that large
    u = (np.clip(z, -5.0, 5.0) - m) / s
    n = len(u)
    t_level = abs(float(u.mean())) * math.sqrt(n)
    sd = float(u.std())
    t_spread = abs(math.log(max(sd, 1e-3))) * math.sqrt(2.0 * n)
    return "spread" if t_spread > t_level else "mean"
