"""The import graph of the project's packages, read from the source with `ast` (nothing is imported).

An edge is any import of a project module: module level or inside a function, `import x`, `from x import
y` (y a module or a name), `importlib.import_module("x")`, and a string constant naming a submodule (the
stage registry and the CLI's tool table name their modules that way).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "classifiers", "beam_runners")


def module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the project's packages."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that `name` (a module or a module.attribute) is, or is in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterable[str]:
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for a in node.names:
                sub = f"{base}.{a.name}"
                yield sub if sub in known else base
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.args[0].value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value \
                and node.value in known:
            yield node.value


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself excluded)."""
    files = module_files()
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, f in files.items():
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        edges = {_resolve(t, known) for t in _targets(tree, module, f.name == "__init__.py", known)}
        graph[module] = {e for e in edges if e and e != module}
    return graph


def unit(module: str) -> str:
    """The layer unit of a module: pipeline.<package> (or pipeline.cli), classifiers, beam_runners."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "pipeline" and len(parts) > 1 else parts[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found
