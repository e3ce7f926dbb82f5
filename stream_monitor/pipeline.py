"""One batch, start to finish, for any transport: decode, load state, detect, save state.

Adapters (Kafka worker, file replay) own the transport: they hand raw records to
:meth:`BatchPipeline.run` and get back the output records to publish. State is saved before
this returns, so an adapter that publishes the outputs and then acknowledges the input has
acknowledged nothing whose effects could be lost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import MonitorConfig
from .contracts.records import DeadLetter, InferenceEvent, RawRecord, decode_inference, encode_record
from .core.monitor import ModelState, Monitor, MonitorState
from .state.base import ModelDelta, SignalDelta, StateStore

__all__ = ["BatchPipeline", "BatchOutput", "OutputRecord"]


@dataclass(slots=True, frozen=True)
class OutputRecord:
    """A record to publish: topic, Kafka key and headers, and the JSON body."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    record: dict[str, Any]


@dataclass(slots=True)
class BatchOutput:
    records: list[OutputRecord] = field(default_factory=list)
    events: int = 0
    dead_letters: int = 0
    alerts: int = 0
    retrain_requests: int = 0
    unwatched: int = 0
    redelivered: int = 0


class BatchPipeline:
    def __init__(self, config: MonitorConfig, store: StateStore, *, clock: Any = time.time) -> None:
        self.config = config
        self.monitor = Monitor(config)
        self.state = MonitorState()
        self.store = store
        self.clock = clock

    def forget(self) -> None:
        """Drop the in-memory cache (e.g. on a rebalance); state is reloaded from the store."""
        self.state = MonitorState()

    async def _load(self, model_ids: set[str]) -> None:
        missing = self.state.missing(model_ids)
        if not missing:
            return
        snaps = await self.store.load(missing)
        for mid, snap in snaps.items():
            model = self.monitor.restore_model(snap.meta)
            if model is None:
                continue  # no longer watched by this config
            for s in snap.signals:
                self.monitor.restore_signal(model, s.meta, s.recent, s.reference)
            self.state.models[mid] = model

    async def run(self, raws: Sequence[RawRecord]) -> BatchOutput:
        """Process one batch and persist its state. Raises TransientStoreError (retry it)."""
        events: list[InferenceEvent] = []
        dead: list[DeadLetter] = []
        for raw in raws:
            ev = decode_inference(raw)
            (events if type(ev) is InferenceEvent else dead).append(ev)  # type: ignore[arg-type]
        await self._load({e.model_id for e in events})
        result = self.monitor.process(events, self.state)
        deltas = [_delta(m) for m in result.dirty_models]
        try:
            await self.store.save(deltas)
        except BaseException:
            # The batch will be retried from the same input: forget what it did in memory.
            self.forget()
            raise
        for m in result.dirty_models:
            m.dirty = False
            for s in m.signals.values():
                if s.dirty:
                    s.mark_saved()
        out = BatchOutput(events=len(raws), dead_letters=len(dead), alerts=len(result.alerts),
                          retrain_requests=len(result.retrain_requests), unwatched=result.unwatched,
                          redelivered=result.redelivered)
        topics = self.config.topics
        now = self.clock()
        for d in dead:
            rec = d.to_record(now)
            out.records.append(_output(topics.dead_letter, d.raw.key or b"", rec,
                                       (("reason-code", d.reason_code.encode()),)))
        for a in result.alerts:
            out.records.append(_output(topics.alerts, a["model_id"].encode(), a,
                                       (("alert-id", a["alert_id"].encode()),
                                        ("signal", a["signal"].encode()))))
        for r in result.retrain_requests:
            out.records.append(_output(topics.retrain, r["model_id"].encode(), r,
                                       (("request-id", r["request_id"].encode()),)))
        return out


_SCHEMA_HEADER = {"drift_alert": b"drift-alert/v1", "retrain_request": b"retrain-request/v1",
                  "dead_letter": b"dead-letter/v1"}


def _output(topic: str, key: bytes, rec: dict[str, Any], extra: tuple[tuple[str, bytes], ...]) -> OutputRecord:
    headers = (("content-type", b"application/json"), ("schema", _SCHEMA_HEADER[rec["type"]]), *extra)
    return OutputRecord(topic, key, encode_record(rec), headers, rec)


def _delta(model: ModelState) -> ModelDelta:
    signals = []
    for s in model.dirty_signals():
        signals.append(SignalDelta(
            signal=s.signal,
            meta=s.meta(),
            recent=s.recent,
            reference=s.reference if s.reference_changed else None,
        ))
    return ModelDelta(model.model_id, model.meta(), signals)
