"""Monitoring config (YAML) and 12-factor settings (environment).

The YAML file says *what* to watch: which models, which signals, which detectors. The
environment says *where* to run: Kafka, Redis, batch sizes, topic-name overrides. Both are
validated at start; every problem is reported with the field's dotted path and a fix.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

__all__ = [
    "DetectorSpec",
    "ModelRule",
    "MonitorConfig",
    "RetrainRule",
    "Settings",
    "SignalRule",
    "load_config",
    "parse_config",
    "signal_detectors",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSpec(_Strict):
    """A named detector instance: a registered type and its parameters."""

    type: str = Field(description="Registered detector type, e.g. adwin, page_hinkley, kswin, ddm.")
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of our defaults.")

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        from .core.detectors import REGISTRY

        if v not in REGISTRY:
            raise ValueError(f"unknown detector type {v!r}; use one of: {', '.join(REGISTRY)}")
        return v

    def check_params(self) -> list[tuple[str, str]]:
        """Problems with the parameters, as (sub-path, message) pairs."""
        from .core.detectors import REGISTRY

        kind = REGISTRY[self.type]
        allowed = kind.param_names
        problems = []
        for p in self.params:
            if p not in allowed:
                problems.append((f"params.{p}", f"{self.type} has no parameter {p!r}; it takes: "
                                 f"{', '.join(allowed)}"))
        if not problems:
            try:
                kind.cls(**kind.params(self.params))
            except Exception as exc:  # River validates in its constructors
                problems.append(("params", f"{self.type} rejected these parameters: {exc}"))
        return problems

    @property
    def effective_params(self) -> dict[str, Any]:
        from .core.detectors import REGISTRY

        return REGISTRY[self.type].params(self.params)


class SignalRule(_Strict):
    """Which detectors watch the signals whose names match a glob."""

    match: str = Field(description="Glob over signal names: 'feature:*', 'feature:amount', 'prediction'.")
    detectors: list[str] = Field(min_length=1, description="Names from the top-level `detectors`.")


class RetrainRule(_Strict):
    """Ask for a retrain when enough signals drifted close together, then wait."""

    min_drifted_signals: int = Field(2, ge=1, description="Distinct drifted signals needed.")
    within_seconds: float = Field(3600.0, gt=0, description="Window (event time) they must fall in.")
    cooldown_seconds: float = Field(86400.0, ge=0, description="No new request for this long after one.")


class ModelRule(_Strict):
    """Which models (id or glob) to watch, and how."""

    match: str = Field(description="Model id or glob, e.g. 'fraud-*'.")
    signals: list[SignalRule] = Field(min_length=1)
    reference_size: int | None = Field(None, ge=10, description="Overrides windows.reference_size.")
    recent_size: int | None = Field(None, ge=10, description="Overrides windows.recent_size.")
    retrain: RetrainRule = Field(default_factory=RetrainRule)  # type: ignore[arg-type]


class Topics(_Strict):
    inference: str = "inference-events"
    alerts: str = "drift-alerts"
    retrain: str = "retrain-requests"
    dead_letter: str = "inference-dead-letter"
    operations: str = "stream-monitor-ops"


class Windows(_Strict):
    reference_size: int = Field(1000, ge=10, description="Values that form a signal's reference.")
    recent_size: int = Field(500, ge=10, description="Most recent values kept for evidence.")
    evidence_size: int = Field(50, ge=5, description="Last values summarized as `current` in alerts.")


def _default_detectors() -> dict[str, DetectorSpec]:
    return {"adwin": DetectorSpec(type="adwin"), "page_hinkley": DetectorSpec(type="page_hinkley")}


class MonitorConfig(_Strict):
    """The whole monitoring config. See ``examples/monitor.yaml`` for every field documented."""

    version: Literal[1] = 1
    topics: Topics = Field(default_factory=Topics)
    windows: Windows = Field(default_factory=Windows)  # type: ignore[arg-type]
    detectors: dict[str, DetectorSpec] = Field(default_factory=_default_detectors)
    models: list[ModelRule] = Field(min_length=1)

    def model_rule(self, model_id: str) -> ModelRule | None:
        """The first rule whose `match` fits the model id, or None (model not watched)."""
        return _model_rule(self, model_id)

    def with_topics(self, **overrides: str | None) -> MonitorConfig:
        given = {k: v for k, v in overrides.items() if v}
        if not given:
            return self
        return self.model_copy(update={"topics": self.topics.model_copy(update=given)})


@lru_cache(maxsize=4096)
def _match(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def _model_rule(cfg: MonitorConfig, model_id: str) -> ModelRule | None:
    for rule in cfg.models:
        if _match(rule.match, model_id):
            return rule
    return None


def signal_detectors(cfg: MonitorConfig, rule: ModelRule, signal: str) -> list[str] | None:
    """Detector names configured for a signal of a model, or None when it is not watched."""
    for sr in rule.signals:
        if _match(sr.match, signal):
            return sr.detectors
    return None


# ---------------------------------------------------------------------------------------------
# Loading with errors that name the field and the fix.

_HINTS = {
    "missing": "this field is required; add it",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
    "greater_than_equal": None,
    "literal_error": None,
}


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _problems(exc: ValidationError, raw: Any) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = raw
            for part in loc[:-1]:
                parent = parent[part] if isinstance(parent, list | dict) else None
            model = _model_at(loc[:-1])
            allowed = sorted(model.model_fields) if model else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
            if allowed:
                msg += f" (allowed here: {', '.join(allowed)})"
        else:
            hint = _HINTS.get(err["type"])
            if hint:
                msg = f"{msg}; {hint}"
        problems.append((_path(loc), msg))
    return problems


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = MonitorConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            if model is MonitorConfig or model is None:
                return None
            # dict values (detectors.<name>)
            continue
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        inner = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[-1] if inner else None
    return model


def _can_match_a_signal(pattern: str) -> bool:
    """False when a glob can match neither `prediction` nor any `feature:<name>`: the text
    before its first wildcard must then be a prefix of `feature:` or start with it."""
    if _match(pattern, "prediction"):
        return True
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return literal.startswith("feature:") or "feature:".startswith(literal)


def _cross_check(cfg: MonitorConfig) -> list[tuple[str, str]]:
    problems = []
    for name, spec in cfg.detectors.items():
        problems += [(f"detectors.{name}.{sub}", msg) for sub, msg in spec.check_params()]
    for i, rule in enumerate(cfg.models):
        for j, sr in enumerate(rule.signals):
            if not _can_match_a_signal(sr.match):
                problems.append((f"models[{i}].signals[{j}].match",
                                 f"{sr.match!r} can match no signal; signals are named "
                                 "'feature:<name>' or 'prediction'"))
            for k, det in enumerate(sr.detectors):
                if det not in cfg.detectors:
                    close = difflib.get_close_matches(det, list(cfg.detectors), n=1)
                    problems.append((f"models[{i}].signals[{j}].detectors[{k}]",
                                     f"no detector named {det!r} in `detectors`"
                                     + (f"; did you mean {close[0]!r}?" if close else
                                        f"; define it there or use one of: {', '.join(cfg.detectors)}")))
    return problems


def parse_config(raw: Any, source: str = "config") -> MonitorConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError([("(top level)", "the config must be a YAML mapping with at least `models`")], source)
    try:
        cfg = MonitorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, raw), source) from None
    problems = _cross_check(cfg)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def load_config(path: str | os.PathLike[str], settings: Settings | None = None) -> MonitorConfig:
    """Read, validate and return a monitoring config; topic names may be overridden by env."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([("--config", f"cannot read {p}: {exc.strerror}; pass an existing file")],
                          str(p)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError([(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")], str(p)) from None
    cfg = parse_config(raw, str(p))
    s = settings or Settings()
    return cfg.with_topics(inference=s.topic_inference, alerts=s.topic_alerts,
                           retrain=s.topic_retrain, dead_letter=s.topic_dead_letter,
                           operations=s.topic_operations)


class Settings(BaseSettings):
    """Where and how to run, from the environment (12-factor). Each field's env var is listed."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    app_id: str = Field("stream-monitor", validation_alias="SM_APP_ID",
                        description="Kafka consumer group id and Faust app id.")
    key_prefix: str = Field("sm", validation_alias="SM_KEY_PREFIX", description="Redis key prefix.")
    batch_max: int = Field(2000, ge=1, validation_alias="SM_BATCH_MAX",
                           description="Most events per batch.")
    batch_within_seconds: float = Field(0.2, gt=0, validation_alias="SM_BATCH_WITHIN_SECONDS",
                                        description="Longest wait to fill a batch.")
    topic_partitions: int = Field(1, ge=1, validation_alias="SM_TOPIC_PARTITIONS",
                                  description="Partitions for topics the worker creates.")
    topic_inference: str | None = Field(None, validation_alias="SM_TOPIC_INFERENCE")
    topic_alerts: str | None = Field(None, validation_alias="SM_TOPIC_ALERTS")
    topic_retrain: str | None = Field(None, validation_alias="SM_TOPIC_RETRAIN")
    topic_dead_letter: str | None = Field(None, validation_alias="SM_TOPIC_DEAD_LETTER")
    topic_operations: str | None = Field(None, validation_alias="SM_TOPIC_OPERATIONS")
    failpoint: str | None = Field(None, validation_alias="SM_FAILPOINT",
                                  description="Testing only: 'after_save:N', 'after_publish:N' or "
                                  "'mid_batch:N' kills the worker with SIGKILL at its N-th batch.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", validation_alias="SM_LOG_LEVEL")
    web_port: int = Field(6066, validation_alias="SM_WEB_PORT", description="Faust web port.")
    data_dir: str | None = Field(None, validation_alias="SM_DATA_DIR",
                                 description="Faust's data directory (default: a temp folder).")
    store_retry_max_seconds: float = Field(30.0, gt=0, validation_alias="SM_STORE_RETRY_MAX_SECONDS",
                                           description="Cap on the backoff while Redis is down.")
