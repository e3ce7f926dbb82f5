"""The worker's batch step without Kafka: the order of the guarantee (save, publish, commit),
what an exception at each stage does, and model-cache eviction that changes no output."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_monitor.adapters.worker import MonitorWorker, record_size
from stream_monitor.config import load_config, parse_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.settings import Settings
from stream_monitor.state import MemoryStore
from stream_monitor.synth import Drift, StreamSpec, generate

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "monitor.yaml"
SPEC = StreamSpec(models=("credit-risk",), events_per_model=3000, seed=4,
                  drifts=(Drift(1500, "amount", 2.0), Drift(1500, "utilization", -2.0)))


def raws(spec: StreamSpec = SPEC) -> list[RawRecord]:
    return [RawRecord(v, Position("in", 0, i, 1_767_225_600_000 + i))
            for i, v in enumerate(generate(spec))]


class Producer:
    """Records what was sent; `fail` makes the next sends raise."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.fail: Exception | None = None
        self.log: list[str] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any) -> Any:
        if self.fail is not None:
            raise self.fail
        self.sent.append(value)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        self.log.append("publish")
        return fut


def worker(producer: Producer, **settings: Any) -> MonitorWorker:
    return MonitorWorker(load_config(CONFIG), Settings(**settings), MemoryStore(),
                         producer=producer)


async def test_commit_comes_after_save_and_publish() -> None:
    p = Producer()
    w = worker(p)
    order: list[str] = p.log

    async def commit() -> None:
        order.append("commit")

    rs = raws()
    commits_before: list[int] = []
    for lo in range(0, len(rs), 500):
        sent = len(p.sent)
        await w.step(rs[lo:lo + 500], commit)
        if len(p.sent) > sent:  # a batch with outputs: all of them were sent before its commit
            commits_before.append(order.index("commit", len(order) - 1))
            assert order[-1] == "commit" and order[-2] == "publish"
    assert p.sent, "the stream drifts: some outputs must have been published"
    assert commits_before and order.count("commit") == 6


async def test_publish_failure_means_no_commit() -> None:
    from aiokafka.errors import KafkaConnectionError

    p = Producer()
    w = worker(p)
    commits: list[int] = []

    async def commit() -> None:
        commits.append(1)

    bad = RawRecord(b"{oops", Position("in", 0, 0))
    p.fail = KafkaConnectionError("broker down")
    task = asyncio.ensure_future(w.step([bad], commit))
    await asyncio.sleep(0.5)  # retrying the transient fault, not giving up, not committing
    assert not task.done() and commits == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert commits == []


async def test_non_retriable_refusal_is_bounded_and_uncommitted() -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    from stream_monitor.errors import OutputRejectedError

    p = Producer()
    p.fail = MessageSizeTooLargeError("too large")
    w = worker(p)
    commits: list[int] = []

    async def commit() -> None:
        commits.append(1)

    with pytest.raises(OutputRejectedError, match="SM_MAX_OUTPUT_BYTES"):
        await w.step([RawRecord(b"{oops", Position("in", 0, 0))], commit)
    assert commits == []


async def test_an_exception_after_the_commit_does_not_fail_the_batch() -> None:
    class Broken:
        def observe_batch(self, *a: Any, **k: Any) -> None:
            raise OverflowError("intermediate overflow in fsum")

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    p = Producer()
    w = worker(p)
    w.metrics = Broken()
    commits: list[int] = []

    async def commit() -> None:
        commits.append(1)

    out = await w.step(raws()[:100], commit)
    assert commits == [1] and out.events == 100


