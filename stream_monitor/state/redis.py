"""Redis state store: windows as lists, detector checkpoints as JSON, one MULTI/EXEC a batch.

Key layout (``p`` is the key prefix, ``{m}`` the model's hash tag, so that all of a model's
keys share a Redis Cluster slot)::

    p:{m}:model                 JSON: model meta (signals, retrain evidence)
    p:{m}:sig:<signal>          JSON: signal meta and detector checkpoints (no pickle)
    p:{m}:sig:<signal>:recent   LIST of floats, capped with LTRIM
    p:{m}:sig:<signal>:ref      LIST of floats, the reference window

A batch is written in one pipelined transaction; loading takes two round trips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import StateCorruptError, TransientStoreError
from .base import ModelDelta, ModelSnapshot, SignalSnapshot, model_tag

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)


class RedisStore:
    def __init__(self, url: str, prefix: str = "sm", *, client: Any = None) -> None:
        self.prefix = prefix
        self.client = client or aioredis.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=10
        )
        self.last_round_trip_s = 0.0

    def _model_key(self, model_id: str) -> str:
        return f"{self.prefix}:{model_tag(model_id)}:model"

    def _signal_key(self, model_id: str, signal: str) -> str:
        return f"{self.prefix}:{model_tag(model_id)}:sig:{signal}"

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def load(self, model_ids: Collection[str]) -> dict[str, ModelSnapshot]:
        ids = list(model_ids)
        if not ids:
            return {}
        try:
            metas = await self.client.mget([self._model_key(m) for m in ids])
            found = [(m, _json(raw, m)) for m, raw in zip(ids, metas, strict=True) if raw is not None]
            if not found:
                return {}
            pipe = self.client.pipeline(transaction=False)
            for mid, meta in found:
                for sig in meta["signals"]:
                    k = self._signal_key(mid, sig)
                    pipe.get(k)
                    pipe.lrange(k + ":recent", 0, -1)
                    pipe.lrange(k + ":ref", 0, -1)
            replies = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise TransientStoreError(f"redis unavailable while loading state: {exc}") from exc
        out: dict[str, ModelSnapshot] = {}
        i = 0
        for mid, meta in found:
            snap = ModelSnapshot(meta)
            for _sig in meta["signals"]:
                raw_meta, recent, ref = replies[i], replies[i + 1], replies[i + 2]
                i += 3
                if raw_meta is None:
                    continue  # signal created but never saved; starts fresh
                snap.signals.append(SignalSnapshot(_json(raw_meta, mid), _floats(recent), _floats(ref)))
            out[mid] = snap
        return out

    async def save(self, deltas: Sequence[ModelDelta]) -> None:
        if not deltas:
            return
        pipe = self.client.pipeline(transaction=True)
        for d in deltas:
            pipe.set(self._model_key(d.model_id), orjson.dumps(d.meta))
            for s in d.signals:
                k = self._signal_key(d.model_id, s.signal)
                pipe.set(k, orjson.dumps(s.meta))
                if s.recent_append:
                    pipe.rpush(k + ":recent", *map(repr, s.recent_append))
                    pipe.ltrim(k + ":recent", -s.recent_max, -1)
                if s.reference_reset:
                    pipe.delete(k + ":ref")
                if s.reference_append:
                    pipe.rpush(k + ":ref", *map(repr, s.reference_append))
        t0 = time.perf_counter()
        try:
            await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise TransientStoreError(f"redis unavailable while saving state: {exc}") from exc
        except RedisError as exc:
            raise TransientStoreError(f"redis refused the state write: {exc}") from exc
        self.last_round_trip_s = time.perf_counter() - t0

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.client.aclose(), 5)
        except Exception:  # closing is best effort
            log.debug("redis close failed", exc_info=True)


def _json(raw: bytes, model_id: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateCorruptError(f"state of model {model_id!r} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise StateCorruptError(f"state of model {model_id!r} is not a JSON object")
    return obj


def _floats(items: list[bytes]) -> list[float]:
    return [float(x) for x in items]
