"""The worker's in-memory model states: at most ``size`` of them, the least recently used
evicted after a batch is saved (every changed state is saved each batch, so an evicted one
reloads exactly), and idle model versions dropped before their state expires in the store
(README "Model versions"). ``size`` None: no limit (a replay holds everything)."""

from __future__ import annotations

from collections.abc import Iterable

from ..core.model_state import MonitorState

__all__ = ["ModelCache"]

_SWEEP_SECONDS = 60.0


class ModelCache:
    def __init__(self, size: int | None = None) -> None:
        self.size = size
        self.state = MonitorState()
        # Processing time each cached state unit was last used (by a change).
        self._used: dict[str, float] = {}
        self._swept = 0.0
        self._lru: dict[str, None] = {}  # state units, least recently used first

    def forget(self) -> None:
        """Drop every state (e.g. on a rebalance); they are reloaded from the store."""
        self.state = MonitorState()
        self._used = {}
        self._lru = {}

    def used(self, units: Iterable[str], now: float) -> None:
        """These units changed at processing time ``now``."""
        for u in units:
            self._used[u] = now

    def sweep(self, now: float) -> None:
        """At most once a minute: drop model versions unused for half their expiry."""
        if now - self._swept < _SWEEP_SECONDS:
            return
        self._swept = now
        models = self.state.models
        for uid, t in list(self._used.items()):
            m = models.get(uid)
            if m is None:
                del self._used[uid]
            elif m.model_version is not None and now - t > m.rule.versions.expire_seconds / 2:
                del models[uid]
                del self._used[uid]

    def evict(self, batch_units: Iterable[str]) -> None:
        """Keep at most ``size`` states, the least recently used going first (the batch's own
        last). Called after a batch's state is saved, so that every state evicted is in the
        store; during a batch, the batch's own models are held whatever their number."""
        lru = self._lru
        models = self.state.models
        for u in batch_units:
            if u in models:
                lru.pop(u, None)
                lru[u] = None
        cap = self.size
        if cap is None or len(models) <= cap:
            return
        for u in list(lru):
            if len(models) <= cap:
                break
            del lru[u]
            models.pop(u, None)
            self._used.pop(u, None)
