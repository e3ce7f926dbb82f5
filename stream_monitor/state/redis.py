"""Redis state store: windows as packed floats, checkpoints as JSON, fenced Lua saves by group.

Key layout (``p`` is the key prefix, ``{m}`` the model's hash tag, so that all of a model's
keys share a Redis Cluster slot)::

    p:{m}:model                 JSON: model meta (signals, retrain evidence, watermark)
    p:{m}:version               INT: the revision, bumped by every save; a save names the one
                                it expects
    p:{m}:outbox                HASH: output id -> output record not yet confirmed by Kafka
    p:{m}:sig:<signal>          JSON: signal meta and detector checkpoints (no pickle)
    p:{m}:sig:<signal>:recent   the recent window: little-endian float64 array (bounded)
    p:{m}:sig:<signal>:ref      the reference window, same format

Windows are stored packed rather than as Redis lists because encoding one RESP argument per
value cost more CPU than the detectors themselves (measured with py-spy on the worker); a window
of 500 values is one 4 KB string. ``numpy.frombuffer(v, "<f8")`` reads one back.

A batch is one pipelined round trip of one Lua script call per group of models (the whole batch
on a single Redis, cut at ``_GROUP_MODELS`` models; the models of one hash slot on a cluster):
each model's state, watermark and outbox are written atomically, and only if the stored version
is the expected one (``_SAVE_MODELS``). A load is one round trip of one script call per group
too (``_LOAD_MODELS``), its reply one framed string.

On a Redis Cluster (``state/client.py``; docs/scaling.md) the same pipelines are split per node
and sent to all nodes at once (groups of one hash slot), each save waits for a replica
of each master it wrote to (WAIT), and there is one epoch marker per master.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import sys
import time
import uuid
from array import array
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..contracts.units import split_unit
from ..errors import ScriptsLostError, StateCorruptError, TransientStoreError
from .base import (
    ModelDelta,
    ModelSnapshot,
    SignalSnapshot,
    StateFencedError,
    model_tag,
    unit_key,
)
from .client import SLOTS, group_by_slot, is_cluster, redis_client, slot_of, slot_tag

__all__ = ["UNAVAILABLE", "RedisStore", "Scripts", "execute"]

log = logging.getLogger(__name__)


# The saves of a group of models in one script call (a single Redis: the whole batch, in
# bounded groups; a Redis Cluster: the models of one hash slot), atomic as a whole and fenced
# per model: a model's save is skipped when the stored version is not the one its delta was
# computed from (another worker saved since: 0), or when the model is gone although the delta
# expects stored state (-1) or its version is older than the delta's (-2): the store lost its
# data. The reply holds one of 1, 0, -1, -2 per model, in order.
#
# Until 2026-12 this was one call per model, with every key and value a command argument;
# redis-py's encoding of those arguments (about 2 us each, 34 a model of 3 signals) cost more
# client CPU than the rest of the save. Now each model declares one key (its version: the
# script's slot) and the values of the whole group travel in ARGV[1], a string of fields, each
# a 4-byte little-endian length and its bytes (``_frame``). The keys and values written are
# the same as before, so a store written by either version loads with both.
#
# Per model, the fields are: expected version, model meta, model version or '', its
# first-seen time, TTL in ms, key base, version index key, outbox entries, signals; then the
# outbox as id/record pairs; then 5 per signal: name, meta, recent window, '1' when the
# reference is written, reference.
_SAVE_MODELS = """
local blob = ARGV[1]
local pos = 1
local function field()
  local n, at = struct.unpack('<I4', blob, pos)
  pos = at + n
  return string.sub(blob, at, at + n - 1)
