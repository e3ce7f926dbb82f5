"""docs/config.md lists every environment setting of the worker (`Settings`) with its variable
and default, and nothing that is not one (issue 14: the table had left out four)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stream_monitor.settings import Settings

from .markdown import section, table_rows

pytestmark = pytest.mark.docs

CONFIG_DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def _table() -> dict[str, tuple[str, str]]:
    rows = table_rows(section(CONFIG_DOC.read_text(), "Environment settings"))
    table: dict[str, tuple[str, str]] = {}
    for cells in rows:
        assert len(cells) == 3, f"docs/config.md: a settings row needs 3 cells: {cells}"
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        assert len(names) == 1, f"docs/config.md: one variable per row: {cells[0]}"
        assert names[0] not in table, f"docs/config.md: {names[0]} is listed twice"
        table[names[0]] = (cells[1], cells[2])
    return table


def test_every_setting_is_in_the_table_and_nothing_else() -> None:
    table = _table()
    fields = {str(f.validation_alias): name for name, f in Settings.model_fields.items()}
    assert all(fields), "a Settings field without an env var"
    missing = sorted(set(fields) - set(table))
    stale = sorted(set(table) - set(fields))
    assert not missing, f"docs/config.md does not list these Settings: {missing}"
    assert not stale, f"docs/config.md lists variables Settings does not read: {stale}"


def test_defaults_and_meanings_match_the_code() -> None:
    table = _table()
    for field in Settings.model_fields.values():
        var = str(field.validation_alias)
        default_cell, meaning = table[var]
        assert meaning, f"docs/config.md: {var} has no meaning"
        values = re.findall(r"`([^`]*)`", default_cell)
        if field.default is None:  # unset; the cell may say what that means, as prose
            assert not values, f"docs/config.md: {var} has no default: {default_cell}"
        else:
            assert values == [_shown(field.default)], (
                f"docs/config.md: {var} defaults to {_shown(field.default)!r} in "
                f"stream_monitor/settings.py, the table says {default_cell}")
