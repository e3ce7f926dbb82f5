"""What a worker's run cost Redis: commands and bytes, and the clean-up of its keys."""

from __future__ import annotations

from typing import Any

from stream_monitor.state.connection import env_redis_client


async def redis_stats(redis_url: str) -> dict[str, int]:
    """Redis's own counters (INFO stats): commands processed and network bytes in and out."""
    client = env_redis_client(redis_url)
    try:
        info = await client.info("stats")
    finally:
        await client.aclose()
    return {k: int(info[k]) for k in ("total_commands_processed", "total_net_input_bytes",
                                       "total_net_output_bytes")}


def redis_cost(before: dict[str, int] | None, after: dict[str, int],
                events: int) -> dict[str, Any]:
    """Redis commands and bytes the worker's run cost, per event and per batch of SM_BATCH_MAX
    (the whole server's counters: run it on a Redis nobody else uses)."""
    if before is None:
        return {}
    d = {k: after[k] - before[k] for k in after}
    return {
        "commands": d["total_commands_processed"],
        "bytes_in": d["total_net_input_bytes"],
        "bytes_out": d["total_net_output_bytes"],
        "commands_per_1000_events": round(1000 * d["total_commands_processed"] / events, 1),
        "bytes_per_event": round((d["total_net_input_bytes"] + d["total_net_output_bytes"])
                                 / events, 1),
    }


async def redis_cleanup(redis_url: str, prefix: str) -> int:
    """Count, then delete, the worker's state keys (its prefix is fresh for every run)."""
    client = env_redis_client(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()
