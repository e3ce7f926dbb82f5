"""The Bernoulli CUSUM on binary signals (core/bernoulli.py): seeded detection indices, the
prior on degenerate references, the dependence estimate, localization, and the pipeline's
outputs (fault rates per event, 0/1 errors) across restarts and against replay."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_monitor.config import parse_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.contracts.records import InferenceEvent
from stream_monitor.contracts.schemas import validate_record
from stream_monitor.core.bernoulli import (
    BernoulliCusum,
    calibrate_rate,
    dependence,
    locate_rate,
)
from stream_monitor.core.model_state import MonitorState
from stream_monitor.core.monitor import Monitor
from tests.helpers import by_type, pipeline_outputs, replay_records

NOW = 1_767_225_600.0


def flags(p: float, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return (rng.random(n) < p).astype(float).tolist()


def first_alarm(det: BernoulliCusum, xs: list[float]) -> int:
    for i, x in enumerate(xs):
        det.update(x)
        if det.drift_detected:
            return i
    return -1


# -- the detector ------------------------------------------------------------------------------

def test_seeded_detection_indices() -> None:
    """Calibrated on a seeded 2% reference at the default budget; the index of the first alarm
    after a rise to 10% and to 40% (values 0-299 at 2%), and after a fall from 10% to 0.5%."""
    over, info = calibrate_rate(flags(0.02, 1000, 1), 1e-6)
    assert info["reference_rate"] == 0.016 and over["ratios"][0] > 1.0
    xs = flags(0.02, 300, 2)
    up10 = first_alarm(BernoulliCusum(**over), xs + flags(0.10, 700, 3))
    up40 = first_alarm(BernoulliCusum(**over), xs + flags(0.40, 700, 3))
    assert (up10, up40) == (608, 322)
    assert first_alarm(BernoulliCusum(**over), flags(0.02, 20_000, 4)) == -1
    over, info = calibrate_rate(flags(0.10, 1000, 5), 1e-6)
    assert min(over["ratios"]) < 1.0  # a 10% rate can tell a fall
    det = BernoulliCusum(**over)
    down = first_alarm(det, flags(0.10, 300, 6) + flags(0.005, 700, 7))
    assert down == 565 and det.kind == "rate_down"


@pytest.mark.parametrize("n", [200, 1000])
def test_a_first_one_after_an_all_zero_reference_does_not_fire(n: int) -> None:
    over, info = calibrate_rate([0.0] * n, 1e-6)
    det = BernoulliCusum(**over)
    assert first_alarm(det, [1.0] + [0.0] * 50 + [1.0, 1.0] + [0.0] * 500) == -1
    # What it needs instead: a rate of tens of percent for a while.
    assert 0 < first_alarm(BernoulliCusum(**over), flags(0.5, 400, 1)) < 200
    assert info["effective_sample_size"] < n  # the prior's runs of ones count


def test_all_one_reference_watches_only_a_fall() -> None:
    over, _ = calibrate_rate([1.0] * 500, 1e-6)
    assert all(r < 1.0 for r in over["ratios"])
    assert first_alarm(BernoulliCusum(**over), [1.0] * 5000 + [0.0]) == -1


def test_calibration_record_states_budget_and_parameters() -> None:
    over, info = calibrate_rate(flags(0.05, 1000, 9), 2e-6)
    for key in ("share_per_value", "p0", "prior", "posterior", "alternatives", "thresholds",
                "markov_lag1_correlation", "long_run_variance_ratio", "effective_sample_size"):
        assert key in info, key
    assert info["share_per_value"] == 2e-6 and info["thresholds"] == over["h"]
    orjson.dumps(info)  # JSON-able
    # A smaller budget share: higher thresholds for the same alternatives.
    over2, _ = calibrate_rate(flags(0.05, 1000, 9), 2e-8,
                              {"ratios": over["ratios"], "given": over["given"]})
    assert all(a > b for a, b in zip(over2["h"], over["h"], strict=True))


def markov_flags(p: float, lam: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a, b = p * (1 - lam), p + lam * (1 - p)
    out = np.empty(n, dtype=bool)
    s = False
    for i, u in enumerate(rng.random(n)):
        s = bool(u < (b if s else a))
        out[i] = s
    return out


def test_dependence_of_bursty_and_latent_flags() -> None:
    # Runs of ones of mean length 5 (lag-one correlation 0.8): tau = 9.
    _, tau, _ = dependence(markov_flags(0.05, 0.8, 20_000, 1))
    assert 6.0 < tau < 12.0
    # Independent flags: about 1 (the largest of several batch-means estimates errs upward).
    _, tau, _ = dependence(np.random.default_rng(2).random(20_000) < 0.05)
    assert tau < 1.5
    # A thresholded AR(1) (0.9) has memory beyond one step: batch means see more than the chain.
    rng = np.random.default_rng(3)
    z = np.zeros(20_000)
    for i in range(1, len(z)):
        z[i] = 0.9 * z[i - 1] + rng.standard_normal() * np.sqrt(1 - 0.81)
    _, tau, info = dependence(z > 1.645)
    assert tau > info["markov_tau"] and tau > 3.0


def test_a_burst_adds_one_onset() -> None:
    """Onset sums see only the values after a 0, continuation sums only those after a 1: a run
    of ones of any length moves an onset sum once."""
    over, _ = calibrate_rate(markov_flags(0.03, 0.8, 1000, 4).astype(float), 1e-6)
    onset = [j for j, g in enumerate(over["given"]) if g == 0]
    assert onset
    det = BernoulliCusum(**over)
    for x in [0.0, 0.0, 1.0]:
        det.update(x)
    after_one = list(det.s)
    for _ in range(40):
        det.update(1.0)
    assert [det.s[j] for j in onset] == [after_one[j] for j in onset]
    assert det.prev == 1


def test_checkpoint_and_restore_continue_exactly() -> None:
    from stream_monitor.core.detectors import checkpoint, restore_detector
    over, _ = calibrate_rate(markov_flags(0.05, 0.8, 1000, 5).astype(float), 1e-6)
    xs = markov_flags(0.05, 0.8, 3000, 6).astype(float).tolist() + flags(0.5, 400, 7)
    whole = BernoulliCusum(**over)
    ref = [(whole.update(x), whole.drift_detected, list(whole.s))[1:] for x in xs]
    part = BernoulliCusum(**over)
    got = []
    for i, x in enumerate(xs):
        if i in (1, 1500, 3001):
            part = restore_detector("bernoulli_cusum", over, orjson.loads(orjson.dumps(
                checkpoint(part))))
        part.update(x)
        got.append((part.drift_detected, list(part.s)))
    assert got == ref and any(d for d, _ in got)


@pytest.mark.parametrize(("p", "seed"), [(0.01, 27), (0.01, 28), (0.05, 28)])
def test_bursty_stationary_flags_stay_silent(p: float, seed: int) -> None:
    """Runs of ones of mean length 5 (lag-one correlation 0.8): calibrated on the first 1,000
    values, the next 19,000 give no alarm (seeds on which the marginal CUSUM with a Markov
    ``tau`` fired, at values 7562, 2992 and 5742)."""
    xs = markov_flags(p, 0.8, 20_000, seed).astype(float).tolist()
    over, _ = calibrate_rate(xs[:1000], 1e-6)
    assert first_alarm(BernoulliCusum(**over), xs[1000:]) == -1


def test_bursty_reference_watches_onsets() -> None:
    iid = calibrate_rate((np.random.default_rng(4).random(1000) < 0.03).astype(float), 1e-6)[0]
    bursty = calibrate_rate(markov_flags(0.03, 0.8, 1000, 4).astype(float), 1e-6)[0]
    # The onset sums watch P(1 | 0) (about p * (1 - 0.8) here, not p): a burst is one onset.
    assert bursty["base"][0] < 0.5 * iid["base"][0]
    assert set(iid["given"]) <= {0, 1} and 0 in bursty["given"]


def test_locate_rate_finds_the_start() -> None:
    xs = flags(0.01, 400, 11) + flags(0.3, 40, 12)
    est = locate_rate(xs, 0.01)
    assert est is not None and abs(est["start"] - 400) <= 5
    assert est["low"] <= est["start"] <= est["high"]
    assert locate_rate([], 0.1) is None


# -- degenerate references never alert on values drawn from them (property) -------------------

def degenerate_reference(kind: str, n: int, k: int, value: float) -> list[float]:
    if kind == "zeros":
        return [0.0] * n
    if kind == "ones":
        return [1.0] * n
    if kind == "constant":
        return [value] * n
    ref = [0.0] * n  # two values: k ones somewhere in the reference
    for i in random.Random(k * 7919 + n).sample(range(n), min(k, n)):
        ref[i] = 1.0
    return ref


FEATURE_CFG = parse_config({
    "windows": {"reference_size": 1000, "reference_min_size": 200, "recent_size": 500},
    "false_alarm_budget": {"per_events": 1_000_000},
    "detectors": {"cusum": {"type": "cusum"}},
    "models": [{"match": "*", "signals": [{"match": "*", "detectors": ["cusum"]}]}],
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["zeros", "ones", "constant", "two"]),
       n=st.sampled_from([200, 500, 1000]), k=st.integers(1, 6),
       value=st.sampled_from([0.0, 1.0, 5.0, -2.5]), seed=st.integers(0, 2**31))
def test_degenerate_references_never_alert_on_their_own_values(kind: str, n: int, k: int,
                                                               value: float, seed: int) -> None:
    """The reference is the first ``n`` values (watched from value 200 on a short reference,
    re-based at 1000); the next 3,000 are drawn from its own values. At 1 false alarm per
    1,000,000 values nothing may fire (a first 1 after 200 zeros included)."""
    ref = degenerate_reference(kind, n, k, value)
    rng = random.Random(seed)
    xs = ref + [rng.choice(ref) for _ in range(3000)]
    evs = [InferenceEvent(f"e{i}", "m", {"x": x}, 0.0, Position("t", 0, i), timestamp=NOW + i)
           for i, x in enumerate(xs)]
    out = Monitor(FEATURE_CFG).process(evs, MonitorState())
    assert out.alerts == [], [a["summary"] for a in out.alerts]


# -- through the pipeline: per-event fault rates and 0/1 errors ---------------------------------

RATE_CFG = {
    "windows": {"reference_size": 1000, "reference_min_size": 200, "recent_size": 500},
    "false_alarm_budget": {"per_events": 1_000_000},
    "detectors": {"cusum": {"type": "cusum"}},
    "models": [{"match": "*", "signals": [{"match": "*", "detectors": ["cusum"]}],
                "quality": {"indicators": ["missing"], "detectors": ["cusum"]}}],
}


def rate_lines(n: int = 4000, seed: int = 5) -> list[bytes]:
    """A classifier with inline labels whose error rate goes 10% -> 40% at event 2000, and a
    feature whose missing rate goes 1% -> 30% at event 2500."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        feats: dict[str, Any] = {"y": rng.random()}
        if rng.random() >= (0.30 if i >= 2500 else 0.01):
            feats["x"] = rng.gauss(0, 1)
        wrong = rng.random() < (0.40 if i >= 2000 else 0.10)
        lines.append(orjson.dumps({"event_id": f"e{i}", "model_id": "m", "timestamp": NOW + i,
                                   "features": feats, "prediction": "a",
                                   "label": "b" if wrong else "a"}))
    return lines


