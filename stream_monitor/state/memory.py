"""In-memory state store: the embedded default for replay and for unit tests."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from typing import Any

from ..contracts.units import split_unit
from .base import ModelDelta, ModelSnapshot, SignalSnapshot, StateFencedError

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps the same data the Redis store keeps, in dicts (deep-copied, never shared)."""

    def __init__(self) -> None:
        self._models: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}
        self._outbox: dict[str, dict[str, bytes]] = {}
        self._signals: dict[tuple[str, str], SignalSnapshot] = {}
        # model id -> model_version -> first seen (event time). Versions do not expire here:
        # a replay is short-lived.
        self._index: dict[str, dict[str, float]] = {}

    async def load(self, model_ids: Collection[str]) -> dict[str, ModelSnapshot]:
        out = {}
        for mid in model_ids:
            meta = self._models.get(mid)
            if meta is None:
                continue
            sigs = [copy.deepcopy(self._signals[(mid, s)]) for s in meta["signals"]
                    if (mid, s) in self._signals]
            out[mid] = ModelSnapshot(copy.deepcopy(meta), sigs, self._versions.get(mid, 0),
                                     dict(self._outbox.get(mid, {})))
        return out

    async def save(self, deltas: Sequence[ModelDelta]) -> None:
        fenced = [d.unit_id for d in deltas if self._versions.get(d.unit_id, 0) != d.revision]
        if fenced:
            raise StateFencedError(fenced)
        for d in deltas:
            mid, ver = split_unit(d.unit_id)
            if ver is not None:
                self._index.setdefault(mid, {}).setdefault(ver, float(d.first_seen or 0.0))
            self._models[d.unit_id] = copy.deepcopy(d.meta)
            self._versions[d.unit_id] = d.revision + 1
            if d.outbox:
                self._outbox.setdefault(d.unit_id, {}).update(d.outbox)
            for s in d.signals:
                snap = self._signals.get((d.unit_id, s.signal))
                if snap is None:
                    snap = self._signals[(d.unit_id, s.signal)] = SignalSnapshot({}, [], [])
                snap.meta = copy.deepcopy(s.meta)
                snap.recent = list(s.recent)
                if s.reference is not None:
                    snap.reference = list(s.reference)

    async def clear_outbox(self, entries: dict[str, list[str]]) -> None:
        for mid, ids in entries.items():
            box = self._outbox.get(mid, {})
            for i in ids:
                box.pop(i, None)

    async def expire(self, units: dict[str, list[str]], ttl_seconds: float) -> None:
        return None  # a replay is short-lived: nothing expires in memory

    async def versions(self, model_ids: Collection[str]) -> dict[str, dict[str, float]]:
        return {mid: dict(self._index.get(mid, {})) for mid in model_ids}

    async def check_epoch(self) -> bool:
        return True

    async def close(self) -> None:
        return None
