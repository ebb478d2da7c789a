"""Module boundaries of the package: no import cycle, no oversized module.

The import graph is read with ``ast`` from the sources (every ``import`` /
``from ... import`` of an ``ismcgm`` module, at any depth, so that an import
hidden inside a function to dodge a cycle still counts as an edge).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ismcgm"
MAX_LINES = 800


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _resolve(mod: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    base = pkg[: len(pkg) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: {ismcgm modules it imports}}``; ``from pkg import sub`` counts as importing ``pkg.sub``."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            # a package's own __init__ importing its submodules is not a cycle
            # of the submodules back to the package
            if n == m.rpartition(".")[0] and m.startswith(n + "."):
                continue
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    graph = import_graph()
    assert "ismcgm.masks" in graph and "ismcgm.cii.extent" in graph["ismcgm.masks"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cii_does_not_import_masks():
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("ismcgm.cii"):
            assert "ismcgm.masks" not in deps, mod


def test_no_module_over_800_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_library_mask_defaults_are_the_schema_defaults():
    """The schema is the source of the mask defaults; the library's fallback must equal it."""
    import yaml

    from ismcgm.maskio import DEFAULT_PARAMS

    schema = yaml.safe_load((SRC.parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["masks"]["additionalProperties"]["properties"]
    assert {k: v["default"] for k, v in props.items()} == {k: v for k, v in DEFAULT_PARAMS.items() if k != "name"}


def test_no_function_level_package_imports():
    """Imports of ismcgm modules sit at module level (none hidden in a function to dodge a cycle)."""
    hidden = []
    for mod, path in _modules().items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("ismcgm")):
                        hidden.append(f"{mod}:{node.lineno}")
    assert not hidden, hidden
