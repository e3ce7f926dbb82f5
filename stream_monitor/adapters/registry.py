"""Schema Registry input: fetch the writer schemas of a batch by id, cache them, and decode the
records of topics in a registry format (``input.*.format``) before the pipeline's gate.

The I/O of the registry formats lives here; the framing, the decoding of a payload with its
schema and the field mapping are pure (contracts/wire.py). Every record comes out once: a JSON
topic's record unchanged, a registry topic's with ``decoded`` set to the record's values or to
the :class:`~stream_monitor.contracts.wire.Fault` that dead-letters it (each fault its own
reason code). A registry that is down (no connection, a timeout, HTTP 5xx, 408, 429) is waited
for, with capped backoff and a few log lines, for as long as it takes: the batch is neither
applied nor committed meanwhile, so nothing is lost and nothing is dead-lettered for it.

Each schema id unknown to the cache is fetched once per batch; a schema that was found is kept
(a registry never changes what an id means). One that was not found (404) or refused (4xx) is
asked again by the next batch that needs it: it may have been registered since.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..contracts.records import RawRecord
from ..contracts.wire import (
    Fault,
    Framed,
    ParsedSchema,
    decode_payload,
    parse_frame,
    parse_schema,
)
from ..core.plan import MonitorPlan
from ..settings import Settings

__all__ = ["RegistryDecoder", "registry_client_conf"]

log = logging.getLogger("stream_monitor.registry")

_CACHE_MAX = 10_000  # parsed schemas kept (ids are immutable; a bound against a flood of ids)
_RETRIABLE_HTTP = frozenset({408, 429})
_QUIET_SECONDS = 30.0  # while the registry stays down: one log line per this many seconds


def registry_client_conf(settings: Settings) -> dict[str, Any]:
    """confluent-kafka's ``SchemaRegistryClient`` configuration from our settings. Its own
    retries are off (``max.retries`` 0): the decoder's loop waits out an outage."""
    if not settings.schema_registry_url:
        raise ValueError("SCHEMA_REGISTRY_URL is not set")
    conf: dict[str, Any] = {
        "url": settings.schema_registry_url,
        "timeout": settings.schema_registry_timeout_seconds,
        "max.retries": 0,
    }
    password = settings.schema_registry_password_value()
    if settings.schema_registry_username is not None and password is not None:
        conf["basic.auth.user.info"] = f"{settings.schema_registry_username}:{password}"
    if settings.schema_registry_ssl_ca_location is not None:
        conf["ssl.ca.location"] = str(settings.schema_registry_ssl_ca_location)
    if settings.schema_registry_ssl_certificate_location is not None:
        conf["ssl.certificate.location"] = str(settings.schema_registry_ssl_certificate_location)
    if settings.schema_registry_ssl_key_location is not None:
        conf["ssl.key.location"] = str(settings.schema_registry_ssl_key_location)
    return conf


