"""Redis clients built from the connection settings: ACL user, password (also from a file), TLS.

Every Redis client the project creates (worker, demo, tests) comes from :func:`redis_client`,
so the security settings apply everywhere. :func:`redis_preflight` runs, once at start, every
command the state stores use on a probe key under the prefix, and turns a failure into a
one-line :class:`ConnectionCheckError` naming the setting to fix (docs/security.md gives the
minimal ACL rule it checks).

>>> redacted_url("rediss://sm:s3cret@redis.internal:6380/0")
'rediss://sm:***@redis.internal:6380/0'
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..errors import ConnectionCheckError
from ..settings import ConnectionSettings
from .client import redis_client, redis_kwargs

__all__ = ["MINIMAL_ACL_COMMANDS", "env_redis_client", "env_redis_kwargs", "redacted_url",
           "redis_client", "redis_kwargs", "redis_preflight"]

# Every command the stores send to a single Redis (state/redis.py, dedupe.py, label_store.py: their
# calls and the commands inside their Lua scripts, which are loaded with SCRIPT LOAD and run
# with EVALSHA). A Redis Cluster with SM_REDIS_WAIT_REPLICAS also needs WAIT (docs/security.md).
MINIMAL_ACL_COMMANDS = (
    "ping", "get", "set", "mget", "del", "pexpire",
    "hget", "hset", "hsetnx", "hdel", "hgetall", "hkeys", "hlen", "hmget", "hincrby",
    "hincrbyfloat", "sadd", "smembers", "zadd", "zrange", "zrangebyscore", "zrem",
    "evalsha", "script|load",
)


def minimal_acl_rule(prefix: str) -> str:
    """The ACL rule the worker needs (``ACL SETUSER <user> on ><password> <rule>``)."""
    cmds = " ".join(f"+{c}" for c in MINIMAL_ACL_COMMANDS)
    return f"resetkeys ~{prefix}:* resetchannels -@all {cmds}"


def redacted_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and the demo's output)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(unparsable REDIS_URL)"




def env_redis_kwargs(url: str) -> dict[str, Any]:
    """:func:`redis_kwargs` of the Redis security settings in the environment
    (``REDIS_USERNAME``, ``REDIS_PASSWORD[_FILE]``, ``REDIS_SSL_*``) for this URL: for tools that
    are given a URL, such as the benchmarks (``redis.Redis.from_url(url, **kwargs)``)."""
    return redis_kwargs(ConnectionSettings(REDIS_URL=url))  # type: ignore[call-arg]


def env_redis_client(url: str, **overrides: Any) -> Any:
    """:func:`redis_client` for this URL with the Redis security settings of the environment."""
    return redis_client(ConnectionSettings(REDIS_URL=url), **overrides)  # type: ignore[call-arg]


_PROBE = """
local k, h, z, s = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
redis.call('SET', k, '1')
redis.call('GET', k)
redis.call('HSET', h, 'a', '1')
redis.call('HSETNX', h, 'b', '1')
redis.call('HGET', h, 'a')
redis.call('HINCRBY', h, 'c', 1)
redis.call('HINCRBYFLOAT', h, 'd', '0.5')
redis.call('HKEYS', h)
redis.call('HLEN', h)
redis.call('HMGET', h, 'a', 'b')
redis.call('HGETALL', h)
redis.call('HDEL', h, 'a')
redis.call('ZADD', z, 1, 'x')
redis.call('ZRANGE', z, 0, -1)
redis.call('ZRANGEBYSCORE', z, '-inf', '+inf')
redis.call('ZREM', z, 'x')
redis.call('SADD', s, 'x')
redis.call('SMEMBERS', s)
redis.call('PEXPIRE', k, 60000)
redis.call('DEL', k, h, z, s)
return 1
"""


def _password_var(settings: ConnectionSettings) -> str:
    if settings.redis_password_file is not None:
        return "REDIS_PASSWORD_FILE"
    if settings.redis_password is not None:
        return "REDIS_PASSWORD"
    return "REDIS_URL"


def _classify(settings: ConnectionSettings, prefix: str, exc: BaseException) -> tuple[str, str]:
    from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

    url = redacted_url(settings.redis_url)
    text = str(exc)
    low = text.lower()
    user = settings.redis_username or urlsplit(settings.redis_url).username
    if isinstance(exc, AuthenticationError) or "wrongpass" in low or "noauth" in low:
        if "hello must be called" in low or "noauth" in low or not user:
            return "REDIS_USERNAME", (f"{url} needs a login; set REDIS_USERNAME and "
                                      "REDIS_PASSWORD (or REDIS_PASSWORD_FILE)")
        return _password_var(settings), (f"Redis rejected the login of user {user!r}; check "
                                         "the password (and REDIS_USERNAME)")
    if isinstance(exc, NoPermissionError) or (isinstance(exc, ResponseError) and (
            "noperm" in low or "no permissions" in low or "can't access" in low)):
        return "REDIS_USERNAME", (f"user {user or 'default'!r} lacks an ACL permission the "
                                  f"worker needs ({_short(text)}); grant: ACL SETUSER "
                                  f"{user or 'default'} {minimal_acl_rule(prefix)}")
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        if "hostname" in low or "ip address mismatch" in low:
            return "REDIS_URL", "the Redis certificate does not name this host; use a name in it"
        where = (f"the CA in {settings.redis_ssl_ca_certs}" if settings.redis_ssl_ca_certs
                 else "the system trust store")
        return "REDIS_SSL_CA_CERTS", (f"the Redis certificate is not signed by {where}; point "
                                      "it at the CA that signed the server's certificate")
    scheme = urlsplit(settings.redis_url).scheme
    if scheme == "redis" and ("reset by peer" in low or "closed by server" in low
                              or "connection closed" in low):
        return "REDIS_URL", (f"{url} dropped the connection at once; if the server takes TLS "
                             "only, write the URL as rediss://")
    if "ssl" in low and scheme == "rediss":
        return "REDIS_URL", f"TLS handshake with {url} failed ({_short(text)}); is it a TLS port?"
    return "REDIS_URL", f"cannot use Redis at {url}: {_short(text)}"


def _short(text: str) -> str:
    return " ".join(text.split())[:240]


async def redis_preflight(settings: ConnectionSettings, prefix: str, *,
                          timeout: float = 15.0) -> None:
    """Log in, then run every command the stores use on probe keys under ``prefix`` (deleted
    again). One attempt; a failure raises :class:`ConnectionCheckError`."""
    from .redis import Scripts

    # One attempt: a refused password or a missing ACL rule is not mended by the retries
    # every other client has (COMMAND_RETRIES).
    client = redis_client(settings, health_check_interval=0, retry=Retry(NoBackoff(), 0))
    tag = f"{prefix}:{{preflight-{uuid.uuid4().hex[:8]}}}"
    keys = [f"{tag}:k", f"{tag}:h", f"{tag}:z", f"{tag}:s"]
    try:
        async def probe() -> None:
            await client.ping()
            await client.set(keys[0], "1", nx=True, px=60000)
            await client.mget(keys[:1])
            await client.get(keys[0])
            # The script as the stores run theirs (SCRIPT LOAD, then EVALSHA in a pipeline):
            # the way that works on a Redis Cluster too.
            scripts = Scripts(client, _PROBE)
            await scripts.ensure()
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(keys[1])
            pipe.hdel(keys[1], "x")
            pipe.pexpire(keys[0], 60000)
            scripts.queue(pipe, keys, [])
            await pipe.execute()
        await asyncio.wait_for(probe(), timeout)
    except TimeoutError:
        raise ConnectionCheckError("REDIS_URL", (
            f"no answer from {redacted_url(settings.redis_url)} within {timeout:g}s"
        )) from None
    except Exception as exc:
        setting, message = _classify(settings, prefix, exc)
        raise ConnectionCheckError(setting, message) from None
    finally:
        try:
            await asyncio.wait_for(client.aclose(), 5)
        except Exception:  # closing is best effort
            pass
