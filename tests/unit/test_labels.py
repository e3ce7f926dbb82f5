"""The pure label join (core/labels.py): error values, order, early labels, expiry, coverage and
delay; and a concept drift seen only through joined labels leading to a retrain request."""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position
from stream_monitor.contracts.schemas import validate_record
from stream_monitor.core import Monitor, MonitorState
from stream_monitor.core.labels import LabelEvent, LabelJoin, error_value

T0 = 1_767_225_600.0


@pytest.mark.parametrize(("task", "pred", "label", "err"), [
    ("classification", 0.7, 1, 0.0), ("classification", 0.7, 0, 1.0),
    ("classification", 0.5, True, 0.0), ("classification", 2, 2, 0.0),
    ("classification", 2, 3, 1.0), ("classification", "a", "b", 1.0),
    ("regression", 1.0, 3.5, 2.5), ("regression", "x", 1.0, None),
    ("classification", None, 1, None),
])
def test_error_value(task, pred, label, err) -> None:
    assert error_value(task, pred, label) == err


def test_join_counts_early_late_unmatched_and_expired() -> None:
    j = LabelJoin("classification", ttl_seconds=100, bucket_seconds=10)
    assert j.add_prediction("a", 0.9, T0) is None
    assert j.add_prediction("b", 0.1, T0 + 1) is None
    # The label of c comes before c itself.
    assert j.add_label(LabelEvent("c", "m", 1, T0 + 2)) is None
    pair = j.add_label(LabelEvent("a", "m", 0, T0 + 30))
    assert pair is not None and pair.error == 1.0 and pair.delay == 30.0
    early = j.add_prediction("c", 0.8, T0 + 31)
    assert early is not None and early.error == 0.0
    # A label for nothing, then time moves past the TTL: b expires, z is unmatched.
    assert j.add_label(LabelEvent("z", "m", 1, T0 + 40)) is None
    j.add_prediction("d", 0.2, T0 + 200)
    s = j.stats
    assert (s.predictions, s.labels, s.joined) == (4, 3, 2)
    assert (s.labels_before_prediction, s.unmatched_labels, s.expired_predictions) == (1, 1, 1)
    # Delays: a 30 s; c's label came first, so its delay counts as 0 (never negative).
    assert s.coverage == 0.5 and s.mean_delay == 15.0 and s.delay_max == 30.0
    # A late label whose prediction expired does not join.
    assert j.add_label(LabelEvent("b", "m", 0, T0 + 201)) is None


def test_concept_drift_seen_only_through_labels_gives_a_retrain_request() -> None:
    """Inputs never change; the error rate goes from 10% to 45% at event 3000. The joined
    errors, fed as a performance signal watched by DDM, give one drift alert and a
    `performance_signal` retrain request (k=3 input signals would never be reached)."""
    rng = np.random.default_rng(7)
    n = 6000
    x = rng.normal(0.0, 1.0, n)
    truth = rng.random(n) < 0.5
    flip = rng.random(n) < np.where(np.arange(n) < 3000, 0.10, 0.45)
    labels = truth ^ flip
    j = LabelJoin("classification", ttl_seconds=3600, bucket_seconds=60)
    events = []
    for i in range(n):
        j.add_prediction(f"e{i}", float(truth[i]), T0 + i)
        # Labels arrive 20 s later; the joined error joins the monitored stream then.
        if i >= 20:
            pair = j.add_label(LabelEvent(f"e{i - 20}", "m", bool(labels[i - 20]), T0 + i))
            assert pair is not None
            events.append(InferenceEvent(f"e{i}", "m", {"x": float(x[i]), "err": pair.error},
                                         0.0, Position("t", 0, i), timestamp=T0 + i))
    assert j.stats.coverage == pytest.approx((n - 20) / n)
    cfg = parse_config({
        "windows": {"reference_size": 500, "recent_size": 200},
        "detectors": {"ddm": {"type": "ddm"}, "page_hinkley": {"type": "page_hinkley"}},
        "models": [{"match": "m",
                    "signals": [{"match": "feature:err", "detectors": ["ddm"]},
                                {"match": "feature:*", "detectors": ["page_hinkley"]}],
                    "retrain": {"min_drifted_signals": 3, "performance_signals": ["feature:err"],
                                "persistence": {"values": 100}}}]})
    out = Monitor(cfg).process(events, MonitorState())
    assert {a["signal"] for a in out.alerts} == {"feature:err"}
    first = out.alerts[0]["detected_at"]["offset"]
    assert 3000 < first < 3400
    [req] = out.retrain_requests
    validate_record(req)
    assert req["rule"]["name"] == "performance_signal"
    assert req["evidence"][0]["performance"] is True
