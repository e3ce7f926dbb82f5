"""Helpers shared by the tests (plain functions; the fixtures are in the conftest files).

>>> replaced({"a": {"b": 1, "c": 2}}, ("a", "b"), 5)
{'a': {'b': 5, 'c': 2}}
>>> replaced({"a": [1, 2]}, ("a", 0), DELETE)
{'a': [2]}
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import io
import itertools
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from stream_monitor.contracts.output_records import encode_record

__all__ = [
    "DELETE",
    "LABEL_RULES",
    "apply_label_scenarios",
    "by_type",
    "free_port",
    "http_get",
    "label_scenarios_in_book",
    "pipeline_outputs",
    "record_json",
    "replaced",
    "replay_records",
    "stop_process",
]

DELETE = object()
"""The value for :func:`replaced` that deletes the key instead of setting it."""


def worker_command(config: Path, env: dict[str, str]) -> list[str]:
    """The command that starts a worker: ``stream-monitor worker``, or, when ``env`` gives
    SM_FAILPOINT, the same command through the tests' failpoint entry point
    (tests/failpoint_worker.py), which hands the worker that failpoint."""
    import sys

    if env.get("SM_FAILPOINT"):
        return [sys.executable, str(Path(__file__).with_name("failpoint_worker.py")),
                "--config", str(config)]
    return [sys.executable, "-m", "stream_monitor", "worker", "--config", str(config)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body), also for an HTTP error status (urllib raises on those)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def record_json(rec: Any) -> Any:
    """A record as it goes on the wire, read back as JSON (a typed output record is encoded
    with ``encode_record``; anything else is deep-copied): a copy a test may break."""
    if dataclasses.is_dataclass(rec) and not isinstance(rec, type):
        return orjson.loads(encode_record(rec))  # type: ignore[arg-type]
    return copy.deepcopy(rec)


def replaced(obj: Any, path: Sequence[str | int], value: Any) -> Any:
    """A copy of ``obj`` (:func:`record_json`) with the value at ``path`` (keys and list
    indices) set to ``value``, or deleted when ``value`` is :data:`DELETE`: a record broken in
    one place, for tests that a schema rejects it."""
    out = record_json(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def replay_records(config: Path, lines: list[bytes], tmp: Path,
                   batch: int = 257) -> list[dict[str, Any]]:
    """``lines`` through ``stream-monitor replay`` with the config file ``config``: the output
    records. The odd default batch size checks that batch boundaries do not matter."""
    from stream_monitor.adapters.replay import replay_file
    from stream_monitor.config import load_config

    p = tmp / "events.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    out = io.BytesIO()
    replay_file(load_config(config), p, out, batch=batch)
    return [orjson.loads(x) for x in out.getvalue().splitlines()]


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 timeout: float = 60.0) -> int:
    """Stop a process the test started (by its handle): ``sig``, then SIGKILL after
    ``timeout`` seconds. Its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


# The label join scenarios of tests/unit/test_labels.py, through a label store and through the
# pure book: every store must answer what the book answers.
LABEL_RULES = {"m": (100.0, 10.0)}  # model "m": labels wait 100 s, in buckets of 10 s


async def apply_label_scenarios(store: Any) -> tuple[list[Any], list[Any], list[Any], Any]:
    """SCENARIO_1 twice (the second time as a retried batch), then SCENARIO_2, through a label
    store: the pairs each call joined, and model m's counters after the last."""
    from .unit.test_labels import SCENARIO_1, SCENARIO_2

    first, _ = await store.apply(SCENARIO_1, LABEL_RULES, {})
    again, _ = await store.apply(SCENARIO_1, LABEL_RULES, {})
    second, stats = await store.apply(SCENARIO_2, LABEL_RULES, {"m": {"": 1}})
    return first, again, second, stats["m"]


def label_scenarios_in_book() -> tuple[Any, list[Any], list[Any]]:
    """The same scenarios in the pure LabelBook: the book, and the pairs of each scenario."""
    from stream_monitor.core.label_join import LabelBook

    from .unit.test_labels import SCENARIO_1, SCENARIO_2

    book = LabelBook("m")
    ttl, bucket = LABEL_RULES["m"]
    want1 = book.apply(SCENARIO_1, ttl_seconds=ttl, bucket_seconds=bucket, cursors={})
    want2 = book.apply(SCENARIO_2, ttl_seconds=ttl, bucket_seconds=bucket, cursors={"": 1})
    return book, want1, want2


def pipeline_outputs(config: Any, raws: Sequence[Any], restart_at: Iterable[int] = (),
                     batch: int = 300, now: float = 1_767_225_600.0,
                     dedupe: Any = None) -> list[bytes]:
    """What a :class:`~stream_monitor.pipeline.BatchPipeline` on a memory store publishes for
    ``raws`` in batches of ``batch``, rebuilt from its store at each index of ``restart_at``
    (a worker restart); for tests that restarts and other batch sizes change nothing.
    ``dedupe``: one dedupe store shared by every pipeline of the run (as a worker's is)."""
    from stream_monitor.pipeline import BatchPipeline
    from stream_monitor.state import MemoryStore

    restart = set(restart_at)

    async def run() -> list[bytes]:
        store = MemoryStore()
        bounds = sorted({*range(0, len(raws), batch), *restart, len(raws)})
        pipe = BatchPipeline(config, store, clock=lambda: now, dedupe=dedupe)
        out: list[bytes] = []
        for lo, hi in itertools.pairwise(bounds):
            if lo in restart:
                pipe = BatchPipeline(config, store, clock=lambda: now, dedupe=dedupe)
            res = await pipe.run(list(raws[lo:hi]))
            await store.clear_outbox(res.outbox)
            out += [r.value for r in res.records]
        return out

    return asyncio.run(run())


def by_type(records: Sequence[bytes]) -> dict[str, list[bytes]]:
    """Output records by their ``type``, each kind in its order (a batch publishes its drift
    alerts before its data-quality alerts, so where batches are cut decides how kinds
    interleave)."""
    out: dict[str, list[bytes]] = {}
    for v in records:
        out.setdefault(orjson.loads(v)["type"], []).append(v)
    return out
