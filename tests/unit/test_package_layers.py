"""The layers of the code base, read from the import statements (no module is imported).

STYLE.md's rules: `meshgate/resources`, `meshgate/kds`, `meshgate/dns` allocation and `meshgate/xds` generation
import no grpc, redis or sockets (rule 1, "No I/O in the core"); `global_cp` and `zone_cp` never import each
other (rule 7); and the packages of the library form layers, so no two of them import each other, however
indirectly. An import inside a function or under `if TYPE_CHECKING:` counts: it is a dependency all the same.

Run as a script (`python -m tests.unit.test_package_layers`) to print the package graph and its cycles.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("meshgate", "global_cp", "zone_cp")
# Generated protobuf modules: they import google.protobuf and each other, nothing of ours.
GENERATED = "meshgate.api"

# What "I/O" means for the core: network clients and servers, sockets, event loops.
IO_MODULES = frozenset({"aiohttp", "anyio", "asyncio", "grpc", "grpclib", "lightkube", "redis", "socket", "sqlite3"})

# The sans-IO cores (module prefixes), and the adapters inside them that are allowed I/O.
CORES = (
    "meshgate.delta",
    "meshgate.resources",
    "meshgate.kds",
    "meshgate.dns",
    "meshgate.xds",
    "meshgate.transparentproxy",
)
ADAPTERS = frozenset({"meshgate.dns.server", "meshgate.transparentproxy.iptables"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> Mapping[str, Path]:
    """Every module of ours, by dotted name (packages by their own name)."""
    found: dict[str, Path] = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            name = _module_name(path)
            if not name.startswith(GENERATED + ".") and name != GENERATED:
                found[name] = path
    return found


def _imported_names(path: Path, name: str) -> Iterator[str]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            # `from package import module` imports the module too.
            yield from (f"{module}.{alias.name}" for alias in node.names)


@functools.cache
def imports() -> Mapping[str, frozenset[str]]:
    """Module -> what it imports: our modules by name, anything else by its top-level name."""
    ours = modules()
    out: dict[str, frozenset[str]] = {}
    for name, path in ours.items():
        found: set[str] = set()
        for imported in _imported_names(path, name):
            if imported.split(".")[0] in TOPS:
                if imported in ours:
                    found.add(imported)
            else:
                found.add(imported.split(".")[0])
        # Importing a module runs every package around it.
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in ours)
        found.discard(name)
        out[name] = frozenset(found)
    return out


def package_of(module: str) -> str:
    """meshgate.<subpackage> for the library, the top-level name for the processes."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "meshgate" and len(parts) > 1 else parts[0]


def package_graph() -> dict[str, dict[str, set[str]]]:
    """Package -> package it imports -> the modules that import it (for the message)."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for module, imported in imports().items():
        for other in imported:
            if other.split(".")[0] not in TOPS or other.startswith(GENERATED):
                continue
            src, dst = package_of(module), package_of(other)
            # `meshgate` itself (its __init__) is run by every import of the library: it is no layer.
            if src != dst and dst != "meshgate":
                graph[src][dst].add(module)
    return graph


def cycles(graph: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def closure(module: str) -> dict[str, str]:
    """Everything `module` imports, however indirectly: name -> the module of ours that imports it."""
    graph = imports()
    seen: dict[str, str] = {}
    todo = [module]
    while todo:
        current = todo.pop()
        for imported in graph.get(current, ()):
            if imported not in seen:
                seen[imported] = current
                if imported in graph:
                    todo.append(imported)
    return seen


def _core_modules() -> list[str]:
    return [m for m in modules() if any(m == c or m.startswith(c + ".") for c in CORES) and m not in ADAPTERS]


def test_the_graph_sees_the_code() -> None:
    """The checks below mean something only if the graph holds the edges everyone knows are there."""
    graph = package_graph()
    assert "meshgate.resources" in graph["meshgate.store"]
    assert "meshgate.xds" in graph["zone_cp"]
    assert "grpc" in closure("meshgate.transport.ads_server")
    assert len(_core_modules()) > 30


def test_the_library_packages_form_layers() -> None:
    graph = package_graph()
    found = cycles(graph)
    detail = [
        f"{a} -> {b} (in {', '.join(sorted(graph[a][b]))})"
        for cycle in found
        for a in cycle
        for b in cycle
        if b in graph.get(a, {})
    ]
    assert found == [], "package cycles:\n" + "\n".join(detail)


def test_the_cores_do_no_io() -> None:
    """STYLE.md rule 1, transitively: a core module that imports a module that imports grpc imports grpc."""
    offences = []
    for module in sorted(_core_modules()):
        reached = closure(module)
        for io in sorted(IO_MODULES & reached.keys()):
            path = [io]
            while path[-1] != module:
                path.append(reached[path[-1]])
            offences.append(" <- ".join(path))
    assert offences == []


def test_the_processes_never_import_each_other_and_the_library_neither() -> None:
    offences = []
    for module in modules():
        reached = closure(module)
        top = module.split(".")[0]
        forbidden = {"meshgate": {"global_cp", "zone_cp"}, "global_cp": {"zone_cp"}, "zone_cp": {"global_cp"}}[top]
        offences += [f"{module} imports {other}" for other in reached if other.split(".")[0] in forbidden]
    assert offences == []


# Packages whose modules other branches are rewriting (issue 12): their `__all__` comes after the merge.
SURFACE_PENDING: frozenset[str] = frozenset()


def _declares_all(path: Path) -> bool:
    tree = ast.parse(path.read_text(), str(path))
    return any(
        (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets))
        or (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__")
        for node in tree.body
    )


def test_every_package_says_what_it_exports() -> None:
    """STYLE.md rule 7: a package re-exports a curated `__all__` (a namespace of kind modules needs none)."""
    packages = [m for m, path in modules().items() if path.name == "__init__.py" and m.startswith("meshgate")]
    missing = sorted(
        m
        for m in packages
        if m not in SURFACE_PENDING and m != "meshgate.resources.kinds" and not _declares_all(modules()[m])
    )
    assert missing == []
    assert sorted(SURFACE_PENDING - set(packages)) == []


if __name__ == "__main__":
    graph = package_graph()
    for package in sorted(graph):
        print(package, "->", ", ".join(sorted(graph[package])))
    print("cycles:", cycles(graph) or "none")
