"""Predictions waiting for their delayed labels, in Redis: the store side of core/label_join.py.

The algorithm is :class:`~stream_monitor.core.label_join.LabelBook`'s, run by one Lua script per
model and batch (all pipelined in one round trip); a contract test runs both on the same
operations. Key layout, all under the model's hash tag so one model's keys share a Redis
Cluster slot::

    p:{m}:pred:<bucket>       HASH: event_id -> JSON [prediction, event time, version]
    p:{m}:lbl:<bucket>        HASH: event_id -> JSON [label, label time]: labels that came first
    p:{m}:pred:buckets        ZSET of the live prediction buckets (score = bucket)
    p:{m}:lbl:buckets         ZSET of the live early-label buckets
    p:{m}:labels:stats        HASH: counters (core.label_join.STAT_FIELDS), pred_clock and
                              label_clock (latest event times), seq:<version key>
    p:{m}:labels:applied      HASH: "topic:partition" -> last offset applied (the watermark)
    p:{m}:pairs:<version key> HASH: seq -> joined pair, until the model state consumed it
    p:{m}:pairs:index         SET of the version keys that have a pair log

A bucket is ``bucket_seconds`` of event time. Buckets and logs also carry a PEXPIRE safety net
(TTL plus two buckets, in processing time) so that a model that stops getting events does not
keep its waiting predictions forever; the counted expiry is the event-time one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..core.label_join import STAT_FIELDS, JoinedPair, LabelBook, LabelOp, LabelStats, version_key
from .base import model_tag
from .redis import Scripts, execute

__all__ = ["LabelStore", "MemoryLabelStore", "RedisLabelStore"]

# KEYS: stats hash, prediction bucket zset, label bucket zset, watermark hash, pair log index.
# ARGV: ops JSON [[kind "p"|"l", event_id, payload, t, "topic:partition", offset, version key,
#       position JSON], ...], key prefix "p:{m}:", ttl seconds, bucket seconds, safety expiry ms,
#       cursors JSON {version key: last consumed seq}.
# Returns JSON [[[version key, seq, entry], ...], [counter values in STAT_FIELDS order]] where
# entry is JSON [event_id, prediction payload, label payload, label_first 0|1, position JSON].
_APPLY = """
local ops = cjson.decode(ARGV[1])
local prefix = ARGV[2]
local ttl = tonumber(ARGV[3])
local bs = tonumber(ARGV[4])
local px = tonumber(ARGV[5])
local cursors = cjson.decode(ARGV[6])
local stats, pz, lz, applied, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
for vk, cur in pairs(cursors) do
  local log = prefix .. 'pairs:' .. vk
  for _, seq in ipairs(redis.call('HKEYS', log)) do
    if tonumber(seq) <= cur then redis.call('HDEL', log, seq) end
  end
end
local pclock = tonumber(redis.call('HGET', stats, 'pred_clock') or '-1e300')
local lclock = tonumber(redis.call('HGET', stats, 'label_clock') or '-1e300')
-- Drop the buckets of one kind older than the TTL before `now`, counting what they held.
local function expire(z, kind, counter, now)
  local oldest = math.floor((now - ttl) / bs)
  local olds = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. oldest)
  for _, b in ipairs(olds) do
    local k = prefix .. kind .. b
    local n = redis.call('HLEN', k)
    if n > 0 then redis.call('HINCRBY', stats, counter, n) end
    redis.call('DEL', k)
    redis.call('ZREM', z, b)
  end
end
local function take(z, kind, eid)
  for _, b in ipairs(redis.call('ZRANGE', z, 0, -1)) do
    local k = prefix .. kind .. b
    local v = redis.call('HGET', k, eid)
    if v then
      redis.call('HDEL', k, eid)
      return v
    end
  end
  return nil
end
local function put(z, kind, b, eid, payload)
  local k = prefix .. kind .. b
  redis.call('HSET', k, eid, payload)
  redis.call('ZADD', z, b, b)
  redis.call('PEXPIRE', k, px)
