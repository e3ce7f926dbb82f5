"""Predictions waiting for their delayed labels, in Redis (the store side of core/labels.py).

NOT WIRED YET: no adapter calls it so far (see core/labels.py for the plan). Key layout, all
under the model's hash tag so one model's keys share a Redis Cluster slot::

    p:{m}:pred:<bucket>     HASH: event_id -> JSON [prediction, event time]; a bucket is
                            `bucket_seconds` of event time; expires (PEXPIRE) as a safety net
    p:{m}:lbl:<bucket>      HASH: event_id -> JSON [label, label time]: labels before predictions
    p:{m}:pred:buckets      ZSET of the live prediction buckets (score = bucket)
    p:{m}:lbl:buckets       ZSET of the live early-label buckets
    p:{m}:labels:stats      HASH: predictions, labels, labels_before_prediction,
                            expired_predictions, unmatched_labels, clock (latest event time)

A batch is one pipelined round trip: one Lua script call per model with all its operations in
order in one JSON argument. The script advances the model's event-time clock, drops buckets
older than the TTL (counting what they still held as expired predictions / unmatched labels),
and joins: a prediction takes its waiting label, a label its waiting prediction; what finds no
partner waits in the current bucket. Bucket keys are built inside the script from the model's
prefix (same slot thanks to the hash tag, but not declared in KEYS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import TransientStoreError
from .base import model_tag

__all__ = ["LabelOp", "RedisLabelStore", "StoredPair"]

# KEYS: stats hash, prediction buckets zset, label buckets zset.
# ARGV: ops JSON [[kind "p"|"l", event_id, payload, t], ...], key prefix "p:{m}:", ttl seconds,
# bucket seconds, safety expiry in ms. Returns JSON [[event_id, prediction payload,
# label payload, label_first 0|1], ...].
_APPLY = """
local ops = cjson.decode(ARGV[1])
local prefix = ARGV[2]
local ttl = tonumber(ARGV[3])
local bs = tonumber(ARGV[4])
local px = tonumber(ARGV[5])
local stats, pz, lz = KEYS[1], KEYS[2], KEYS[3]
local clock = tonumber(redis.call('HGET', stats, 'clock') or '-1e300')
local out = {}
local function expire(now)
  local oldest = math.floor((now - ttl) / bs)
  for _, z in ipairs({{pz, 'pred:', 'expired_predictions'}, {lz, 'lbl:', 'unmatched_labels'}}) do
    local olds = redis.call('ZRANGEBYSCORE', z[1], '-inf', '(' .. oldest)
    for _, b in ipairs(olds) do
      local k = prefix .. z[2] .. b
      local n = redis.call('HLEN', k)
      if n > 0 then redis.call('HINCRBY', stats, z[3], n) end
      redis.call('DEL', k)
      redis.call('ZREM', z[1], b)
    end
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
for _, op in ipairs(ops) do
  local kind, eid, payload, t = op[1], op[2], op[3], op[4]
  if t > clock then
    clock = t
    expire(t)
  end
  local b = math.floor(t / bs)
  if kind == 'p' then
    redis.call('HINCRBY', stats, 'predictions', 1)
    local l = take(lz, 'lbl:', eid)
    if l then
      redis.call('HINCRBY', stats, 'labels_before_prediction', 1)
      out[#out + 1] = {eid, payload, l, 1}
    else
      put(pz, 'pred:', b, eid, payload)
    end
  else
    redis.call('HINCRBY', stats, 'labels', 1)
    local p = take(pz, 'pred:', eid)
    if p then
      out[#out + 1] = {eid, p, payload, 0}
    else
      put(lz, 'lbl:', b, eid, payload)
    end
  end
end
redis.call('HSET', stats, 'clock', string.format('%.3f', clock))
if #out == 0 then return '[]' end
return cjson.encode(out)
"""


@dataclass(frozen=True, slots=True)
class LabelOp:
    kind: Literal["prediction", "label"]
    model_id: str
    event_id: str
    value: Any
    t: float  # event time


@dataclass(frozen=True, slots=True)
class StoredPair:
    model_id: str
    event_id: str
    prediction: Any
    prediction_time: float
    label: Any
    label_time: float
    label_first: bool  # the label arrived before its prediction


class RedisLabelStore:
    def __init__(self, client: Any, prefix: str, ttl_seconds: float,
                 bucket_seconds: float) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.bucket_seconds = bucket_seconds
        self._script = client.register_script(_APPLY)

    def _base(self, model_id: str) -> str:
        return f"{self.prefix}:{model_tag(model_id)}:"

    async def apply(self, ops: Sequence[LabelOp]) -> list[StoredPair]:
        """Apply predictions and labels in order (per model); the pairs they joined."""
        by_model: dict[str, list[list[Any]]] = {}
        for op in ops:
            by_model.setdefault(op.model_id, []).append(
                ["p" if op.kind == "prediction" else "l", op.event_id,
                 orjson.dumps([op.value, op.t]).decode(), op.t])
        if not by_model:
            return []
        px = max(1, math.ceil((self.ttl_seconds + 2 * self.bucket_seconds) * 1000))
        pipe = self.client.pipeline(transaction=False)
        groups = list(by_model.items())
        for mid, mops in groups:
            base = self._base(mid)
            await self._script(keys=[base + "labels:stats", base + "pred:buckets",
                                     base + "lbl:buckets"],
                               args=[orjson.dumps(mops), base, self.ttl_seconds,
                                     self.bucket_seconds, px], client=pipe)
        try:
            replies = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise TransientStoreError(f"redis unavailable while joining labels: {exc}") from exc
        except RedisError as exc:
            raise TransientStoreError(f"redis refused the label join: {exc}") from exc
        out = []
        for (mid, _), reply in zip(groups, replies, strict=True):
            for eid, p, lab, first in orjson.loads(reply):
                pv, pt = orjson.loads(p)
                lv, lt = orjson.loads(lab)
                out.append(StoredPair(mid, eid, pv, float(pt), lv, float(lt), bool(first)))
        return out

    async def stats(self, model_id: str) -> dict[str, float]:
        raw = await self.client.hgetall(self._base(model_id) + "labels:stats")
        return {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()}
