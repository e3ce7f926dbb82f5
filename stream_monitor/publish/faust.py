"""For Faust apps (the ``[faust]`` extra: ``pip install 'stream-monitor[faust]'``): typed
``faust.Record`` models of the inference and label events, and helpers that send them from an
agent with the key, headers and checks of :class:`~stream_monitor.publish.Publisher`.

A service that serves predictions in a Faust agent publishes each one in a line::

    from stream_monitor.publish.faust import InferenceRecord, send_inference

    monitored = app.topic("inference-events")

    @app.agent(requests)
    async def serve(stream):
        async for req in stream:
            score = model.predict(req.features)
            await send_inference(monitored, InferenceRecord(
                event_id=req.id, model_id="credit-risk", features=req.features,
                prediction=score))

The record goes out through the app's own producer (Faust batches it and flushes before it
commits the agent's input offsets), as the bytes of ``value_serializer`` (JSON by default, or a
Schema Registry serializer), key ``model_id``, headers ``content-type`` and ``schema``. An
invalid record raises :class:`~stream_monitor.publish.InvalidEventError` before anything is
sent. This module is the only one of stream-monitor that imports ``faust``.

>>> rec = InferenceRecord(event_id="e-1", model_id="credit-risk", features={"amount": 151.2},
...                       prediction=0.42)
>>> event_of(rec)
{'event_id': 'e-1', 'model_id': 'credit-risk', 'features': {'amount': 151.2}, 'prediction': 0.42}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

try:
    import faust
except ImportError as exc:  # pragma: no cover - depends on the install
    from ..errors import MissingExtraError

    raise MissingExtraError("stream_monitor.publish.faust needs faust-streaming, which is not "
                            "installed: pip install 'stream-monitor[faust]'") from exc

from .errors import DeliveryFailure
from .events import EventKind, ValueSerializer, headers, json_serializer, kafka_key, validate_event

__all__ = ["InferenceRecord", "LabelRecord", "event_of", "send_event", "send_inference",
           "send_label"]


class InferenceRecord(faust.Record, include_metadata=False):
    """An inference event (schema ``inference-event``): one prediction of a model."""

    event_id: str
    model_id: str
    features: dict[str, Any]  # name -> number, string, bool or null
    prediction: Any  # a number, a bool or a class label (string)
    model_version: str | None = None
    timestamp: Any = None  # epoch seconds or an ISO 8601 string; None: the record's time
    label: Any = None


class LabelRecord(faust.Record, include_metadata=False):
    """A label event (schema ``label-event``): the true outcome of an earlier prediction."""

    event_id: str
    model_id: str
    label: Any  # a number, a bool or a class (string); not null
    timestamp: Any = None


def event_of(record: faust.Record | Mapping[str, Any]) -> dict[str, Any]:
    """The event dict of a record (or a mapping): its fields, optional ones left out when
    ``None``."""
    d = record.asdict() if isinstance(record, faust.Record) else dict(record)
    for optional in ("model_version", "timestamp", "label"):
        if optional in d and d[optional] is None and not (
                optional == "label" and isinstance(record, LabelRecord)):
            del d[optional]
    return d


async def send_event(topic: Any, kind: EventKind, record: faust.Record | Mapping[str, Any], *,
                     extra_headers: Iterable[tuple[str, bytes]] = (),
                     value_serializer: ValueSerializer = json_serializer,
                     on_delivery_error: Callable[[DeliveryFailure], None] | None = None,
                     ) -> Any:
    """Check ``record`` as a ``kind`` event and send it to ``topic`` (a Faust topic, e.g.
    ``app.topic("inference-events")``). Returns the future of its delivery (Faust's
    ``RecordMetadata``); a failure is given to ``on_delivery_error`` when set (await the future
    to see it otherwise)."""
    event = event_of(record)
    validate_event(kind, event)
    name = _topic_name(topic)
    value = value_serializer(name, event)
    if inspect.isawaitable(value):
        value = await value
    key = kafka_key(event)
    fut = await topic.send(key=key, value=value,
                           headers=[*headers(kind, value_serializer), *extra_headers],
                           key_serializer="raw", value_serializer="raw")
    if on_delivery_error is not None:
        report = on_delivery_error
        event_id = str(event["event_id"])

        def settled(f: Any) -> None:
            error = (Exception("the send was cancelled") if f.cancelled() else f.exception())
            if error is not None:
                report(DeliveryFailure(name, key, event_id, kind, error))

        fut.add_done_callback(settled)
    return fut


async def send_inference(topic: Any, record: InferenceRecord | Mapping[str, Any],
                         **options: Any) -> Any:
    """:func:`send_event` of an inference event."""
    return await send_event(topic, "inference", record, **options)


async def send_label(topic: Any, record: LabelRecord | Mapping[str, Any],
                     **options: Any) -> Any:
    """:func:`send_event` of a label event."""
    return await send_event(topic, "label", record, **options)


def _topic_name(topic: Any) -> str:
    names = getattr(topic, "topics", None)
    if names:
        return str(next(iter(names)))
    return str(getattr(topic, "get_topic_name", lambda: "")())
