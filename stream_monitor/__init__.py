"""stream-monitor: online drift monitoring for ML models that publish predictions to Kafka."""

from .config import MonitorConfig, Settings, load_config, parse_config
from .contracts import DeadLetter, InferenceEvent, Position, RawRecord, decode_inference
from .core import Monitor, MonitorState
from .errors import ConfigError, StreamMonitorError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DeadLetter",
    "InferenceEvent",
    "Monitor",
    "MonitorConfig",
    "MonitorState",
    "Position",
    "RawRecord",
    "Settings",
    "StreamMonitorError",
    "decode_inference",
    "load_config",
    "parse_config",
]
