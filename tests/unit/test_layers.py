"""The package's layering, read from its real imports: no import cycle, no layer importing one above it;
the compile layer kept apart from the queues and the Kafka client; and the rooms of the backends,
read from the same syntax trees: only the SQLite backend imports `sqlite3`, and the runtime asks no
`isinstance` of a backend or of a backend's queue.

Every `import` counts, at module level or inside a function (a deferred import is still a
dependency), except those under `if TYPE_CHECKING:`. `from pkg import name` depends on the
submodule `pkg.name` when there is one, and on `pkg` itself otherwise.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pipeteer"

LAYERS = [
    {"errors", "types", "settings", "annotate", "topics"},
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


@functools.cache
def trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), str(path)) for name, path in modules().items()}


def nodes(name: str) -> Iterator[ast.AST]:
    """Every node of module `name` that runs: those under `if TYPE_CHECKING:` do not."""
    tree = trees()[name]
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    return (node for node in ast.walk(tree) if id(node) not in typing_only)


def imported(name: str, node: ast.Import | ast.ImportFrom) -> str:
    """The module a `from … import` names, relative ones resolved (`''` for an `import`)."""
    if isinstance(node, ast.Import):
        return ""
    if not node.level:
        return node.module or ""
    package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name in known:
        for node in nodes(name):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom):
                target = imported(name, node)
                if target not in known:
                    continue
                subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
                graph[name] |= subs
                if len(subs) < len(node.names):
                    graph[name].add(target)
        graph[name].discard(name)
    return graph


def outside_imports(module: str) -> list[str]:
    """`module:line` of every import of `module` (or a submodule of it) by the package."""
    found = []
    for name in modules():
        for node in nodes(name):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [imported(name, node)]
            else:
                continue
            if any(t == module or t.startswith(f"{module}.") for t in targets):
                found.append(f"{name}:{node.lineno}")
    return sorted(found)


def imports_under(layer: str, *, of: str) -> list[str]:
    """`module:line imports target` for every import, by a module of `layer`, of `of` or a module under it."""
    found = []
    for name in sorted(modules()):
        if layer_of(name) != layer:
            continue
        for node in nodes(name):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = imported(name, node)
                targets = [f"{target}.{a.name}" for a in node.names] + [target]
            else:
                continue
            hit = sorted({t for t in targets if t == of or t.startswith(f"{of}.")})
            if hit:
                found.append(f"{name}:{node.lineno} imports {hit[0]}")
    return found


SQLITE_ROOM = "pipeteer.queues.sqlite"

BACKEND_CLASSES = {"Backend", "SqliteBackend", "MemoryBackend", "KafkaBackend",
                   "BaseQueue", "SqliteQueue", "MemoryQueue", "KafkaQueue"}
"""What the runtime may not probe with `isinstance`: it calls what `Backend` and `BaseQueue` declare."""


def probes(package: str, classes: set[str]) -> list[str]:
    """`module:line isinstance(…)` of every `isinstance(x, C)` under `package` whose `C` (or one of a
    tuple of classes) is named in `classes`, as a name or an attribute (`kafka.KafkaBackend`)."""
    found = []
    for name in modules():
        if name != package and not name.startswith(f"{package}."):
            continue
        for node in nodes(name):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
                    and len(node.args) == 2):
                continue
            kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            named = {k.id if isinstance(k, ast.Name) else k.attr for k in kinds if isinstance(k, ast.Name | ast.Attribute)}
            if named & classes:
                found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    return sorted(found)


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


def test_only_the_sqlite_backend_imports_sqlite3() -> None:
    outside = [where for where in outside_imports("sqlite3") if not where.startswith(f"{SQLITE_ROOM}.")]
    assert outside == [], f"sqlite3 is imported outside {SQLITE_ROOM} (its room): {outside}"


def test_the_runtime_probes_no_backend_with_isinstance() -> None:
    found = probes("pipeteer.runtime", BACKEND_CLASSES)
    assert found == [], f"the runtime asks isinstance of backends or their queues (call what Backend declares): {found}"


def test_compile_imports_nothing_of_the_queues() -> None:
    # The compiler describes a workflow's topics and deployment with no I/O; the queues (the Kafka
    # backend, `topics plan / apply` among them) are what talks to a broker. What both need sits
    # below them both: `pipeteer.topics`, `pipeteer.settings.kafka_url`.
    found = imports_under("compile", of="pipeteer.queues")
    assert not found, "the compile layer imports the queues:\n" + "\n".join(found)


def test_compile_imports_no_kafka_client() -> None:
    found = imports_under("compile", of="confluent_kafka")
    assert not found, "the compile layer imports the Kafka client:\n" + "\n".join(found)


def test_the_checks_see_real_edges() -> None:
    graph = imports()
    # deferred imports count, TYPE_CHECKING ones do not; imports from outside the package are seen too
    assert "pipeteer.queues.kafka.admin" in graph["pipeteer.cli.deploy"]
    assert imports_under("queues", of="confluent_kafka")
    assert imports_under("cli", of="pipeteer.queues.kafka.admin")
    assert "pipeteer.codec" in graph["pipeteer.queues.sqlite.queue"] or any(
        t.startswith("pipeteer.codec") for t in graph["pipeteer.queues.sqlite.queue"]
    )
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert any(where.startswith("pipeteer.queues.sqlite.store:") for where in outside_imports("sqlite3"))
    assert any(p.endswith(" isinstance(dst, MemoryQueue)") for p in probes("pipeteer.queues.memory", BACKEND_CLASSES))
