"""The package's structure: no import cycles, and every plug-in registered by the module its registry names."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mtl"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imports(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The mtl modules `name` imports anywhere in its file (module level, inside functions and
    classes, in try blocks); only `if TYPE_CHECKING:` blocks are left out (they never run)."""
    targets: set[str] = set()

    def add(module: str, names: list[str]) -> None:
        for n in names:  # `from mtl.pkg import sub` imports the submodule mtl.pkg.sub
            if f"{module}.{n}" in known:
                targets.add(f"{module}.{n}")
            elif module in known:
                targets.add(module)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                targets.update(a.name for a in child.names if a.name in known)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                add(module, [a.name for a in child.names])
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    targets.discard(name)
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a closed path of modules) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def connect(v: str) -> None:  # Tarjan; the package is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for component in components:  # a shortest path back to the start shows the cycle
        start = min(component)
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            nexts = sorted(graph[path[-1]] & component)
            if start in nexts:
                cycles.append(path + [start])
                break
            for w in nexts:
                if w not in seen:
                    seen.add(w)
                    paths.append(path + [w])
    return cycles


def test_the_package_has_no_import_cycles():
    """Every import counts: module-level ones and those inside functions (a cycle hidden in a function
    still ties the two modules together and breaks when the import order changes). Importing a
    submodule is an edge to it, not to its package's __init__. Registries import plug-ins by name
    (`Registry(modules=...)`), which is no import edge: the next test checks those names instead."""
    known = _modules()
    graph = {name: _imports(name, path, is_package, set(known)) for name, (path, is_package) in known.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def test_the_cycle_finder_reports_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


# Every Registry in mtl: (module, attribute). The test below fails when one is missing here.
REGISTRIES = [
    ("mtl.jobs", "JOBS"),
    ("mtl.methods.base", "METHODS"),
    ("mtl.models.factory", "MODELS"),
    ("mtl.models.graph_config", "GRAPH_MODULES"),
    ("mtl.meta.objectives", "OBJECTIVES"),
    ("mtl.meta.optimizers.base", "OPTIMIZERS"),
    ("mtl.meta.pool", "BACKENDS"),
]

_CHECK = r"""
import importlib, json, os, sys
import numpy, torch  # loaded once, before the fork: every child still starts without any mtl module
pairs = json.loads(sys.argv[1])
results = {}
for registry_module, attribute, module in pairs:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            registry = getattr(importlib.import_module(registry_module), attribute)
            answer = {"registered": sorted(registry._entries)}
        except ImportError as err:
            answer = {"import_error": str(err)}
        except Exception as err:
            answer = {"error": repr(err)}
        os.write(write, json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        results[f"{registry_module}.{attribute}:{module}"] = json.loads(answer.read() or '{"error": "no answer"}')
    os.waitpid(pid, 0)
print(json.dumps(results))
"""


def test_every_registry_is_listed_here():
    found = set()
    for name, (path, _) in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, "id", "") == "Registry":
                found |= {(name, t.id) for t in node.targets if isinstance(t, ast.Name)}
    assert found == set(REGISTRIES)


def test_each_plugin_is_registered_by_the_module_its_registry_names():
    """For each name in a registry's `modules`, import that module alone in a fresh interpreter (a
    forked child of one that has loaded no mtl module) and check that the name is then registered; and
    every name a plug-in module registers is named (or registered by the registry's own module)."""
    import importlib

    pairs, named = [], {}
    for registry_module, attribute in REGISTRIES:
        registry = getattr(importlib.import_module(registry_module), attribute)
        named[registry_module, attribute] = dict(registry.modules)
        for module in [registry_module] + sorted(set(registry.modules.values()) - {registry_module}):
            pairs.append((registry_module, attribute, module))
    out = subprocess.run([sys.executable, "-c", _CHECK, json.dumps(pairs)], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.splitlines()[-1])
    problems = []
    own = {(r, a): set(results[f"{r}.{a}:{r}"].get("registered", ())) for r, a in REGISTRIES}  # the registry's module's
    for registry_module, attribute, module in pairs:
        result = results[f"{registry_module}.{attribute}:{module}"]
        if "import_error" in result and "ray" in result["import_error"]:
            continue  # an optional dependency that is not installed here
        if "registered" not in result:
            problems.append(f"{module}: {result}")
            continue
        expected = [n for n, m in named[registry_module, attribute].items() if m == module]
        missing = [n for n in expected if n not in result["registered"]]
        if missing:
            problems.append(f"{registry_module}.{attribute} names {module} for {missing}, which it does not register")
        unnamed = [n for n in result["registered"] if named[registry_module, attribute]
                   and n not in named[registry_module, attribute] and n not in own[registry_module, attribute]]
        if unnamed:
            problems.append(f"{module} registers {unnamed}, which {registry_module}.{attribute} does not name")
    assert not problems, "\n".join(problems)


def _layout_paths() -> set[str]:
    """The files the README's "## Layout" block names: top-level entries, and the files listed under a
    package (indented lines, relative to it)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout\n", 1)[1].split("```\n", 2)[1]
    named, package = set(), ""
    for line in block.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            first = line.split()[0]
            package = first if first.endswith("/") else ""
            named.add(first.rstrip("/"))
            continue
        words = line.split()
        prefix = package + (words[0] if words[0].endswith("/") else "")
        for word in re.findall(r"[\w*/]+\.py\b", line):
            named.add(prefix + word)
    return named


def test_the_readme_layout_names_every_file_and_only_existing_ones():
    named = _layout_paths()
    existing = {p for n in named for p in ([str(q.relative_to(ROOT)) for q in ROOT.glob(n)] if "*" in n else [n])}
    stale = sorted(n for n in existing if not (ROOT / n).exists())
    files = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    missing = sorted(files - existing)
    assert not stale and not missing, f"README layout: names missing files {stale}; leaves out {missing}"
    assert {"mtl/train", "mtl/distill"} <= named


def test_no_two_modules_of_the_package_share_a_file_name():
    """One name, one file: `options.py` in two packages made readers open the wrong one. Named configs
    (mtl/config/exp/, named after what they run: a job, a dataset), `__init__.py` and a plug-in family's
    `base.py` are exempt."""
    exempt = {"__init__.py", "base.py"}
    exp_dir = PACKAGE / "config" / "exp"
    seen: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name not in exempt and exp_dir not in path.parents:
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not shared, f"file names used by more than one module: {shared}"