@pytest.fixture(scope="module")
def uninterrupted() -> tuple[list[RawRecord], list[bytes]]:
    raws = [RawRecord(v, Position("in", 0, i)) for i, v in enumerate(rate_lines())]
    return raws, pipeline_outputs(parse_config(RATE_CFG), raws, (), 300, NOW)


def test_rate_alerts_carry_calibration_localization_and_a_summary(
        uninterrupted: tuple[list[RawRecord], list[bytes]]) -> None:
    _, out = uninterrupted
    recs = [orjson.loads(v) for v in out]
    perf = [r for r in recs if r.get("signal") == "performance:error"]
    miss = [r for r in recs if r.get("signal") == "quality:missing:x"]
    assert perf and miss
    for r in perf + miss:
        validate_record(r)
    p, m = perf[0], miss[0]
    # Exact seeded offsets (this stream, this config): 87 and 43 events after the changes.
    assert (p["detected_at"]["offset"], m["detected_at"]["offset"]) == (2086, 2542)
    assert p["evidence"]["calibration"]["detectors"][0]["type"] == "bernoulli_cusum"
    assert p["evidence"]["change"]["kind"] == "rate"
    assert abs(p["evidence"]["change"]["start"]["offset"] - 2000) <= 30
    assert "performance:error: rate rose from 8.5% to 44.0% over the last 50 values" in p["summary"]
    assert abs(m["evidence"]["change"]["start"]["offset"] - 2500) <= 10
    assert m["evidence"]["calibration"]["budget"] == {"per_events": 1_000_000}
    assert "missing rate rose from 1" in m["summary"]