class RegistryDecoder:
    """Decodes the registry-format records of a batch (see the module docstring).

    ``client``: anything with confluent-kafka's ``AsyncSchemaRegistryClient.get_schema``; built
    from the settings when not given."""

    def __init__(self, config: MonitorPlan, settings: Settings, client: Any = None) -> None:
        topics, inp = config.topics, config.input
        self.formats: dict[str, str] = {t: f for t, f in ((topics.inference, inp.inference.format),
                                          (topics.labels, inp.labels.format)) if f != "json"}
        self.max_bytes = config.quality.max_message_bytes
        self.retry_max = settings.schema_registry_retry_max_seconds
        self._conf = registry_client_conf(settings) if self.formats else {}
        self.client = client if client is not None or not self.formats else self._new_client()
        # Protobuf schemas in the form the Python runtime reads (a serialized descriptor): a
        # registry that keeps them as .proto text gives that form when asked (format=
        # serialized). A client of its own, as the client's cache does not key on the format.
        self._serialized_client: Any = None
        self._schemas: dict[tuple[str, int], ParsedSchema | Fault] = {}
        self.fetches = 0  # schema requests sent (tests and metrics read it)
        self.outages = 0  # times the registry was found down

    def _new_client(self) -> Any:
        from confluent_kafka.schema_registry import AsyncSchemaRegistryClient

        return AsyncSchemaRegistryClient(self._conf)

    @property
    def active(self) -> bool:
        return bool(self.formats)

    async def decode(self, raws: Sequence[RawRecord]) -> Sequence[RawRecord]:
        """The batch with each registry-format record decoded (or its fault); waits while the
        registry is down. A record over ``quality.max_message_bytes`` is left to the gate
        (``too_large``, on the bytes), not decoded."""
        if not self.formats or not any(r.position.topic in self.formats for r in raws):
            return raws
        frames: list[tuple[str, Framed | Fault] | None] = []
        wanted: set[tuple[str, int]] = set()
        for raw in raws:
            fmt = self.formats.get(raw.position.topic, "")
            if not fmt or (raw.value is not None and len(raw.value) > self.max_bytes):
                frames.append(None)
                continue
            f = parse_frame(raw.value, fmt)
            frames.append((fmt, f))
            if type(f) is Framed:
                key = (fmt, f.schema_id)
                cached = self._schemas.get(key)
                if cached is None or type(cached) is Fault:
                    wanted.add(key)
        if wanted:
            await self._fetch(sorted(wanted))
        out: list[RawRecord] = []
        for raw, item in zip(raws, frames, strict=True):
            if item is None:
                out.append(raw)
                continue
            fmt, f = item
            if type(f) is Fault:
                out.append(raw._replace(decoded=f))
                continue
            assert type(f) is Framed
            schema = self._schemas[(fmt, f.schema_id)]
            decoded = schema if type(schema) is Fault else decode_payload(schema, f)  # type: ignore[arg-type]
            out.append(raw._replace(decoded=decoded))
        return out

    async def _fetch(self, keys: list[tuple[str, int]]) -> None:
        """Fetch and parse the schemas of ``keys``, waiting while the registry is down."""
        failures = 0
        down_since = 0.0
        last_log = 0.0
        suppressed = 0
        pending = list(keys)
        while pending:
            key = pending[0]
            try:
                got = await self._fetch_one(*key)
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # down: connection refused, timeout, 5xx
                now = time.monotonic()
                if failures == 0:
                    down_since = now
                    self.outages += 1
                failures += 1
                delay = min(self.retry_max, 0.1 * 2 ** min(failures, 10))
                if now - last_log >= _QUIET_SECONDS:
                    more = f" ({suppressed} more failures not logged)" if suppressed else ""
                    log.warning("schema registry unavailable, the batch waits (nothing is "
                                "committed); retrying in %.1fs: %s%s", delay, _describe(exc),
                                more)
                    last_log, suppressed = now, 0
                else:
                    suppressed += 1
                await asyncio.sleep(delay)
                continue
            self._keep(key, got)
            pending.pop(0)
            if failures:
                log.warning("schema registry is back after %.1fs", time.monotonic() - down_since)
                failures = 0

    async def _fetch_one(self, fmt: str, schema_id: int) -> ParsedSchema | Fault:
        """One schema: parsed, or the fault of a registry that answered no. Raises while the
        registry is down."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        self.fetches += 1
        try:
            schema = await self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status == 404:
                return Fault("unknown_schema", (
                    f"the registry has no schema with id {schema_id} (HTTP 404, error "
                    f"{exc.error_code}); the producer used another registry, or the schema was "
                    "deleted"))
            if 400 <= status < 500 and status not in _RETRIABLE_HTTP:
                return Fault("registry_refused", (
                    f"the registry refused schema id {schema_id}: HTTP {status}, error "
                    f"{exc.error_code}: {exc.error_message}"[:500] + "; check "
                    "SCHEMA_REGISTRY_USERNAME / _PASSWORD and the registry's permissions"))
            raise
        text = schema.schema_str or ""
        if fmt == "protobuf" and (schema.schema_type or "").upper() == "PROTOBUF" and not (
                _base64(text)):
            if self._serialized_client is None:
                self._serialized_client = self._new_client()
            try:
                schema = await self._serialized_client.get_schema(schema_id, fmt="serialized")
            except SchemaRegistryError as exc:  # it answered: it cannot give that form
                return Fault("schema_mismatch", (
                    f"schema id {schema_id} is .proto text and the registry cannot give it as "
                    f"a serialized descriptor (format=serialized: HTTP {exc.http_status_code}); "
                    "the Python Protobuf runtime reads only that form: register the schema "
                    "from a serializer that stores it so (stream_monitor.publish.registry)"))
            text = schema.schema_str or ""
        return parse_schema(fmt, schema.schema_type, text)

    def _keep(self, key: tuple[str, int], got: ParsedSchema | Fault) -> None:
        if len(self._schemas) >= _CACHE_MAX:
            self._schemas.clear()
        self._schemas[key] = got

    async def close(self) -> None:
        for client in (self.client, self._serialized_client):
            close = getattr(client, "close", None) if client is not None else None
            if close is not None:
                res = close()
                if asyncio.iscoroutine(res):
                    await res


def _base64(text: str) -> bool:
    import base64
    import binascii

    try:
        base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return bool(text)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
