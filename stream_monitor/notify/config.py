"""Notification targets (YAML) and the notifier's settings (environment).

The YAML file says *where* alerts go: any mix of Alertmanager, PagerDuty, OpsGenie, Slack,
Microsoft Teams, email (SMTP) and generic webhooks, each with its retry policy and rate limit.
Secrets never live in the file: a target names the environment variable that holds its routing
key, API key, webhook URL, password or signing secret (or ``<VAR>_FILE``, the path of a file
that holds it), and loading fails, naming the field and the variable, when neither is set.

>>> cfg = parse_notify_config({"targets": [{"name": "am", "type": "alertmanager",
...                                         "url": "http://127.0.0.1:9093"}]})
>>> cfg.targets[0].retry.max_attempts, cfg.topics.alerts
(5, 'drift-alerts')
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ..errors import ConfigError
from ..schema_errors import explain, field_path
from ..settings import ConnectionSettings, read_secret_file

__all__ = [
    "RECORD_TYPES",
    "SEVERITIES",
    "TARGET_TYPES",
    "AlertmanagerTarget",
    "EmailTarget",
    "NotifyConfig",
    "NotifySettings",
    "OpsGenieTarget",
    "PagerDutyTarget",
    "RateLimit",
    "ResolvedTarget",
    "RetryPolicy",
    "SlackTarget",
    "Target",
    "TeamsTarget",
    "WebhookTarget",
    "load_notify_config",
    "parse_notify_config",
    "resolve_targets",
]

RecordType = Literal["drift_alert", "retrain_request", "drift_resolved", "deployment_check",
                     "incident", "incident_updated"]
# The default of a target's `records`: all but incident_updated (a signal joined an open
# incident, or came back), which would post again on targets that do not deduplicate.
RECORD_TYPES: tuple[RecordType, ...] = ("drift_alert", "retrain_request", "drift_resolved",
                                        "deployment_check", "incident")
SEVERITIES = ("critical", "error", "warning", "info")  # PagerDuty's set; Alertmanager takes any
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# The Alert API's base per OpsGenie region (an account lives in one of them).
OPSGENIE_API_URLS = {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}
SMTP_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """Exponential backoff with full jitter: attempt k waits a random time in
    [0, min(max_backoff, initial_backoff * multiplier**(k-1))]."""

    max_attempts: int = Field(5, ge=1, le=100, description="Attempts before dead-lettering.")
    initial_backoff_seconds: float = Field(0.5, gt=0, le=3600)
    max_backoff_seconds: float = Field(30.0, gt=0, le=3600)
    multiplier: float = Field(2.0, ge=1.0, le=10.0)

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError("max_backoff_seconds must be >= initial_backoff_seconds")
        return self


class RateLimit(_Strict):
    """A token bucket: ``per_second`` requests on average, bursts of up to ``burst``."""

    per_second: float = Field(1.0, gt=0, le=10_000)
    burst: int = Field(10, ge=1, le=100_000)


class _TargetBase(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="Unique name; used in metrics labels and dead letters.")
    records: tuple[RecordType, ...] = Field(
        RECORD_TYPES, min_length=1, description="Which record types this target receives.")
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Per-request timeout.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)  # type: ignore[arg-type]
    rate_limit: RateLimit = Field(default_factory=RateLimit)  # type: ignore[arg-type]


class _HttpTarget(_TargetBase):
    """A target reached by an HTTP POST."""

    url: str | None = Field(None, description="Where to POST. Use url_env for secret URLs.")
    url_env: str | None = Field(None, description="Environment variable holding the URL.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None:
            _check_url(v)
        return v

    @property
    def default_url(self) -> str | None:
        """Where to POST when neither url nor url_env is set (None: one of them is needed)."""
        return None

    @model_validator(mode="after")
    def _url(self) -> _HttpTarget:
        if self.url is not None and self.url_env is not None:
            raise ValueError("set either url or url_env, not both")
        if self.url is None and self.url_env is None and self.default_url is None:
            raise ValueError("set url (or url_env naming an environment variable that holds it)")
        return self


def _check_url(v: str) -> None:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{v!r} is not an http(s) URL; write e.g. https://host:port/path")


class AlertmanagerTarget(_HttpTarget):
    """Prometheus Alertmanager, API v2 (``POST <url>/api/v2/alerts``)."""

    type: Literal["alertmanager"]
    resolve_after_seconds: float | None = Field(
        86400.0, gt=0,
        description="endsAt of a firing alert, counted from now: it stays firing this long "
                    "unless a drift_resolved record resolves it sooner. null lets "
                    "Alertmanager's resolve_timeout decide.")
    bearer_token_env: str | None = Field(None, description="Env var with a bearer token.")


class PagerDutyTarget(_HttpTarget):
    """PagerDuty Events API v2: trigger and resolve, ``dedup_key`` = the alert fingerprint."""

    type: Literal["pagerduty"]
    routing_key_env: str = Field(description="Env var with the integration's routing key.")
    source: str = Field("stream-monitor", min_length=1, description="payload.source")

    @property
    def default_url(self) -> str | None:
        return PAGERDUTY_EVENTS_URL


class SlackTarget(_HttpTarget):
    """A Slack incoming webhook. Its URL is a secret: give it through url_env."""

    type: Literal["slack"]


class WebhookTarget(_HttpTarget):
    """Any HTTP endpoint: the JSON record as it is on the topic, signed with HMAC-SHA256."""

    type: Literal["webhook"]
    secret_env: str = Field(description="Env var with the HMAC-SHA256 signing secret.")
    signature_header: str = Field("X-Stream-Monitor-Signature", min_length=1)


Priority = Literal["P1", "P2", "P3", "P4", "P5"]


class OpsGeniePriorities(_Strict):
    """The OpsGenie priority of each severity."""

    critical: Priority = "P1"
    error: Priority = "P2"
    warning: Priority = "P3"
    info: Priority = "P5"


class OpsGenieResponder(_Strict):
    """Who OpsGenie notifies: a team, user, escalation or schedule, by id or by name
    (``username`` for a user)."""

    type: Literal["team", "user", "escalation", "schedule"]
    id: str | None = Field(None, min_length=1)
    name: str | None = Field(None, min_length=1)
    username: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_identifier(self) -> OpsGenieResponder:
        given = [k for k in ("id", "name", "username") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of id, name or username (username for a user)")
        if self.username is not None and self.type != "user":
            raise ValueError(f"username is for type: user; a {self.type} takes id or name")
        return self


class OpsGenieTarget(_HttpTarget):
    """OpsGenie Alert API v2: create with ``alias`` = the fingerprint (OpsGenie keeps one open
    alert per alias and counts repeats), close by alias on a resolution."""

    type: Literal["opsgenie"]
    api_key_env: str = Field(description="Env var with the API integration's key (GenieKey).")
    region: Literal["us", "eu"] | None = Field(
        None, description="The account's region: us (api.opsgenie.com, the default) or eu "
                          "(api.eu.opsgenie.com). url overrides it.")
    priorities: OpsGeniePriorities = Field(default_factory=OpsGeniePriorities)  # type: ignore[arg-type]
    responders: tuple[OpsGenieResponder, ...] = ()
    tags: tuple[Annotated[str, Field(min_length=1, max_length=50)], ...] = Field(
        ("stream-monitor",), max_length=20)
    source: str = Field("stream-monitor", min_length=1, max_length=100)

    @property
    def default_url(self) -> str | None:
        return OPSGENIE_API_URLS[self.region or "us"]

    @model_validator(mode="after")
    def _region_or_url(self) -> OpsGenieTarget:
        if self.region is not None and (self.url is not None or self.url_env is not None):
            raise ValueError("set either region or url/url_env, not both")
        return self


class TeamsTarget(_HttpTarget):
    """A Microsoft Teams incoming webhook (or a Workflows webhook) taking Adaptive Cards. Its
    URL is a secret: give it through url_env."""

    type: Literal["teams"]


class EmailTarget(_TargetBase):
    """Mail through an SMTP relay: one mail per alert, a resolve mail per resolution."""

    type: Literal["email"]
    host: str = Field(min_length=1, description="The SMTP relay's host name.")
    port: int | None = Field(None, ge=1, le=65535,
                             description="Default: 587 (starttls), 465 (tls), 25 (none).")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls: upgrade with STARTTLS (required, never skipped); "
                                "tls: implicit TLS from the first byte; none: plain text.")
    ca_file: Path | None = Field(None, description="PEM file of the CA(s) to trust for the "
                                                   "relay's certificate; default: the system's.")
    username: str | None = Field(None, min_length=1, description="SMTP AUTH user.")
    password_env: str | None = Field(
        None, description="Env var with the SMTP password (or <VAR>_FILE naming a file).")
    from_address: str = Field(description="The From address, e.g. stream-monitor@example.com.")
    to: tuple[str, ...] = Field(min_length=1, description="Recipients.")
    subject_prefix: str = Field("[stream-monitor]", description="Put before every subject.")

    @field_validator("from_address")
    @classmethod
    def _from(cls, v: str) -> str:
        _check_address(v)
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for a in v:
            _check_address(a)
        return v

    @model_validator(mode="after")
    def _auth(self) -> EmailTarget:
        if self.username is not None and self.password_env is None:
            raise ValueError("username is set without password_env; add password_env naming "
                             "the environment variable that holds the SMTP password")
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env is set without username; add the SMTP user name")
        if self.username is not None and self.security == "none":
            raise ValueError("SMTP AUTH with security: none would send the password in clear; "
                             "use security: starttls (or tls)")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or SMTP_DEFAULT_PORTS[self.security]


def _check_address(v: str) -> None:
    _, addr = parseaddr(v)
    local, _, domain = addr.rpartition("@")
    if not local or not domain or any(c.isspace() for c in addr):
        raise ValueError(f"{v!r} is not a mail address; write e.g. oncall@example.com")


Target = (AlertmanagerTarget | PagerDutyTarget | OpsGenieTarget | SlackTarget | TeamsTarget
          | EmailTarget | WebhookTarget)
TARGET_TYPES: dict[str, type[_TargetBase]] = {
    "alertmanager": AlertmanagerTarget, "pagerduty": PagerDutyTarget, "opsgenie": OpsGenieTarget,
    "slack": SlackTarget, "teams": TeamsTarget, "email": EmailTarget, "webhook": WebhookTarget,
}


class NotifyTopics(_Strict):
    alerts: str = "drift-alerts"
    retrain: str = "retrain-requests"
    deployments: str = Field("model-deployment-checks",
                             description="Deployment checks: a `fail` or `warn` verdict is "
                             "forwarded, a `pass` is not.")
    incidents: str = Field("model-incidents",
                           description="Incidents (docs/incidents.md): one page per incident.")
    dead_letter: str = Field("notify-dead-letter",
                             description="Records that could not be delivered after all retries.")


class Severity(_Strict):
    drift_alert: Literal["critical", "error", "warning", "info"] = "warning"
    retrain_request: Literal["critical", "error", "warning", "info"] = "critical"
    deployment_check_fail: Literal["critical", "error", "warning", "info"] = "critical"
    deployment_check_warn: Literal["critical", "error", "warning", "info"] = "warning"
    incident: Literal["critical", "error", "warning", "info"] = "warning"


class NotifyConfig(_Strict):
    """The whole notification config. See ``examples/notify.yaml``."""

    version: Literal[1] = 1
    topics: NotifyTopics = Field(default_factory=NotifyTopics)  # type: ignore[arg-type]
    consumer_group: str = Field("stream-monitor-notify", min_length=1)
    severity: Severity = Field(default_factory=Severity)  # type: ignore[arg-type]
    generator_url: str | None = Field(
        None, description="Link back to a dashboard; may use {model_id}, {signal}, {alert_id}.")
    targets: tuple[Annotated[Target, Field(discriminator="type")], ...] = Field(min_length=1)

    def with_topics(self, **overrides: str | None) -> NotifyConfig:
        given = {k: v for k, v in overrides.items() if v}
        if not given:
            return self
        return self.model_copy(update={"topics": self.topics.model_copy(update=given)})


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A target with its secrets read from the environment (kept out of reprs and logs)."""

    spec: Target
    url: str  # where requests go; smtp(s)://host:port for email
    secret: str | None = None  # routing key, API key, HMAC secret, bearer token or password

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"ResolvedTarget({self.spec.type}:{self.spec.name} -> {_redact(self.url)})"


