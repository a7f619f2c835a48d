"""Every module imports alone, the import graph has no cycle, and tools/ and envs/ never load torch.

The modules are found by walking the package directories, so a module added tomorrow is checked too.

*Alone*: each module is imported in its own process, where no other module of chordgym has been imported:
a module that only works when something else was imported first, or that sits on an import cycle, fails
there. Starting ~100 interpreters that each import torch and transformers would take minutes, so each
module's process is forked from a server started for the purpose: a bare interpreter for tools/ and envs/
(which must not load torch, and do not pay for it), and one that has imported torch and transformers'
model code, third-party packages that every agents/ and algorithms/ module imports anyway, for those.

*No cycle*: the import statements of every module, those inside functions included (a lazy import hides a
cycle from the interpreter, not from the reader), form a graph without cycles. An import of a package the
module lives in (``from tools import ToolCall`` in ``tools/catalog/...``) is not an edge: Python initialises
the enclosing packages first in any case.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tools", "envs", "agents", "algorithms")
TORCH_FREE = ("tools", "envs")
#: third-party modules the server for agents/ and algorithms/ imports before it forks (see the docstring)
HEAVY = ("torch", "transformers", "transformers.modeling_utils")

# Reads module names on stdin; forks one child per module (at most WORKERS at a time), which imports it and
# writes {"module", "error", "missing", "torch"} to OUT_DIR/<i>.json.
FORK_SERVER = r"""
import importlib, json, os, sys, traceback

out_dir, workers = sys.argv[1], int(sys.argv[2])
for name in sys.argv[3:]:
    importlib.import_module(name)
running = 0
for i, module in enumerate(sys.stdin.read().split()):
    if running == workers:
        os.wait()
        running -= 1
    if os.fork() == 0:
        result = {"module": module, "error": None, "missing": None}
        try:
            importlib.import_module(module)
        except BaseException as e:
            result["error"] = traceback.format_exc()[-4000:]
            result["missing"] = e.name if isinstance(e, ModuleNotFoundError) else None
        result["torch"] = "torch" in sys.modules
        with open(os.path.join(out_dir, f"{i}.json"), "w") as f:
            json.dump(result, f)
        os._exit(0)
    running += 1
while running:
    os.wait()
    running -= 1
"""


def discover_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, dotted name -> file (a package by its ``__init__.py``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            modules[".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")] = path
    return modules


MODULES = discover_modules()


def optional_packages() -> set[str]:
    """The import names of the project's optional extras (``pyproject.toml``), which may be absent."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    return {re.match(r"[A-Za-z0-9_.-]+", req).group(0).replace("-", "_").lower()
            for reqs in extras.values() for req in reqs}


def import_each_alone(modules: list[str], preload: tuple[str, ...] = (), workers: int = 2) -> dict[str, dict]:
    """Import every module in its own child of a fresh fork server that imported ``preload`` first."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, "-c", FORK_SERVER, out, str(workers), *preload], cwd=ROOT,
                              input="\n".join(modules), capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = {}
        for i, module in enumerate(modules):
            path = Path(out, f"{i}.json")
            results[module] = json.loads(path.read_text()) if path.exists() else {
                "module": module, "error": f"the importing process died without a result:\n{proc.stderr[-2000:]}",
                "missing": None, "torch": None}
        return results


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, dict]:
    light = [m for m in MODULES if m.split(".")[0] in TORCH_FREE]
    heavy = [m for m in MODULES if m.split(".")[0] not in TORCH_FREE]
    start = time.perf_counter()
    results = {**import_each_alone(light), **import_each_alone(heavy, preload=HEAVY)}
    print(f"imported {len(results)} modules alone in {time.perf_counter() - start:.1f} s")
    return results


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_alone(module: str, imported_alone: dict[str, dict]) -> None:
    result = imported_alone[module]
    missing = (result["missing"] or "").split(".")[0].lower()
    if missing and missing in optional_packages():
        pytest.skip(f"{module} needs the optional package {missing!r}, not installed here")
    assert result["error"] is None, f"{module} does not import on its own:\n{result['error']}"
    if module.split(".")[0] in TORCH_FREE:
        assert result["torch"] is False, f"{module} loads torch; tools/ and envs/ must not"


# -- the import graph -----------------------------------------------------------------------------------
def imported_names(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement may load: the module and, for ``from``, each name under it."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source (functions included), its own
    enclosing packages left out."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in imported_names(module, path, node):
                while target and target not in modules:  # ``pkg.mod.name`` -> ``pkg.mod``
                    target = target.rpartition(".")[0]
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle from the component's first module back to itself, staying in the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def test_no_import_cycle() -> None:
    cycles = find_cycles(import_graph(MODULES))
    assert cycles == [], "import cycles (lazy imports included):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg.a import A\n")
    (tmp_path / "pkg" / "a.py").write_text("from pkg import sub\nA = 1\n")  # pkg -> pkg.a is no cycle
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("from .c import C\n")
    (tmp_path / "pkg" / "sub" / "c.py").write_text("def f():\n    from pkg.sub.d import D\n")
    (tmp_path / "pkg" / "sub" / "d.py").write_text("import pkg.sub.b\nD = 1\n")
    modules = discover_modules(tmp_path, ("pkg",))
    assert find_cycles(import_graph(modules)) == [["pkg.sub.b", "pkg.sub.c", "pkg.sub.d", "pkg.sub.b"]]
    (tmp_path / "pkg" / "sub" / "c.py").write_text("C = 1\n")
    assert find_cycles(import_graph(discover_modules(tmp_path, ("pkg",)))) == []
