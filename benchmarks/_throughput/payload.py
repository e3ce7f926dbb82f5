"""The synthetic events: N inference events of 4 (or --models) models, checked against
examples/monitor.yaml."""

from __future__ import annotations

from typing import Any

import orjson

from stream_monitor.config import load_config
from stream_monitor.settings import Settings
from stream_monitor.synth import Drift, StreamSpec, generate

from .common import CONFIG, MODELS, N_FEATURES, ROOT, config_detectors, config_path


def build_payload(
    n_events: int, models: tuple[str, ...] = MODELS
) -> tuple[list[tuple[bytes, bytes]], dict[str, Any]]:
    """N events of the models, round-robin; key = model id. Drift at the middle of each model
    (amount, utilization, prediction), as `stream-monitor synth` does."""
    per_model = n_events // len(models)
    half = per_model // 2
    spec = StreamSpec(
        models=models,
        events_per_model=per_model,
        n_features=N_FEATURES,
        drifts=(
            Drift(half, "amount", 1.5),
            Drift(half, "utilization", -1.5),
            Drift(half, "prediction", 1.0),
        ),
    )
    records: list[tuple[bytes, bytes]] = []
    feature_names: tuple[str, ...] | None = None
    size = 0
    for j, value in enumerate(generate(spec)):
        ev = orjson.loads(value)
        model = models[j % len(models)]
        if ev["model_id"] != model:
            raise SystemExit(f"event {j}: model_id {ev['model_id']!r}, expected {model!r}")
        feats = ev["features"]
        names = tuple(feats)
        if feature_names is None:
            feature_names = names
        if (
            names != feature_names
            or len(names) != N_FEATURES
            or not all(isinstance(v, int | float) for v in feats.values())
            or not isinstance(ev.get("prediction"), int | float)
        ):
            raise SystemExit(
                f"event {j} does not have {N_FEATURES} numeric features and a numeric "
                f"prediction: {value[:200]!r}"
            )
        records.append((model.encode(), value))
        size += len(value)
    info = {
        "events": len(records),
        "models": list(models),
        "events_per_model": per_model,
        "features": list(feature_names or ()),
        "n_features": len(feature_names or ()),
        "prediction": "numeric, in [0, 1]",
        "drifts_at_event_of_each_model": half,
        "mean_value_bytes": round(size / max(1, len(records)), 1),
        "key": "model id",
        "seed": spec.seed,
    }
    return records, info


def check_config(feature_names: list[str], models: tuple[str, ...] = MODELS) -> dict[str, Any]:
    """The measured config's credit-* rule must put its detectors (examples/monitor.yaml:
    ADWIN and Page-Hinkley; the ``cusum`` variant: the calibrated CUSUM) on every signal."""
    path = config_path()
    want = sorted(config_detectors())
    cfg = load_config(path, Settings())  # type: ignore[call-arg]
    signals = ["prediction"] + [f"feature:{f}" for f in feature_names]
    watched: dict[str, list[str]] = {}
    for model in models:
        rule = cfg.model_rule(model)
        if rule is None or rule.match != "credit-*":
            raise SystemExit(f"{path}: model {model!r} is not matched by the credit-* rule")
        for sig in signals:
            sr = rule.signal_rule(sig)
            names = sr.detectors if sr is not None else ()
            types = sorted(cfg.detectors[n].type for n in names)
            if types != want:
                raise SystemExit(
                    f"{path}: signal {sig!r} of {model!r} has detectors {types}, "
                    f"expected {want}"
                )
            watched[sig] = types
    return {
        "path": (str(path.relative_to(ROOT)) if path == CONFIG
                 else f"{CONFIG.relative_to(ROOT)}, credit-* detectors replaced by cusum"),
        "rule": "credit-*",
        "signals": len(signals),
        "detectors_per_signal": want,
        "detector_updates_per_event": len(want) * len(signals),
    }
