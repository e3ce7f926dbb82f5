"""The one place that turns :class:`~stream_monitor.config.Settings` into Kafka client
arguments, so that the worker, the notifier, the demo, the benchmarks and the tests all
connect the same way.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings

__all__ = ["client_kwargs", "preflight"]


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by every aiokafka consumer, producer and admin client."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers}


async def preflight(settings: Settings, timeout_seconds: float = 15.0) -> None:
    """Connect once and fail fast, with a one-line error, when Kafka cannot be reached."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    from ..errors import StartupError

    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), timeout_seconds)
    except Exception as exc:
        raise StartupError(
            f"cannot connect to Kafka at KAFKA_BOOTSTRAP_SERVERS="
            f"{settings.kafka_bootstrap_servers}: {type(exc).__name__}") from None
    finally:
        await admin.close()