def test_every_output_fits_the_size_limit() -> None:
    """Dead letters of huge records stay far below the output limit."""
    cfg = load_config(CONFIG)
    pipe = BatchPipeline(cfg, MemoryStore())
    bad = [RawRecord(b"\xff" * 900_001, Position("in", 0, 0), b"k"),
           RawRecord(b"\x01" * 900_000, Position("in", 0, 1), b"k" * 100_000,
                     tuple((f"h{i}", b"\x00" * 50_000) for i in range(100)))]
    out = asyncio.run(pipe.run(bad))
    assert len(out.records) == 2
    for r in out.records:
        # value head 64 KiB (base64: 4/3), key 4 KiB, 64 headers of 1 KiB: about 200 KB at most
        assert record_size(r) < 250_000, record_size(r)
        assert r.record.original["value"]["truncated"] is True


def test_limits_dead_letter_with_their_own_reasons() -> None:
    cfg = parse_config({"quality": {"max_features_per_event": 5, "max_features_per_model": 8,
                                    "max_id_length": 16},
                        "models": [{"match": "*", "signals": [
                            {"match": "*", "detectors": ["adwin"]}]}]})

    def ev(i: int, features: dict[str, float], model: str = "m") -> RawRecord:
        return RawRecord(orjson.dumps({"event_id": f"e{i}", "model_id": model,
                                       "features": features, "prediction": 0.5}),
                         Position("in", 0, i))

    batch = [ev(0, {f"a{k}": 1.0 for k in range(6)}),           # 6 > 5 per event
             ev(1, {"a0": 1.0}, model="m" * 17),                 # id over 16
             ev(2, {f"b{k}": 1.0 for k in range(5)}),            # 5 + prediction: fine
             ev(3, {f"c{k}": 1.0 for k in range(5)})]            # would make 11 > 8 per model
    pipe = BatchPipeline(cfg, MemoryStore())
    out = asyncio.run(pipe.run(batch))
    reasons = [r.record.reason_code for r in out.records if r.record.type == "dead_letter"]
    assert reasons == ["too_many_features", "id_too_long", "too_many_signals"]
    model = next(iter(pipe.state.models.values()))
    assert not any(s.startswith("feature:c") for s in model.signals)


@pytest.mark.parametrize("cache_size", [1, 3])
def test_evicted_models_reload_with_identical_outputs(cache_size: int) -> None:
    spec = StreamSpec(models=tuple(f"credit-{i}" for i in range(8)), events_per_model=2000,
                      seed=9, n_features=3,
                      drifts=(Drift(1200, "amount", 2.0), Drift(1200, "prediction", 1.5)))
    rs = raws(spec)
    cfg = load_config(CONFIG)

    def run(size: int | None) -> tuple[list[bytes], int]:
        store = MemoryStore()
        pipe = BatchPipeline(cfg, store, clock=lambda: 1_767_225_600.0, cache_size=size)
        got: list[bytes] = []
        most = 0
        for lo in range(0, len(rs), 400):
            out = asyncio.run(pipe.run(rs[lo:lo + 400]))
            got += [r.value for r in out.records]
            asyncio.run(store.clear_outbox(out.outbox))  # as the worker does once published
            most = max(most, len(pipe.state.models))
        return got, most

    expected, _ = run(None)
    got, most = run(cache_size)
    assert len(expected) >= 8
    assert got == expected
    assert most == cache_size  # evicted after every batch, and reloaded when needed


async def test_a_committed_batch_sets_the_signal_gauges_from_the_pipelines_readings() -> None:
    """Step 6 reads the signals the batch changed through the pipeline's typed readings, the
    same figures the metrics read from the core's state directly."""
    from prometheus_client import CollectorRegistry

    from stream_monitor.observability import WorkerMetrics

    reg = CollectorRegistry()
    w = worker(Producer())
    w.metrics = WorkerMetrics(reg)

    async def commit() -> None:
        return None

    await w.step(raws()[:1200], commit)
    direct = CollectorRegistry()
    WorkerMetrics(direct).observe_models(w.pipeline.state.models.values())

    def gauges(r: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in r.collect()
                if m.name.startswith("stream_monitor_signal_") for s in m.samples}

    got = gauges(reg)
    assert got == gauges(direct)
    assert any(name == "stream_monitor_signal_window_values" and v > 0
               for (name, _), v in got.items())
