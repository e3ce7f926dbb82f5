"""State stores: where model state lives between batches."""

from .base import ModelDelta, ModelSnapshot, SignalDelta, SignalSnapshot, StateStore, model_tag
from .memory import MemoryStore

__all__ = [
    "MemoryStore",
    "ModelDelta",
    "ModelSnapshot",
    "SignalDelta",
    "SignalSnapshot",
    "StateStore",
    "model_tag",
]
