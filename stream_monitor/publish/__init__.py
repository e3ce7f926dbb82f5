"""Publish predictions and labels from your service, as the worker expects them
(docs/contracts.md "Publishing from your service").

>>> import asyncio
>>> from stream_monitor.publish import Publisher
>>> async def serve() -> None:                                      # doctest: +SKIP
...     async with Publisher(bootstrap_servers="kafka:9092") as pub:
...         await pub.publish_inference("req-1", "credit-risk", {"amount": 151.2}, 0.42)

:class:`Publisher` (asyncio), :class:`SyncPublisher` (blocking code), the event builders that
check an event against the contract, and the errors. Faust apps: ``stream_monitor.publish.faust``
(the ``[faust]`` extra). Avro, Protobuf and JSON Schema through a Schema Registry:
``stream_monitor.publish.registry.registry_serializer`` as the ``value_serializer``.
"""

from .errors import (
    DeliveryError,
    DeliveryFailure,
    FlushTimeoutError,
    InvalidEventError,
    PublishError,
)
from .events import (
    ValueSerializer,
    headers,
    inference_event,
    json_serializer,
    kafka_key,
    label_event,
    validate_event,
)
from .publisher import DeliveryCallback, Publisher, PublishStats
from .settings import PublisherSettings
from .sync import SyncPublisher

__all__ = [
    "DeliveryCallback",
    "DeliveryError",
    "DeliveryFailure",
    "FlushTimeoutError",
    "InvalidEventError",
    "PublishError",
    "PublishStats",
    "Publisher",
    "PublisherSettings",
    "SyncPublisher",
    "ValueSerializer",
    "headers",
    "inference_event",
    "json_serializer",
    "kafka_key",
    "label_event",
    "validate_event",
]
