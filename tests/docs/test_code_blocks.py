"""The Python code blocks of README.md and docs/*.md are valid Python (top-level `await` allowed,
as in an async service), and every name they import from stream_monitor exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for m in re.finditer(r"^```python\n(.*?)^```", page.read_text(), re.M | re.S):
            line = page.read_text()[:m.start()].count("\n") + 1
            out.append((f"{page.relative_to(ROOT)}:{line}", m.group(1)))
    return out


def test_python_blocks_parse_and_import_what_exists() -> None:
    blocks = _python_blocks()
    assert any(where.startswith("README.md") for where, _ in blocks)
    problems = []
    for where, code in blocks:
        try:
            tree = compile(code, where, "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            problems.append(f"{where}: {exc}")
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("stream_monitor")):
                continue
            module = importlib.import_module(node.module)
            missing = [a.name for a in node.names if not hasattr(module, a.name)]
            if missing:
                problems.append(f"{where}: {node.module} has no {missing}")
    assert not problems, "\n".join(problems)
