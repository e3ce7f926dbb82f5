"""Where and how to run, from the environment (12-factor): the worker's :class:`Settings` and
the Kafka and Redis connection settings it shares with the notifier
(:class:`ConnectionSettings`). Validated at start; every problem names the variable and the
fix, never a secret's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ConnectionSettings",
    "Settings",
    "read_secret_file",
    "settings_problems",
]

# ---------------------------------------------------------------------------------------------
# Connection security (docs/security.md). Names follow the Kafka client properties
# (security.protocol -> KAFKA_SECURITY_PROTOCOL, ssl.ca.location -> KAFKA_SSL_CA_LOCATION, ...).

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def read_secret_file(path: Path) -> str:
    """A secret from a mounted file (Docker/Kubernetes secrets): its text without the final
    newline that editors and ``echo`` add."""
    return path.read_text().rstrip("\r\n")


class ConnectionSettings(BaseSettings):
    """How to reach Kafka and Redis securely: TLS, SASL, ACL users, secrets from files.

    Shared by the worker's :class:`Settings` and the notifier's settings. Secrets are
    ``SecretStr`` (shown as ``**********``) and each can come from a ``…_FILE`` instead.
    Contradictory combinations fail at start, naming the variable and the fix.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="host:port[,host:port...] of the brokers.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL",
                           description="redis:// or rediss:// (TLS) URL; may hold user:password.")
    kafka_security_protocol: KafkaProtocol = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL",
        description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (login, no TLS) or SASL_SSL.")
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, validation_alias="KAFKA_SASL_MECHANISM",
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_*.")
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME",
                                            description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD",
                                                  description="SASL password (secret).")
    kafka_sasl_password_file: Path | None = Field(
        None, validation_alias="KAFKA_SASL_PASSWORD_FILE",
        description="File holding the SASL password (instead of KAFKA_SASL_PASSWORD).")
    kafka_ssl_ca_location: Path | None = Field(
        None, validation_alias="KAFKA_SSL_CA_LOCATION",
        description="PEM file of the CA(s) that signed the brokers' certificates; default: the "
        "system's trust store.")
    kafka_ssl_certificate_location: Path | None = Field(
        None, validation_alias="KAFKA_SSL_CERTIFICATE_LOCATION",
        description="Client certificate (PEM) for mutual TLS.")
    kafka_ssl_key_location: Path | None = Field(
        None, validation_alias="KAFKA_SSL_KEY_LOCATION",
        description="Private key (PEM) of the client certificate.")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, validation_alias="KAFKA_SSL_KEY_PASSWORD",
        description="Password of an encrypted client key (secret).")
    kafka_ssl_key_password_file: Path | None = Field(
        None, validation_alias="KAFKA_SSL_KEY_PASSWORD_FILE",
        description="File holding the client key's password.")
    kafka_ssl_check_hostname: bool = Field(
        True, validation_alias="KAFKA_SSL_CHECK_HOSTNAME",
        description="Check that the broker certificate names the host connected to.")
    redis_username: str | None = Field(
        None, validation_alias="REDIS_USERNAME",
        description="Redis ACL user (instead of a user in REDIS_URL).")
    redis_password: SecretStr | None = Field(
        None, validation_alias="REDIS_PASSWORD",
        description="Redis password (secret; instead of one in REDIS_URL).")
    redis_password_file: Path | None = Field(
        None, validation_alias="REDIS_PASSWORD_FILE",
        description="File holding the Redis password.")
    redis_ssl_ca_certs: Path | None = Field(
        None, validation_alias="REDIS_SSL_CA_CERTS",
        description="CA (PEM) of the Redis server certificate; needs a rediss:// URL.")
    redis_ssl_certfile: Path | None = Field(
        None, validation_alias="REDIS_SSL_CERTFILE",
        description="Client certificate (PEM) for Redis mutual TLS.")
    redis_ssl_keyfile: Path | None = Field(
        None, validation_alias="REDIS_SSL_KEYFILE", description="Its private key (PEM).")

    # -- secrets, read when a client is built (a rotated secret file is picked up on restart) --
    def kafka_sasl_password_value(self) -> str | None:
        return _secret(self.kafka_sasl_password, self.kafka_sasl_password_file)

    def kafka_ssl_key_password_value(self) -> str | None:
        return _secret(self.kafka_ssl_key_password, self.kafka_ssl_key_password_file)

    def redis_password_value(self) -> str | None:
        return _secret(self.redis_password, self.redis_password_file)

    @model_validator(mode="after")
    def _consistent(self) -> ConnectionSettings:
        problems = _connection_problems(self)
        if problems:
            raise ValueError("\n".join(f"{var}: {msg}" for var, msg in problems))
        return self


