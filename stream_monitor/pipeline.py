"""One batch, start to finish, for any transport: decode, load state, detect, save state.

Adapters (Kafka worker, file replay) own the transport: they hand raw records to
:meth:`BatchPipeline.run` and get back the output records to publish. State is saved before
this returns, so an adapter that publishes the outputs and then acknowledges the input has
acknowledged nothing whose effects could be lost.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .config import MonitorConfig
from .contracts.records import DeadLetter, InferenceEvent, RawRecord, decode_inference, encode_record
from .core.monitor import BatchResult, ModelState, Monitor, MonitorState
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
    # Published outputs to delete from the store's outbox once Kafka confirmed them.
    outbox: dict[str, list[str]] = field(default_factory=dict)
    # Outputs found in the outbox of models loaded by this batch: saved by an earlier run that
    # stopped before Kafka confirmed them. Already included in `records`.
    recovered: int = 0


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

    async def _load(self, model_ids: set[str]) -> dict[str, dict[str, bytes]]:
        """Load models not in the cache; returns their unconfirmed outboxes."""
        missing = self.state.missing(model_ids)
        if not missing:
            return {}
        snaps = await self.store.load(missing)
        outboxes = {}
        for mid, snap in snaps.items():
            if snap.outbox:
                outboxes[mid] = snap.outbox
            model = self.monitor.restore_model(snap.meta)
            if model is None:
                continue  # no longer watched by this config
            model.version = snap.version
            for s in snap.signals:
                self.monitor.restore_signal(model, s.meta, s.recent, s.reference)
            self.state.models[mid] = model
        return outboxes

    async def run(self, raws: Sequence[RawRecord]) -> BatchOutput:
        """Process one batch and persist its state. Raises TransientStoreError (retry it)."""
        events: list[InferenceEvent] = []
        dead: list[DeadLetter] = []
        for raw in raws:
            ev = decode_inference(raw)
            (events if type(ev) is InferenceEvent else dead).append(ev)  # type: ignore[arg-type]
        recovered = await self._load({e.model_id for e in events})
        result = self.monitor.process(events, self.state)
        out = BatchOutput(events=len(raws), dead_letters=len(dead), alerts=len(result.alerts),
                          retrain_requests=len(result.retrain_requests), unwatched=result.unwatched,
                          redelivered=result.redelivered)
        # Outputs an earlier run saved but never saw confirmed go out first, in their order.
        for mid, box in recovered.items():
            for oid in sorted(box):
                out.records.append(decode_output(box[oid]))
                out.outbox.setdefault(mid, []).append(oid)
                out.recovered += 1
        topics = self.config.topics
        now = self.clock()
        for d in dead:
            # Not in the outbox: a dead letter is a pure function of its input event, which is
            # redelivered (and dead-lettered again, with the same id) if this run dies.
            rec = d.to_record(now)
            out.records.append(_output(topics.dead_letter, d.raw.key or b"", rec,
                                       (("reason-code", d.reason_code.encode()),)))
        per_model: dict[str, dict[str, bytes]] = {}
        for rec in self._outputs(result):
            out.records.append(rec)
            mid = rec.record["model_id"]
            box = per_model.setdefault(mid, {})
            # Outbox fields sort in publish order: the version being saved, then the index.
            field_name = f"{self.state.models[mid].version:012d}.{len(box):05d}"
            box[field_name] = encode_output(rec)
            out.outbox.setdefault(mid, []).append(field_name)
        deltas = [_delta(m, per_model.get(m.model_id, {})) for m in result.dirty_models]
        try:
            await self.store.save(deltas)
        except BaseException:
            # The batch will be retried from the same input (or dropped, when fenced): forget
            # what it did in memory.
            self.forget()
            raise
        for m in result.dirty_models:
            m.dirty = False
            m.version += 1
            for s in m.signals.values():
                if s.dirty:
                    s.mark_saved()
        return out

    def _outputs(self, result: BatchResult) -> list[OutputRecord]:
        topics = self.config.topics
        outs = []
        for a in result.alerts:
            outs.append(_output(topics.alerts, a["model_id"].encode(), a,
                                (("alert-id", a["alert_id"].encode()),
                                 ("signal", a["signal"].encode()))))
        for r in result.retrain_requests:
            outs.append(_output(topics.retrain, r["model_id"].encode(), r,
                                (("request-id", r["request_id"].encode()),)))
        return outs


_SCHEMA_HEADER = {"drift_alert": b"drift-alert/v1", "retrain_request": b"retrain-request/v1",
                  "dead_letter": b"dead-letter/v1", "state_reset": b"state-reset/v1"}


def _output(topic: str, key: bytes, rec: dict[str, Any], extra: tuple[tuple[str, bytes], ...]) -> OutputRecord:
    headers = (("content-type", b"application/json"), ("schema", _SCHEMA_HEADER[rec["type"]]), *extra)
    return OutputRecord(topic, key, encode_record(rec), headers, rec)


def encode_output(rec: OutputRecord) -> bytes:
    """An output record as stored in the outbox (JSON; bytes as base64)."""
    b64 = base64.b64encode
    return orjson.dumps({"topic": rec.topic, "key": b64(rec.key).decode(),
                         "value": b64(rec.value).decode(),
                         "headers": [[k, b64(v).decode()] for k, v in rec.headers]})


def decode_output(raw: bytes) -> OutputRecord:
    d = orjson.loads(raw)
    b64d = base64.b64decode
    value = b64d(d["value"])
    return OutputRecord(d["topic"], b64d(d["key"]), value,
                        tuple((k, b64d(v)) for k, v in d["headers"]), orjson.loads(value))


def _delta(model: ModelState, outbox: dict[str, bytes]) -> ModelDelta:
    signals = []
    for s in model.dirty_signals():
        signals.append(SignalDelta(
            signal=s.signal,
            meta=s.meta(),
            recent=s.recent,
            reference=s.reference if s.reference_changed else None,
        ))
    return ModelDelta(model.model_id, model.meta(), signals, model.version, outbox)
