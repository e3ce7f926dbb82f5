"""Structured JSON logs: one object per line, with model/signal/topic/partition/offset context.

Context comes from two places: ``extra={...}`` on a log call, and :func:`log_context`, which sets
fields for everything logged inside it (a contextvar, so each asyncio task keeps its own):

>>> import io, logging
>>> stream = io.StringIO()
>>> handler = logging.StreamHandler(stream)
>>> handler.setFormatter(JsonFormatter(clock=lambda: 0.0))
>>> log = logging.getLogger("doctest.json")
>>> log.addHandler(handler); log.propagate = False
>>> with log_context(model="credit-risk", partition=0, offset=42):
...     log.warning("drift", extra={"signal": "prediction"})
>>> print(stream.getvalue().strip())
{"ts":"1970-01-01T00:00:00.000Z","level":"WARNING","logger":"doctest.json","message":"drift","model":"credit-risk","signal":"prediction","partition":0,"offset":42}
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from ..contracts.records import iso_time

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "configure_logging", "json_logging_config",
           "log_context"]

# Fields lifted to the top level of each line, in this order, when present.
CONTEXT_FIELDS = ("model", "model_version", "signal", "detector", "topic", "partition", "offset",
                  "event_id", "alert_id", "target", "attempt")

# Never mutated: log_context sets a new dict, so the shared empty default is safe.
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "sm_log_context", default={})  # noqa: B039
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime",
                                                                         "taskName"}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written inside the block (nested blocks merge)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", <context...>, "exc"}`` on one line."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        ts = self.clock() if self.clock is not None else record.created
        out: dict[str, Any] = {"ts": iso_time(ts), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        fields = dict(_context.get())
        for k, v in vars(record).items():
            if k not in _RESERVED and not k.startswith("_"):
                fields[k] = v
        for k in CONTEXT_FIELDS:
            if k in fields:
                out[k] = fields.pop(k)
        out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root logging for a process: ``fmt`` is ``json`` (one object a line) or ``text``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiokafka", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def json_logging_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict for JSON lines on stderr. Faust's worker takes it as
    ``Worker(app, logging_config=json_logging_config(level))``, which replaces its own format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"aiokafka": {"level": "WARNING"}},
    }
