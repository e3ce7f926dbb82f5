"""The state-store interface the adapters use, and the key layout shared by the stores.

Every model's state carries a **version**, bumped by each save. A save names the version it
was computed from; if the stored version differs, another worker has moved the model on (a
rebalance) and the save is refused with :class:`StateFencedError` instead of clobbering it.

Every save also writes the batch's outputs for that model to an **outbox**, in the same atomic
step. The adapter deletes them once Kafka has confirmed them; a worker that loads a model with
a non-empty outbox publishes it first. So a crash between the state save and the publish loses
no output.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import StreamMonitorError

__all__ = [
    "ModelDelta",
    "ModelSnapshot",
    "SignalDelta",
    "SignalSnapshot",
    "StateFencedError",
    "StateStore",
    "id_parts",
    "model_tag",
    "split_unit",
    "unit_id",
    "unit_key",
]


class StateFencedError(StreamMonitorError):
    """The stored state is newer than the one this worker computed from: drop the batch."""

    def __init__(self, model_ids: list[str], lost: bool = False) -> None:
        self.model_ids = model_ids
        self.lost = lost
        what = "is gone from the store" if lost else "was saved by another worker"
        super().__init__(f"state of {', '.join(model_ids)} {what}")


@dataclass(slots=True)
class SignalSnapshot:
    meta: dict[str, Any]
    recent: list[float]
    reference: list[float]


@dataclass(slots=True)
class ModelSnapshot:
    meta: dict[str, Any]
    signals: list[SignalSnapshot] = field(default_factory=list)
    version: int = 0
    outbox: dict[str, bytes] = field(default_factory=dict)  # output id -> encoded OutputRecord


@dataclass(slots=True)
class SignalDelta:
    """A signal changed by a batch: its meta, its recent window, and its reference window
    when that changed (None otherwise)."""

    signal: str
    meta: dict[str, Any]
    recent: Sequence[float]
    reference: Sequence[float] | None


@dataclass(slots=True)
class ModelDelta:
    model_id: str  # the state unit: a model id, or unit_id(model, version)
    meta: dict[str, Any]
    signals: list[SignalDelta]
    version: int = 0  # the version this delta was computed from; the save makes it version + 1
    outbox: dict[str, bytes] = field(default_factory=dict)
    # A model version's own state (README "Model versions"): its event time of first sight goes
    # to the model's version index, and the state expires `ttl_seconds` after its last save once
    # a newer version exists. None for an unversioned unit.
    first_seen: float | None = None
    ttl_seconds: float | None = None


class StateStore(Protocol):
    """Where model state lives between batches. Redis in production, memory for replay."""

    async def load(self, model_ids: Collection[str]) -> dict[str, ModelSnapshot]:
        """Snapshots of the models the store knows; unknown ids are left out."""

    async def save(self, deltas: Sequence[ModelDelta]) -> None:
        """Persist one batch's changes, each model atomically (state, watermark and outbox).

        Raises :class:`StateFencedError` (nothing of the fenced models is written) when a
        model's stored version is not the delta's version."""

    async def clear_outbox(self, entries: dict[str, list[str]]) -> None:
        """Delete published outputs: model id -> output ids."""

    async def versions(self, model_ids: Collection[str]) -> dict[str, dict[str, float]]:
        """The version index of each model: model_version -> event time it was first seen."""

    async def expire(self, units: dict[str, list[str]], ttl_seconds: float) -> None:
        """Give superseded version units (unit -> signal names) a TTL."""

    async def check_epoch(self) -> bool:
        """True while the store still holds the epoch marker this worker saw at start; False
        when it was lost (the marker is then recreated)."""

    async def close(self) -> None: ...


def model_tag(model_id: str) -> str:
    """A Redis Cluster hash tag for a model: all of a model's keys land in one slot.

    Braces inside the id would end the tag early, so they are escaped.

    >>> model_tag("fraud{v2}")
    '{fraud%7Bv2%7D}'
    """
    return "{" + model_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D") + "}"


UNIT_SEP = "\x1f"


def unit_id(model_id: str, model_version: str | None) -> str:
    """The state unit of a model version: its own detectors, windows and evidence.

    >>> unit_id("fraud", None), split_unit(unit_id("fraud", "v2"))
    ('fraud', ('fraud', 'v2'))
    """
    return model_id if model_version is None else model_id + UNIT_SEP + model_version


def id_parts(model_id: str, model_version: str | None) -> tuple[str, ...]:
    """What names a state unit in record ids: the model, and its version when kept apart (ids
    of an unversioned model stay what they were)."""
    return (model_id,) if model_version is None else (model_id, "version", model_version)


def split_unit(unit: str) -> tuple[str, str | None]:
    mid, sep, ver = unit.partition(UNIT_SEP)
    return (mid, ver) if sep else (mid, None)


def unit_key(prefix: str, unit: str) -> str:
    """The key base of a state unit: ``p:{m}`` for a model, ``p:{m}:v:<version>`` for one of
    its versions (same hash tag: one Redis Cluster slot per model).

    >>> unit_key("sm", unit_id("fraud", "2:b"))
    'sm:{fraud}:v:2%3Ab'
    """
    mid, ver = split_unit(unit)
    base = f"{prefix}:{model_tag(mid)}"
    if ver is None:
        return base
    return base + ":v:" + ver.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace(
        "}", "%7D")
