"""A Faust app whose agent does nothing: the baseline for the stream-monitor worker.

Run by ``benchmarks/throughput.py`` as a subprocess (a Faust worker owns its event loop)::

    python benchmarks/_noop_faust.py --app-id ID --topic T --events N --result out.json

The app is configured as the worker's Faust agent was before the worker moved to a batch
aiokafka consumer (raw serializers, memory store, ``topic_disable_leader``, no web server, the
same buffer and poll sizes), with a single agent doing ``async for event in stream: pass``, so
Faust acks every event as the loop moves on and commits its offsets itself: the cost of Faust's
per-event path alone. Kafka and the batch size come from the same environment variables as the
worker's (``KAFKA_BOOTSTRAP_SERVERS``, ``SM_BATCH_MAX``, ``SM_LOG_LEVEL``).

When the agent has seen ``--events`` events it writes, to ``--result``, its own clock readings
(wall-clock ``time.time()`` seconds): first event, the event at 10% and at 100% of
``--events``. It keeps running (and committing) until it is sent SIGTERM; the benchmark
measures it, like the worker, from the consumer group's committed offsets.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any


def faust_app(app_id: str, settings: Any) -> Any:
    """A Faust app with the settings the worker's Faust agent had."""
    import tempfile

    import faust

    # Faust makes a data directory even with the memory store: under SM_DATA_DIR (the benchmark
    # passes one in its temp dir), else under the temp dir.
    datadir = settings.data_dir or os.path.join(tempfile.gettempdir(), "stream-monitor")
    os.makedirs(datadir, exist_ok=True)
    return faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        web_enabled=False,
        datadir=os.path.join(datadir, "{conf.id}-data"),
        producer_linger_ms=5,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        broker_max_poll_records=max(500, settings.batch_max),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--app-id", required=True, help="Faust app id = consumer group id (use a fresh one)."
    )
    ap.add_argument("--topic", required=True, help="The pre-filled topic to read.")
    ap.add_argument("--events", type=int, required=True, help="Events in the topic.")
    ap.add_argument("--result", type=Path, required=True, help="Where to write the JSON timings.")
    args = ap.parse_args()

    try:
        import faust
        from faust.worker import Worker
    except ImportError:
        raise SystemExit("_noop_faust.py needs faust-streaming: pip install "
                         "'stream-monitor[faust]'") from None

    from stream_monitor.settings import Settings

    settings = Settings()  # type: ignore[call-arg]  # fields come from the environment
    app = faust_app(args.app_id, settings)
    topic = app.topic(
        args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    n_total = args.events
    at_10 = max(1, n_total // 10)
    marks: dict[str, float] = {}
    seen = 0

    @app.agent(topic, concurrency=1)
    async def noop(stream: faust.StreamT) -> None:
        nonlocal seen
        async for _event in stream:
            seen += 1
            if seen == 1:
                marks["first"] = time.time()
            if seen == at_10:
                marks["at_10pct"] = time.time()
            if seen == n_total:
                marks["last"] = time.time()
                tmp = args.result.with_suffix(".tmp")
                tmp.write_text(
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "events": seen,
                            "at_10pct_events": at_10,
                            "t_first": marks["first"],
                            "t_at_10pct": marks.get("at_10pct"),
                            "t_last": marks["last"],
                        }
                    )
                )
                tmp.replace(args.result)

    Worker(
        app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