end
local function log(vk, eid, p, l, first, pos, delay)
  local seq = redis.call('HINCRBY', stats, 'seq:' .. vk, 1)
  local k = prefix .. 'pairs:' .. vk
  redis.call('HSET', k, seq, cjson.encode({eid, p, l, first, pos}))
  redis.call('PEXPIRE', k, px)
  redis.call('SADD', index, vk)
  redis.call('HINCRBY', stats, 'joined', 1)
  if delay < 0 then delay = 0 end
  redis.call('HINCRBYFLOAT', stats, 'delay_sum', delay)
  local mx = tonumber(redis.call('HGET', stats, 'delay_max') or '0')
  if delay > mx then redis.call('HSET', stats, 'delay_max', string.format('%.17g', delay)) end
end
for _, op in ipairs(ops) do
  local kind, eid, payload, t, tp = op[1], op[2], op[3], op[4], op[5]
  local off, vk, pos = op[6], op[7], op[8]
  local last = tonumber(redis.call('HGET', applied, tp) or '-1')
  if off > last then
    redis.call('HSET', applied, tp, string.format('%.0f', off))
    if kind == 'p' and t > pclock then
      pclock = t
      expire(lz, 'lbl:', 'unmatched_labels', t)
    elseif kind == 'l' and t > lclock then
      lclock = t
      expire(pz, 'pred:', 'expired_predictions', t)
    end
    local b = math.floor(t / bs)
    if kind == 'p' then
      redis.call('HINCRBY', stats, 'predictions', 1)
      local l = take(lz, 'lbl:', eid)
      if l then
        redis.call('HINCRBY', stats, 'labels_before_prediction', 1)
        local lt = cjson.decode(l)[2]
        log(vk, eid, payload, l, 1, pos, lt - t)
      else
        put(pz, 'pred:', b, eid, payload)
      end
    else
      redis.call('HINCRBY', stats, 'labels', 1)
      local p = take(pz, 'pred:', eid)
      if p then
        local pd = cjson.decode(p)
        local pvk = ''
        if pd[3] ~= nil and pd[3] ~= cjson.null then pvk = 'v:' .. pd[3] end
        log(pvk, eid, p, payload, 0, pos, t - pd[2])
      else
        put(lz, 'lbl:', b, eid, payload)
      end
    end
  end
end
redis.call('HSET', stats, 'pred_clock', string.format('%.17g', pclock),
  'label_clock', string.format('%.17g', lclock))
local out = {}
for _, vk in ipairs(redis.call('SMEMBERS', index)) do
  local flat = redis.call('HGETALL', prefix .. 'pairs:' .. vk)
  for i = 1, #flat, 2 do out[#out + 1] = {vk, tonumber(flat[i]), flat[i + 1]} end
end
local counters = redis.call('HMGET', stats, 'predictions', 'labels', 'joined',
  'labels_before_prediction', 'unmatched_labels', 'expired_predictions', 'delay_sum', 'delay_max')
