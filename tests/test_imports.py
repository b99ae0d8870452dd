"""The import graph of ``ratedist``: no cycles, and function-level imports only where listed.

Every module of the package is found with :mod:`pkgutil` (walking the package directories, so
that no module has to be imported, or even importable, for its imports to be checked) and
parsed with :mod:`ast`. An ``import`` of a ratedist module counts wherever it is written: at
module level, under ``if``/``try``, or inside a function. ``from ratedist.x import y`` imports
the module ``ratedist.x.y`` when ``y`` is a submodule and ``ratedist.x`` otherwise; importing a
module also runs the ``__init__`` of each of its parent packages, so those are edges too
(except the importer's own parents, which are always initialized before it). Imports under
``if TYPE_CHECKING:`` never run and are left out.

A cycle is a strongly connected component of more than one module (or a module importing
itself); every one is reported with the modules and the import lines that close it.

Function-level imports are the usual way to hide a cycle, so each one of a ratedist module
must be listed in :data:`FUNCTION_LEVEL_ALLOWED` with the reason it is deferred.
"""

from __future__ import annotations

import ast
import functools
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import ratedist

ROOT = "ratedist"
ROOT_DIR = Path(ratedist.__file__).parent

_SYMPY = "import time: ratedist.symbolic loads sympy (about 1 s); only the models need it"
_RD = (
    "import time: ratedist.rd loads the closed forms and scipy.stats (about 1 s), which "
    "`ratedist --help` and argument errors do not need (`import ratedist` defers it too)"
)
_JAX = (
    "import time: the compressors import JAX (about 2-4 s), which `ratedist rd --help` and "
    "argument errors do not need (`import ratedist` defers it too)"
)
_PLOT = "import time: matplotlib (about 0.5 s), needed only with --plot"
_SIM = "import time: the simulator (optax, problems, engines) is loaded only to run it"

#: (importing module, imported module) -> why the import is inside a function. Import-time
#: cost of a module that ``import ratedist`` does not load anyway is the only accepted
#: reason: a deferred import must never be what breaks a cycle.
FUNCTION_LEVEL_ALLOWED: dict[tuple[str, str], str] = {
    ("ratedist.quantizers.truncation_models", "ratedist.symbolic"): _SYMPY,
    ("ratedist.quantizers.truncation_models", "ratedist.symbolic.lambdify"): _SYMPY,
    ("ratedist.commands.rd", "ratedist.compressors"): _JAX,
    ("ratedist.commands.rd", "ratedist.rd.operational"): _RD,
    ("ratedist.commands.rd", "ratedist.plotting"): _PLOT,
    ("ratedist.commands.demo", "ratedist.rd.operational"): _RD,
    ("ratedist.commands.simulate", "ratedist.sim.distributed"): _SIM,
    ("ratedist.commands.results", "ratedist.sim.results"): (
        "import time: the results table loads the simulator and pandas, which "
        "`ratedist results --help` and argument errors do not need"
    ),
    ("ratedist.commands.demo", "ratedist.plotting"): _PLOT,
    ("ratedist.commands.demo", "ratedist.validate"): _SIM,
    ("ratedist.commands.simulate", "ratedist.sim.store"): _SIM,
    ("ratedist.commands.simulate", "ratedist.sim.sweep"): _SIM,
    ("ratedist.commands.validate", "ratedist.validate"): _SIM,
}


class Import(NamedTuple):
    """One import statement of a ratedist module."""

    source: str  # importing module
    target: str  # imported ratedist module
    line: int
    in_function: bool


def _walk(path: Path, prefix: str) -> Iterator[tuple[str, Path, bool]]:
    """``(module name, file, is_package)`` for every module below ``path`` (no imports run)."""
    for info in pkgutil.iter_modules([str(path)], prefix):
        leaf = info.name.rpartition(".")[2]
        if info.ispkg:
            init = path / leaf / "__init__.py"
            if init.exists():
                yield info.name, init, True
                yield from _walk(path / leaf, info.name + ".")
        else:
            file = path / f"{leaf}.py"
            if file.exists():
                yield info.name, file, False


@functools.cache
def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: name -> (file, is_package)."""
    out = {ROOT: (ROOT_DIR / "__init__.py", True)}
    for name, file, ispkg in _walk(ROOT_DIR, ROOT + "."):
        out[name] = (file, ispkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Import nodes with whether they sit inside a function; TYPE_CHECKING blocks skipped."""

    def visit(node: ast.AST, in_function: bool) -> Iterator:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from visit(sub, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            func = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from visit(child, in_function or func)

    yield from visit(tree, False)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


@functools.cache
def imports() -> list[Import]:
    """Every import of a ratedist module by a ratedist module."""
    mods = modules()
    out = []
    for name, (file, is_package) in mods.items():
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node, in_function in _import_nodes(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node, name, is_package)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in mods else base)
            for target in dict.fromkeys(targets):  # one per statement
                if target == ROOT or target.startswith(ROOT + "."):
                    out.append(Import(name, target, node.lineno, in_function))
    return out


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.cache
def import_graph() -> dict[str, dict[str, list[Import]]]:
    """``source -> target -> [imports]``, parent ``__init__`` edges included."""
    mods = modules()
    graph: dict[str, dict[str, list[Import]]] = {m: {} for m in mods}
    for imp in imports():
        own = set(_parents(imp.source))
        for target in [*_parents(imp.target), imp.target]:
            if target in mods and target not in own and target != imp.source:
                graph[imp.source].setdefault(target, []).append(imp)
    return graph


