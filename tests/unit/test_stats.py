"""core/stats.py: the alert summaries' quantiles are numpy's, bit for bit."""

from __future__ import annotations

import numpy as np

from stream_monitor.core.stats import QUANTILES, quantiles, summarize


def _windows() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = [np.array([1.0]), np.array([-0.0]), np.array([0.0, -0.0]), np.array([-0.0, 0.0, -0.0])]
    for n in range(1, 701):
        kind = n % 4
        if kind == 0:
            a = rng.normal(120.0, 35.0, n)
        elif kind == 1:
            a = np.round(rng.normal(0.0, 0.001, n), 3)  # ties and signed zeros
        elif kind == 2:
            a = rng.integers(-3, 3, n).astype(np.float64) * rng.choice([0.0, -0.0, 1.0], n)
        else:
            a = rng.standard_cauchy(n) * 1e10
        out.append(a)
    return out


def test_quantiles_are_numpys_bit_for_bit() -> None:
    for a in _windows():
        before = a.copy()
        want = [repr(float(v)) for v in np.quantile(a, QUANTILES)]
        assert [repr(v) for v in quantiles(a)] == want, (len(a), a[:8])
        assert np.array_equal(a, before)  # the input is left as it was


def test_summarize_quantiles_match_numpy() -> None:
    vals = list(np.random.default_rng(1).normal(0.3, 0.1, 200))
    got = summarize(vals)["quantiles"]
    want = np.quantile(np.asarray(vals), QUANTILES)
    assert list(got.values()) == [float(v) for v in want]
