"""What a publisher raises: an event that breaks the contract (nothing was sent), or records
Kafka did not take (with which, why and how many)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import StreamMonitorError

__all__ = ["DeliveryError", "DeliveryFailure", "FlushTimeoutError", "InvalidEventError",
           "PublishError"]


class PublishError(StreamMonitorError):
    """Root of the publisher's errors."""


class InvalidEventError(PublishError, ValueError):
    """The event breaks the contract (``contracts/schemas``, the worker's decoder): it would be
    dead-lettered, so it is refused before anything is sent. ``kind`` is ``inference`` or
    ``label``; ``reason_code`` is the dead-letter code the worker would give it (``schema``
    when only the JSON Schema refused it); ``field`` the path of the offending field, when
    known."""

    def __init__(self, kind: str, reason_code: str, reason: str, field: str | None = None,
                 event_id: object = None) -> None:
        self.kind = kind
        self.reason_code = reason_code
        self.reason = reason
        self.field = field
        self.event_id = event_id
        where = f" (event_id {event_id!r})" if isinstance(event_id, str) else ""
        at = f" at {field}" if field else ""
        super().__init__(f"invalid {kind} event{where}{at}: {reason} [{reason_code}]")


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """One record Kafka did not acknowledge: where it was going, which event, and why."""

    topic: str
    key: bytes
    event_id: str
    kind: str
    error: BaseException

    def describe(self) -> str:
        return (f"{self.kind} event {self.event_id!r} (key {self.key!r}) to {self.topic}: "
                f"{type(self.error).__name__}: {self.error}")


class DeliveryError(PublishError):
    """Records were not delivered. ``failures`` holds the first ones (at most
    :attr:`MAX_KEPT`), ``failed`` the exact count since the last report, ``delivered`` how
    many were acknowledged in the same span."""

    MAX_KEPT = 100

    def __init__(self, failures: list[DeliveryFailure], failed: int, delivered: int,
                 note: str = "") -> None:
        self.failures = failures
        self.failed = failed
        self.delivered = delivered
        first = failures[0].describe() if failures else "no detail"
        extra = f"; {note}" if note else ""
        super().__init__(f"{failed} record(s) not delivered ({delivered} delivered); first: "
                         f"{first}{extra}")


class FlushTimeoutError(PublishError, TimeoutError):
    """Records were still waiting for the broker's answer at the flush deadline. They are not
    lost yet: each is still delivered or reported as a failure later."""

    def __init__(self, pending: int, timeout: float | None) -> None:
        self.pending = pending
        super().__init__(f"{pending} record(s) still unacknowledged after {timeout}s")