def _secret(value: SecretStr | None, file: Path | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    return read_secret_file(file) if file is not None else None


def _connection_problems(s: ConnectionSettings) -> list[tuple[str, str]]:
    """(variable, problem and fix) for every contradiction; never shows a secret."""
    problems: list[tuple[str, str]] = []
    proto = s.kafka_security_protocol
    sasl, tls = proto.startswith("SASL_"), proto in ("SSL", "SASL_SSL")

    def readable(var: str, path: Path | None) -> None:
        if path is None:
            return
        try:
            path.open("rb").close()
        except OSError as exc:
            problems.append((var, f"cannot read {path}: {exc.strerror}; mount the file there "
                             "or fix the path"))

    for var, value, file in (
            ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password, s.kafka_sasl_password_file),
            ("KAFKA_SSL_KEY_PASSWORD", s.kafka_ssl_key_password, s.kafka_ssl_key_password_file),
            ("REDIS_PASSWORD", s.redis_password, s.redis_password_file)):
        if value is not None and file is not None:
            problems.append((var, f"both {var} and {var}_FILE are set; keep one"))
        readable(f"{var}_FILE", file)
    if sasl:
        if s.kafka_sasl_mechanism is None:
            problems.append(("KAFKA_SASL_MECHANISM", f"KAFKA_SECURITY_PROTOCOL={proto} needs a "
                             "mechanism; set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
        if not s.kafka_sasl_username:
            problems.append(("KAFKA_SASL_USERNAME", f"KAFKA_SECURITY_PROTOCOL={proto} logs in; "
                             "set the user name"))
        if s.kafka_sasl_password is None and s.kafka_sasl_password_file is None:
            problems.append(("KAFKA_SASL_PASSWORD", f"KAFKA_SECURITY_PROTOCOL={proto} logs in; "
                             "set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE"))
    else:
        given = [v for v, x in (("KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
                                ("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
                                ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password),
                                ("KAFKA_SASL_PASSWORD_FILE", s.kafka_sasl_password_file))
                 if x is not None]
        if given:
            problems.append(("KAFKA_SECURITY_PROTOCOL", f"{', '.join(given)} set, but {proto} "
                             "sends no login; set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or "
                             "SASL_PLAINTEXT), or unset them"))
    tls_files = [("KAFKA_SSL_CA_LOCATION", s.kafka_ssl_ca_location),
                 ("KAFKA_SSL_CERTIFICATE_LOCATION", s.kafka_ssl_certificate_location),
                 ("KAFKA_SSL_KEY_LOCATION", s.kafka_ssl_key_location)]
    if not tls:
        given = [v for v, x in tls_files if x is not None]
        if given:
            problems.append(("KAFKA_SECURITY_PROTOCOL", f"{', '.join(given)} set, but {proto} "
                             "does not use TLS; set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, or "
                             "unset them"))
    for var, path in tls_files:
        readable(var, path)
    if (s.kafka_ssl_certificate_location is None) != (s.kafka_ssl_key_location is None):
        problems.append(("KAFKA_SSL_KEY_LOCATION", "mutual TLS needs both "
                         "KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"))
    url = s.redis_url
    redis_tls = [("REDIS_SSL_CA_CERTS", s.redis_ssl_ca_certs),
                 ("REDIS_SSL_CERTFILE", s.redis_ssl_certfile),
                 ("REDIS_SSL_KEYFILE", s.redis_ssl_keyfile)]
    given = [v for v, x in redis_tls if x is not None]
    if given and url is not None and not url.startswith(("rediss://", "rediss+")):
        problems.append(("REDIS_URL", f"{', '.join(given)} set, but REDIS_URL does not use TLS; "
                         "write it as rediss://host:port/db"))
    for var, path in redis_tls:
        readable(var, path)
    if (s.redis_ssl_certfile is None) != (s.redis_ssl_keyfile is None):
        problems.append(("REDIS_SSL_KEYFILE", "mutual TLS needs both REDIS_SSL_CERTFILE and "
                         "REDIS_SSL_KEYFILE"))
    if (s.redis_password is not None or s.redis_password_file is not None) and url:
        from urllib.parse import urlsplit

        try:
            in_url = urlsplit(url).password
        except ValueError:
            in_url = None
        if in_url:
            problems.append(("REDIS_PASSWORD", "REDIS_URL holds a password too; keep one "
                             "(REDIS_PASSWORD_FILE keeps it out of the environment)"))
    return problems


def settings_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(variable, message) for each error of a settings class, without the input values (they
    may hold secrets)."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if not loc and err["type"] == "value_error":
            for line in msg.removeprefix("Value error, ").splitlines():
                var, _, text = line.partition(": ")
                problems.append((var, text))
            continue
        problems.append((loc or "(settings)", msg))
    return problems


class Settings(ConnectionSettings):
    """Where and how to run, from the environment (12-factor). Each field's env var is listed."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092",
                                         validation_alias="KAFKA_BOOTSTRAP_SERVERS",
                                         description="host:port[,host:port...] of the brokers.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL",
                           description="redis:// or rediss:// (TLS) URL; may hold user:password.")
    redis_cluster: bool = Field(
        False, validation_alias="REDIS_CLUSTER",
        description="REDIS_URL names a node of a Redis Cluster (the scheme redis+cluster:// "
        "says the same); every store then uses a cluster client (docs/scaling.md).")
    redis_wait_replicas: int = Field(
        1, ge=0, validation_alias="SM_REDIS_WAIT_REPLICAS",
        description="On a Redis Cluster, a batch's state save waits (WAIT) until this many "
        "replicas of each master it wrote to have it, before its outputs are published, so a "
        "failover does not lose it; 0 turns this off. A single Redis ignores it.")
    app_id: str = Field("stream-monitor", validation_alias="SM_APP_ID",
                        description="Kafka consumer group id and Faust app id.")
    key_prefix: str = Field("sm", validation_alias="SM_KEY_PREFIX", description="Redis key prefix.")
    batch_max: int = Field(5000, ge=1, validation_alias="SM_BATCH_MAX",
                           description="Most events per batch.")
    batch_within_seconds: float = Field(0.2, gt=0, validation_alias="SM_BATCH_WITHIN_SECONDS",
                                        description="Longest wait to fill a batch.")
    topic_partitions: int = Field(1, ge=1, validation_alias="SM_TOPIC_PARTITIONS",
                                  description="Partitions for topics the worker creates.")
    topic_inference: str | None = Field(None, validation_alias="SM_TOPIC_INFERENCE",
                                        description="Overrides topics.inference of the config.")
    topic_alerts: str | None = Field(None, validation_alias="SM_TOPIC_ALERTS",
                                     description="Overrides topics.alerts of the config.")
    topic_retrain: str | None = Field(None, validation_alias="SM_TOPIC_RETRAIN",
                                      description="Overrides topics.retrain of the config.")
    topic_dead_letter: str | None = Field(
        None, validation_alias="SM_TOPIC_DEAD_LETTER",
        description="Overrides topics.dead_letter of the config.")
    topic_operations: str | None = Field(
        None, validation_alias="SM_TOPIC_OPERATIONS",
        description="Overrides topics.operations of the config.")
    topic_labels: str | None = Field(None, validation_alias="SM_TOPIC_LABELS",
                                     description="Overrides topics.labels of the config.")
    topic_deployments: str | None = Field(
        None, validation_alias="SM_TOPIC_DEPLOYMENTS",
        description="Overrides topics.deployments of the config.")
    topic_incidents: str | None = Field(
        None, validation_alias="SM_TOPIC_INCIDENTS",
        description="Overrides topics.incidents of the config.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, validation_alias="SM_METRICS_PORT",
        description="Port of /metrics, /healthz and /readyz; 0 turns them off.")
    metrics_host: str = Field(
        "0.0.0.0", validation_alias="SM_METRICS_HOST",
        description="Bind address of /metrics, /healthz and /readyz: 0.0.0.0 (all interfaces, "
        "what a Kubernetes probe and scrape need), or 127.0.0.1 behind a local auth proxy.")
    metrics_max_models: int = Field(
        1000, ge=1, validation_alias="SM_METRICS_MAX_MODELS",
        description="Models with their own `model` label on /metrics; the rest share "
        "model=\"__other__\" (bounds memory and Prometheus cardinality).")
    metrics_max_signal_series: int = Field(
        5000, ge=0, validation_alias="SM_METRICS_MAX_SIGNAL_SERIES",
        description="(model, signal) pairs with per-signal gauges (window sizes, means).")
    log_format: Literal["text", "json"] = Field("text", validation_alias="SM_LOG_FORMAT",
                                                description="json: one JSON object per log line.")
    session_timeout_seconds: float = Field(
        10.0, ge=6, validation_alias="SM_SESSION_TIMEOUT_SECONDS",
        description="Kafka group session timeout: how long a crashed worker's partitions wait "
        "before another worker takes them over (Faust's default is 60 s).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="SM_LOG_LEVEL", description="DEBUG, INFO, WARNING or ERROR.")
    data_dir: str | None = Field(None, validation_alias="SM_DATA_DIR",
                                 description="Faust's data directory (default: a temp folder).")
    fetch_max_wait_ms: int = Field(
        100, ge=1, le=1500, validation_alias="SM_FETCH_MAX_WAIT_MS",
        description="How long the broker may hold a fetch for partitions without new records "
        "(Faust's own value is 1500 ms, which stalls a busy partition next to an idle one).")
    client_id: str | None = Field(
        None, validation_alias="SM_CLIENT_ID",
        description="Kafka client id of the worker's consumer and producer (shown by "
        "kafka-consumer-groups --describe); default <SM_APP_ID>-<host>-<pid>.")
    shutdown_timeout_seconds: float = Field(
        30.0, gt=0, validation_alias="SM_SHUTDOWN_TIMEOUT_SECONDS",
        description="On SIGTERM/SIGINT the worker exits within this many seconds, whatever is "
        "stuck: the batch in flight is finished or left uncommitted for redelivery.")
    model_cache_size: int = Field(
        5000, ge=1, validation_alias="SM_MODEL_CACHE_SIZE",
        description="Model states (units) kept in memory, least recently used evicted first; "
        "an evicted model is reloaded from Redis on its next event.")
    max_output_bytes: int = Field(
        1_000_000, ge=10_000, validation_alias="SM_MAX_OUTPUT_BYTES",
        description="Largest output record (key + value + headers) the worker sends; the "
        "producer's max_request_size is set above it. Keep it at or below the output topics' "
        "max.message.bytes.")
    store_retry_max_seconds: float = Field(
        2.0, gt=0, validation_alias="SM_STORE_RETRY_MAX_SECONDS",
        description="Cap on the backoff while Redis is down (the worker tries again within "
        "this long of its return).")

    # -- Schema Registry (input.*.format avro/protobuf/json_schema; docs/contracts.md) ---------
    schema_registry_url: str | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_URL",
        description="Base URL of a Confluent-compatible Schema Registry API (Apicurio: "
        "http(s)://host:port/apis/ccompat/v7); needed when an input format is not json.")
    schema_registry_username: str | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_USERNAME",
        description="Basic-auth user of the registry.")
    schema_registry_password: SecretStr | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_PASSWORD",
        description="Basic-auth password of the registry (secret).")
    schema_registry_password_file: Path | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_PASSWORD_FILE",
        description="File holding the registry password.")
    schema_registry_ssl_ca_location: Path | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_SSL_CA_LOCATION",
        description="CA (PEM) of the registry's https certificate; default: the system's.")
    schema_registry_ssl_certificate_location: Path | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION",
        description="Client certificate (PEM) for mutual TLS with the registry.")
    schema_registry_ssl_key_location: Path | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_SSL_KEY_LOCATION",
        description="Its private key (PEM).")
    schema_registry_timeout_seconds: float = Field(
        10.0, gt=0, validation_alias="SCHEMA_REGISTRY_TIMEOUT_SECONDS",
        description="Timeout of one registry request; a timeout counts as the registry down.")
    schema_registry_retry_max_seconds: float = Field(
        5.0, gt=0, validation_alias="SCHEMA_REGISTRY_RETRY_MAX_SECONDS",
        description="Cap on the backoff while the registry is down (the batch waits, "
        "uncommitted).")

    def schema_registry_password_value(self) -> str | None:
        return _secret(self.schema_registry_password, self.schema_registry_password_file)

    @model_validator(mode="after")
    def _registry_consistent(self) -> Settings:
        problems = _registry_problems(self)
        if problems:
            raise ValueError("\n".join(f"{var}: {msg}" for var, msg in problems))
        return self


def _registry_problems(s: Settings) -> list[tuple[str, str]]:
    """(variable, problem and fix) of the Schema Registry settings; never shows a secret."""
    problems: list[tuple[str, str]] = []
    url = s.schema_registry_url
    if url is not None and not url.startswith(("http://", "https://")):
        problems.append(("SCHEMA_REGISTRY_URL", "write it as http(s)://host:port[/path], e.g. "
                         "http://registry:8080/apis/ccompat/v7"))
    password = s.schema_registry_password is not None or s.schema_registry_password_file is not None
    if s.schema_registry_password is not None and s.schema_registry_password_file is not None:
        problems.append(("SCHEMA_REGISTRY_PASSWORD", "both SCHEMA_REGISTRY_PASSWORD and "
                         "SCHEMA_REGISTRY_PASSWORD_FILE are set; keep one"))
    if password != (s.schema_registry_username is not None):
        problems.append(("SCHEMA_REGISTRY_USERNAME", "basic auth needs both "
                         "SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD(_FILE)"))
    files = [("SCHEMA_REGISTRY_PASSWORD_FILE", s.schema_registry_password_file),
             ("SCHEMA_REGISTRY_SSL_CA_LOCATION", s.schema_registry_ssl_ca_location),
             ("SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION",
              s.schema_registry_ssl_certificate_location),
             ("SCHEMA_REGISTRY_SSL_KEY_LOCATION", s.schema_registry_ssl_key_location)]
    for var, path in files:
        if path is None:
            continue
        try:
            path.open("rb").close()
        except OSError as exc:
            problems.append((var, f"cannot read {path}: {exc.strerror}; mount the file there "
                             "or fix the path"))
    tls = [v for v, p in files[1:] if p is not None]
    if tls and url is not None and not url.startswith("https://"):
        problems.append(("SCHEMA_REGISTRY_URL", f"{', '.join(tls)} set, but the URL is not "
                         "https://; use https, or unset them"))
    if ((s.schema_registry_ssl_certificate_location is None)
            != (s.schema_registry_ssl_key_location is None)):
        problems.append(("SCHEMA_REGISTRY_SSL_KEY_LOCATION", "mutual TLS needs both "
                         "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION and "
                         "SCHEMA_REGISTRY_SSL_KEY_LOCATION"))
    return problems
