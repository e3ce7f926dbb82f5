"""stream-monitor: online drift monitoring for ML models that publish predictions to Kafka.

The names below are loaded on first use, so that importing one light module of the package
(``stream_monitor.errors``, the notifier) does not load the core and its numeric libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import MonitorConfig, load_config, parse_config
    from .contracts import DeadLetter, InferenceEvent, Position, RawRecord, decode_inference
    from .core import Monitor, MonitorState
    from .core.plan import MonitorPlan
    from .errors import ConfigError, StreamMonitorError
    from .settings import Settings

__version__ = "0.1.0"

# Public name -> the module that defines it.
_WHERE = {
    "ConfigError": "errors",
    "DeadLetter": "contracts",
    "InferenceEvent": "contracts",
    "Monitor": "core",
    "MonitorConfig": "config",
    "MonitorPlan": "core.plan",
    "MonitorState": "core",
    "Position": "contracts",
    "RawRecord": "contracts",
    "Settings": "settings",
    "StreamMonitorError": "errors",
    "decode_inference": "contracts",
    "load_config": "config",
    "parse_config": "config",
}

__all__ = [
    "ConfigError",
    "DeadLetter",
    "InferenceEvent",
    "Monitor",
    "MonitorConfig",
    "MonitorPlan",
    "MonitorState",
    "Position",
    "RawRecord",
    "Settings",
    "StreamMonitorError",
    "decode_inference",
    "load_config",
    "parse_config",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'stream_monitor' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
