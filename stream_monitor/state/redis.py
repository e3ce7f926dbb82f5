"""Redis state store: windows as packed floats, checkpoints as JSON, one fenced Lua save a model.

Key layout (``p`` is the key prefix, ``{m}`` the model's hash tag, so that all of a model's
keys share a Redis Cluster slot)::

    p:{m}:model                 JSON: model meta (signals, retrain evidence, watermark)
    p:{m}:version               INT: bumped by every save; a save names the version it expects
    p:{m}:outbox                HASH: output id -> output record not yet confirmed by Kafka
    p:{m}:sig:<signal>          JSON: signal meta and detector checkpoints (no pickle)
    p:{m}:sig:<signal>:recent   the recent window: little-endian float64 array (bounded)
    p:{m}:sig:<signal>:ref      the reference window, same format

Windows are stored packed rather than as Redis lists because encoding one RESP argument per
value cost more CPU than the detectors themselves (measured with py-spy on the worker); a window
of 500 values is one 4 KB string. ``numpy.frombuffer(v, "<f8")`` reads one back.

A batch is one pipelined round trip of one Lua script per model: each model's state, watermark
and outbox are written atomically, and only if the stored version is the expected one.
Loading takes two round trips.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from array import array
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import StateCorruptError, TransientStoreError
from .base import (
    ModelDelta,
    ModelSnapshot,
    SignalSnapshot,
    StateFencedError,
    model_tag,
    split_unit,
    unit_key,
)

__all__ = ["RedisStore", "execute"]

log = logging.getLogger(__name__)


# One model's save, atomic and fenced: refused when the stored version is not the one the
# delta was computed from (another worker saved since), or when the model is gone although the
# delta expects stored state (the store lost its data).
_SAVE_MODEL = """
local v = redis.call('GET', KEYS[1])
local expected = ARGV[1]
if v == false then
  if expected ~= '0' then return -1 end
elseif v ~= expected then
  return 0
end
redis.call('SET', KEYS[1], tonumber(expected) + 1)
redis.call('SET', KEYS[2], ARGV[2])
local n_out = tonumber(ARGV[7])
local a = 8
for i = 1, n_out do
  redis.call('HSET', KEYS[3], ARGV[a], ARGV[a + 1])
  a = a + 2
end
local k = 6
while k <= #KEYS do
  redis.call('SET', KEYS[k], ARGV[a])
  redis.call('SET', KEYS[k + 1], ARGV[a + 1])
  if ARGV[a + 2] == '1' then redis.call('SET', KEYS[k + 2], ARGV[a + 3]) end
  a = a + 4
  k = k + 3
