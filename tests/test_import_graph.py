"""Our modules import each other without cycles.

The graph is read from the source (``ast``), not from ``sys.modules``: every
``import`` counts, including those inside functions and under ``if TYPE_CHECKING:``,
which Python never reports as a cycle but which tie modules together all the same.
An import of ``a.b.c`` (or of a name from it) is an edge to ``a.b.c`` alone, not to
the packages above it, whose ``__init__`` modules hold no imports.
An import deferred to load a heavy third-party library is fine; one that hides a
cycle between two of our modules is not: move what both need into a module of its
own that neither imports back.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("libs", "services", "bench")


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(root, path)] = path
    return modules


def imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement may load: modules, or attributes of modules."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        # Relative: from the module's package (itself, for an __init__), up level - 1.
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names]


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours a dotted name lives in: the longest prefix that is one."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_edges(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[Edge]:
    """Every import between two modules of ours, wherever in the module it is."""
    modules = find_modules(root, packages)
    edges: dict[Edge, None] = {}  # in order, once per statement and module imported
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in imported_names(node, module, is_package):
                target = resolve(name, modules)
                if target is not None and target != module:
                    edges[Edge(module, target, str(path.relative_to(root)), node.lineno)] = None
    return list(edges)


@dataclass(frozen=True)
class Tangle:
    """Modules that import each other (a strongly connected component of the graph)."""

    modules: list[str]
    #: Every import between two of them.
    edges: list[Edge]
    #: A shortest cycle through the first of them.
    cycle: list[Edge]


def tangles(edges: list[Edge]) -> list[Tangle]:
    """The graph's cycles: each group of modules that import each other, directly or not."""
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
        graph.setdefault(edge.target, {})
    found: list[Tangle] = []
    for component in strongly_connected(graph):
        if len(component) > 1:
            inside = [e for e in edges if e.source in component and e.target in component]
            found.append(Tangle(sorted(component), inside, cycle_in(graph, component)))
    return sorted(found, key=lambda t: t.modules)


def strongly_connected(graph: dict[str, dict[str, Edge]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative; components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def cycle_in(graph: dict[str, dict[str, Edge]], component: set[str]) -> list[Edge]:
    """A shortest cycle through the component's first module (breadth-first search)."""
    start = min(component)
    came_from: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target, edge in sorted(graph[node].items()):
                if target not in component:
                    continue
                if target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_from[path[0].source])
                    return path
                if target not in came_from:
                    came_from[target] = edge
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")  # pragma: no cover


def describe(tangle: Tangle) -> str:
    lines = [f"{len(tangle.modules)} modules import each other: {', '.join(tangle.modules)}", "  a cycle:"]
    lines.append(f"    {tangle.cycle[0].source}")
    lines += [f"    -> {e.target}  ({e.path}:{e.line})" for e in tangle.cycle]
    lines.append("  every import between them:")
    lines += [f"    {e.path}:{e.line}: {e.source} -> {e.target}" for e in tangle.edges]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- tests


def test_our_modules_import_each_other_without_cycles() -> None:
    edges = import_edges(REPO_ROOT)
    assert len(edges) > 100, "the import graph looks empty: are the packages where this test expects?"
    found = tangles(edges)
    if found:
        report = "\n\n".join(describe(tangle) for tangle in found)
        pytest.fail(f"import cycles between our modules:\n\n{report}", pytrace=False)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_a_cycle_hidden_in_a_function_is_found(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/factory.py": """
                import numpy

                def build():
                    from pkg.backend import Backend
                    return Backend()
            """,
            "pkg/backend.py": "from pkg.factory import helper\n",
            "pkg/leaf.py": "import pkg.backend\n",
        },
    )
    [tangle] = tangles(import_edges(tmp_path, ("pkg",)))
    assert tangle.modules == ["pkg.backend", "pkg.factory"]
    assert [(e.source, e.target, e.line) for e in tangle.cycle] == [
        ("pkg.backend", "pkg.factory", 1),
        ("pkg.factory", "pkg.backend", 5),
    ]
    assert describe(tangle) == (
        "2 modules import each other: pkg.backend, pkg.factory\n"
        "  a cycle:\n"
        "    pkg.backend\n"
        "    -> pkg.factory  (pkg/backend.py:1)\n"
        "    -> pkg.backend  (pkg/factory.py:5)\n"
        "  every import between them:\n"
        "    pkg/backend.py:1: pkg.backend -> pkg.factory\n"
        "    pkg/factory.py:5: pkg.factory -> pkg.backend"
    )


def test_relative_package_and_type_checking_imports_are_edges(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/__init__.py": "from .sub import thing\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/thing.py": """
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from ..other import Other
            """,
            "pkg/other.py": "from pkg.sub import thing\nfrom pkg import sub\nimport os.path\n",
        },
    )
    edges = {(e.source, e.target) for e in import_edges(tmp_path, ("pkg",))}
    assert edges == {
        ("pkg", "pkg.sub.thing"),
        ("pkg.sub.thing", "pkg.other"),
        ("pkg.other", "pkg.sub.thing"),
        ("pkg.other", "pkg.sub"),
    }


def test_a_graph_without_cycles_passes(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b, c\n",
            "pkg/b.py": "def f():\n    from pkg.c import x\n",
            "pkg/c.py": "import json\n",
        },
    )
    edges = import_edges(tmp_path, ("pkg",))
    pairs = {(e.source, e.target) for e in edges}
    assert pairs == {("pkg.a", "pkg.b"), ("pkg.a", "pkg.c"), ("pkg.b", "pkg.c")}
    assert tangles(edges) == []
