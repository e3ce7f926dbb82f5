"""The pure monitoring core: no Kafka, no Redis, no files. Fed in batches by the adapters.

Read in this order: plan.py (the compiled config the core runs from; the core never reads the
YAML schema), gate.py (whole events, before the core), monitor.py (one batch of events),
signals.py (one signal's windows and detectors), value_rules.py (per-value checks), alerts.py
(what a fired detector becomes), then the policies it applies: lifecycle.py, retrain.py,
deploy.py, label_join.py.
"""

from .detectors import REGISTRY, DetectorKind, build_detector, checkpoint, restore_detector
from .model_state import ModelState, MonitorState
from .monitor import BatchResult, Monitor
from .signals import SignalState, reference_scale
from .stats import summarize

__all__ = [
    "REGISTRY",
    "BatchResult",
    "DetectorKind",
    "ModelState",
    "Monitor",
    "MonitorState",
    "SignalState",
    "build_detector",
    "checkpoint",
    "reference_scale",
    "restore_detector",
    "summarize",
]
