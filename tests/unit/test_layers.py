"""Layers point one way, and no module imports itself back (docs/architecture.md "Layers").

Every import in ``stream_monitor`` is read from the source (``ast``: module level, inside
functions, and under ``TYPE_CHECKING`` alike, since each is an arrow a reader follows), and each
must go to the same layer or a lower one; the module graph must have no cycle. Layers, lowest
first::

    contracts (+ errors) -> core -> config (+ settings, schema_errors) -> state -> pipeline
        -> observability -> adapters -> publish -> notify -> applications (cli, demo, evaluate,
        fleet, plan, plot, synth, the package root)

Nor may a module, when imported, hand anything to a module of its own or a lower layer (an
import-time registration: a lower module holding a registry that higher ones fill as a side
effect of being imported, so that what the lower one does depends on what was imported first).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stream_monitor"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contracts", ("stream_monitor.contracts", "stream_monitor.errors")),
    ("core", ("stream_monitor.core",)),
    ("config", ("stream_monitor.config", "stream_monitor.settings",
                "stream_monitor.schema_errors")),
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


def imported_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute module name of a ``from ... import`` in ``package`` (relative or not)."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules a file imports, resolved to module names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = imported_module(node, package)
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
    g = {"stream_monitor.core.detectors": {"stream_monitor.config",
                                           "stream_monitor.core.signals"},
         "stream_monitor.core.signals": {"stream_monitor.core.detectors"}}
    assert upward(g) == ["stream_monitor.core.detectors (core) imports stream_monitor.config "
                         "(config)"]
    assert cycles(g) == [["stream_monitor.core.detectors", "stream_monitor.core.signals",
                          "stream_monitor.core.detectors"]]
    assert upward({"stream_monitor.config": {"stream_monitor.core.plan"}}) == []


# ---------------------------------------------------------------------------------------------
# Import-time registration.

def _aliases(tree: ast.Module, name: str, package: str, modules: set[str]) -> dict[str, str]:
    """Local name -> the dotted package name it stands for (``module`` or ``module.attr``), for
    the imports at the top level of a module."""
    out: dict[str, str] = {}
    for node in _top_level(tree.body):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("stream_monitor"):
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else "stream_monitor"
        elif isinstance(node, ast.ImportFrom):
            mod = imported_module(node, package)
            if mod.startswith("stream_monitor"):
                for a in node.names:
                    out[a.asname or a.name] = f"{mod}.{a.name}"
    return out


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements a module runs when imported: its body, with the bodies of top-level
    ``if``/``try``/``with`` blocks, not those of functions and classes."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, (ast.If, ast.With, ast.For, ast.While)):
            out += _top_level(node.body) + _top_level(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for h in node.handlers:
                out += _top_level(h.body)
    return out


def _root(node: ast.expr) -> str | None:
    """The name an attribute, subscript or call chain starts from (``a`` of ``a.b[1].c``)."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def registrations(source: str, name: str, modules: set[str],
                  layer: Callable[[str], int] = layer_of) -> list[str]:
    """What a module's import does to other modules of its own or a lower layer: a top-level
    call whose result is dropped (it is made for its side effect) or of a ``register...``
    function, of something imported from such a module; or an assignment into one
    (``lower.REGISTRY[k] = v``, ``lower.hook = f``)."""
    tree = ast.parse(source)
    package = name.rpartition(".")[0] if not name.endswith("__init__") else name
    aliases = _aliases(tree, name, package, modules)

    def lower(local: str | None) -> str | None:
        target = aliases.get(local or "")
        if target is None:
            return None
        mod = max((m for m in modules if target == m or target.startswith(m + ".")),
                  key=len, default=None)
        if mod is None or mod == name or layer(mod) > layer(name):
            return None
        return target

    found = []
    for stmt in _top_level(tree.body):
        calls = [stmt.value] if isinstance(stmt, ast.Expr) else []
        calls += [n for n in ast.walk(stmt) if isinstance(n, ast.Call)
                  and isinstance(n.func, (ast.Name, ast.Attribute))
                  and (n.func.id if isinstance(n.func, ast.Name) else n.func.attr
                       ).startswith("register")]
        for call in {id(c): c for c in calls}.values():
            if isinstance(call, ast.Call) and (target := lower(_root(call.func))):
                found.append(f"{name}:{stmt.lineno}: calls {target} when imported")
        if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                if isinstance(t, (ast.Attribute, ast.Subscript)) and (target := lower(_root(t))):
                    found.append(f"{name}:{stmt.lineno}: assigns into {target} when imported")
    return found


def test_no_module_fills_a_registry_of_a_lower_layer_when_imported() -> None:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    # (`python -m stream_monitor` runs the CLI: __main__ is a program, never imported.)
    found = [line for m, p in sorted(files.items()) if m != "stream_monitor.__main__"
             for line in registrations(p.read_text(), m, set(files))]
    assert not found, "import-time registration:\n" + "\n".join(found)


def test_the_registration_check_catches_one() -> None:
    modules = {"stream_monitor.config", "stream_monitor.core.detectors"}

    def old_layer(module: str) -> int:  # before the plan: config sat below the core
        return 0 if module.startswith("stream_monitor.config") else 1

    old = ("from ..config import register_detector_kinds\n"
           "REGISTRY = {}\n"
           "register_detector_kinds(REGISTRY)\n")
    assert registrations(old, "stream_monitor.core.detectors", modules, old_layer) == [
        "stream_monitor.core.detectors:3: calls stream_monitor.config.register_detector_kinds "
        "when imported"]
    filled = ("from .. import config\n"
              "config.KINDS['adwin'] = object\n"
              "config.KINDS.update({})\n")
    assert registrations(filled, "stream_monitor.core.detectors", modules, old_layer) == [
        "stream_monitor.core.detectors:2: assigns into stream_monitor.config when imported",
        "stream_monitor.core.detectors:3: calls stream_monitor.config when imported"]
    # Reading a lower layer at import, or any call inside a function, is fine.
    fine = ("from .plan import PHASE_BINS, watched_after\n"
            "BINS = min(PHASE_BINS, 10)\n"
            "def f():\n"
            "    watched_after(1, 2, True, False)\n")
    assert registrations(fine, "stream_monitor.core.seasonal",
                         {"stream_monitor.core.plan", "stream_monitor.core.seasonal"}) == []