end
local replies = {}
for m = 1, #KEYS do
  local expected = field()
  local meta = field()
  local ver = field()
  local first_seen = field()
  local ttl = field()
  local base = field()
  local index = field()
  local n_out = tonumber(field())
  local n_sig = tonumber(field())
  local ok = 1
  local v = redis.call('GET', KEYS[m])
  if v == false then
    if expected ~= '0' then ok = -1 end
  elseif v ~= expected then
    -- Versions only move forward: one behind what this worker saved means the store lost
    -- acknowledged writes (a failover to a replica that had not got them yet).
    if tonumber(v) < tonumber(expected) then ok = -2 else ok = 0 end
  end
  if ok == 1 then
    redis.call('SET', KEYS[m], tonumber(expected) + 1)
    redis.call('SET', base .. ':model', meta)
  end
  for i = 1, n_out do
    local oid = field()
    local rec = field()
    if ok == 1 then redis.call('HSET', base .. ':outbox', oid, rec) end
  end
  for i = 1, n_sig do
    local sk = base .. ':sig:' .. field()
    local smeta = field()
    local recent = field()
    local has_ref = field()
    local ref = field()
    if ok == 1 then
      redis.call('SET', sk, smeta)
      redis.call('SET', sk .. ':recent', recent)
      if has_ref == '1' then redis.call('SET', sk .. ':ref', ref) end
    end
  end
  if ok == 1 and ver ~= '' then
    -- A model version's unit: enter it in the model's version index, and let it expire once
    -- a newer version exists (refreshed by every save while it still gets events).
    local first = tonumber(first_seen)
    redis.call('HSETNX', index, ver, first_seen)
    local latest = redis.call('GET', index .. ':latest')
    local lf = latest and tonumber(redis.call('HGET', index, latest) or '-1e300') or -1e300
    if latest == false or (latest ~= ver and first > lf) then
      redis.call('SET', index .. ':latest', ver)
      latest = ver
    end
    if latest ~= ver then
      local keys = {KEYS[m], base .. ':model', base .. ':outbox'}
      for _, sig in ipairs(cjson.decode(meta)['signals']) do
        local sk = base .. ':sig:' .. sig
        keys[#keys + 1] = sk
        keys[#keys + 1] = sk .. ':recent'
        keys[#keys + 1] = sk .. ':ref'
      end
      for _, key in ipairs(keys) do redis.call('PEXPIRE', key, ttl) end
    end
  end
  replies[m] = ok
end
return replies
"""

# The load of a group of models in one script call (same grouping as the save): each model's
# version key is declared (the group's slot), and its other keys are named from it. The reply is
# one string of fields (``_frame``'s format; an absent key reads as an empty field: no stored
# JSON or window is empty), per model: its meta; when it has one, its version, its outbox entry
# count and id/record pairs, then 3 per signal of its meta's ``signals`` (meta, recent window,
# reference). One string, not nested replies: redis-py spent tens of microseconds of client CPU
# on each reply element, and the two-round-trip load sent one command and got 11 replies per
# model of 3 signals. A meta the script's JSON decoder refuses gets '!' after it (the model is
# then loaded the slow way); once the reply holds about ARGV[1] bytes the rest of the group is
# left for another call (the reply starts with how many models it covers).
_LOAD_MODELS = """
local budget = tonumber(ARGV[1])
local parts = {}
local size = 0
local done = 0
local function put(s)
  if s == false then s = '' end
  parts[#parts + 1] = struct.pack('<I4', #s) .. s
  size = size + #s + 4
end
for m = 1, #KEYS do
  if m > 1 and size >= budget then break end
  local base = string.sub(KEYS[m], 1, -9)
  local meta = redis.call('GET', base .. ':model')
  put(meta)
  if meta ~= false then
    local ok, obj = pcall(cjson.decode, meta)
    local sigs = ok and type(obj) == 'table' and obj['signals']
    local n = 0
    if type(sigs) == 'table' then
      for _ in pairs(sigs) do n = n + 1 end
    end
    if type(sigs) ~= 'table' or n ~= #sigs then
      -- (not a JSON list: cjson makes objects and lists both tables)
      put('!')
    else
      put(redis.call('GET', KEYS[m]))
      local out = redis.call('HGETALL', base .. ':outbox')
      put(tostring(#out / 2))
      for i = 1, #out do put(out[i]) end
      for _, sig in ipairs(sigs) do
        local sk = base .. ':sig:' .. sig
        put(redis.call('GET', sk))
        put(redis.call('GET', sk .. ':recent'))
        put(redis.call('GET', sk .. ':ref'))
      end
    end
  end
  done = m
end
return struct.pack('<I4', done) .. table.concat(parts)
"""

# Bounds of one script call: Redis runs a script alone, so a group is kept small enough to run
# in a few milliseconds.
_GROUP_MODELS = 500
_GROUP_BYTES = 1 << 20


# Redis unreachable, or a Redis Cluster failing over (a master is down until its replica is
# promoted, docs/scaling.md: ConnectionError, then ClusterDownError / TRYAGAIN / a slot without
# a node). ``RedisClusterException`` (keys of one command in two slots) is not among them: it is
# a bug, not an outage, and it is not a RedisError either.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError, TryAgainError,
               SlotNotCoveredError)


class Scripts:
    """A store's Lua scripts, loaded (SCRIPT LOAD; on a cluster, on every master) before
    first use and again after a NOSCRIPT (Redis restarted, or a promoted replica, starts with
    an empty script cache), then queued as plain EVALSHA. (redis-py's own pipeline scripts
    cost a SCRIPT EXISTS round trip on every execute, and its cluster pipeline has none.)"""

    def __init__(self, client: Any, *sources: str) -> None:
        self.client = client
        self.scripts = [client.register_script(src) for src in sources]
        self.ready = False

    async def ensure(self) -> None:
        if self.ready:
            return
        try:
            for sc in self.scripts:
                await self.client.script_load(sc.script)
        except UNAVAILABLE as exc:
            raise TransientStoreError(f"redis unavailable while loading scripts: {exc}") from exc
        self.ready = True

    def queue(self, pipe: Any, keys: Sequence[Any], args: Sequence[Any], which: int = 0) -> None:
        """Queue one call of a script on a pipeline (after :meth:`ensure`). The raw command:
        redis-py's cluster pipeline refuses ``evalsha()``; a cluster routes it by its keys."""
        pipe.execute_command("EVALSHA", self.scripts[which].sha, len(keys), *keys, *args)


async def execute(pipe: Any, doing: str, refused: str | None = None,
                  scripts: Scripts | None = None) -> Any:
    """Run a pipeline. Redis unreachable: :class:`TransientStoreError` ("unavailable while
    <doing>"), so the adapter retries the batch. A command Redis refused is one too when
    ``refused`` names it, else it propagates. A NOSCRIPT marks ``scripts`` for reloading and
    raises :class:`ScriptsLostError`, which the worker retries at once (every script is safe to
    run again: fenced, or idempotent by position)."""
    try:
        return await pipe.execute()
    except UNAVAILABLE as exc:
        raise TransientStoreError(f"redis unavailable while {doing}: {exc}") from exc
    except NoScriptError as exc:
        if scripts is None:
            raise
        scripts.ready = False
        raise ScriptsLostError(f"redis lost its scripts while {doing} (restarted?); reloading "
                               f"them: {exc}") from exc
    except RedisError as exc:
        if refused is None:
            raise
        raise TransientStoreError(f"redis refused {refused}: {exc}") from exc


_WAIT_TIMEOUT_MS = 1000
_UNREPLICATED_RETRY_S = 30.0


class RedisStore:
    def __init__(self, url: str, prefix: str = "sm", *, client: Any = None,
                 wait_replicas: int = 1) -> None:
        self.prefix = prefix
        self.client = client or redis_client(url)
        self.cluster = is_cluster(self.client)
        self.scripts = Scripts(self.client, _SAVE_MODELS, _LOAD_MODELS)
        self.last_round_trip_s = 0.0
        self.epoch: str | None = None
        # Cluster only: the epoch marker seen per slot, the replicas a save waits for, and the
        # masters whose replica did not answer a WAIT (not waited for again until then).
        self.slot_epochs: dict[int, str] = {}
        self.wait_replicas = wait_replicas if self.cluster else 0
        self._unreplicated: dict[str, float] = {}
        self._starts: tuple[Any, float, list[int]] | None = None  # see _range_starts

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
        """The stored state of these units (those found): one script call per group of models
        (``_LOAD_MODELS``), all in one pipelined round trip (one more for a group whose reply
        reached ``_GROUP_BYTES`` before its end)."""
        ids = list(model_ids)
        if not ids:
            return {}
        await self.scripts.ensure()
        out: dict[str, ModelSnapshot] = {}
        slow: list[str] = []
        keys = [self._base(m) + ":version" for m in ids]
        todo = self._key_groups(keys)
        while todo:
            pipe = self.client.pipeline(transaction=False)
            for group in todo:
                self.scripts.queue(pipe, [keys[i] for i in group], [_GROUP_BYTES], which=1)
            replies = await execute(pipe, "loading state", refused="the state read",
                                    scripts=self.scripts)
            left = []
            for group, reply in zip(todo, replies, strict=True):
                done = _read_models([ids[i] for i in group], reply, out, slow)
                if done < len(group):
                    left.append(group[done:])
            todo = left
        if slow:
            out.update(await self._load_separately(slow))
        return out

    def _key_groups(self, keys: Sequence[str]) -> list[list[int]]:
        """Indexes of ``keys`` per script call: on a cluster one group per hash slot, else the
        whole list; cut at ``_GROUP_MODELS``."""
        if self.cluster:
            groups = list(group_by_slot(list(keys)).values())
        else:
            groups = [list(range(len(keys)))]
        return [g[i:i + _GROUP_MODELS] for g in groups for i in range(0, len(g), _GROUP_MODELS)]

    async def _load_separately(self, model_ids: Collection[str]) -> dict[str, ModelSnapshot]:
        """The load of 2026-12-07, two round trips of plain commands: for a model whose meta
        the load script could not read its signals from."""
        ids = list(model_ids)
        try:
            metas = await self._mget([self._model_key(m) for m in ids])
            found = [(m, _json(raw, m))
                     for m, raw in zip(ids, metas, strict=True) if raw is not None]
            if not found:
                return {}
            keys: list[str] = []
            for mid, meta in found:
                keys.append(self._base(mid) + ":version")
                for sig in meta["signals"]:
                    k = self._signal_key(mid, sig)
                    keys += (k, k + ":recent", k + ":ref")
            pipe = self.client.pipeline(transaction=False)
            for mid, _meta in found:
                pipe.hgetall(self._base(mid) + ":outbox")
            values, outboxes = await asyncio.gather(self._mget(keys), pipe.execute())
        except UNAVAILABLE as exc:
            raise TransientStoreError(f"redis unavailable while loading state: {exc}") from exc
        out: dict[str, ModelSnapshot] = {}
        i = 0
        for (mid, meta), outbox in zip(found, outboxes, strict=True):
            version = values[i]
            i += 1
            snap = ModelSnapshot(meta, revision=int(version or 0),
                                 outbox={k.decode(): v for k, v in (outbox or {}).items()})
            for _sig in meta["signals"]:
                raw_meta, recent, ref = values[i], values[i + 1], values[i + 2]
                i += 3
                if raw_meta is None:
                    continue  # signal created but never saved; starts fresh
                snap.signals.append(
                    SignalSnapshot(_json(raw_meta, mid), _floats(recent), _floats(ref)))
            out[mid] = snap
        return out

    async def _mget(self, keys: list[str]) -> list[Any]:
        """MGET; on a cluster one MGET per slot (a cross-slot MGET is refused), pipelined:
        each node gets its MGETs in one write, all nodes at once."""
        if not self.cluster:
            return list(await self.client.mget(keys))
        groups = group_by_slot(keys)
        pipe = self.client.pipeline(transaction=False)
        for idx in groups.values():
            # (redis-py blocks pipe.mget on a cluster, whatever the slots; one slot is fine)
            pipe.execute_command("MGET", *(keys[i] for i in idx))
        replies = await pipe.execute()
        out: list[Any] = [None] * len(keys)
        for idx, vals in zip(groups.values(), replies, strict=True):
            for i, v in zip(idx, vals, strict=True):
                out[i] = v
        return out

    def _queue_wait(self, pipe: Any, keys: Iterable[str]) -> list[str]:
        """Cluster: after the saves, one WAIT on each master written to, in the same
        pipeline (so on the same connection: WAIT counts that connection's writes). Returns
        the masters' names, in the order their WAIT replies come."""
        if not self.wait_replicas:
            return []
        now = time.monotonic()
        nodes: dict[str, Any] = {}
        cache = self.client.nodes_manager.slots_cache
        for k in keys:
            owners = cache.get(slot_of(k))  # [master, its replicas...]
            # A master without replicas has nothing to wait for.
            if owners and len(owners) > 1 and self._unreplicated.get(owners[0].name, 0.0) <= now:
                nodes.setdefault(owners[0].name, owners[0])
        for node in nodes.values():
            pipe.execute_command("WAIT", self.wait_replicas, _WAIT_TIMEOUT_MS, target_nodes=node)
        return list(nodes)

    async def save(self, deltas: Sequence[ModelDelta]) -> None:
        if not deltas:
            return
        await self.scripts.ensure()
        pipe = self.client.pipeline(transaction=False)
        groups = self._groups(deltas)
        for group in groups:
            keys: list[str] = []
            fields: list[bytes] = []
            for i in group:
                d = deltas[i]
                base = self._base(d.unit_id)
                keys.append(base + ":version")
                _save_fields(d, base, self._index(split_unit(d.unit_id)[0]), fields)
            self.scripts.queue(pipe, keys, [_frame(fields)])
        waited = self._queue_wait(pipe, (self._base(d.unit_id) for d in deltas))
        t0 = time.perf_counter()
        results = await execute(pipe, "saving state", refused="the state write",
                                scripts=self.scripts)
        self.last_round_trip_s = time.perf_counter() - t0
        replies, acks = results[:len(groups)], results[len(groups):]
        results = [0] * len(deltas)
        for group, reply in zip(groups, replies, strict=True):
            for i, r in zip(group, reply, strict=True):
                results[i] = int(r)
        for name, n in zip(waited, acks, strict=True):
            if int(n) < self.wait_replicas:
                # No replica has these writes yet: a failover now would lose them (the
                # version check then reports a state_reset). Do not wait on this master again
                # for a while: a master whose replica is down must not stall every batch.
                log.warning("redis master %s: %d of %d replicas confirmed the state save within "
                            "%d ms; not waiting for it for %.0f s", name, int(n),
                            self.wait_replicas, _WAIT_TIMEOUT_MS, _UNREPLICATED_RETRY_S)
                self._unreplicated[name] = time.monotonic() + _UNREPLICATED_RETRY_S
        fenced = [d.unit_id for d, r in zip(deltas, results, strict=True) if r != 1]
        if fenced:
            lost = any(r in (-1, -2) for r in results)
            raise StateFencedError(fenced, lost=lost)

    def _groups(self, deltas: Sequence[ModelDelta]) -> list[list[int]]:
        """The deltas (their indexes) of each script call: on a cluster those of one hash slot
        (a script touches one slot), else the batch in order; both cut at ``_GROUP_MODELS``
        models or about ``_GROUP_BYTES`` of windows."""
        by_slot: dict[int, list[int]] = {}
        for i, d in enumerate(deltas):
            slot = slot_of(self._base(d.unit_id)) if self.cluster else 0
            by_slot.setdefault(slot, []).append(i)
        groups: list[list[int]] = []
        for idx in by_slot.values():
            cur: list[int] = []
            size = 0
            for i in idx:
                n = sum(8 * (len(s.recent) + len(s.reference or ())) for s in deltas[i].signals)
                if cur and (len(cur) >= _GROUP_MODELS or size + n > _GROUP_BYTES):
                    groups.append(cur)
                    cur, size = [], 0
                cur.append(i)
                size += n
            groups.append(cur)
        return groups

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
        gone, or replaced, knows Redis lost its data since it last looked.

        On a Redis Cluster a master can lose its slots' data alone, so there is one marker per
        master: in the first slot of each slot range a master serves (a key that moves with
        its slot when the cluster is resharded). A marker this worker saw that is gone or
        replaced means that master lost its data."""
        if self.cluster:
            return await self._check_slot_epochs()
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

    def _range_starts(self) -> list[int]:
        """The first slot of each run of slots served by one master, from the client's slot
        map (redis-py replaces it after a failover and patches it on MOVED). Scanning it takes
        about 5 ms, so the answer is kept for 30 s or until the map is replaced."""
        cache = self.client.nodes_manager.slots_cache
        now = time.monotonic()
        kept = self._starts
        if kept is not None and kept[0] is cache and now < kept[1] and kept[2]:
            return list(kept[2])
        starts, prev = [], None
        for s in range(SLOTS):
            nodes = cache.get(s)
            name = nodes[0].name if nodes else None
            if name is not None and name != prev:
                starts.append(s)
            prev = name
        self._starts = (cache, now + 30.0, starts)
        return list(starts)

    async def _check_slot_epochs(self) -> bool:
        try:
            await self.client.initialize()  # no-op once the slot map is known
            slots = self._range_starts()
            keys = [f"{self.prefix}:{slot_tag(s)}:epoch" for s in slots]
            current = await self._mget(keys)
            missing = [i for i, v in enumerate(current) if v is None]
            if missing:
                pipe = self.client.pipeline(transaction=False)
                for i in missing:
                    pipe.set(keys[i], uuid.uuid4().hex, nx=True)
                await pipe.execute()
                for i, v in zip(missing, await self._mget([keys[i] for i in missing]),
                                strict=True):
                    current[i] = v
        except UNAVAILABLE as exc:
            raise TransientStoreError(f"redis unavailable while checking the epoch: {exc}") from exc
        intact = True
        for s, v in zip(slots, current, strict=True):
            now = v.decode() if v is not None else ""
            seen = self.slot_epochs.get(s)
            if seen is not None and seen != now:
                log.error("the epoch marker of Redis Cluster slot %d is gone or replaced: its "
                          "master lost its data", s)
                intact = False
            self.slot_epochs[s] = now
        return intact

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.client.aclose(), 5)
        except Exception:  # closing is best effort
            log.debug("redis close failed", exc_info=True)


def _save_fields(d: ModelDelta, base: str, index: str, fields: list[bytes]) -> None:
    """Append one model's fields to a call of ``_SAVE_MODELS`` (their order there)."""
    ver = split_unit(d.unit_id)[1]
    ttl_ms = max(1, int((d.ttl_seconds or 0) * 1000))
    fields += (str(d.revision).encode(), _dumps(d.meta), (ver or "").encode(),
               repr(float(d.first_seen or 0.0)).encode(), str(ttl_ms).encode(), base.encode(),
               index.encode(), str(len(d.outbox)).encode(), str(len(d.signals)).encode())
    for oid, rec in d.outbox.items():
        fields += (oid.encode(), rec)
    for s in d.signals:
        ref = s.reference
        fields += (s.signal.encode(), _dumps(s.meta), _pack(s.recent),
                   b"0" if ref is None else b"1", b"" if ref is None else _pack(ref))


def _frame(fields: Sequence[bytes]) -> bytes:
    """Fields as one string: each a 4-byte little-endian length, then its bytes.

    >>> _frame([b"ab", b""])
    b'\\x02\\x00\\x00\\x00ab\\x00\\x00\\x00\\x00'
    """
    out = bytearray()
    for f in fields:
        out += len(f).to_bytes(4, "little")
        out += f
    return bytes(out)


def _read_models(ids: Sequence[str], reply: bytes, out: dict[str, ModelSnapshot],
                 slow: list[str]) -> int:
    """Read a reply of ``_LOAD_MODELS`` for ``ids`` into ``out`` (models found), ``slow``
    (models to load the slow way); returns how many of ``ids`` it covers."""
    (done,) = _U32.unpack_from(reply, 0)
    fields = []
    pos, end = 4, len(reply)
    unpack = _U32.unpack_from
    while pos < end:
        (n,) = unpack(reply, pos)
        pos += 4
        fields.append(reply[pos:pos + n])
        pos += n
    if pos != end:
        raise StateCorruptError(f"a state load reply ends inside a field ({end} bytes)")
    it = iter(fields)
    field = it.__next__
    try:
        for mid in ids[:done]:
            raw = field()
            if not raw:
                continue  # not stored
            meta = _json(raw, mid)
            version = field()
            if version == b"!":
                slow.append(mid)
                continue
            outbox = {}
            for _ in range(int(field())):
                oid = field().decode()
                outbox[oid] = field()
            snap = ModelSnapshot(meta, revision=int(version or b"0"), outbox=outbox)
            for _sig in meta["signals"]:
                raw_meta, recent, ref = field(), field(), field()
                if not raw_meta:
                    continue  # signal created but never saved; starts fresh
                snap.signals.append(SignalSnapshot(_json(raw_meta, mid), _floats(recent),
                                                   _floats(ref)))
            out[mid] = snap
    except StopIteration:
        raise StateCorruptError("a state load reply has fewer fields than its models") from None
    if next(it, None) is not None:
        raise StateCorruptError("a state load reply has more fields than its models")
    return int(done)


_U32 = struct.Struct("<I")


def _dumps(meta: dict[str, Any]) -> bytes:
    """A checkpoint as JSON, non-finite floats included. orjson writes inf and NaN as null,
    which would not restore: a reference holding 1e308 has an infinite mean, and a worker that
    reloaded that model (a restart, a rebalance, a cache eviction) could no longer run it. Such
    a checkpoint is written with the standard library's NaN/Infinity tokens instead (read back
    by :func:`_json`), so a reloaded model goes on exactly as one that stayed in memory.
    Read back, the JSON equals the checkpoint unless a null stood for one (or a tuple became a
    list): that comparison runs in C, the walk in Python only when they differ (the walk alone
    cost 2% of the worker's CPU on checkpoints that hold a None).

    >>> _json(_dumps({"m": float("inf"), "s": [float("nan")], "n": None}), "m")
    {'m': inf, 's': [nan], 'n': None}
    """
    raw = orjson.dumps(meta)
    if b"null" in raw and orjson.loads(raw) != meta and _walk_non_finite(meta):
        return json.dumps(meta, separators=(",", ":")).encode()
    return raw


def _walk_non_finite(obj: Any) -> bool:
    if type(obj) is float:
        return obj - obj != 0.0
    if isinstance(obj, dict):
        return any(_walk_non_finite(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_walk_non_finite(v) for v in obj)
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
