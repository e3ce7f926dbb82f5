"""Detector checkpoints: one contract test over every registered detector, and the codec's
refusals (nothing read back from a store is unpickled or executed)."""

from __future__ import annotations

import base64
import os
import pickle
import random
from typing import Any

import orjson
import pytest

from stream_monitor.core.detectors import REGISTRY, build_detector, checkpoint, restore_detector
from stream_monitor.errors import StateCorruptError

N = 900
SHIFTS = (300, 600)  # the stream changes regime at these indices


def seeded_stream(kind: str, seed: int = 3, n: int = N) -> list[float]:
    """Three regimes. Binary detectors get 0/1 errors (rate 0.1, 0.6, 0.05), categorical ones
    category codes 0/1 (share of 0: 0.5, 0.95, 0.1); the others
    gaussian values whose mean moves 0 -> 2 -> -1 (in standard deviations)."""
    rng = random.Random(seed)
    out: list[float] = []
    for i in range(n):
        seg = sum(i >= s for s in SHIFTS)
        if kind == "binary":
            out.append(1 if rng.random() < (0.1, 0.6, 0.05)[seg] else 0)
        elif kind == "categorical":  # category codes 0/1: the share of 0 moves
            out.append(0.0 if rng.random() < (0.5, 0.95, 0.1)[seg] else 1.0)
        else:
            out.append(rng.gauss((0.0, 2.0, -1.0)[seg], 1.0))
    return out


def feed(det: Any, xs: list[float]) -> list[bool]:
    flags = []
    for x in xs:
        det.update(x)
        flags.append(bool(det.drift_detected))
    return flags


