"""One way to build every Kafka client the project creates: the worker's, the notifier's, the
demo's, the benchmark's and the tests' (docs/security.md).

:func:`client_kwargs` turns the connection settings into keyword arguments for aiokafka's
``AIOKafkaConsumer``, ``AIOKafkaProducer`` and ``AIOKafkaAdminClient``; :func:`preflight`
connects once at start and turns a failure into a one-line :class:`ConnectionCheckError` that
names the setting to fix.

>>> from stream_monitor.settings import ConnectionSettings
>>> sorted(client_kwargs(ConnectionSettings(KAFKA_BOOTSTRAP_SERVERS="localhost:9092")))
['bootstrap_servers', 'security_protocol']
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import Any

from ..errors import ConnectionCheckError
from ..settings import ConnectionSettings

__all__ = ["KafkaTarget", "client_kwargs", "describe", "env_client_kwargs", "kafka_kwargs",
           "preflight", "ssl_context"]


# What the small helpers (adapters/kafka_tools.py, tests) take: a bootstrap string (plaintext, as
# before) or settings that carry the security configuration as well.
KafkaTarget = str | ConnectionSettings


def ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    """The TLS context for SSL and SASL_SSL: the CA file (else the system trust store), the
    client certificate for mutual TLS, hostname checks on unless switched off."""
    from aiokafka.helpers import create_ssl_context

    ctx = create_ssl_context(cafile=settings.kafka_ssl_ca_location,
                             certfile=settings.kafka_ssl_certificate_location,
                             keyfile=settings.kafka_ssl_key_location,
                             password=settings.kafka_ssl_key_password_value())
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    return ctx


def client_kwargs(settings: ConnectionSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: bootstrap servers and security."""
    proto = settings.kafka_security_protocol
    kw: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                          "security_protocol": proto}
    if proto in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = ssl_context(settings)
    if proto.startswith("SASL_"):
        kw["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kw["sasl_plain_username"] = settings.kafka_sasl_username
        kw["sasl_plain_password"] = settings.kafka_sasl_password_value()
    return kw


def kafka_kwargs(target: KafkaTarget) -> dict[str, Any]:
    """:func:`client_kwargs` for settings; for a bootstrap string, those servers with the
    security settings of the environment (:func:`env_client_kwargs`; PLAINTEXT when none)."""
    if isinstance(target, str):
        return env_client_kwargs(target)
    return client_kwargs(target)


def env_client_kwargs(bootstrap: str) -> dict[str, Any]:
    """:func:`client_kwargs` for these servers with the security settings of the environment
    (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_*``): for tools that are given a
    bootstrap string, such as the benchmarks."""
    return client_kwargs(ConnectionSettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap))  # type: ignore[call-arg]


def describe(target: KafkaTarget) -> str:
    """Where a client connects, for logs and errors: servers and protocol, never a secret."""
    if isinstance(target, str):
        return target
    user = f" as {target.kafka_sasl_username}" if target.kafka_security_protocol.startswith(
        "SASL_") else ""
    return (f"{target.kafka_bootstrap_servers} ({target.kafka_security_protocol}"
            f"{user})")


