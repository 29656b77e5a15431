"""The package's architecture, checked: three layers, no upward imports, no cycles, small units.

Layers (bottom to top), readable off the tree:

0. foundations: ``errors``, ``units``, ``grid``, the pure-torch ``core/`` and the numpy ``regrid/``;
1. the library: ``io/`` (file formats), ``models/``, ``observations/``, ``reconstruct/``,
   ``train/`` and the ``accessor``;
2. experiments and diagnostics: ``osse/`` and ``evaluation/``;
3. the entry points: ``xdiffsr`` itself (``__init__``) and the command line (``__main__``).

A module imports only from its own layer or below. ``core/`` imports nothing of the package but
``errors``; ``regrid/`` only the foundations. Function-local imports of the package's own modules
are allowed only in the command line (lazy subcommands).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xdiffsr"

LAYERS = {
    "xdiffsr.errors": 0,
    "xdiffsr.cache": 0,
    "xdiffsr.progress": 0,
    "xdiffsr._cli": 0,
    "xdiffsr._version": 0,
    "xdiffsr.units": 0,
    "xdiffsr.names": 0,
    "xdiffsr.grid": 0,
    "xdiffsr.core": 0,
    "xdiffsr.regrid": 0,
    "xdiffsr.io": 1,
    "xdiffsr.models": 1,
    "xdiffsr.observations": 1,
    "xdiffsr.reconstruct": 1,
    "xdiffsr.train": 1,
    "xdiffsr.accessor": 1,
    "xdiffsr.earth2studio_da": 1,
    "xdiffsr.osse": 2,
    "xdiffsr.evaluation": 2,
    "xdiffsr.__main__": 3,
    "xdiffsr": 3,
}
#: Packages whose modules may import only what is listed (besides themselves).
CONFINED = {
    "xdiffsr.core": {"xdiffsr.errors"},
    "xdiffsr.regrid": {"xdiffsr.errors", "xdiffsr.units", "xdiffsr.grid"},
}
LAZY_IMPORTS_ALLOWED = {"xdiffsr.__main__"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, path: Path, node: ast.AST) -> list[str]:
    """Package modules an import statement loads (``from x import sub`` counts sub-modules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "xdiffsr"]
    if not isinstance(node, ast.ImportFrom):
        return []
    src = _resolve(module, node, path.name == "__init__.py")
    if src.split(".")[0] != "xdiffsr":
        return []
    subs = [f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in MODULES]
    return [src, *subs]


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(module-level imports, function-local imports) of the package's own modules."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    top = {t for n in tree.body for t in _targets(module, path, n)}
    for n in tree.body:  # imports under `if TYPE_CHECKING:` / try at module level
        if isinstance(n, ast.If | ast.Try):
            top |= {t for s in ast.walk(n) for t in _targets(module, path, s)}
    every = {t for n in ast.walk(tree) for t in _targets(module, path, n)}
    return top, every - top


def _owner(module: str, table) -> str | None:
    best = None
    for key in table:
        if module == key or module.startswith(key + "."):
            best = key if best is None or len(key) > len(best) else best
    return best


def _layer(module: str) -> int:
    owner = _owner(module, LAYERS)
    assert owner is not None, f"{module} is in no layer: add it to LAYERS"
    return LAYERS[owner]


def test_every_module_has_a_layer():
    for m in MODULES:
        _layer(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_or_confined_import(module):
    top, local = _imports(module)
    for target in top | local:
        if target == module or target.startswith(module + "."):
            continue  # a package importing its own modules
        assert _layer(target) <= _layer(module), (
            f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        )
        confined = _owner(module, CONFINED)
        if confined and not target.startswith(confined):
            assert _owner(target, dict.fromkeys(CONFINED[confined])), (
                f"{module} may import only {sorted(CONFINED[confined])}, not {target}"
            )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_local_import_of_the_package(module):
    if module in LAZY_IMPORTS_ALLOWED:
        return
    _, local = _imports(module)
    assert not local, f"{module} imports {sorted(local)} inside functions; import at the top"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return [*stack[stack.index(t) :], t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def _graph(include_local: bool) -> dict[str, set[str]]:
    graph = {}
    for m in MODULES:
        top, local = _imports(m)
        deps = top | local if include_local else top
        # a package's __init__ importing its own modules is not a cycle with them
        graph[m] = {t for t in deps if t in MODULES and t != m and not m.startswith(t + ".")}
    return graph


def test_no_import_cycle():
    cycle = _cycle(_graph(include_local=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_check_can_fail():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function without its docstring."""
    n = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
        if isinstance(first.value.value, str):
            n -= first.end_lineno - first.lineno + 1
    return n


@pytest.mark.parametrize("module", sorted(MODULES))
def test_small_modules_and_functions(module):
    text = MODULES[module].read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{module}: split it by responsibility"
    long = [
        f"{n.name} ({_code_lines(n)} lines)"
        for n in ast.walk(ast.parse(text))
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        and _code_lines(n) > MAX_FUNCTION_LINES
    ]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"


#: modules that still import a private name from another module, each with the issue whose
#: branch is changing that module (remove a row when that branch has merged its fix)
PRIVATE_IMPORTS_PENDING: dict[str, str] = {}


def _private_imports(module: str) -> list[str]:
    """``_private`` names (not sub-modules) imported from another module of the package."""
    path = MODULES[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        src = _resolve(module, node, path.name == "__init__.py")
        if src.split(".")[0] != "xdiffsr" or src == module:
            continue
        out += [f"{src}.{a.name}" for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")
                and f"{src}.{a.name}" not in MODULES]
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_imported_from_another_module(module):
    found = _private_imports(module)
    if module in PRIVATE_IMPORTS_PENDING:
        assert found, f"{module} is clean now: drop it from PRIVATE_IMPORTS_PENDING"
        return
    assert not found, f"{module} imports private names {found}: make them public or move them"


def test_benchmarks_import_no_private_name():
    bench = PACKAGE.parent / "benchmarks"
    found = []
    for path in sorted(bench.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xdiffsr"):
                found += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and f"{node.module}.{a.name}" not in MODULES]
    assert not found, f"benchmarks import private names: {found}"
