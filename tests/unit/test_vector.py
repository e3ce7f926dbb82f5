"""The batch path of the hot path (core/vector.py, core/scan.py, ``feed`` of the project's
CUSUMs) against the per-value path: identical alerts, retrain requests, resolutions and state,
on every kind of stream the benchmarks generate (numeric, heavy tails, AR, seasonal, rare flags,
categories, inline labels, the fleet), many seeds, several batch sizes."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream_monitor import synth
from stream_monitor.adapters.replay import replay_file
from stream_monitor.config import load_config, parse_config
from stream_monitor.core.adwin import ADWIN
from stream_monitor.core.bernoulli import BernoulliCusum, calibrate_rate
from stream_monitor.core.cusum import Cusum
from stream_monitor.core.detectors import checkpoint
from stream_monitor.core.monitor import Monitor
from stream_monitor.core.page_hinkley import PageHinkley
from stream_monitor.core.scan import Scan
from stream_monitor.fleet import write_fleet

ROOT = Path(__file__).resolve().parents[2]


def _one_by_one(det: Any, xs: np.ndarray) -> int:
    for i, x in enumerate(xs.tolist()):
        det.update(x)
        if det.drift_detected:
            return i + 1
    return len(xs)


def _both(make: Any, xs: np.ndarray) -> int:
    """Feed ``xs`` to two twins, one value by value and one with ``feed``, through every
    alarm; the alarms and the checkpoints after each must agree. Returns the alarm count."""
    a, b = make(), make()
    pos = alarms = 0
    while pos < len(xs):
        fa, fb = _one_by_one(a, xs[pos:]), b.feed(xs[pos:])
        assert fa == fb
        assert checkpoint(a) == checkpoint(b)
        alarms += a.drift_detected
        pos += fa
    return alarms


@pytest.mark.parametrize("seed", range(30))
def test_cusum_feed_is_update_one_by_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12_000))
    kind = synth.KINDS[seed % len(synth.KINDS)]
    xs = np.asarray(synth.kind_stream(kind, n, seed, change_at=n // 2 if seed % 2 else None))
    xs = (xs - xs[: max(1, n // 4)].mean()) / (xs[: max(1, n // 4)].std() or 1.0)
    kw: dict[str, Any] = {}
    if seed % 3 == 0:  # a known period, with its phase
        kw = {"period": 50, "season": rng.normal(size=10).tolist(),
              "phase": int(rng.integers(0, 50))}
    h = [float(v) for v in rng.uniform(4.0, 30.0, 6)]
    _both(lambda: Cusum(h=h, **kw), xs)


def test_cusum_feed_decides_exactly_near_ties() -> None:
    """Values that land sums exactly on 0 and on the threshold (ties the closed form cannot
    decide) go through the per-value update."""
    xs = np.tile([0.5, -0.5, 1.0, 0.0], 3000).astype(np.float64)
    assert _both(lambda: Cusum(k=0.5, k_slow=0.25, scale_k=0.3, h=[1.0] * 6), xs) > 0


@pytest.mark.parametrize("seed", range(30))
def test_bernoulli_feed_is_update_one_by_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12_000))
    p = float(rng.uniform(0.002, 0.3))
    xs = (rng.random(n) < p).astype(np.float64)
    if seed % 2:
        xs[n // 2:] = rng.random(n - n // 2) < min(0.9, 3 * p)
    ref = (rng.random(2000) < p).astype(float).tolist()
    over, _ = calibrate_rate(ref, float(rng.choice([1e-3, 1e-5])), {})
    _both(lambda: BernoulliCusum(**over), xs)


def _stream(seed: int) -> np.ndarray:
    """A seeded stream of one of the synthetic kinds, with a change half-way for odd seeds,
    standardized on its first quarter."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12_000))
    kind = synth.KINDS[seed % len(synth.KINDS)]
    xs = np.asarray(synth.kind_stream(kind, n, seed, change_at=n // 2 if seed % 2 else None))
    return (xs - xs[: max(1, n // 4)].mean()) / (xs[: max(1, n // 4)].std() or 1.0)


@pytest.mark.parametrize("seed", range(30))
def test_page_hinkley_feed_is_update_one_by_one(seed: int) -> None:
    params = [{"min_instances": 30, "delta": 0.25, "threshold": 30.0, "alpha": 1.0},
              {}, {"threshold": 10.0, "alpha": 0.999, "delta": 0.01},
              {"threshold": 4.0, "delta": 0.05, "alpha": 1.0, "min_instances": 7}][seed % 4]
    mode = ("both", "up", "down")[seed % 3]
    xs = _stream(seed)
    alarms = _both(lambda: PageHinkley(mode=mode, **params), xs)
    if seed % 4 == 3 and len(xs) > 1000:
        assert alarms > 0  # a low threshold: the comparison covers alarms and what follows


def test_page_hinkley_feed_is_exact_around_min_instances() -> None:
    """An alarm that the sums would raise before ``min_instances`` values must wait for it,
    and not one value longer (an off-by-one in the batch path fails here)."""
    xs = np.array([0.0] * 3 + [50.0] * 40)
    for m in range(1, 30):
        a, b = PageHinkley(threshold=5.0, min_instances=m), PageHinkley(threshold=5.0,
                                                                          min_instances=m)
        assert _one_by_one(a, xs) == b.feed(xs) == max(m, 4)
        assert checkpoint(a) == checkpoint(b)


@pytest.mark.parametrize("seed", range(24))
def test_adwin_feed_is_update_one_by_one(seed: int) -> None:
    """River's ADWIN fed by ``feed`` gives River's own drift points and state (compared
    with River's ``update`` one by one), for several deltas and clocks."""
    delta = (0.002, 0.05, 1e-5)[seed % 3]
    clock = (32, 1, 7, 128)[seed % 4]
    xs = _stream(seed)
    if seed % 2:
        xs = np.concatenate([xs, xs[: len(xs) // 2] + 2.0])  # a second, larger change
    alarms = _both(lambda: ADWIN(delta=delta, clock=clock), xs)
    if seed % 2 and len(xs) > 3000 and clock < 128:
        assert alarms > 0


def test_adwin_checkpoint_of_rivers_restores_and_feeds_on() -> None:
    """A checkpoint of River's own ADWIN (what main's code saved) restores into the project's,
    which then feeds on exactly as River's continues."""
    import json

    from river import drift

    from stream_monitor.core.detectors import restore_detector

    xs = _stream(3)
    river = drift.ADWIN(delta=0.002, clock=32)
    for x in xs[:2000].tolist():
        river.update(x)
    ours = restore_detector("adwin", {}, json.loads(json.dumps(checkpoint(river))))
    assert type(ours) is ADWIN
    rest = np.concatenate([xs[2000:], xs[:3000] + 3.0])
    assert ours.feed(rest) == _one_by_one(river, rest) < len(rest)
    assert checkpoint(ours) == checkpoint(river)


def test_adwin_clone_is_independent() -> None:
    det = ADWIN()
    det.feed(np.arange(500.0) % 7)
    twin = det.clone()
    assert checkpoint(twin) == checkpoint(det)
    twin.feed(np.full(3000, 40.0))
    assert twin.drift_detected and not det.drift_detected
    assert checkpoint(twin) != checkpoint(det)


def _signal(reference_min: int) -> Any:
    from collections import deque

    from stream_monitor.core.signals import SignalState

    return SignalState("s", ("page_hinkley", "adwin"),
                       ({"__type__": "page_hinkley", "threshold": 8.0}, {"__type__": "adwin"}),
                       50, deque(maxlen=30), reference_min=reference_min)


@pytest.mark.parametrize("reference_min", [0, 20])
@pytest.mark.parametrize("seed", range(6))
def test_signal_feed_through_its_references_is_update(seed: int, reference_min: int) -> None:
    """A signal fed by ``first_alarm`` and ``feed``, the loop's ``update`` at each value they
    stop at (an alarm, or the value that completes a reference being collected or grown), is
    the signal fed by ``update`` one by one: same alarms, same state (an off-by-one at the end
    of a reference fails here)."""
    rng = np.random.default_rng(seed)
    xs = np.concatenate([rng.normal(0, 1, 400), rng.normal(3, 1, 400), rng.normal(0, 2, 400)])
    a, b = _signal(reference_min), _signal(reference_min)
    want = []
    for i, x in enumerate(xs.tolist()):
        if a.update(x) >= 0:
            want.append(i)
            a.rebaseline(0)  # as the monitor does after an alarm
    got, pos, step = [], 0, int(rng.integers(5, 60))
    while pos < len(xs):
        run = xs[pos:pos + step].tolist()
        k, twins = b.first_alarm(run)
        b.feed(run[:k], twins if k == len(run) else None)
        pos += k
        if k < len(run):
            if b.update(run[k]) >= 0:
                got.append(pos)
                b.rebaseline(0)
            pos += 1
    assert got == want and len(want) >= 1
    assert orjson.dumps(a.meta()) == orjson.dumps(b.meta())
    assert a.reference == b.reference and list(a.recent) == list(b.recent)


def test_scan_matches_the_loop() -> None:
    rng = np.random.default_rng(3)
    parts = rng.normal(size=(5, 3000, 2)) - np.array([0.0, 0.3])
    s0 = np.abs(rng.normal(size=5))
    sc = Scan(s0, parts)
    for t in (0, 1, 17, 1000, 3000):
        want = []
        for row in range(5):
            s = float(s0[row])
            for a, b in parts[row, :t].tolist():
                s = s + a + b
                s = s if s > 0.0 else 0.0
            want.append(s)
        got = sc.state_after(t)
        assert got is None or got == want


# -- the monitor: the whole batch path against the per-value loop ----------------------------

@pytest.fixture(autouse=True)
def _every_model_fed_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Also the small runs of small batches go through the batch path here."""
    monkeypatch.setattr("stream_monitor.core.vector.MIN_EVENTS", 1)

def _replay(config: Any, path: Path, vectorised: bool, batch: int) -> tuple[bytes, bytes]:
    Monitor.vectorised = vectorised
    try:
        out = io.BytesIO()
        states: list[Any] = []
        replay_file(config, path, out, batch=batch, state_out=states)
    finally:
        Monitor.vectorised = True
    state = {f"{u}|{s}": [sig.meta(), list(sig.reference), list(sig.recent)]
             for u, m in states[0].models.items() for s, sig in m.signals.items()}
    models = {u: [m.events, sorted(m.applied.items()), m.retrain.meta(), list(m.ring_ids)]
              for u, m in states[0].models.items()}
    return out.getvalue(), orjson.dumps([state, models], option=orjson.OPT_NON_STR_KEYS)


def _same(config: Any, path: Path, batches: Sequence[int] = (97, 1000)) -> bytes:
    for batch in batches:
        slow = _replay(config, path, False, batch)
        fast = _replay(config, path, True, batch)
        assert slow[0] == fast[0], f"outputs differ (batch {batch})"
        assert slow[1] == fast[1], f"state differs (batch {batch})"
    return slow[0]


def _config(**rule: Any) -> Any:
    return parse_config({
        "windows": {"reference_size": 400, "reference_min_size": 100, "recent_size": 200},
        "false_alarm_budget": {"per_events": 20_000},
        "detectors": {"cusum": {"type": "cusum"}, "adwin": {"type": "adwin"},
                      "page_hinkley": {"type": "page_hinkley"}},
        "models": [{"match": "*", "signals": [{"match": "*", "detectors": ["cusum"]}],
                    "retrain": {"min_drifted_signals": 2,
                                "persistence": {"values": 30, "min_shift": 0.5}},
                    "alerts": {"resolve_values": 40, "hold_seconds": 20,
                               "dedupe_seconds": 60},
                    **rule}],
    })


def _write(path: Path, rows: Iterator[dict[str, Any]]) -> Path:
    with path.open("wb") as f:
        for r in rows:
            f.write(orjson.dumps(r) + b"\n")
    return path


def _events(streams: dict[str, dict[str, list[Any]]], labels: bool = False
            ) -> Iterator[dict[str, Any]]:
    """One model per entry, interleaved; each its features by name (the ``prediction`` entry
    as the prediction), an inline 0/1 label when ``labels``."""
    n = max(len(v) for cols in streams.values() for v in cols.values())
    for i in range(n):
        for model, cols in streams.items():
            feats = {k: v[i] for k, v in cols.items() if k != "prediction" and i < len(v)}
            ev: dict[str, Any] = {"event_id": f"{model}-{i}", "model_id": model,
                                  "timestamp": 1_767_225_600.0 + i, "features": feats,
                                  "prediction": cols.get("prediction", [0.0] * n)[i]}
            if labels:
                ev["label"] = i % 7 == 0 or (i > n // 2 and i % 3 == 0)
            yield ev


@pytest.mark.parametrize("kind", synth.KINDS)
def test_batch_path_is_the_loop_on_every_kind(kind: str, tmp_path: Path) -> None:
    streams = {}
    for j in range(4):  # several seeds per kind, with and without a change, mean or spread
        n = 3000
        change = "spread" if j == 3 else "mean"
        streams[f"m{j}"] = {
            "x": synth.kind_stream(kind, n, 11 * j + 1, change_at=1500 if j else None,
                                   change=change, size=2.0 if j == 3 else 1.0),
            "y": synth.kind_stream("gaussian", n, 11 * j + 2),
            "prediction": synth.kind_stream(kind, n, 11 * j + 3, change_at=2000 if j else None),
        }
    out = _same(_config(), _write(tmp_path / "e.jsonl", _events(streams)))
    assert b"drift_alert" in out  # the changes were seen: the comparison covers alarms


def test_batch_path_is_the_loop_with_inline_labels_and_odd_values(tmp_path: Path) -> None:
    """Inline labels (performance:error, fed by the loop), a feature that appears late (a new
    signal), ints, nulls and strings."""
    n = 2500
    rng = np.random.default_rng(5)
    rows = list(_events({f"m{j}": {"x": synth.kind_stream("ar1", n, j, change_at=1200),
                                   "z": rng.integers(0, 5, n).tolist()}
                         for j in range(3)}, labels=True))
    for i, r in enumerate(rows):
        if i % 401 == 0:
            r["features"]["x"] = None
        if i % 503 == 0:
            r["features"]["w"] = "text"
        if i > 5000:
            r["features"]["late"] = float(i % 3)
    path = tmp_path / "e.jsonl"
    with path.open("wb") as f:
        for r in rows:
            f.write(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY).replace(
                b'"x":NaN', b'"x":NaN') + b"\n")
    _same(_config(), path)


def test_batch_path_is_the_loop_with_adwin_and_page_hinkley(tmp_path: Path) -> None:
    """The example config's detectors of the credit models (River's ADWIN and the project's
    Page-Hinkley on every signal), fed ahead."""
    streams = {}
    for j in range(3):
        n = 3000
        streams[f"m{j}"] = {
            "x": synth.kind_stream(("gaussian", "ar1", "student_t3")[j], n, 7 * j + 1,
                                   change_at=1400 if j else None),
            "y": synth.kind_stream("gaussian", n, 7 * j + 2, change_at=2000, change="spread",
                                   size=2.0),
            "prediction": synth.kind_stream("gaussian", n, 7 * j + 3),
        }
    cfg = _config(signals=[{"match": "*", "detectors": ["adwin", "page_hinkley"]}])
    out = _same(cfg, _write(tmp_path / "e.jsonl", _events(streams)))
    assert b"drift_alert" in out


@pytest.mark.parametrize("faults", [False, True])
def test_batch_path_is_the_loop_under_value_rules(faults: bool, tmp_path: Path) -> None:
    """The example config's credit models (value rules with learned bounds and fault-rate
    signals, ADWIN and Page-Hinkley) on the synthetic stream with its drifts; with
    ``faults``, also missing, out-of-bounds and non-finite values and a string now and then."""
    spec = synth.StreamSpec(models=("credit-a", "credit-b"), events_per_model=4000,
                            drifts=(synth.Drift(2000, "amount", 1.5),
                                    synth.Drift(2500, "prediction", 1.0)))
    rows = [orjson.loads(line) for line in synth.generate(spec)]
    if faults:
        for i, r in enumerate(rows):
            if i % 611 == 0:
                r["features"].pop("age", None)
            if i % 733 == 0:
                r["features"]["amount"] = -5.0
            if i % 977 == 0:
                r["features"]["utilization"] = "high"
            if i % 1201 == 0:
                r["features"]["income_k"] = None
    out = _same(load_config(ROOT / "stream_monitor" / "examples" / "monitor.yaml"),
                _write(tmp_path / "e.jsonl", iter(rows)), batches=(97, 700))
    assert b"drift_alert" in out


def test_batch_path_is_the_loop_on_categories(tmp_path: Path) -> None:
    n = 3000
    streams = {f"c{j}": {"segment": synth.category_stream(
        [0.4, 0.3, 0.2, 0.1], n, j, change_at=1500, after=[0.1, 0.2, 0.3, 0.4]),
        "x": synth.kind_stream("gaussian", n, j)} for j in range(2)}
    cfg = _config(quality={"categorical": True, "indicators": ["missing"],
                           "detectors": ["cusum"]})
    _same(cfg, _write(tmp_path / "e.jsonl", _events(streams)), batches=(500,))


def test_batch_path_is_the_loop_on_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "fleet.jsonl"
    write_fleet(path, 3, range(2), 2500)
    _same(load_config(ROOT / "stream_monitor" / "examples" / "monitor.yaml"), path,
          batches=(700,))
