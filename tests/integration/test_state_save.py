"""The grouped state save (state/redis.py, one script call per group of models) writes what the
one-call-per-model save of 2026-11 wrote, key for key, and gives the same fencing answers; a store
written by that save loads with the current one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream_monitor.contracts.units import split_unit, unit_id
from stream_monitor.state.base import ModelDelta, SignalDelta, StateFencedError
from stream_monitor.state.redis import RedisStore, _dumps, _pack

pytestmark = pytest.mark.integration

# The save script of 2026-11 (one call per model, every key and value a command argument),
# kept here as the reference the grouped save is compared with.
_ONE_MODEL_SAVE = """
local v = redis.call('GET', KEYS[1])
local expected = ARGV[1]
if v == false then
  if expected ~= '0' then return -1 end
elseif v ~= expected then
  -- Versions only move forward: one behind what this worker saved means the store lost
  -- acknowledged writes (a failover to a replica that had not got them yet).
  if tonumber(v) < tonumber(expected) then return -2 end
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


def _one_model_save(store: RedisStore, d: ModelDelta) -> tuple[list[Any], list[Any]]:
    """The keys and arguments the 2026-11 save sent for one delta."""
    base = unit_key_of(store, d.unit_id)
    mid, ver = split_unit(d.unit_id)
    index = store._index(mid)
    keys: list[Any] = [base + ":version", base + ":model", base + ":outbox", index,
                       index + ":latest"]
    ttl_ms = max(1, int((d.ttl_seconds or 0) * 1000))
    args: list[Any] = [str(d.revision), _dumps(d.meta), ver or "",
                       repr(float(d.first_seen or 0.0)), ttl_ms, base, len(d.outbox)]
    for oid, rec in d.outbox.items():
        args += [oid, rec]
    for s in d.signals:
        k = f"{base}:sig:{s.signal}"
        keys += [k, k + ":recent", k + ":ref"]
        ref = s.reference
        args += [_dumps(s.meta), _pack(s.recent), "0" if ref is None else "1",
                 b"" if ref is None else _pack(ref)]
    return keys, args


def unit_key_of(store: RedisStore, unit: str) -> str:
    return store._base(unit)


def _deltas(revision: int) -> list[ModelDelta]:
    out = []
    for i in range(40):
        sigs = [SignalDelta(f"f{j}", {"kind": "numeric", "n": i + j, "x": [1.5, float(j)]},
                            [float(i), 2.0 + j], [0.25 * j] * (i % 3) if j % 2 else None)
                for j in range(i % 4)]
        out.append(ModelDelta(f"m{i}", {"signals": [s.signal for s in sigs], "w": i}, sigs,
                              revision, {f"o{i}": b"rec-%d" % i} if i % 5 == 0 else {}))
    for i, ver in enumerate(("1", "2", "3")):  # versions of one model: index, latest, expiry
        sig = SignalDelta("p", {"v": ver}, [1.0], [2.0])
        out.append(ModelDelta(unit_id("vm", ver), {"signals": ["p"]}, [sig], revision, {},
                              first_seen=100.0 + i, ttl_seconds=60.0))
    return out


async def _dump(client: Any, prefix: str) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    async for k in client.scan_iter(match=f"{prefix}:*"):
        kind = (await client.type(k)).decode()
        val = await (client.hgetall(k) if kind == "hash" else client.get(k))
        ttl = await client.pttl(k)
        out[k[len(prefix):]] = (val, ttl > 0)
    return out


async def _save_one_by_one(store: RedisStore, deltas: list[ModelDelta]) -> list[int]:
    sha = await store.client.script_load(_ONE_MODEL_SAVE)
    replies = []
    for d in deltas:
        keys, args = _one_model_save(store, d)
        replies.append(int(await store.client.evalsha(sha, len(keys), *keys, *args)))
    return replies


