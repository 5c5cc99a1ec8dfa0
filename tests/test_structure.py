"""The package's shape: no import cycle anywhere, the executor never imports the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import changedet

PACKAGE = Path(changedet.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at the top or inside functions."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("changedet."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("changedet."))
        graph[name] = {d for d in deps if (PACKAGE / f"{d}.py").exists() and d != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = _imports()
    assert {"pipeline", "tiling", "window", "spec", "change"} <= set(graph)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_executor_knows_nothing_of_methods_or_the_pipeline() -> None:
    graph = _imports()
    assert not graph["tiling"] & {"pipeline", "window", "change", "spec", "batch", "cli"}
    # lower stages never import higher ones
    for low in ("raster", "io", "align", "masks", "normalize", "indices", "change", "threshold", "objects"):
        assert not graph[low] & {"pipeline", "tiling", "window", "batch", "cli"}, low