def strongly_connected_components(graph: dict[str, dict[str, list]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit), nodes in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    out.append(sorted(comp))
    return out


def cycles() -> list[list[str]]:
    """Strongly connected components that contain a cycle."""
    graph = import_graph()
    return [c for c in strongly_connected_components(graph) if len(c) > 1 or c[0] in graph[c[0]]]


def _describe(component: list[str], graph: dict[str, dict[str, list[Import]]]) -> str:
    members = set(component)
    lines = [f"cycle among {len(component)} modules: {', '.join(component)}"]
    for src in component:
        for dst, imps in sorted(graph[src].items()):
            if dst in members:
                where = ", ".join(
                    f"line {i.line}{' (in a function)' if i.in_function else ''}" for i in imps
                )
                lines.append(f"  {src} -> {dst}  [{where}]")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the checks
def test_the_walk_finds_every_module_file():
    files = {p for p, _ in modules().values()}
    on_disk = {p for p in ROOT_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert files == on_disk, sorted(map(str, on_disk - files))


def test_tarjan_finds_cycles_and_ignores_dags():
    dag = {"a": {"b": []}, "b": {"c": []}, "c": {}}
    assert sorted(map(len, strongly_connected_components(dag))) == [1, 1, 1]
    loop = {"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}
    assert sorted(strongly_connected_components(loop)) == [["a", "b", "c"], ["d"]]


def test_no_import_cycles():
    graph = import_graph()
    found = cycles()
    assert not found, "\n" + "\n".join(_describe(c, graph) for c in found)


def test_function_level_imports_are_listed_with_a_reason():
    found = {(i.source, i.target): i for i in imports() if i.in_function}
    unlisted = sorted(set(found) - set(FUNCTION_LEVEL_ALLOWED))
    assert not unlisted, "function-level imports of ratedist modules not in the allow-list:\n" + (
        "\n".join(f"  {s} line {found[(s, t)].line}: imports {t}" for s, t in unlisted)
    )
    for reason in FUNCTION_LEVEL_ALLOWED.values():
        assert reason.strip()


def test_allow_list_has_no_stale_entries():
    found = {(i.source, i.target) for i in imports() if i.in_function}
    stale = sorted(set(FUNCTION_LEVEL_ALLOWED) - found)
    assert not stale, f"allow-list entries that no longer occur (remove them): {stale}"


#: Packages whose module ``__getattr__`` loads subpackages lazily, with the reason. Lazy
#: loading is for import time only; the graph above is checked without it.
LAZY_GETATTR_ALLOWED = {
    ROOT: "import time: every export (compressors, sources and quantizers import JAX; rd "
    "scipy.stats; sim, bounds, validate, symbolic, plotting more)",
}


def test_no_lazy_module_getattr_outside_the_allow_list():
    found = set()
    for name, (file, _) in modules().items():
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
            found.add(name)
    assert found <= set(LAZY_GETATTR_ALLOWED), sorted(found - set(LAZY_GETATTR_ALLOWED))


# ------------------------------------------------------------- what `import ratedist` loads
_NO_JAX_SCRIPT = """
import sys
import ratedist
loaded = {"import ratedist": "jax" in sys.modules}
from ratedist import cli
for argv in (["--help"], ["rd", "--bogus"], ["simulate", "--help"]):
    try:
        cli.main(argv)
    except SystemExit:
        pass
    loaded[" ".join(argv)] = "jax" in sys.modules
rc = cli.main(["rd", "--dim", "0", "--compressor", "top-k:k=3"])
loaded["rd --dim 0 (exit %d)" % rc] = "jax" in sys.modules
print(loaded)
"""


def test_import_ratedist_and_the_cli_help_and_argument_errors_do_not_load_jax():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _NO_JAX_SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR.parent,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
    assert loaded == dict.fromkeys(loaded, False), loaded
    assert "rd --dim 0 (exit 2)" in loaded


def test_every_export_resolves_and_dir_lists_it():
    exported = set(ratedist.__all__)
    assert exported <= set(dir(ratedist))
    for name in exported:
        assert getattr(ratedist, name) is not None, name
    lazy = {*ratedist._LAZY_MODULES, *ratedist._LAZY_SUBPACKAGES, *ratedist._LAZY_ATTRS}
    assert lazy == exported - {"__version__"}
    assert ratedist.make_compressor is ratedist.compressors.make
    assert ratedist.Gaussian is ratedist.sources.Gaussian
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = ratedist.nope
