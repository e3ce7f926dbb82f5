"""Layers point one way, and no module imports itself back (docs/architecture.md "Layers").

Every import in ``stream_monitor`` is read from the source (``ast``: module level, inside
functions, and under ``TYPE_CHECKING`` alike, since each is an arrow a reader follows), and each
must go to the same layer or a lower one; the module graph must have no cycle. Layers, lowest
first::

    contracts (+ errors) -> config -> core -> state -> pipeline -> observability -> adapters
        -> publish -> notify -> applications (cli, demo, evaluate, fleet, plot, synth, the package
        root)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stream_monitor"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contracts", ("stream_monitor.contracts", "stream_monitor.errors")),
    ("config", ("stream_monitor.config",)),
    ("core", ("stream_monitor.core",)),
    ("state", ("stream_monitor.state",)),
    ("pipeline", ("stream_monitor.pipeline",)),
    ("observability", ("stream_monitor.observability",)),
    ("adapters", ("stream_monitor.adapters",)),
    ("publish", ("stream_monitor.publish",)),
    ("notify", ("stream_monitor.notify",)),
    ("applications", ("stream_monitor.cli", "stream_monitor.__main__", "stream_monitor.demo",
                      "stream_monitor.evaluate", "stream_monitor.fleet", "stream_monitor.plan",
                      "stream_monitor.plot", "stream_monitor.synth", "stream_monitor")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The index of the layer a module belongs to (its longest matching prefix)."""
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)"
    return best


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules a file imports, resolved to module names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "stream_monitor" and {a.name for a in node.names} == {"__version__"}:
                continue  # a constant of the package root, which is loaded before any module
            # `from .x import y` imports module x.y when y is one, else a name of x.
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {m: imports_of(p, modules) for m, p in files.items()}


def upward(g: dict[str, set[str]]) -> list[str]:
    """The imports of ``g`` that go to a higher layer."""
    wrong = []
    for mod, deps in sorted(g.items()):
        for dep in sorted(deps):
            if layer_of(dep) > layer_of(mod):
                wrong.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {dep} "
                             f"({LAYERS[layer_of(dep)][0]})")
    return wrong


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``g`` (each once, as found by a depth-first walk)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                found.append([*path[path.index(d):], d])
            elif d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    return found


def test_every_import_goes_to_the_same_or_a_lower_layer() -> None:
    wrong = upward(graph())
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def private_imports(path: Path) -> list[str]:
    """``from x import _name``: a module reaching into another's private names."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            out += [f"{module_name(path)}: from {'.' * node.level}{node.module or ''} import "
                    f"{a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_private_names_imported_across_modules() -> None:
    found = [line for p in sorted(PACKAGE.rglob("*.py")) for line in private_imports(p)]
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def test_the_checks_catch_a_wrong_import_and_a_cycle() -> None:
    g = {"stream_monitor.config": {"stream_monitor.core.detectors"},
         "stream_monitor.core.detectors": {"stream_monitor.core.signals"},
         "stream_monitor.core.signals": {"stream_monitor.core.detectors"}}
    assert upward(g) == ["stream_monitor.config (config) imports stream_monitor.core.detectors "
                         "(core)"]
    assert cycles(g) == [["stream_monitor.core.detectors", "stream_monitor.core.signals",
                          "stream_monitor.core.detectors"]]
    assert upward({"stream_monitor.core.gate": {"stream_monitor.config"}}) == []
