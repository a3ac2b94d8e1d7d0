"""The device library's module graph, read from its source: imports go one way, and the heap rule
(`*_once` modules are loaded for one call) holds. Parsed with CPython's ast, never imported."""

from __future__ import annotations

import ast
from pathlib import Path

from support import LIB, REPO

PACKAGE = LIB / "iotlink"
INIT = "__init__"  # the package itself: `from iotlink import unload` depends on it
# The update code: unloaded while it has no work, the one group outside the `_once` rule.
UPDATE_CODE = {"ota", "ota_swap"}


def module_names() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py")}


def imported(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, when the source is imported) for every iotlink module a source imports: at its
    top, or inside a function (then only when that function runs)."""
    modules = module_names()
    in_functions = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                    for inner in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "iotlink":
                continue
            at_import = id(node) not in in_functions
            if len(parts) > 1 and parts[1] in modules:
                found.append((parts[1], at_import))
            elif len(parts) == 1 or name == node.module:
                found.append((INIT, at_import))  # `from iotlink import unload`, `import iotlink`
    return found


def graph() -> dict[str, set[str]]:
    """Each module of lib/iotlink -> the iotlink modules it imports (at its top or in a function)."""
    edges = {}
    for path in PACKAGE.glob("*.py"):
        deps = {name for name, _ in imported(ast.parse(path.read_text()))}
        edges[path.stem] = deps - {path.stem}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle as the list of modules along it (first = last), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            cycle = visit(dep)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(edges):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def unloaded(path: Path) -> set[str]:
    """The modules a source unloads: the string arguments of its unload(...) calls."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "unload":
            names |= {arg.value for arg in node.args if isinstance(arg, ast.Constant)}
    return names


def test_the_graph_is_read_from_the_source():
    edges = graph()
    assert {"store", "timeline"} <= edges["outbox"]
    assert INIT in edges["app"]  # `from iotlink import ... unload`
    assert "http_tls_once" in edges["http_conn"]  # imported inside a function


def test_no_module_imports_itself_through_others():
    assert find_cycle(graph()) is None


def test_a_cycle_would_be_found():
    planted = {"config": {"config_once", "errors"}, "config_once": {"config_values", "config"}}
    assert find_cycle(planted) == ["config", "config_once", "config"]
    assert find_cycle({**graph(), "errors": {"app"}})


def test_http_is_a_leaf_and_thingsboard_urls_are_made_in_one_module():
    assert graph()["http"] == {"errors"}
    sources = {p.stem: p.read_text() for p in PACKAGE.glob("*.py")}
    assert [name for name, text in sources.items() if "/api/v1/" in text] == ["thingsboard"]


def test_once_modules_are_imported_only_for_a_call_and_unloaded_after_it():
    sources = list(PACKAGE.glob("*.py")) + [REPO / "boot.py", REPO / "main.py"]
    once = {name for name in module_names() if name.endswith("_once")}
    assert once  # the rule has modules to hold for
    for path in sources:
        for name, at_import in imported(ast.parse(path.read_text())):
            assert not (name in once and at_import), f"{path.name} keeps {name} loaded"
    everything_unloaded = set().union(*(unloaded(p) for p in sources))
    assert everything_unloaded == once | UPDATE_CODE
