"""The README stays a short entry point (issue 14): the two commands first, at most 10 KB, every
command of the CLI and no invented flag, links to every docs page; no link in README.md or
docs/*.md points to a missing file or heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from stream_monitor.cli import app

from .markdown import broken_links, headings, links, section, table_rows

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_BYTES = 10_240


def test_readme_is_at_most_10_kb() -> None:
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes (limit {MAX_BYTES}): move detail to docs/"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    text = README.read_text()
    first_block = re.search(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    assert first_block, "README.md has no code block"
    before = text[:first_block.start()]
    assert "\n## " not in before, "the two commands must come before the first section"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()
                if line.split("#")[0].strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"], commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec bash scripts/test\.sh\b", ci, re.M), ".ci/run must run scripts/test.sh"


def test_readme_sections_in_order() -> None:
    titles = [h for level, h in headings(README.read_text()) if level == 2]
    assert titles == ["Install", "Commands", "Layers", "Detection quality", "Documentation"], titles


def test_readme_commands_table_matches_the_cli() -> None:
    """Every command of `stream-monitor` is in the table, and every flag the table shows exists."""
    cli = typer.main.get_command(app)
    commands = cli.commands  # type: ignore[attr-defined]
    rows = table_rows(section(README.read_text(), "Commands"))
    shown: dict[str, str] = {}
    for cells in rows:
        usage = cells[0].strip("`")
        shown[usage.split()[0]] = usage
    assert set(shown) == set(commands), (
        f"missing from the README: {sorted(set(commands) - set(shown))}; "
        f"not a command: {sorted(set(shown) - set(commands))}")
    for name, usage in shown.items():
        opts = {o for p in commands[name].params for o in p.opts}
        invented = [f for f in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage) if f not in opts]
        assert not invented, f"README: `{name}` has no option {invented}"


def test_readme_keeps_the_quality_table_and_links_every_docs_page() -> None:
    text = README.read_text()
    quality = section(text, "Detection quality")
    # The fleet's false alerts and retrain requests, and the delay table (issue 18); the
    # per-kind tables live in docs/detection.md.
    assert "**A fleet under one budget** (`--fleet`)" in quality and "false retrain" in quality
    assert ("| change (default budget: 1 false alarm per 1,000,000 values) | median delay |"
            in quality)
    assert "docs/detection.md" in links(quality)
    linked = {t.partition("#")[0] for t in links(text)}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").iterdir() if p.suffix in (".md", ".yaml")}
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def test_relative_links_resolve() -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    bad = [b for page in pages for b in broken_links(page, ROOT)]
    assert not bad, "broken links:\n" + "\n".join(bad)


_TOP = ("stream_monitor/", "tests/", "scripts/", "benchmarks/", "deploy/", "examples/", "docs/")
_PACKAGES = ("contracts/", "core/", "state/", "adapters/", "notify/", "observability/")


def test_file_paths_named_in_the_docs_exist() -> None:
    """A path in code spans (`stream_monitor/core/monitor.py`, `core/retrain.py`) names a file
    of the repository (or of the package) that exists: a moved or renamed module must be
    renamed in the docs too."""
    stale = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for span in set(re.findall(r"`([A-Za-z0-9_./-]+/[A-Za-z0-9_./-]*)`", page.read_text())):
            path = span.split("#")[0].rstrip(".")
            if path.startswith(_TOP):
                where = ROOT / path
            elif path.startswith(_PACKAGES):
                where = ROOT / "stream_monitor" / path
            else:
                continue
            if not where.exists():
                stale.append(f"{page.relative_to(ROOT)}: `{span}`")
    assert not stale, "paths that do not exist:\n" + "\n".join(sorted(stale))
