"""Exceptions. One root, then specific ones that say what the caller should do."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectionCheckError",
    "MissingExtraError",
    "OutputRejectedError",
    "ScriptsLostError",
    "StartupError",
    "StateCorruptError",
    "StreamMonitorError",
    "TransientStoreError",
    "UsageError",
]


class StreamMonitorError(Exception):
    """Root of every error raised on purpose by stream-monitor."""


class ConfigError(StreamMonitorError):
    """The monitoring config or a setting is invalid. Raised at start, never mid-stream.

    The message names the field (as a dotted path) and how to fix it.
    """

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = [f"invalid {source}:"]
        lines += [f"  - {field}: {msg}" for field, msg in problems]
        super().__init__("\n".join(lines))


class UsageError(StreamMonitorError):
    """A mistake in what a command was given: a missing input file, an unknown model, an
    optional extra that is not installed. The message is one line that says what to do; the
    CLI prints it and exits with code 2, without a traceback."""


class MissingExtraError(UsageError, ImportError):
    """An optional extra (e.g. ``[plot]``: matplotlib) is not installed. Also an ImportError, so
    code that treats the extra as optional (the demo's plots) can skip what needs it."""


class TransientStoreError(StreamMonitorError):
    """The state store could not be reached; retry the same batch later."""

    #: Whether the batch may be tried again at once, without waiting (the cause is already
    #: mended, e.g. the scripts reloaded after a NOSCRIPT).
    retry_now = False


class ScriptsLostError(TransientStoreError):
    """Redis answered NOSCRIPT: it restarted (or a replica was promoted) and forgot the Lua
    scripts. They are reloaded before the next try, which can come at once."""

    retry_now = True


class StateCorruptError(StreamMonitorError):
    """State read back from the store does not decode. Never executed, only rejected."""


class StartupError(StreamMonitorError):
    """A dependency cannot be used at start (unreachable, refused credentials). The message is
    one line that names the setting to fix; the process exits non-zero without retrying."""


class OutputRejectedError(StreamMonitorError):
    """Kafka refused an output record for a reason that retrying cannot mend (too large for the
    topic, not authorized, no such topic). The batch is not committed, so its input is
    redelivered once the cause is fixed; the message says which record and which setting."""


class ConnectionCheckError(StartupError):
    """A start-up connection check failed for a reason a setting can fix (wrong password,
    unknown CA, missing ACL permission). The message is one line naming the setting; it never
    contains a secret. Not retried: fix the setting and start again."""

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {message}")