def json_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(state))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_checkpoint_restore_continues_identically(name: str) -> None:
    kind = REGISTRY[name]
    xs = seeded_stream(kind.input)
    uninterrupted = feed(build_detector(name), xs)
    # The seeded stream must make every detector fire, or "just after a drift" means nothing.
    assert any(uninterrupted), f"{name} never fired on its seeded stream"
    first = uninterrupted.index(True)
    # Cut points: empty, warming up, mid-stream, at the drift (flag still up), just after it.
    for cut in sorted({0, 5, N // 2, first + 1, first + 2}):
        original = build_detector(name)
        assert feed(original, xs[:cut]) == uninterrupted[:cut]
        state = json_round_trip(checkpoint(original))
        restored = restore_detector(name, None, state)
        assert restored.drift_detected == original.drift_detected
        # The same seeded continuation, fed to both.
        rest = xs[cut:]
        got_original = feed(original, rest)
        got_restored = feed(restored, rest)
        assert got_restored == got_original, f"{name} diverged after a restore at {cut}"
        assert got_original == uninterrupted[cut:]
        # And they end in the same state.
        assert json_round_trip(checkpoint(restored)) == json_round_trip(checkpoint(original))


def _state(name: str) -> dict[str, Any]:
    det = build_detector(name)
    feed(det, seeded_stream(REGISTRY[name].input, n=300))
    return json_round_trip(checkpoint(det))


def _state_with(name: str, attr: str) -> dict[str, Any]:
    """A checkpoint holding ``attr``: the current one, or for Page-Hinkley's River fields the
    one main's code wrote (River's object by its fields; core/page_hinkley.py restores it)."""
    state = _state(name)
    if attr not in state and name == "page_hinkley":
        from river import drift

        det = drift.PageHinkley(**REGISTRY[name].params())
        feed(det, seeded_stream(REGISTRY[name].input, n=300))
        state = json_round_trip(checkpoint(det))
    return state


@pytest.mark.parametrize(
    ("name", "attr", "value"),
    [
        ("page_hinkley", "_x_mean", {"$o": "os.system", "d": {}}),
        ("page_hinkley", "_x_mean", {"$o": "builtins.eval", "d": {"x": "1"}}),
        ("page_hinkley", "_x_mean", {"$o": "Var", "d": {}}),  # allowed class, wrong place
        ("page_hinkley", "_x_mean", {"$o": "Mean", "d": {"__class__": 1}}),
        ("page_hinkley", "_x_mean", {"$o": "Mean", "d": 5}),
        ("page_hinkley", "_x_mean", 5),
        ("page_hinkley", "_x_mean", {"$pickle": "gASVAAAAAAAAAAAu"}),
        ("page_hinkley", "_sum_increase", {"$f": "1.5"}),  # finite float in the inf tag
        ("page_hinkley", "_sum_increase", {"$f": "abc"}),
        ("page_hinkley", "sum_increase", {"$f": "1.5"}),
        ("page_hinkley", "mean", {"$o": "os.system", "d": {}}),
        ("kswin", "window", {"$dq": [1.0], "maxlen": "10"}),
        ("kswin", "_rng", {"$rng": [3, [1, 2], None]}),
        ("adwin", "_helper", {"$rs": "RsEWMean", "b": ""}),
        ("adwin", "_helper", {"$rs": "AdaptiveWindowing", "b": "not base64!"}),
        ("adwin", "_helper", {"$rs": "AdaptiveWindowing",
                              "b": base64.b64encode(b"garbage").decode()}),
        ("adwin", "_helper", 0),
        ("ddm", "_p", {"$o": "Mean", "d": {"n": 1.0, "_mean": 0.5, "update": 1}}),
    ],
)
def test_corrupt_checkpoint_raises_state_corrupt(name: str, attr: str, value: Any) -> None:
    state = _state_with(name, attr)
    assert attr in state  # the corruption replaces a real attribute
    state[attr] = value
    with pytest.raises(StateCorruptError):
        restore_detector(name, None, state)


def test_unknown_attribute_raises_state_corrupt() -> None:
    state = _state("page_hinkley")
    state["update"] = 0.0  # would shadow the method if it were set
    with pytest.raises(StateCorruptError, match="unknown attribute 'update'"):
        restore_detector("page_hinkley", None, state)


def test_checkpoint_that_is_not_a_mapping_raises_state_corrupt() -> None:
    with pytest.raises(StateCorruptError):
        restore_detector("adwin", None, ["not", "a", "mapping"])  # type: ignore[arg-type]


class _Payload:
    """Unpickling this runs ``exec``: the marker variable proves whether it happened."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("import os; os.environ['SM_TEST_UNPICKLED'] = '1'",))


def test_pickle_payloads_are_rejected_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_TEST_UNPICKLED", raising=False)
    payload = base64.b64encode(pickle.dumps(_Payload())).decode()
    for name, attr, value in [
        ("adwin", "_helper", {"$rs": "AdaptiveWindowing", "b": payload}),
        ("page_hinkley", "_x_mean", {"$b": payload}),
        ("page_hinkley", "_x_mean", {"$o": "Mean", "d": {"_mean": {"$b": payload}}}),
    ]:
        state = _state_with(name, attr)
        state[attr] = value
        with pytest.raises(StateCorruptError):
            restore_detector(name, None, state)
    assert "SM_TEST_UNPICKLED" not in os.environ


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_restore_never_unpickles(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _state(name)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("restore_detector used pickle")

    for fn in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, fn, refuse)
    restored = restore_detector(name, None, state)
    assert json_round_trip(checkpoint(restored)) == state


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_private_drift_flag_mirrors_the_public_property(name: str) -> None:
    """Checkpoints carry `_drift_detected` (the property's value): this holds the two
    together for every registered detector and the pinned River."""
    det = build_detector(name)
    seen = 0
    for x in seeded_stream(REGISTRY[name].input):
        det.update(x)
        assert det._drift_detected is det.drift_detected
        seen += det.drift_detected
    assert seen > 0 or name == "fhddm"  # most detectors fire on this stream: the check has teeth


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_inline_updates_match_river_bit_for_bit(seed: int) -> None:
    """SignalState.update (the project's Page-Hinkley, River's ADWIN through `update`) gives
    the same detections as River's own objects driven through their public API, over drifts
    and resets; ADWIN's checkpoints are River's."""
    import random
    from collections import deque

    from river import drift

    from stream_monitor.core.detectors import checkpoint
    from stream_monitor.core.signals import SignalState

    rng = random.Random(seed)
    values = [rng.gauss(0, 1) + (3.0 if 3000 <= i < 6000 else 0.0) + (0.5 * (i > 8000))
              for i in range(12_000)]
    params = ({"min_instances": 30, "delta": 0.25, "threshold": 30.0, "alpha": 1.0},
              {"delta": 0.002, "clock": 32})
    sig = SignalState("s", ("page_hinkley", "adwin"), ({}, {}), 10, deque(maxlen=5),
                      binary=(False, False))
    sig.ref_mean, sig.ref_std = 0.1, 1.3
    from stream_monitor.core.page_hinkley import PageHinkley

    sig.detectors = [PageHinkley(**params[0]), drift.ADWIN(**params[1])]
    plain = [drift.PageHinkley(**params[0]), drift.ADWIN(**params[1])]
    fired_inline, fired_river = [], []
    for i, x in enumerate(values):
        k = sig.update(x)
        if k >= 0:
            fired_inline.append((i, k))
        z = (x - 0.1) / 1.3
        first = -1
        for j, d in enumerate(plain):
            d.update(z)
            if d.drift_detected and first < 0:
                first = j
        if first >= 0:
            fired_river.append((i, first))
    assert len(fired_river) >= 3
    assert fired_inline == fired_river
    assert checkpoint(sig.detectors[1]) == checkpoint(plain[1])
    # Page-Hinkley's state: River's, read back as main's checkpoints are (same numbers).
    from stream_monitor.core.detectors import restore_detector

    river_ph = restore_detector("page_hinkley", params[0], checkpoint(plain[0]))
    assert checkpoint(sig.detectors[0]) == checkpoint(river_ph)