class _Capture(logging.Handler):
    """aiokafka raises only "Unable to bootstrap from ..." and logs the cause (SASL failure,
    certificate error) on its own logger: keep those lines to tell the user what to fix."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # a bad log call must not hide the real failure
            pass


def _classify(settings: ConnectionSettings, text: str) -> tuple[str, str]:
    proto = settings.kafka_security_protocol
    servers = settings.kafka_bootstrap_servers
    password_var = ("KAFKA_SASL_PASSWORD_FILE" if settings.kafka_sasl_password_file is not None
                    else "KAFKA_SASL_PASSWORD")
    low = text.lower()
    if "saslauthenticationfailed" in low or "invalid credentials" in low:
        return password_var, (f"the broker rejected the login of user "
                              f"{settings.kafka_sasl_username!r} with "
                              f"{settings.kafka_sasl_mechanism}; check the password (and "
                              "KAFKA_SASL_USERNAME, KAFKA_SASL_MECHANISM)")
    if "unsupportedsaslmechanism" in low:
        return "KAFKA_SASL_MECHANISM", (f"the broker does not enable "
                                        f"{settings.kafka_sasl_mechanism}; use one it lists in "
                                        "sasl.enabled.mechanisms (e.g. SCRAM-SHA-512)")
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        if "hostname" in low or "ip address mismatch" in low:
            return "KAFKA_BOOTSTRAP_SERVERS", ("the broker certificate does not name this host; "
                                               "connect by a name in its certificate (or set "
                                               "KAFKA_SSL_CHECK_HOSTNAME=false, not in production)")
        where = (f"the CA in {settings.kafka_ssl_ca_location}"
                 if settings.kafka_ssl_ca_location else "the system trust store")
        return "KAFKA_SSL_CA_LOCATION", (f"the broker certificate is not signed by {where}; "
                                         "point it at the CA that signed the brokers' "
                                         "certificates")
    if "wrong_version_number" in low or "record layer failure" in low or (
            "ssl" in low and proto in ("SSL", "SASL_SSL") and "closed" not in low):
        return "KAFKA_SECURITY_PROTOCOL", (f"TLS handshake with {servers} failed; is it a TLS "
                                           f"listener? {proto} needs one ({_last(text)})")
    causes = re.findall(r'Unable connect to "[^"]*": ?(.*)', text)
    if proto in ("SSL", "SASL_SSL") and causes and not any(c.strip() for c in causes):
        # A TLS client talking to a plaintext listener: the handshake ends without a reason.
        return "KAFKA_SECURITY_PROTOCOL", (f"the TLS handshake with {servers} ended without an "
                                           f"answer; is it a TLS listener? {proto} needs one "
                                           "(PLAINTEXT/SASL_PLAINTEXT for a plaintext one)")
    if "closed" in low and proto in ("PLAINTEXT", "SASL_PLAINTEXT"):
        return "KAFKA_SECURITY_PROTOCOL", (f"{servers} closed the connection at once; the "
                                           f"listener probably needs TLS or a login (SSL, "
                                           f"SASL_SSL), not {proto}")
    if "closed" in low and proto == "SSL":
        return "KAFKA_SECURITY_PROTOCOL", (f"{servers} closed the connection after TLS; the "
                                           "listener probably needs a login (SASL_SSL)")
    if any(m in low for m in ("refused", "connect call failed", "name or service not known",
                              "nodename nor servname", "no address associated")):
        return "KAFKA_BOOTSTRAP_SERVERS", (f"nothing answers at {servers}: "
                                           f"{_last(' '.join(causes) or text)}")
    return "KAFKA_BOOTSTRAP_SERVERS", f"cannot connect to {servers} with {proto}: {_last(text)}"


def _last(text: str) -> str:
    line = text.strip().splitlines()[-1] if text.strip() else "no detail"
    return line[:300]


async def preflight(settings: ConnectionSettings, *, timeout: float = 15.0) -> None:
    """Connect once (an admin client's metadata request) and return; on failure raise
    :class:`ConnectionCheckError` naming the setting to fix. One attempt, no retry loop: a
    wrong password does not get better by trying again."""
    from aiokafka.admin import AIOKafkaAdminClient

    capture = _Capture()
    alog = logging.getLogger("aiokafka")
    # The cause is reported in our error instead of as a log line of its own (one line out).
    saved = alog.level, alog.propagate
    alog.addHandler(capture)
    alog.setLevel(logging.INFO)
    alog.propagate = False
    admin = None
    try:
        admin = AIOKafkaAdminClient(**client_kwargs(settings),
                                    request_timeout_ms=int(timeout * 1000))
        await asyncio.wait_for(admin.start(), timeout)
    except TimeoutError:
        raise ConnectionCheckError("KAFKA_BOOTSTRAP_SERVERS", (
            f"no answer from {describe(settings)} within {timeout:g}s")) from None
    except Exception as exc:
        text = "\n".join([*capture.lines, f"{type(exc).__name__}: {exc}"])
        setting, message = _classify(settings, text)
        raise ConnectionCheckError(setting, message) from None
    finally:
        alog.removeHandler(capture)
        alog.setLevel(saved[0])
        alog.propagate = saved[1]
        if admin is not None:
            try:
                await asyncio.wait_for(admin.close(), 5)
            except Exception:  # closing a client that never connected is best effort
                pass
