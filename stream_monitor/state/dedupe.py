"""Event-id claims for the duplicate rule (``quality.duplicates``), in memory or in Redis.

A *claim* ties a (model_id, event_id) to the position of the record that carries it,
``topic:partition:offset``. Asking again for the same id answers:

* ``None`` when the id was free (it is now claimed by this record), or when it is claimed by
  **this same position**: a redelivery of the same Kafka record (after a crash, a rebalance, or
  a retried batch) is not a duplicate of itself;
* the claiming position, when another record claimed the id first: a duplicate.

Claims live in time buckets of ``window_seconds`` (processing time): an id is looked up in the
current and the previous bucket and written to the current one, so it is remembered for at
least the window and less than two. In Redis a bucket is one hash per model, under the model's
hash tag (all of a model's keys share its Redis Cluster slot)::

    p:{m}:dedupe:<bucket>       HASH: event_id -> claiming position; expires after 2 windows

A batch costs one round trip: one Lua script call per model of the batch, pipelined, with the
model's two bucket keys declared and all its (event_id, position) pairs in one JSON argument
(per-argument encoding in redis-py cost ~4 us an argument: as much as half the core's work per
event). The script reads and writes atomically, so two records of the same batch with one id
come out in order: the first claims, the second is the duplicate.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from ..core.gate import Claim
from .base import model_tag
from .redis import Scripts, execute

__all__ = ["DedupeStore", "MemoryDedupe", "RedisDedupe", "bucket_of"]

_MAX_ID = 200  # longer event ids are stored hashed: fields stay short whatever producers send


class DedupeStore(Protocol):
    """Where event-id claims live for the duplicate window."""

    async def claim(self, claims: Sequence[Claim], window_seconds: float,
                    now: float) -> list[str | None]:
        """Claim each id, in order. Per claim: None (claimed now, or already by this same
        position), or the position that claimed the id first (a duplicate). Raises
        TransientStoreError when the store cannot be reached (retry the batch)."""
        ...


def bucket_of(now: float, window_seconds: float) -> int:
    """The time bucket of a processing time: claims are kept for this bucket and the next.

    >>> bucket_of(1_000.0, 600), bucket_of(1_199.9, 600), bucket_of(1_200.0, 600)
    (1, 1, 2)
    """
    return math.floor(now / window_seconds)


def _field(event_id: str) -> str:
    if len(event_id) > _MAX_ID:
        return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()
    return event_id


class MemoryDedupe:
    """Claims in dicts, bucketed by the ``now`` the caller passes (replay, unit tests).

    >>> import asyncio
    >>> d = MemoryDedupe()
    >>> asyncio.run(d.claim([Claim("m", "e1", "t:0:5"), Claim("m", "e1", "t:0:9")], 60, now=0))
    [None, 't:0:5']
    >>> asyncio.run(d.claim([Claim("m", "e1", "t:0:5")], 60, now=90))  # redelivery of offset 5
    [None]
    >>> asyncio.run(d.claim([Claim("m", "e1", "t:0:9")], 60, now=120))  # two buckets later
    [None]
    """

    def __init__(self) -> None:
        self._buckets: dict[int, dict[tuple[str, str], str]] = {}

    async def claim(self, claims: Sequence[Claim], window_seconds: float,
                    now: float) -> list[str | None]:
        b = bucket_of(now, window_seconds)
        for old in [k for k in self._buckets if k < b - 1]:
            del self._buckets[old]
        cur = self._buckets.setdefault(b, {})
        prev = self._buckets.get(b - 1, {})
        out: list[str | None] = []
        for c in claims:
            key = (c.model_id, _field(c.event_id))
            held = cur.get(key) or prev.get(key)
            if held is None:
                cur[key] = c.position
                out.append(None)
            else:
                out.append(None if held == c.position else held)
        return out

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())


# KEYS[1]: the model's current bucket, KEYS[2]: the previous one. ARGV[1]: the current bucket's
# TTL in ms. ARGV[2]: JSON [[event_id, position], ...]. Returns JSON: per claim, 0 (claimed now,
# or held by this same position) or the position that holds it.
_CLAIM = """
local claims = cjson.decode(ARGV[2])
local out = {}
for i, c in ipairs(claims) do
  local held = redis.call('HGET', KEYS[1], c[1])
  if not held then
    held = redis.call('HGET', KEYS[2], c[1])
  end
  if not held then
    redis.call('HSET', KEYS[1], c[1], c[2])
    out[i] = 0
  elseif held == c[2] then
    out[i] = 0
  else
    out[i] = held
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return cjson.encode(out)
"""


class RedisDedupe:
    """Claims in Redis: one hash per model and time bucket, expiring after two windows."""

    def __init__(self, client: Any, prefix: str = "sm") -> None:
        self.client = client
        self.prefix = prefix
        self.scripts = Scripts(client, _CLAIM)

    def key(self, model_id: str, bucket: int) -> str:
        return f"{self.prefix}:{model_tag(model_id)}:dedupe:{bucket}"

    async def claim(self, claims: Sequence[Claim], window_seconds: float,
                    now: float) -> list[str | None]:
        if not claims:
            return []
        b = bucket_of(now, window_seconds)
        ttl_ms = max(1, math.ceil(2 * window_seconds * 1000))
        by_model: dict[str, list[int]] = {}
        for i, c in enumerate(claims):
            by_model.setdefault(c.model_id, []).append(i)
        groups = list(by_model.items())
        await self.scripts.ensure()
        pipe = self.client.pipeline(transaction=False)
        for mid, idx in groups:
            pairs = orjson.dumps([[_field(claims[i].event_id), claims[i].position] for i in idx])
            self.scripts.queue(pipe, [self.key(mid, b), self.key(mid, b - 1)],
                                     [ttl_ms, pairs])
        replies = await execute(pipe, "checking duplicates", refused="the duplicate check",
                                scripts=self.scripts)
        out: list[str | None] = [None] * len(claims)
        for (_, idx), reply in zip(groups, replies, strict=True):
            for i, held in zip(idx, orjson.loads(reply), strict=True):
                if held != 0:
                    out[i] = str(held)
        return out

