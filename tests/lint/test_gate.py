"""The lint and type gate: ruff and mypy (with the pydantic plugin) over the whole checkout.

They run as tests so that the test command fails on a finding, and so that `-m lint` runs
them alone. Their settings are in pyproject.toml; the versions are pinned in its `dev` extra,
so a new release cannot turn CI red on a day nothing changed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.lint


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    r = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert r.returncode == 0, f"ruff found problems:\n{r.stdout}{r.stderr}"


def test_mypy_is_clean() -> None:
    r = _run(str(BIN / "mypy"), "--no-incremental", "stream_monitor")
    assert r.returncode == 0, f"mypy found problems:\n{r.stdout}{r.stderr}"
    assert "Success" in r.stdout, r.stdout
