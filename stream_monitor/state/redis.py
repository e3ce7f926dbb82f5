"""Redis state store: windows as packed floats, checkpoints as JSON, one MULTI/EXEC a batch.

Key layout (``p`` is the key prefix, ``{m}`` the model's hash tag, so that all of a model's
keys share a Redis Cluster slot)::

    p:{m}:model                 JSON: model meta (signals, retrain evidence)
    p:{m}:sig:<signal>          JSON: signal meta and detector checkpoints (no pickle)
    p:{m}:sig:<signal>:recent   the recent window: little-endian float64 array (bounded)
    p:{m}:sig:<signal>:ref      the reference window, same format

Windows are stored packed rather than as Redis lists because encoding one RESP argument per
value cost more CPU than the detectors themselves (measured with py-spy on the worker); a window
of 500 values is one 4 KB string. ``numpy.frombuffer(v, "<f8")`` reads one back.

A batch is written in one pipelined transaction; loading takes two round trips.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from array import array
from collections.abc import Collection, Iterable, Sequence
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
                    pipe.get(k + ":recent")
                    pipe.get(k + ":ref")
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
                pipe.set(k + ":recent", _pack(s.recent))
                if s.reference is not None:
                    pipe.set(k + ":ref", _pack(s.reference))
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


def _pack(values: Iterable[float]) -> bytes:
    a = array("d", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def _floats(raw: bytes | None) -> list[float]:
    if not raw:
        return []
    if len(raw) % 8:
        raise StateCorruptError(f"a stored window has {len(raw)} bytes, not a multiple of 8")
    a = array("d")
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tolist()
