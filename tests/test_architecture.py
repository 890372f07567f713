"""The shape of the package, checked on its source: no module imports itself back.

Every ``import`` and ``from ... import`` of every module counts, at module level or inside a
function (a deferred import hides a cycle from the interpreter, not from the design). Imports
under ``if TYPE_CHECKING:`` do not count: they never run. A package's ``__init__`` importing its
own submodules is how a package shows its face, so those edges do not count either; a name
imported from a package face counts as an import of the face and of the module the face takes
it from.
"""

from __future__ import annotations

import ast
from pathlib import Path

import budgetguard

PACKAGE_DIR = Path(budgetguard.__file__).resolve().parent

Graph = dict[str, set[str]]


def _modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package and its subpackages."""
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_module(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from X import ...`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _statements(tree: ast.AST, *, type_checking: bool) -> list[ast.stmt]:
    """Every import statement at any depth; those under ``if TYPE_CHECKING:`` only if asked."""
    found: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test) and not type_checking:
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def _reexports(modules: dict[str, Path]) -> dict[str, dict[str, str]]:
    """For each package face: the names it imports from its own submodules -> that submodule."""
    faces: dict[str, dict[str, str]] = {}
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        names: dict[str, str] = {}
        for node in _statements(ast.parse(path.read_text(encoding="utf-8")), type_checking=True):
            if isinstance(node, ast.ImportFrom):
                source = _imported_module(name, True, node)
                if source.startswith(name + ".") and source in modules:
                    for alias in node.names:
                        names[alias.asname or alias.name] = source
        faces[name] = names
    return faces


def import_graph(package_dir: Path) -> Graph:
    """Module -> the modules of the same package it imports (see the module docstring)."""
    modules = _modules(package_dir)
    faces = _reexports(modules)
    top = package_dir.name
    graph: Graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _statements(ast.parse(path.read_text(encoding="utf-8")), type_checking=False):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.split(".")[0] == top)
                continue
            assert isinstance(node, ast.ImportFrom)
            source = _imported_module(name, is_package, node)
            if source.split(".")[0] != top:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    targets.add(submodule)
                    continue
                targets.add(source)
                reexported_from = faces.get(source, {}).get(alias.name)
                if reexported_from is not None:
                    targets.add(reexported_from)
        graph[name] = {
            target
            for target in targets
            if target in modules
            and target != name
            and not (is_package and target.startswith(name + "."))  # a face importing its own parts
        }
    return graph


def import_cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return sorted(cycles)


def _describe(graph: Graph, cycles: list[list[str]]) -> str:
    lines: list[str] = []
    for group in cycles:
        lines.append("cycle: " + " <-> ".join(group))
        for module in group:
            inside = sorted(target for target in graph[module] if target in group)
            lines.append(f"    {module} -> {', '.join(inside)}")
    return "\n".join(lines)


def test_no_budgetguard_module_imports_itself_back_directly_or_through_others() -> None:
    graph = import_graph(PACKAGE_DIR)
    cycles = import_cycles(graph)
    assert not cycles, "import cycles among budgetguard's modules:\n" + _describe(graph, cycles)


def test_the_cycle_check_sees_deferred_relative_and_reexported_imports_and_skips_type_checking(
    tmp_path: Path,
) -> None:
    files = {
        "pkg/__init__.py": "from pkg.a import A\nfrom pkg.d import D\n",
        "pkg/a.py": "from . import b\n\nA = 1\n",
        "pkg/b.py": "def later():\n    from pkg.c import C\n    return C\n",
        "pkg/c.py": "from pkg import A\n\nC = A\n",  # A comes from pkg.a: c -> a closes a -> b -> c
        "pkg/d.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.e import E\nD = 1\n",
        "pkg/e.py": "from pkg.d import D\n\nE = D\n",  # d -> e only while type checking: no cycle
        "pkg/sub/__init__.py": "from .x import X\n",
        "pkg/sub/x.py": "from .. import D\n\nX = D\n",  # the parent's face, and pkg.d behind it
    }
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    graph = import_graph(tmp_path / "pkg")

    assert graph["pkg"] == set()
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg", "pkg.a"}
    assert graph["pkg.d"] == set()
    assert graph["pkg.sub"] == set()
    assert graph["pkg.sub.x"] == {"pkg", "pkg.d"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert _describe(graph, import_cycles(graph)).splitlines()[0] == "cycle: pkg.a <-> pkg.b <-> pkg.c"