end
local ver = ARGV[3]
if ver ~= '' then
  -- A model version's unit: enter it in the model's version index, and let it expire once a
  -- newer version exists (refreshed by every save while it still gets events).
  local first = tonumber(ARGV[4])
  redis.call('HSETNX', KEYS[4], ver, ARGV[4])
  local latest = redis.call('GET', KEYS[5])
  local lf = latest and tonumber(redis.call('HGET', KEYS[4], latest) or '-1e300') or -1e300
  if latest == false or (latest ~= ver and first > lf) then
    redis.call('SET', KEYS[5], ver)
    latest = ver
  end
  if latest ~= ver then
    local keys = {KEYS[1], KEYS[2], KEYS[3]}
    for _, sig in ipairs(cjson.decode(ARGV[2])['signals']) do
      local sk = ARGV[6] .. ':sig:' .. sig
      keys[#keys + 1] = sk
      keys[#keys + 1] = sk .. ':recent'
      keys[#keys + 1] = sk .. ':ref'
    end
    for _, key in ipairs(keys) do redis.call('PEXPIRE', key, ARGV[5]) end
  end
end
return 1
"""


UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


async def execute(pipe: Any, doing: str, refused: str | None = None) -> Any:
    """Run a pipeline. Redis unreachable: :class:`TransientStoreError` ("unavailable while
    <doing>"), so the adapter retries the batch. A command Redis refused is one too when
    ``refused`` names it, else it propagates."""
    try:
        return await pipe.execute()
    except UNAVAILABLE as exc:
        raise TransientStoreError(f"redis unavailable while {doing}: {exc}") from exc
    except RedisError as exc:
        if refused is None:
            raise
        raise TransientStoreError(f"redis refused {refused}: {exc}") from exc


class RedisStore:
    def __init__(self, url: str, prefix: str = "sm", *, client: Any = None) -> None:
        self.prefix = prefix
        self.client = client or aioredis.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=10
        )
        self._save_script = self.client.register_script(_SAVE_MODEL)
        self.last_round_trip_s = 0.0
        self.epoch: str | None = None

    def _base(self, unit: str) -> str:
        return unit_key(self.prefix, unit)

    def _index(self, model_id: str) -> str:
        return f"{self.prefix}:{model_tag(model_id)}:versions"

    def _model_key(self, model_id: str) -> str:
        return self._base(model_id) + ":model"

    def _signal_key(self, model_id: str, signal: str) -> str:
        return f"{self._base(model_id)}:sig:{signal}"

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
                base = self._base(mid)
                pipe.get(base + ":version")
                pipe.hgetall(base + ":outbox")
                for sig in meta["signals"]:
                    k = self._signal_key(mid, sig)
                    pipe.get(k)
                    pipe.get(k + ":recent")
                    pipe.get(k + ":ref")
            replies = await pipe.execute()
        except UNAVAILABLE as exc:
            raise TransientStoreError(f"redis unavailable while loading state: {exc}") from exc
        out: dict[str, ModelSnapshot] = {}
        i = 0
        for mid, meta in found:
            version, outbox = replies[i], replies[i + 1]
            i += 2
            snap = ModelSnapshot(meta, version=int(version or 0),
                                 outbox={k.decode(): v for k, v in (outbox or {}).items()})
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
        pipe = self.client.pipeline(transaction=False)
        for d in deltas:
            base = self._base(d.model_id)
            mid, ver = split_unit(d.model_id)
            index = self._index(mid)
            keys = [base + ":version", base + ":model", base + ":outbox", index, index + ":latest"]
            ttl_ms = max(1, int((d.ttl_seconds or 0) * 1000))
            args: list[Any] = [str(d.version), _dumps(d.meta), ver or "",
                               repr(float(d.first_seen or 0.0)), ttl_ms, base, len(d.outbox)]
            for oid, rec in d.outbox.items():
                args += [oid, rec]
            for s in d.signals:
                k = self._signal_key(d.model_id, s.signal)
                keys += [k, k + ":recent", k + ":ref"]
                ref = s.reference
                args += [_dumps(s.meta), _pack(s.recent), "0" if ref is None else "1",
                         b"" if ref is None else _pack(ref)]
            await self._save_script(keys=keys, args=args, client=pipe)
        t0 = time.perf_counter()
        results = await execute(pipe, "saving state", refused="the state write")
        self.last_round_trip_s = time.perf_counter() - t0
        fenced = [d.model_id for d, r in zip(deltas, results, strict=True) if r != 1]
        if fenced:
            lost = any(r == -1 for r in results)
            raise StateFencedError(fenced, lost=lost)

    async def clear_outbox(self, entries: dict[str, list[str]]) -> None:
        if not entries:
            return
        pipe = self.client.pipeline(transaction=False)
        for mid, ids in entries.items():
            if ids:
                pipe.hdel(self._base(mid) + ":outbox", *ids)
        await execute(pipe, "clearing the outbox")

    async def expire(self, units: dict[str, list[str]], ttl_seconds: float) -> None:
        """Let superseded version units expire (unit -> its signal names): a version that gets
        no event after a newer one appeared is never saved again to get its TTL."""
        if not units:
            return
        ms = max(1, int(ttl_seconds * 1000))
        pipe = self.client.pipeline(transaction=False)
        for unit, signals in units.items():
            base = self._base(unit)
            for k in (":version", ":model", ":outbox"):
                pipe.pexpire(base + k, ms)
            for sig in signals:
                sk = self._signal_key(unit, sig)
                for k in (sk, sk + ":recent", sk + ":ref"):
                    pipe.pexpire(k, ms)
        await execute(pipe, "expiring versions")

    async def versions(self, model_ids: Collection[str]) -> dict[str, dict[str, float]]:
        ids = list(model_ids)
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for mid in ids:
            pipe.hgetall(self._index(mid))
        replies = await execute(pipe, "reading versions")
        return {mid: {k.decode(): float(v) for k, v in (r or {}).items()}
                for mid, r in zip(ids, replies, strict=True)}

    async def check_epoch(self) -> bool:
        """The epoch marker is written once per store (SET NX). A running worker that finds it
        gone, or replaced, knows Redis lost its data since it last looked."""
        key = f"{self.prefix}:epoch"
        try:
            current = await self.client.get(key)
            if current is not None and current.decode() == self.epoch:
                return True
            if current is None:
                await self.client.set(key, uuid.uuid4().hex, nx=True)
                current = await self.client.get(key)
        except UNAVAILABLE as exc:
            raise TransientStoreError(f"redis unavailable while checking the epoch: {exc}") from exc
        first_look = self.epoch is None
        self.epoch = current.decode() if current is not None else None
        return first_look

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.client.aclose(), 5)
        except Exception:  # closing is best effort
            log.debug("redis close failed", exc_info=True)


def _dumps(meta: dict[str, Any]) -> bytes:
    """A checkpoint as JSON, non-finite floats included. orjson writes inf and NaN as null,
    which would not restore: a reference holding 1e308 has an infinite mean, and a worker that
    reloaded that model (a restart, a rebalance, a cache eviction) could no longer run it. Such
    a checkpoint is written with the standard library's NaN/Infinity tokens instead (read back
    by :func:`_json`), so a reloaded model goes on exactly as one that stayed in memory.

    >>> _json(_dumps({"m": float("inf"), "s": [float("nan")], "n": None}), "m")
    {'m': inf, 's': [nan], 'n': None}
    """
    raw = orjson.dumps(meta)
    if b"null" in raw and _non_finite(meta):
        return json.dumps(meta, separators=(",", ":")).encode()
    return raw


def _non_finite(obj: Any) -> bool:
    if type(obj) is float:
        return obj - obj != 0.0
    if isinstance(obj, dict):
        return any(_non_finite(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_non_finite(v) for v in obj)
    return False


def _json(raw: bytes, model_id: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:  # NaN/Infinity tokens (see _dumps)
            obj = json.loads(raw)
        except ValueError:
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
