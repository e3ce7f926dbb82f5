"""The pure monitoring core: no Kafka, no Redis, no files. Fed in batches by the adapters."""

from .detectors import REGISTRY, DetectorKind, build_detector, checkpoint, restore_detector
from .monitor import BatchResult, ModelState, Monitor, MonitorState, SignalState, reference_scale
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