@pytest.mark.parametrize("cuts", [{700}, {1999, 2049, 2510}, {333, 2222, 3001}])
def test_a_restart_continues_exactly(cuts: set[int],
                                     uninterrupted: tuple[list[RawRecord], list[bytes]]) -> None:
    raws, whole = uninterrupted
    assert by_type(pipeline_outputs(parse_config(RATE_CFG), raws, cuts, 300, NOW)) == \
        by_type(whole)


def test_replay_gives_the_pipeline_outputs(tmp_path: Path,
                                           uninterrupted: tuple[list[RawRecord], list[bytes]]
                                           ) -> None:
    _, whole = uninterrupted
    cfg_path = tmp_path / "monitor.yaml"
    cfg_path.write_bytes(orjson.dumps(RATE_CFG))  # JSON is YAML
    replayed = replay_records(cfg_path, rate_lines(), tmp_path)
    keep = ("drift_alert", "data_quality_alert")
    mine = sorted((r["alert_id"], r["detected_at"]["offset"]) for r in replayed
                  if r.get("type") in keep)
    want = sorted((r["alert_id"], r["detected_at"]["offset"])
                  for r in map(orjson.loads, whole) if r.get("type") in keep)
    assert mine == want and mine


@pytest.mark.parametrize("n", [0, 1, 2, 5, 41])
def test_the_galloping_search_finds_the_first_usable_ratio_as_a_scan_would(n: int) -> None:
    from stream_monitor.core.bernoulli import _first

    cands = [1.25 ** i for i in range(n)]
    for first in range(n + 1):  # usable from index `first` on (n: none)
        calls: list[float] = []

        def usable(r: float, first: int = first, calls: list[float] = calls) -> bool:
            calls.append(r)
            return cands.index(r) >= first

        want = cands[first] if first < n else None
        assert _first(cands, usable) == want
        assert len(calls) <= 2 * max(n, 1).bit_length() + 2


def test_the_conditional_cache_gives_what_a_fresh_calibration_gives() -> None:
    from stream_monitor.core.bernoulli import _conditional, _conditional_of

    y = np.zeros(40, dtype=bool)
    y[[3, 17]] = True
    first = _conditional(y, 1e-6, True, None)
    first[0].append(99.0)  # a caller's change does not reach the cache
    again = _conditional(y, 1e-6, True, None)
    fresh = _conditional_of(y, 1e-6, True, None)
    assert again[0] == fresh[0] and again[1] == fresh[1]
    assert {k: v for k, v in again[2].items() if k != "_post"} == {
        k: v for k, v in fresh[2].items() if k != "_post"}
