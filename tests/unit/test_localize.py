"""Change localization (core/localize.py): a step is placed where it happened, and a ramp where it
began, not where it became large."""

from __future__ import annotations

import numpy as np

from stream_monitor.core.localize import locate


def _ramp(seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal(500)
    z[200:] += np.arange(300) / 150.0  # from 0 at value 200 to 2 sd at the end
    return z


def test_a_ramp_is_placed_at_its_onset() -> None:
    got = [locate(_ramp(s), 1.0) for s in range(8)]
    assert [(e["onset"], e["start"]) for e in got if e] == [
        ("ramp", 222), ("ramp", 236), ("ramp", 207), ("ramp", 206), ("ramp", 160),
        ("ramp", 226), ("ramp", 220), ("ramp", 212)]
    assert sum(e["low"] <= 200 <= e["high"] for e in got if e) >= 6
    # The step model alone puts these starts further into the ramp: closer on no seed, further
    # on 7 of 8 (seed 4: 40 values off either way).
    closer = 0
    for s, e in enumerate(got):
        z = np.clip(_ramp(s), -5, 5)
        tail = np.cumsum(z[::-1])[::-1]
        step = int(np.argmax(tail * tail / np.arange(500, 0, -1)))
        assert e is not None and abs(step - 200) >= abs(e["start"] - 200), (s, step, e)
        closer += abs(step - 200) > abs(e["start"] - 200)
    assert closer == 7


def test_a_step_stays_a_step() -> None:
    for s in range(8):
        rng = np.random.default_rng(100 + s)
        z = rng.standard_normal(400)
        z[300:] += 1.5
        e = locate(z, 1.0)
        assert e is not None and e["onset"] == "step" and abs(e["start"] - 300) <= 5, e
