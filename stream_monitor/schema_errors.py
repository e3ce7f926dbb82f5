"""pydantic's validation errors as (field path, problem and fix) pairs, for the monitoring config
(config.py) and the notify config (notify/config.py) alike.

A path reads as the YAML does (``models[0].signals[1].detectors``); an unknown field names the
closest allowed one and lists those allowed where it stands; a missing field says to add it; a
number that does not parse says what to write.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["explain", "field_path"]

# Appended to pydantic's message for these error types.
_HINTS = {
    "float_parsing": "write a number",
    "int_parsing": "write a whole number",
    "string_type": "write a string",
}


def field_path(loc: tuple[Any, ...]) -> str:
    """``("models", 0, "match")`` -> ``models[0].match``; ``()`` -> ``(top level)``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class at ``loc`` under ``root`` (None: not a model, or not a field)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            if model is root or model is None:
                return None
            continue  # a key of a dict of models (detectors.<name>): the model stays
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        inner = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[-1] if inner else None
    return model


def explain(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = ()
            ) -> list[tuple[str, str]]:
    """(path, message) for each error of validating ``model``; ``prefix`` is where the
    validated part sits in the whole document (a notify target: ``("targets", 2)``)."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            allowed = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
            if allowed:
                msg += f" (allowed here: {', '.join(allowed)})"
        elif err["type"] == "missing":
            msg = "this field is required; add it"
        elif hint := _HINTS.get(err["type"]):
            msg = f"{msg}; {hint}"
        problems.append((field_path(prefix + loc), msg))
    return problems