def _redact(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}{':' + str(p.port) if p.port else ''}/…"


# ---------------------------------------------------------------------------------------------
# Loading with errors that name the field and the fix (stream_monitor/schema_errors.py).


def parse_notify_config(raw: Any, source: str = "notify config") -> NotifyConfig:
    """Validate a parsed YAML document; raise :class:`ConfigError` naming every problem."""
    if not isinstance(raw, Mapping):
        raise ConfigError([("(top level)", "the notify config must be a YAML mapping with "
                            "at least `targets`")], source)
    problems: list[tuple[str, str]] = []
    # Targets are checked one by one against their own type, so errors read
    # `targets[1].routing_key_env`, not pydantic's union branch names.
    targets = raw.get("targets")
    if isinstance(targets, list):
        names: dict[str, int] = {}
        for i, t in enumerate(targets):
            where = ("targets", i)
            if not isinstance(t, Mapping):
                problems.append((field_path(where),
                                 "each target must be a mapping with name, type, ..."))
                continue
            kind = t.get("type")
            if kind not in TARGET_TYPES:
                close = difflib.get_close_matches(str(kind), list(TARGET_TYPES), n=1)
                problems.append((field_path((*where, "type")),
                                 (f"unknown target type {kind!r}" if kind is not None else
                                  "this field is required") +
                                 (f"; did you mean {close[0]!r}?" if close else
                                  f"; use one of: {', '.join(TARGET_TYPES)}")))
                continue
            try:
                TARGET_TYPES[kind].model_validate(t)
            except ValidationError as exc:
                problems += explain(exc, TARGET_TYPES[kind], where)
            name = t.get("name")
            if isinstance(name, str):
                if name in names:
                    problems.append((field_path((*where, "name")),
                                     f"duplicate target name {name!r} (also "
                                     f"targets[{names[name]}]); give each target its own name"))
                names.setdefault(name, i)
    if problems:
        raise ConfigError(problems, source)
    try:
        return NotifyConfig.model_validate(raw)
    except ValidationError as exc:
        # Target problems were reported above; whatever is left is outside the targets.
        raise ConfigError(explain(exc, NotifyConfig), source) from None


