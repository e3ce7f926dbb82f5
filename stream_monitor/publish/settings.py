"""The publisher's settings: the worker's connection settings (brokers, TLS, SASL, secrets from
files) plus the topics and the producer's batching, each from an environment variable."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..settings import ConnectionSettings

__all__ = ["PublisherSettings"]


class PublisherSettings(ConnectionSettings):
    """How a service publishes its predictions and labels (docs/contracts.md "Publishing from
    your service"). Kafka connection and security: the same variables as the worker's
    (``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``,
    ``KAFKA_SSL_*``); the topics: the same as the worker's overrides.

    >>> s = PublisherSettings(KAFKA_BOOTSTRAP_SERVERS="kafka:9092", SM_PUBLISH_LINGER_MS=20)
    >>> s.kafka_bootstrap_servers, s.topic_inference, s.linger_ms, s.acks
    ('kafka:9092', 'inference-events', 20, 'all')
    """

    topic_inference: str = Field("inference-events", validation_alias="SM_TOPIC_INFERENCE",
                                 description="Topic of inference events.")
    topic_labels: str = Field("inference-labels", validation_alias="SM_TOPIC_LABELS",
                              description="Topic of label events.")
    client_id: str | None = Field(None, validation_alias="SM_PUBLISH_CLIENT_ID",
                                  description="Kafka client id of the producer.")
    linger_ms: int = Field(5, ge=0, validation_alias="SM_PUBLISH_LINGER_MS",
                           description="How long a batch waits for more records before it is "
                           "sent (higher: fewer, larger requests).")
    max_batch_bytes: int = Field(262_144, ge=1024, validation_alias="SM_PUBLISH_MAX_BATCH_BYTES",
                                 description="Largest batch per partition, in bytes.")
    max_request_bytes: int = Field(1_048_576, ge=1024,
                                   validation_alias="SM_PUBLISH_MAX_REQUEST_BYTES",
                                   description="Largest request (and so record) the producer "
                                   "sends; the topic's max.message.bytes bounds it too.")
    acks: Literal["all", "1", "0"] = Field(
        "all", validation_alias="SM_PUBLISH_ACKS",
        description="all: a record counts as delivered once every in-sync replica has it "
        "(with idempotence: no duplicates on retries). 1: the leader only. 0: no answer, so "
        "no failure is ever seen.")
    compression: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        None, validation_alias="SM_PUBLISH_COMPRESSION",
        description="Batch compression (snappy, lz4, zstd need their Python packages).")
    request_timeout_seconds: float = Field(
        30.0, gt=0, validation_alias="SM_PUBLISH_REQUEST_TIMEOUT_SECONDS",
        description="How long a record may wait for the broker (metadata, a full buffer, the "
        "acknowledgement) before it counts as not delivered.")

    def acks_value(self) -> int | str:
        return "all" if self.acks == "all" else int(self.acks)
