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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from ..contracts.records import iso_time

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "RateLimitFilter", "configure_logging",
           "json_logging_config", "log_context"]

# Loggers whose lines repeat while a dependency is down: the Kafka client's, redis-py's and
# the worker's retry loops (adapters/worker.py ``retry_log``).
NOISY_LOGGERS = ("aiokafka", "redis", "stream_monitor.retry")

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


class RateLimitFilter(logging.Filter):
    """Lets through at most ``burst`` lines at once, then ``per_second`` lines a second, of each
    kind of line (logger, level and message template) from the ``loggers`` it watches; lines of
    other loggers pass untouched. A line let through after some of its kind were dropped says
    how many: ``[+N similar lines suppressed in the last S s]`` (also as the field
    ``suppressed`` in JSON logs).

    While Kafka or Redis is down their clients and our retry loops repeat the same few lines
    (thousands a second, measured, before the broker backoff): this keeps a few a second.

    >>> f = RateLimitFilter(per_second=1.0, burst=2, clock=iter([0, 0, 0, 0, 5.0]).__next__)
    >>> recs = [logging.LogRecord("aiokafka.client", 40, "", 0, "Unable to connect %s", ("x",),
    ...                           None) for _ in range(5)]
    >>> [f.filter(r) for r in recs]
    [True, True, False, False, True]
    >>> recs[-1].getMessage()
    'Unable to connect x [+2 similar lines suppressed in the last 5.0s]'
    """

    def __init__(self, per_second: float = 1.0, burst: int = 5,
                 loggers: tuple[str, ...] = NOISY_LOGGERS,
                 clock: Callable[[], float] = time.monotonic, max_kinds: int = 1000) -> None:
        super().__init__()
        self.per_second = per_second
        self.burst = float(burst)
        self.loggers = loggers
        self.clock = clock
        self.max_kinds = max_kinds
        # kind -> [tokens, time of the last refill, lines dropped, time of the first drop]
        self._kinds: dict[tuple[str, int, str], list[float]] = {}
        self.suppressed_total = 0

    def _watched(self, name: str) -> bool:
        return any(name == n or name.startswith(n + ".") for n in self.loggers)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._watched(record.name):
            return True
        now = self.clock()
        kind = (record.name, record.levelno, str(record.msg))
        state = self._kinds.get(kind)
        if state is None:
            if len(self._kinds) >= self.max_kinds:  # forget the oldest kind (insertion order)
                self._kinds.pop(next(iter(self._kinds)))
            state = self._kinds[kind] = [self.burst, now, 0.0, now]
        tokens = min(self.burst, state[0] + (now - state[1]) * self.per_second)
        state[1] = now
        if tokens < 1.0:
            state[0] = tokens
            if not state[2]:
                state[3] = now
            state[2] += 1
            self.suppressed_total += 1
            return False
        state[0] = tokens - 1.0
        if state[2]:
            n, since = int(state[2]), now - state[3]
            state[2] = 0.0
            # The note goes into the message itself, so every formatter shows it.
            record.msg = f"{record.getMessage()} [+{n} similar lines suppressed in the last " \
                         f"{since:.1f}s]"
            record.args = None
            record.suppressed = n
        return True


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
    handler.addFilter(RateLimitFilter())
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