def load_notify_config(path: str | os.PathLike[str], settings: NotifySettings | None = None
                       ) -> NotifyConfig:
    """Read and validate a notify config; topic names may be overridden by the environment."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([("--targets", f"cannot read {p}: {exc.strerror}; pass an existing "
                            "file")], str(p)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError([(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")],
                          str(p)) from None
    cfg = parse_notify_config(raw, str(p))
    s = settings or NotifySettings()  # type: ignore[call-arg]  # from the environment
    return cfg.with_topics(alerts=s.topic_alerts, retrain=s.topic_retrain,
                           deployments=s.topic_deployments, incidents=s.topic_incidents,
                           dead_letter=s.topic_dead_letter)


_URL_WHAT = {"alertmanager": "Alertmanager's base URL", "pagerduty": "the Events API v2 URL",
             "opsgenie": "the Alert API's base URL", "slack": "the Slack incoming-webhook URL",
             "teams": "the Teams webhook URL", "webhook": "the webhook's URL"}


def resolve_targets(cfg: NotifyConfig, environ: Mapping[str, str] | None = None,
                    source: str = "notify config") -> list[ResolvedTarget]:
    """Read every target's secrets from the environment; one error lists all that are missing.

    A secret named ``VAR`` comes from the variable ``VAR``, or from the file that ``VAR_FILE``
    names (a mounted Docker or Kubernetes secret); setting both is an error.
    """
    env = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    out: list[ResolvedTarget] = []

    def need(i: int, field: str, var: str, what: str) -> str | None:
        value, file = env.get(var), env.get(f"{var}_FILE")
        where = f"targets[{i}].{field}"
        if value and file:
            problems.append((where, f"both {var} and {var}_FILE are set; keep one"))
            return None
        if file:
            try:
                value = read_secret_file(Path(file))
            except OSError as exc:
                problems.append((where, f"{var}_FILE: cannot read {file}: {exc.strerror}; "
                                        "mount the secret there or unset the variable"))
                return None
            if not value:
                problems.append((where, f"{var}_FILE: {file} is empty; write {what} into it"))
                return None
        if not value:
            problems.append((where, f"environment variable {var} is not set; export it with "
                                    f"{what} (or {var}_FILE naming a file that holds it)"))
            return None
        return value

    for i, t in enumerate(cfg.targets):
        secret: str | None = None
        if isinstance(t, EmailTarget):
            scheme = "smtps" if t.security == "tls" else "smtp"
            if t.ca_file is not None and not t.ca_file.is_file():
                problems.append((f"targets[{i}].ca_file", f"{t.ca_file} is not a readable "
                                 "file; give the PEM file of the relay's CA"))
            if t.password_env is not None:
                secret = need(i, "password_env", t.password_env, "the SMTP password")
            out.append(ResolvedTarget(t, f"{scheme}://{t.host}:{t.smtp_port}", secret))
            continue
        url = t.url
        if t.url_env is not None:
            url = need(i, "url_env", t.url_env, _URL_WHAT[t.type])
            if url is not None:
                try:
                    _check_url(url)
                except ValueError as exc:
                    problems.append((f"targets[{i}].url_env", f"{t.url_env}: {exc}"))
                    continue
        if url is None:
            url = t.default_url
        if isinstance(t, PagerDutyTarget):
            secret = need(i, "routing_key_env", t.routing_key_env,
                          "the PagerDuty integration's routing key (Events API v2)")
        elif isinstance(t, OpsGenieTarget):
            secret = need(i, "api_key_env", t.api_key_env,
                          "the OpsGenie API integration's key")
        elif isinstance(t, WebhookTarget):
            secret = need(i, "secret_env", t.secret_env, "the shared HMAC-SHA256 signing secret")
        elif isinstance(t, AlertmanagerTarget) and t.bearer_token_env:
            secret = need(i, "bearer_token_env", t.bearer_token_env, "the bearer token")
        if url is not None:
            out.append(ResolvedTarget(t, url, secret))
    if problems:
        raise ConfigError(problems, source)
    return out


class NotifySettings(ConnectionSettings):
    """Where the notifier runs, from the environment (12-factor)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092",
                                         validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    topic_alerts: str | None = Field(None, validation_alias="SM_TOPIC_ALERTS")
    topic_retrain: str | None = Field(None, validation_alias="SM_TOPIC_RETRAIN")
    topic_deployments: str | None = Field(None, validation_alias="SM_TOPIC_DEPLOYMENTS")
    topic_incidents: str | None = Field(None, validation_alias="SM_TOPIC_INCIDENTS")
    topic_dead_letter: str | None = Field(None, validation_alias="SM_NOTIFY_TOPIC_DEAD_LETTER")
    consumer_group: str | None = Field(None, validation_alias="SM_NOTIFY_GROUP",
                                       description="Overrides consumer_group of the config.")
    http_host: str = Field("0.0.0.0", validation_alias="SM_NOTIFY_HTTP_HOST")
    http_port: int = Field(9465, ge=0, le=65535, validation_alias="SM_NOTIFY_HTTP_PORT",
                           description="/metrics, /healthz, /readyz; 0 disables the server.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="SM_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", validation_alias="SM_LOG_FORMAT")
