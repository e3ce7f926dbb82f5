"""State units: what one set of detectors and windows belongs to, and how it is named.

A unit is a model, or one version of a model when its rule keeps versions apart
(``versions.separate``). The core keys its state by unit, the stores key Redis by it, and record
ids name it, so the naming lives here, below all of them.
"""

from __future__ import annotations

__all__ = ["UNIT_SEP", "id_parts", "split_unit", "unit_id"]

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
    """A unit's model id and version (None for an unversioned unit)."""
    mid, sep, ver = unit.partition(UNIT_SEP)
    return (mid, ver) if sep else (mid, None)
