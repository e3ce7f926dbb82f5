"""Markdown helpers for the `docs` tests: links, headings and GitHub's anchors, tables."""

from __future__ import annotations

import re
from pathlib import Path

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans (links there are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    """Targets of the inline links ``[text](target)`` outside code."""
    return _LINK.findall(prose(text))


def headings(text: str) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading outside fenced code."""
    return [(len(m.group(1)), m.group(2)) for m in _HEADING.finditer(_FENCE.sub("", text))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor GitHub gives the headings of a page (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, h in headings(text):
        s = slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def broken_links(page: Path, root: Path) -> list[str]:
    """The relative links of ``page`` whose file (or heading anchor) does not exist."""
    bad = []
    text = page.read_text()
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{page.relative_to(root)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{page.relative_to(root)}: {target} (no heading with that anchor)")
    return bad


def section(text: str, title: str) -> str:
    """The body of the heading ``title`` up to the next heading of the same or a higher level."""
    hs = list(_HEADING.finditer(text))
    for i, m in enumerate(hs):
        if m.group(2) == title:
            level = len(m.group(1))
            end = next((n.start() for n in hs[i + 1:] if len(n.group(1)) <= level), len(text))
            return text[m.end():end]
    raise AssertionError(f"no heading {title!r}")


def table_rows(text: str) -> list[list[str]]:
    """Cells of the body rows of the pipe tables in ``text`` (header and rule rows skipped)."""
    rows: list[list[str]] = []
    header = True
    for line in text.splitlines():
        if not line.startswith("|"):
            header = True
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header:
            header = False  # the header row; the rule row follows
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows
