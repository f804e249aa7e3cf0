"""The shape of the package (shared/DESIGN.md, "Package layout"), checked on its source: no import cycle in
`consultcam/` counting function-local imports, services import no web framework, adapters call no services.

Imports are read from the AST of every module: top-level and function-level ones, except those under
`if TYPE_CHECKING:` (they never run). `from consultcam.x import y` counts as an import of `consultcam.x.y`
when that is a module, else of `consultcam.x`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "consultcam"


def module_name(path: Path) -> str:
    """`consultcam/images/service.py` → `consultcam.images.service` (a package is its `__init__`)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, at any depth, skipping `if TYPE_CHECKING:` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(other)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _import_nodes(child)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a `from … import` (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = package if is_package else package[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str) -> set[str]:
    """The modules (any package) `module` imports, at top level or inside functions."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        source = _resolve(module, node)
        for alias in node.names:
            candidate = f"{source}.{alias.name}"
            found.add(candidate if candidate in MODULES else source)
    return found


def graph() -> dict[str, set[str]]:
    """consultcam module → the consultcam modules it imports. Importing `a.b.c` also runs `a.b`'s
    `__init__`, so a package's `__init__` counts as imported too."""
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        targets: set[str] = set()
        for name in imports_of(module):
            parts = name.split(".")
            for end in range(2, len(parts) + 1):
                target = ".".join(parts[:end])
                if target in MODULES and target != module and not module.startswith(target + "."):
                    targets.add(target)
        edges[module] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle through
    them, so a failure shows the path to break."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_one_cycle(edges, set(component)) for component in components]


def _one_cycle(edges: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), ending where it started."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(edges[node] & component):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError("a strongly connected component has a cycle")  # pragma: no cover


def test_the_graph_reader_sees_function_level_imports_and_skips_type_checking() -> None:
    """The reader this file relies on: a function-local import counts, a TYPE_CHECKING one does not."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import hidden\n"
        "def f():\n    import inner\n    from pkg import thing\n"
    )
    names = {alias.name for node in _import_nodes(tree) for alias in node.names}
    assert names == {"TYPE_CHECKING", "inner", "thing"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _show(found: list[list[str]]) -> str:
    return "import cycles (break one arrow of each):\n" + "\n".join(" → ".join(cycle) for cycle in found)


def test_no_import_cycle() -> None:
    """No import cycle anywhere in consultcam/, counting function-local imports."""
    found = cycles(graph())
    assert not found, _show(found)


def _framework_imports(module: str) -> set[str]:
    return {name for name in imports_of(module) if name.split(".")[0] in ("fastapi", "starlette")}


def _path(edges: dict[str, set[str]], start: str, goal: Callable[[str], bool]) -> list[str] | None:
    """A shortest import path from `start` to a module for which `goal` holds (breadth-first), or None."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if goal(node):
            return paths[node]
        for target in sorted(edges[node]):
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    return None


#: Services by name, and those named for what they serve (the Medtech and SMART launches' rules).
SERVICES = sorted(
    m
    for m in MODULES
    if m.rsplit(".", 1)[-1] in ("service", "repository", "smart_repository")
    or m in ("consultcam.launch.medtech", "consultcam.launch.smart", "consultcam.launch.smart_accept")
)
ADAPTERS = sorted(
    m
    for m in MODULES
    if (m.startswith("consultcam.storage.") and m != "consultcam.storage.endpoints")
    or m in ("consultcam.events.memory", "consultcam.events.redis")
    or m.startswith("consultcam.commits.connectors.")
    or m in ("consultcam.launch.alex_api", "consultcam.launch.smart_api")
)


@pytest.mark.parametrize("module", SERVICES)
def test_services_import_no_web_framework(module: str) -> None:
    """Services and repositories hold the rules and the SQL: neither they nor anything they import (at any
    depth, function-local imports included) imports FastAPI or Starlette (DESIGN.md)."""
    path = _path(graph(), module, lambda m: bool(_framework_imports(m)))
    assert path is None, f"{' → '.join(path)} imports {sorted(_framework_imports(path[-1]))}"


def test_importing_a_service_loads_no_web_framework() -> None:
    """The same, as Python sees it: a fresh interpreter that imports every service has no FastAPI or
    Starlette loaded (a dependency of a dependency counts too)."""
    code = (
        "import importlib, sys\n"
        f"for name in {SERVICES!r}: importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("module", ADAPTERS)
def test_adapters_call_no_service(module: str) -> None:
    """Adapters (stores, buses, connectors) are called by services, never the other way round."""
    services = {name for name in imports_of(module) if name.endswith((".service", ".services"))}
    assert not services, f"{module} imports {sorted(services)}"
