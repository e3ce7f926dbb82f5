"""In-memory state store: the embedded default for replay and for unit tests."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence

from .base import ModelDelta, ModelSnapshot, SignalSnapshot

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps the same data the Redis store keeps, in dicts (deep-copied, never shared)."""

    def __init__(self) -> None:
        self._models: dict[str, dict] = {}
        self._signals: dict[tuple[str, str], SignalSnapshot] = {}

    async def load(self, model_ids: Collection[str]) -> dict[str, ModelSnapshot]:
        out = {}
        for mid in model_ids:
            meta = self._models.get(mid)
            if meta is None:
                continue
            sigs = [copy.deepcopy(self._signals[(mid, s)]) for s in meta["signals"]
                    if (mid, s) in self._signals]
            out[mid] = ModelSnapshot(copy.deepcopy(meta), sigs)
        return out

    async def save(self, deltas: Sequence[ModelDelta]) -> None:
        for d in deltas:
            self._models[d.model_id] = copy.deepcopy(d.meta)
            for s in d.signals:
                snap = self._signals.get((d.model_id, s.signal))
                if snap is None:
                    snap = self._signals[(d.model_id, s.signal)] = SignalSnapshot({}, [], [])
                snap.meta = copy.deepcopy(s.meta)
                snap.recent = list(s.recent)
                if s.reference is not None:
                    snap.reference = list(s.reference)

    async def close(self) -> None:
        return None