def test_grouped_save_writes_what_the_per_model_save_wrote(redis_url, unique) -> None:
    async def run() -> None:
        old = RedisStore(redis_url, prefix=unique.prefix + "-old")
        new = RedisStore(redis_url, prefix=unique.prefix + "-new")
        try:
            for rev in (0, 1):
                assert set(await _save_one_by_one(old, _deltas(rev))) == {1}
                await new.save(_deltas(rev))
            a = await _dump(old.client, old.prefix)
            b = await _dump(new.client, new.prefix)
            assert a == b and len(a) > 100
            # Fencing: a stale revision (0), a model the store never had expecting state (-1)
            # and a revision ahead of the store's (-2) are refused, the rest written.
            probe = [ModelDelta("m1", {"signals": []}, [], 1),    # stale: stored is 2
                     ModelDelta("m2", {"signals": [], "z": 1}, [], 2),
                     ModelDelta("ghost", {"signals": []}, [], 4),
                     ModelDelta("m3", {"signals": []}, [], 7)]
            want = await _save_one_by_one(old, probe)
            assert want == [0, 1, -1, -2]
            with pytest.raises(StateFencedError) as e:
                await new.save(probe)
            assert e.value.model_ids == ["m1", "ghost", "m3"] and e.value.lost
            assert await _dump(old.client, old.prefix) == await _dump(new.client, new.prefix)
            # A store written one model at a time loads with the current store (``old`` is
            # a current RedisStore reading what the 2026-11 script wrote).
            ids = [d.unit_id for d in _deltas(0)]
            loaded_old = await old.load(ids)
            loaded_new = await new.load(ids)
            assert loaded_old.keys() == loaded_new.keys() and len(loaded_new) == len(ids)
            for k in ids:
                x, y = loaded_old[k], loaded_new[k]
                assert (x.meta, x.revision, x.outbox) == (y.meta, y.revision, y.outbox)
                assert [(s.meta, s.recent, s.reference) for s in x.signals] == \
                    [(s.meta, s.recent, s.reference) for s in y.signals]
        finally:
            for st in (old, new):
                keys = [k async for k in st.client.scan_iter(match=f"{st.prefix}:*")]
                if keys:
                    await st.client.delete(*keys)
                await st.close()

    asyncio.run(run())


def test_a_group_is_cut_by_size(redis_url, unique, monkeypatch) -> None:
    """More models than one call takes: several calls, same outcome."""
    import stream_monitor.state.redis as rs

    monkeypatch.setattr(rs, "_GROUP_MODELS", 7)

    async def run() -> None:
        store = RedisStore(redis_url, prefix=unique.prefix)
        try:
            deltas = _deltas(0)
            assert len(store._groups(deltas)) == -(-len(deltas) // 7)
            await store.save(deltas)
            loaded = await store.load([d.unit_id for d in deltas])
            assert {k: v.revision for k, v in loaded.items()} == {d.unit_id: 1 for d in deltas}
        finally:
            keys = [k async for k in store.client.scan_iter(match=f"{store.prefix}:*")]
            if keys:
                await store.client.delete(*keys)
            await store.close()

    asyncio.run(run())


def test_grouped_load_reads_what_the_two_round_trip_load_read(redis_url, unique,
                                                              monkeypatch) -> None:
    """The load script (one call per group of models, one framed reply) reads the same
    snapshots as the load of 2026-12-07 (``_load_separately``: an MGET of the metas, then one
    of every window and version with an HGETALL per outbox), including a signal listed but never
    saved, a checkpoint with non-finite floats, a meta whose ``signals`` the script cannot
    read (loaded the old way), models never stored, and replies cut by size into more rounds."""
    import stream_monitor.state.redis as rs

    async def run() -> None:
        store = RedisStore(redis_url, prefix=unique.prefix)
        try:
            deltas = _deltas(0)
            deltas.append(ModelDelta("nan", {"signals": ["a", "never"], "x": float("inf")},
                                     [SignalDelta("a", {"m": float("nan"), "s": [float("-inf")]},
                                                  [1.0], [2.0, 3.0])], 0, {"o": b"\x00\xff"}))
            deltas.append(ModelDelta("odd", {"signals": {"a": 1}}, [
                SignalDelta("a", {"k": 1}, [4.0], None)], 0, {}))
            await store.save(deltas)
            await store.save(_deltas(1))  # revisions 2 for some
            ids = [d.unit_id for d in deltas] + ["never-stored", "m1"]

            def flat(snaps: dict[str, Any]) -> dict[str, Any]:
                return {k: (v.meta.keys(), _dumps(v.meta), v.revision, v.outbox,
                            [(_dumps(s.meta), s.recent, s.reference) for s in v.signals])
                        for k, v in snaps.items()}

            want = flat(await store._load_separately(ids))
            assert len(want) == len(deltas) and want["nan"][4][0][0].count(b"NaN") == 1
            assert flat(await store.load(ids)) == want
            calls: list[int] = []
            real = rs._read_models

            def counted(*a: Any) -> int:
                calls.append(1)
                return real(*a)

            monkeypatch.setattr(rs, "_read_models", counted)
            monkeypatch.setattr(rs, "_GROUP_BYTES", 300)  # a few models a reply: more rounds
            assert flat(await store.load(ids)) == want
            assert len(calls) > 5
            monkeypatch.setattr(rs, "_GROUP_MODELS", 4)
            assert flat(await store.load(ids)) == want
            assert await store.load(["never-stored"]) == {} and await store.load([]) == {}
        finally:
            keys = [k async for k in store.client.scan_iter(match=f"{store.prefix}:*")]
            if keys:
                await store.client.delete(*keys)
            await store.close()

    asyncio.run(run())
