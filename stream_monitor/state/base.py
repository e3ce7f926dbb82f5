"""The state-store interface the adapters use, and the key layout shared by the stores."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ModelSnapshot", "SignalSnapshot", "StateStore", "model_tag"]


@dataclass(slots=True)
class SignalSnapshot:
    meta: dict[str, Any]
    recent: list[float]
    reference: list[float]


@dataclass(slots=True)
class ModelSnapshot:
    meta: dict[str, Any]
    signals: list[SignalSnapshot] = field(default_factory=list)


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
    model_id: str
    meta: dict[str, Any]
    signals: list[SignalDelta]


class StateStore(Protocol):
    """Where model state lives between batches. Redis in production, memory for replay."""

    async def load(self, model_ids: Collection[str]) -> dict[str, ModelSnapshot]:
        """Snapshots of the models the store knows; unknown ids are left out."""

    async def save(self, deltas: Sequence[ModelDelta]) -> None:
        """Persist one batch's changes, all or nothing."""

    async def close(self) -> None: ...


def model_tag(model_id: str) -> str:
    """A Redis Cluster hash tag for a model: all of a model's keys land in one slot.

    Braces inside the id would end the tag early, so they are escaped.

    >>> model_tag("fraud{v2}")
    '{fraud%7Bv2%7D}'
    """
    return "{" + model_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D") + "}"