for i = 1, #counters do if not counters[i] then counters[i] = '0' end end
return cjson.encode({out, counters})
"""


class LabelStore:
    """Where the label join lives (Redis for the worker, memory for replay)."""

    async def apply(self, ops: Sequence[LabelOp], rules: Mapping[str, tuple[float, float]],
                    cursors: Mapping[str, Mapping[str, int]],
                    ) -> tuple[list[JoinedPair], dict[str, LabelStats]]:
        """Apply the batch's operations (in order per model); every unconsumed pair of the
        models touched, and their counters. ``rules``: model id -> (ttl, bucket seconds);
        ``cursors``: model id -> version key -> last consumed seq."""
        raise NotImplementedError


class MemoryLabelStore(LabelStore):
    def __init__(self) -> None:
        self.books: dict[str, LabelBook] = {}

    async def apply(self, ops: Sequence[LabelOp], rules: Mapping[str, tuple[float, float]],
                    cursors: Mapping[str, Mapping[str, int]],
                    ) -> tuple[list[JoinedPair], dict[str, LabelStats]]:
        pairs: list[JoinedPair] = []
        stats: dict[str, LabelStats] = {}
        for mid, mops in _by_model(ops).items():
            book = self.books.setdefault(mid, LabelBook(mid))
            ttl, bs = rules[mid]
            pairs += book.apply(mops, ttl_seconds=ttl, bucket_seconds=bs,
                                cursors=cursors.get(mid, {}))
            stats[mid] = dataclasses.replace(book.stats)  # a copy: the book keeps counting
        return pairs, stats


class RedisLabelStore(LabelStore):
    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.scripts = Scripts(client, _APPLY)

    def _base(self, model_id: str) -> str:
        return f"{self.prefix}:{model_tag(model_id)}:"

    async def apply(self, ops: Sequence[LabelOp], rules: Mapping[str, tuple[float, float]],
                    cursors: Mapping[str, Mapping[str, int]],
                    ) -> tuple[list[JoinedPair], dict[str, LabelStats]]:
        groups = list(_by_model(ops).items())
        if not groups:
            return [], {}
        await self.scripts.ensure()
        pipe = self.client.pipeline(transaction=False)
        for mid, mops in groups:
            base = self._base(mid)
            ttl, bs = rules[mid]
            px = max(1, math.ceil((ttl + 2 * bs) * 1000))
            enc = [["p" if op.kind == "prediction" else "l", op.event_id,
                    orjson.dumps(_prediction_payload(op) if op.kind == "prediction"
                                 else [op.value, op.t]).decode(),
                    op.t, f"{op.topic}:{op.partition}", op.offset,
                    version_key(op.version) if op.kind == "prediction" else "",
                    orjson.dumps([op.topic, op.partition, op.offset]).decode()] for op in mops]
            self.scripts.queue(
                pipe,
                [base + "labels:stats", base + "pred:buckets", base + "lbl:buckets",
                 base + "labels:applied", base + "pairs:index"],
                [orjson.dumps(enc), base, ttl, bs, px, orjson.dumps(dict(cursors.get(mid, {})))])
        replies = await execute(pipe, "joining labels", refused="the label join",
                                scripts=self.scripts)
        pairs: list[JoinedPair] = []
        stats: dict[str, LabelStats] = {}
        for (mid, _), reply in zip(groups, replies, strict=True):
            logged, counters = orjson.loads(reply)
            for _vk, seq, entry in sorted(logged, key=lambda x: (x[0], x[1])):
                eid, p, lab, first, pos = orjson.loads(entry)
                # (a confidence when it had one, then its probabilities when it had them)
                pv, pt, version, *conf = orjson.loads(p)
                lv, lt = orjson.loads(lab)
                topic, partition, offset = orjson.loads(pos)
                pairs.append(JoinedPair(int(seq), mid, version, eid, pv, float(pt), lv, float(lt),
                                        bool(first), topic, int(partition), int(offset),
                                        float(conf[0]) if conf else None,
                                        tuple((str(c), float(v)) for c, v in conf[1])
                                        if len(conf) > 1 else None))
            stats[mid] = LabelStats.from_mapping(dict(zip(STAT_FIELDS, counters, strict=True)))
        return pairs, stats


def _prediction_payload(op: LabelOp) -> list[Any]:
    """A waiting prediction as stored: [value, time, version], and its confidence when it has
    one (core/probabilities.py), then its probabilities when it carries them
    (core/performance.py); a shorter payload reads as before."""
    if op.confidence is None:
        return [op.value, op.t, op.version]
    if op.probabilities is None:
        return [op.value, op.t, op.version, op.confidence]
    return [op.value, op.t, op.version, op.confidence, [list(p) for p in op.probabilities]]


def _by_model(ops: Sequence[LabelOp]) -> dict[str, list[LabelOp]]:
    out: dict[str, list[LabelOp]] = {}
    for op in ops:
        out.setdefault(op.model_id, []).append(op)
    return out

