"""The project's Page-Hinkley (core/page_hinkley.py) against River's, through River's public
API only (``update``, ``drift_detected``): the same detections on seeded streams, for each
mode; and checkpoints written by earlier versions (River's object, checkpointed by its
fields) restore into it and continue identically."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from river import drift

from stream_monitor.core.detectors import checkpoint, restore_detector
from stream_monitor.core.page_hinkley import PageHinkley

FIXTURE = Path(__file__).parent / "fixtures" / "page_hinkley_main.json"


def _stream(seed: int, n: int = 20_000) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0, 1) + (2.0 if (i // 3000) % 2 else 0.0) + 0.3 * rng.random()
            for i in range(n)]


def _alarms(det: Any, xs: list[float]) -> list[int]:
    out = []
    for i, x in enumerate(xs):
        det.update(x)
        if det.drift_detected:
            out.append(i)
    return out


@pytest.mark.parametrize("mode", ["both", "up", "down"])
@pytest.mark.parametrize("seed", range(6))
def test_same_drift_points_as_river(mode: str, seed: int) -> None:
    params = [{"min_instances": 30, "delta": 0.25, "threshold": 30.0, "alpha": 1.0},
              {}, {"threshold": 10.0, "alpha": 0.999, "delta": 0.01}][seed % 3]
    xs = _stream(seed)
    ours = _alarms(PageHinkley(mode=mode, **params), xs)
    river = _alarms(drift.PageHinkley(mode=mode, **params), xs)
    assert ours == river
    assert len(ours) >= 2 or mode != "both"  # the streams do drift: the comparison has teeth


def _main_checkpoint() -> dict[str, Any]:
    """What main's code saved for a Page-Hinkley: River's object after 5,000 values."""
    det = drift.PageHinkley(min_instances=30, delta=0.25, threshold=30.0, alpha=1.0)
    for x in _stream(7)[:5000]:
        det.update(x)
    return json.loads(json.dumps(checkpoint(det)))


def test_fixture_is_what_main_wrote() -> None:
    """The stored fixture is the checkpoint main's code writes for this detector (River's
    fields), so the restore test below restores what production stores hold."""
    assert json.loads(FIXTURE.read_text()) == _main_checkpoint()


def test_checkpoint_from_main_restores_and_continues_identically() -> None:
    params = {"min_instances": 30, "delta": 0.25, "threshold": 30.0, "alpha": 1.0}
    state = json.loads(FIXTURE.read_text())
    assert "_x_mean" in state  # River's fields, as main wrote them
    restored = restore_detector("page_hinkley", params, state)
    assert isinstance(restored, PageHinkley)
    river = drift.PageHinkley(**params)
    for x in _stream(7)[:5000]:
        river.update(x)
    rest = _stream(7)[5000:]
    assert _alarms(restored, rest) == _alarms(river, rest)
    # And its own checkpoint round-trips.
    again = restore_detector("page_hinkley", params, json.loads(json.dumps(checkpoint(restored))))
    assert checkpoint(again) == checkpoint(restored)
