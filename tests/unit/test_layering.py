"""The package layering of docs/architecture.md, checked on the source (AST, no imports run).

Each top-level package may import only the packages listed for it; no import cycle between
modules (imports inside functions count too: they must not hide a cycle; only ``if
TYPE_CHECKING:`` imports are exempt); no module imports a private (``_``) name from another
top-level package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "sinks": {"core"},
    "sources": {"core"},
    "infra": {"core"},
    "streams": {"core", "sinks.base"},
    "alerts": {"core", "sinks"},
    "grafana": {"core", "sinks"},
    "gridpulse": {"core", "sinks", "sources", "infra", "streams", "alerts", "grafana"},
}
"""What each package may import (a dotted prefix allows that sub-package only)."""

PACKAGES = tuple(ALLOWED)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every runtime import of ``module``."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    is_pkg = MODULES[module].name == "__init__.py"
    out: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, [], child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".")
                    anchor = anchor if is_pkg else anchor[:-1]
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [a.name for a in child.names]
                # ``from pkg import mod`` imports the sub-module pkg.mod
                subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
                out.append((base, [n for n in names if f"{base}.{n}" not in MODULES], child.lineno))
                out.extend((s, [], child.lineno) for s in subs)
            visit(child)

    visit(tree)
    return [(m, names, line) for m, names, line in out if m.split(".")[0] in PACKAGES]


def _allowed(importer: str, imported: str) -> bool:
    own = importer.split(".")[0]
    if imported.split(".")[0] == own:
        return True
    return any(imported == a or imported.startswith(a + ".") for a in ALLOWED[own])


def test_every_package_imports_only_the_layers_below_it() -> None:
    bad = [
        f"{MODULES[m].relative_to(ROOT)}:{line} imports {target}"
        for m in MODULES
        for target, _, line in imports(m)
        if not _allowed(m, target)
    ]
    assert bad == []


def test_no_private_name_crosses_a_package() -> None:
    bad = [
        f"{MODULES[m].relative_to(ROOT)}:{line} takes {n} from {target}"
        for m in MODULES
        for target, names, line in imports(m)
        if target.split(".")[0] != m.split(".")[0]
        for n in names
        if n.startswith("_")
    ]
    assert bad == []


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _, _ in imports(m):
            # an import of a.b.c runs a and a.b too; a cycle through a package's
            # __init__ is a cycle all the same
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name in MODULES and name != m and not m.startswith(name + "."):
                    graph[m].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (a list of modules, first repeated last), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return []


def test_no_import_cycle() -> None:
    assert find_cycle(_graph()) == []


@pytest.mark.parametrize(
    "graph,cycle",
    [({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]), ({"a": {"b"}, "b": set()}, [])],
)
def test_the_cycle_finder_finds_cycles(graph, cycle) -> None:
    assert find_cycle(graph) == cycle


def test_a_forbidden_import_is_reported() -> None:
    assert not _allowed("streams.pipeline", "sinks.clickhouse.schema")
    assert not _allowed("core.city", "streams.cases")
    assert _allowed("streams.pipeline", "sinks.base.store")
    assert _allowed("gridpulse.cli", "streams.app")


def _package_graph() -> dict[str, set[str]]:
    """The module graph collapsed to packages (a folder is one node)."""

    def node(module: str) -> str:
        path = MODULES[module]
        return ".".join(path.relative_to(ROOT).parent.parts)

    graph: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        graph.setdefault(node(module), set())
        for target in targets:
            if node(target) != node(module):
                graph[node(module)].add(node(target))
    for targets in list(graph.values()):
        for t in targets:
            graph.setdefault(t, set())
    return graph


def test_no_import_cycle_between_packages() -> None:
    """A package and its sub-package may not import each other (e.g. ``alerts`` composing
    ``alerts.dispatch`` while ``alerts.dispatch`` takes its model from ``alerts``)."""
    assert find_cycle(_package_graph()) == []
