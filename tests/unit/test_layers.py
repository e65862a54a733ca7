"""The package's layering, read from its real imports: no import cycle, no layer importing one above it.

Every `import` counts, at module level or inside a function (a deferred import is still a
dependency), except those under `if TYPE_CHECKING:`. `from pkg import name` depends on the
submodule `pkg.name` when there is one, and on `pkg` itself otherwise.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pipeteer"

LAYERS = [
    {"errors", "types", "settings", "annotate"},
    {"spec", "codec"},
    {"plan"},
    {"queues"},
    {"wiring"},
    {"runtime"},
    {"compile", "testing"},
    {"cli"},
    {"pipeteer", "__main__"},
]
"""Bottom first: a layer may import its own and the ones below it (`pipeteer` is the package's `__init__`)."""


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target not in known:
                    continue
                subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
                graph[name] |= subs
                if len(subs) < len(node.names):
                    graph[name].add(target)
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "pipeteer"


def rank(layer: str) -> int:
    for i, members in enumerate(LAYERS):
        if layer in members:
            return i
    raise AssertionError(f"layer {layer!r} is in no rank of LAYERS: add it where it belongs")


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(imports()) == []


def test_no_layer_imports_one_above_it() -> None:
    upward = defaultdict(set)
    for module, targets in imports().items():
        for target in targets:
            if rank(layer_of(target)) > rank(layer_of(module)):
                upward[module].add(target)
    assert dict(upward) == {}


def test_the_checks_see_real_edges() -> None:
    graph = imports()
    assert "pipeteer.codec" in graph["pipeteer.queues.sqlite.queue"] or any(
        t.startswith("pipeteer.codec") for t in graph["pipeteer.queues.sqlite.queue"]
    )
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
