"""Records as the worker writes them (taken from a demo run), for the notifier's tests."""

from __future__ import annotations

import copy
from typing import Any

_DRIFT_ALERT: dict[str, Any] = {
    "schema_version": 1,
    "type": "drift_alert",
    "alert_id": "4ec03daca582f9c46917eaf62648b7fb",
    "model_id": "credit-risk",
    "model_version": "1",
    "sample_rate": 1.0,
    "signal": "feature:utilization",
    "detector": {
        "name": "page_hinkley",
        "type": "page_hinkley",
        "params": {
            "min_instances": 30,
            "delta": 0.25,
            "threshold": 30.0,
            "alpha": 1.0
        }
    },
    "detected_at": {
        "event_id": "credit-risk-00003024",
        "topic": "inference-events",
        "partition": 0,
        "offset": 3027,
        "event_time": "2026-01-01T00:05:02.400Z",
        "signal_index": 3025
    },
    "evidence": {
        "reference": {
            "count": 1000,
            "mean": 0.3939421149999999,
            "std": 0.12248312412471002,
            "min": 0.054249,
            "max": 0.75862,
            "quantiles": {
                "p05": 0.19573215,
                "p25": 0.314102,
                "p50": 0.3917005,
                "p75": 0.47876850000000004,
                "p95": 0.60125645
            }
        },
        "current": {
            "count": 50,
            "mean": 0.32062674,
            "std": 0.1425189663425159,
            "min": 0.075146,
            "max": 0.604214,
            "quantiles": {
                "p05": 0.11415975,
                "p25": 0.2134895,
                "p50": 0.290618,
                "p75": 0.42581975,
                "p95": 0.5648835499999999
            }
        },
        "recent": {
            "count": 500,
            "mean": 0.39992519,
            "std": 0.12466107290450096,
            "min": 0.003723,
            "max": 0.787349,
            "quantiles": {
                "p05": 0.1743042,
                "p25": 0.31992925,
                "p50": 0.4178265,
                "p75": 0.477883,
                "p95": 0.5926537
            }
        },
        "mean_shift_in_reference_std": -0.5985753182238523,
        "standardization": {
            "mean": 0.3939421149999999,
            "std": 0.12248312412471002
        }
    },
    "summary": ("credit-risk feature:utilization: mean fell from 0.3939 to 0.3206 (-0.60 "
                "reference std) over the last 50 values; page_hinkley fired at offset 3027")
}

_RETRAIN_REQUEST: dict[str, Any] = {
    "schema_version": 1,
    "type": "retrain_request",
    "request_id": "08d75e33aa60e5d75ce1b2b00313d9fc",
    "model_id": "credit-risk",
    "model_version": "1",
    "rule": {
        "name": "min_drifted_signals",
        "min_drifted_signals": 2,
        "within_seconds": 600.0,
        "cooldown_seconds": 3600.0
    },
    "reason": "2 signals drifted within 600s: feature:utilization, feature:amount",
    "signals": [
        "feature:utilization",
        "feature:amount"
    ],
    "alert_ids": [
        "4ec03daca582f9c46917eaf62648b7fb",
        "2f00fc632f5ac83bc7b53dff7fbd921c"
    ],
    "triggered_by": {
        "event_id": "credit-risk-00003028",
        "topic": "inference-events",
        "partition": 0,
        "offset": 3031,
        "event_time": "2026-01-01T00:05:02.800Z",
        "signal_index": 3029
    },
    "requested_at": "2026-01-01T00:05:02.800Z"
}


def drift_alert(**overrides: Any) -> dict[str, Any]:
    """A schema-valid drift alert; top-level fields may be overridden."""
    rec = copy.deepcopy(_DRIFT_ALERT)
    rec.update(overrides)
    return rec


def retrain_request(**overrides: Any) -> dict[str, Any]:
    rec = copy.deepcopy(_RETRAIN_REQUEST)
    rec.update(overrides)
    return rec


def drift_resolved(alert: dict[str, Any], resolved_at: str) -> dict[str, Any]:
    """A hand-made resolution (the record type does not exist yet): the fingerprint fields of
    the alert it resolves, and when."""
    return {"schema_version": 1, "type": "drift_resolved", "model_id": alert["model_id"],
            "model_version": alert["model_version"], "signal": alert["signal"],
            "detector": {"name": alert["detector"]["name"], "type": alert["detector"]["type"]},
            "alert_id": alert["alert_id"], "resolved_at": resolved_at,
            "summary": f"{alert['model_id']} {alert['signal']}: back within the reference"}
