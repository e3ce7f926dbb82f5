"""Redis clients: the one place that makes them, for a single Redis or a Redis Cluster.

A Redis Cluster is selected by ``REDIS_CLUSTER=true`` (Settings ``redis_cluster``) or by the
URL scheme ``redis+cluster://`` (``rediss+cluster://`` with TLS); the URL then names one node to
discover the cluster from.

Every key of a model carries the model's hash tag (:func:`~stream_monitor.state.base.model_tag`),
so one model's keys share a slot and each Lua script touches one slot. What spans models (a
batch's loads and saves) is grouped by slot here and pipelined: redis-py's cluster pipeline sends
each node its commands in one write, to all nodes at once.

>>> slot_of("sm:{credit-risk}:model") == slot_of("sm:{credit-risk}:sig:amount:recent")
True
>>> slot_of("foo"), slot_of("{user1000}.following") == slot_of("{user1000}.followers")
(12182, True)
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff, EqualJitterBackoff

if TYPE_CHECKING:
    from ..settings import ConnectionSettings

__all__ = ["COMMAND_RETRIES", "SLOTS", "group_by_slot", "is_cluster", "redis_client",
           "redis_kwargs", "slot_of", "slot_tag", "split_cluster_url", "store_backoff"]

SLOTS = 16384
# redis-py retries a command that met a connection error or a timeout (on a fresh connection)
# this many times, so a blip (a restart, a failover of a second) is absorbed inside the client.
# A longer outage then surfaces as TransientStoreError, and the worker waits for Redis with
# store_backoff (capped by SM_STORE_RETRY_MAX_SECONDS) and runs the batch again.
COMMAND_RETRIES = 3
_COMMAND_RETRY_CAP_SECONDS = 1.0
_BACKOFF_BASE_SECONDS = 0.05
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def split_cluster_url(url: str) -> tuple[str, bool]:
    """The URL redis-py understands, and whether its scheme asks for a cluster.

    >>> split_cluster_url("redis+cluster://10.0.0.5:6379/0")
    ('redis://10.0.0.5:6379/0', True)
    >>> split_cluster_url("rediss://h:6380/0")
    ('rediss://h:6380/0', False)
    """
    scheme, sep, rest = url.partition("://")
    plain = _CLUSTER_SCHEMES.get(scheme.lower())
    return (plain + sep + rest, True) if sep and plain else (url, False)


def redis_kwargs(settings: ConnectionSettings) -> dict[str, Any]:
    """Keyword arguments for ``redis.asyncio.Redis.from_url(settings.redis_url, **kwargs)``
    (and ``redis.Redis.from_url``): the ACL user, the password and the TLS files that are set.
    A user or password in the URL stays in force when these are not set."""
    kw: dict[str, Any] = {}
    if settings.redis_username:
        kw["username"] = settings.redis_username
    password = settings.redis_password_value()
    if password is not None:
        kw["password"] = password
    for key, path in (("ssl_ca_certs", settings.redis_ssl_ca_certs),
                      ("ssl_certfile", settings.redis_ssl_certfile),
                      ("ssl_keyfile", settings.redis_ssl_keyfile)):
        if path is not None:
            kw[key] = str(path)
    return kw


def store_backoff(cap_seconds: float) -> AbstractBackoff:
    """redis-py's exponential backoff with equal jitter: after ``failures`` failed tries
    ``compute(failures)`` is a random wait in [c/2, c], c = min(cap, 0.05 s * 2**failures).

    >>> b = store_backoff(30.0)
    >>> 0.05 <= b.compute(1) <= 0.1, 15.0 <= b.compute(20) <= 30.0
    (True, True)
    """
    return EqualJitterBackoff(cap=cap_seconds, base=_BACKOFF_BASE_SECONDS)


def redis_client(source: ConnectionSettings | str, *, cluster: bool = False, **kwargs: Any) -> Any:
    """An asyncio Redis client for ``source`` (settings, or a URL): a ``RedisCluster`` when
    the settings or the URL scheme ask for one, else a ``Redis``. Settings bring their ACL
    user, password and TLS files (:func:`redis_kwargs`).
    Every client retries a command :data:`COMMAND_RETRIES` times with :func:`store_backoff`
    (capped at 1 s) on a connection error or timeout, the same whatever the redis-py version's
    default. ``kwargs`` go to redis-py (they override the timeouts and the retry set here)."""
    sec: dict[str, Any] = {}
    if isinstance(source, str):
        url = source
    else:
        url = source.redis_url
        cluster = cluster or bool(getattr(source, "redis_cluster", False))
        sec = redis_kwargs(source)
    url, by_scheme = split_cluster_url(url)
    retry = Retry(store_backoff(_COMMAND_RETRY_CAP_SECONDS), COMMAND_RETRIES)
    opts: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0,
                            "retry": retry, **sec, **kwargs}
    if cluster or by_scheme:
        return RedisCluster.from_url(url, **opts)
    opts.setdefault("health_check_interval", 10)
    return aioredis.Redis.from_url(url, **opts)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def slot_of(key: str | bytes) -> int:
    """The Redis Cluster slot of a key: CRC16 (XMODEM, as ``binascii.crc_hqx``) of its hash
    tag (the text between the first ``{`` and the next ``}``, when not empty) or of the key."""
    k = key.encode() if isinstance(key, str) else key
    start = k.find(b"{")
    if start != -1:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            k = k[start + 1:end]
    return binascii.crc_hqx(k, 0) % SLOTS


def group_by_slot(keys: Sequence[str | bytes]) -> dict[int, list[int]]:
    """Positions of ``keys`` grouped by slot, in order of first appearance: one multi-key
    command per group stays in one slot (no CROSSSLOT).

    >>> group_by_slot(["sm:{a}:model", "sm:{b}:model", "sm:{a}:version"])
    {15495: [0, 2], 3300: [1]}
    """
    out: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(slot_of(k), []).append(i)
    return out


_SLOT_TAGS: list[str] = []


def slot_tag(slot: int) -> str:
    """A hash tag whose keys land in ``slot`` (``{epoch:<n>}``, the smallest such n); the
    table is computed once, on first use (0.3 s measured).

    >>> slot_of(slot_tag(0) + ":x"), slot_of(slot_tag(16383) + ":x")
    (0, 16383)
    """
    if not _SLOT_TAGS:
        table: list[str | None] = [None] * SLOTS
        left, n = SLOTS, 0
        while left:
            tag = f"epoch:{n}"
            s = binascii.crc_hqx(tag.encode(), 0) % SLOTS
            if table[s] is None:
                table[s] = "{" + tag + "}"
                left -= 1
            n += 1
        _SLOT_TAGS.extend(t for t in table if t is not None)
    return _SLOT_TAGS[slot]
