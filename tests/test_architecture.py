"""lmrec's import layers: every module imports only from its own layer or a lower one.

Layers, low → high (:data:`LAYERS`):

0. ``config``, ``interrupt``, ``privacy``, ``data`` (and the root package ``lmrec``, which re-exports
   ``Dataset``, ``PAD``)
1. ``store``
2. ``text``
3. ``training`` — generic only (the loop, losses, distributed runs): nothing model-specific
4. ``models`` — each model builds its own training rows and may use ``training``
5. ``evaluation``, ``prediction``
6. ``experiment``
7. ``serving``
8. ``cli`` (with ``cli.pipeline``, the body of ``lmrec demo``)
9. ``entry`` — the ``lmrec`` command: installs the Ctrl-C handler, then imports the CLI

Every module under ``src/lmrec`` is parsed with :mod:`ast`; its ``lmrec`` imports are collected wherever they
are written (module level, under ``if TYPE_CHECKING:``, inside functions) together with
``importlib.import_module("lmrec...")`` calls whose name is a literal (or an f-string with a literal
``lmrec.`` prefix). The tests check that

(a) no import goes to a higher layer;
(b) the graph of imports between subpackages has no cycle;
(c) no ``lmrec`` import is written inside a function outside the start-up path (:data:`LAZY_FOR_START_UP`:
    ``lmrec.cli``, ``lmrec.entry`` and the root package's PEP 562 attributes import lazily so that the
    command starts fast and handles Ctrl-C from its first moment), except the optional dependencies of
    :data:`OPTIONAL_LAZY`. A function-level import that exists to dodge an import cycle hides a layering
    error; fix the layering instead.

``python tests/test_architecture.py [SRC]`` prints the subpackage graph (which edges are function-level) and
the largest modules.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Subpackages (and top-level modules) by layer, low → high. A new subpackage must be placed here.
LAYERS: list[set[str]] = [
    {"lmrec", "config", "interrupt", "privacy", "data"},
    {"store"},
    {"text"},
    {"training"},
    {"models"},
    {"evaluation", "prediction"},
    {"experiment"},
    {"serving"},
    {"cli"},
    {"entry"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


#: Function-level imports allowed outside the front end: optional dependencies, each imported behind a
#: ``try`` that handles its absence. ``(importer, imported)`` → why.
OPTIONAL_LAZY: dict[tuple[str, str], str] = {}  # none today: every dependency of lmrec is installed with it


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name ("pkg.*" for a dynamic name with a literal prefix)
    lazy: bool  # written inside a function
    line: int


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def subpackage(module: str) -> str:
    """``lmrec.models.seqrec.model`` → ``models``; the root package → ``lmrec``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _dynamic_name(call: ast.Call) -> str | None:
    """The module of ``importlib.import_module(<literal or f-string>)``, if it is an lmrec one."""
    f = call.func
    called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    if called != "import_module" or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        name = arg.value
    elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        name = str(arg.values[0].value).rstrip(".") + ".*"
    else:
        return None
    return name if name.split(".")[0] == "lmrec" else None


def imports_of(path: Path, src: Path) -> list[Import]:
    """Every lmrec import of one source file."""
    me = module_name(path, src)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from lmrec import text" names a subpackage; "from lmrec.x import y" the module lmrec.x
                names = [f"{base}.{a.name}" for a in child.names] if base == "lmrec" else [base]
            elif isinstance(child, ast.Call) and (dyn := _dynamic_name(child)):
                names = [dyn]
            for n in names:
                if n.split(".")[0] == "lmrec":
                    found.append(Import(me, n, lazy, child.lineno))  # type: ignore[attr-defined]
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def all_imports(src: Path | None = None) -> list[Import]:
    src = src or SRC
    return [i for p in sorted((src / "lmrec").rglob("*.py")) for i in imports_of(p, src)]


def subpackage_edges(imports: list[Import]) -> dict[tuple[str, str], list[Import]]:
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for i in imports:
        a, b = subpackage(i.importer), subpackage(i.imported)
        if a != b:
            edges[(a, b)].append(i)
    return edges


def _where(i: Import) -> str:
    return f"{i.importer}:{i.line} imports {i.imported}{' (in a function)' if i.lazy else ''}"


# ---------------------------------------------------------------------- the tests
def test_every_subpackage_has_a_layer() -> None:
    subs = {subpackage(module_name(p, SRC)) for p in (SRC / "lmrec").rglob("*.py")}
    assert not subs - set(LAYER), f"place these in LAYERS: {sorted(subs - set(LAYER))}"


def test_no_import_goes_up_a_layer() -> None:
    bad = [_where(i) for i in all_imports()
           if LAYER[subpackage(i.imported)] > LAYER[subpackage(i.importer)]]
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def test_subpackage_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in subpackage_edges(all_imports()):
        graph[a].add(b)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def cycle_from(n: str, path: list[str]) -> list[str] | None:
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*path[path.index(m):], m] if m in path else [*path, m]
            if m not in state and (found := cycle_from(m, [*path, m])):
                return found
        state[n] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := cycle_from(start, [start])):
            raise AssertionError("subpackage import cycle: " + " → ".join(cycle))


#: Subpackages whose lazy imports keep the command's start fast (see (c) above).
LAZY_FOR_START_UP = {"cli", "entry", "lmrec"}


def test_no_function_level_imports_outside_the_start_up_path() -> None:
    bad = [_where(i) for i in all_imports()
           if i.lazy and subpackage(i.importer) not in LAZY_FOR_START_UP
           and (i.importer, i.imported) not in OPTIONAL_LAZY]
    hint = "move them to the top of the module; if that makes a cycle, fix the layering"
    assert not bad, f"function-level lmrec imports ({hint}):\n" + "\n".join(bad)


def test_optional_lazy_list_is_current() -> None:
    seen = {(i.importer, i.imported) for i in all_imports() if i.lazy}
    stale = sorted(set(OPTIONAL_LAZY) - seen)
    assert not stale, f"OPTIONAL_LAZY names imports that no longer exist: {stale}"


# ---------------------------------------------------------------------- the picture, for reviews
def describe(src: Path | None = None) -> str:
    src = src or SRC
    imports = all_imports(src)

    def edge_lines(edges: dict[tuple[str, str], list[Import]]) -> list[str]:
        out = []
        for (a, b), edge in sorted(edges.items(), key=lambda kv: (LAYER.get(kv[0][0], 99), kv[0])):
            top, lazy = sum(not i.lazy for i in edge), sum(i.lazy for i in edge)
            up = "  ↑ UP A LAYER" if LAYER.get(b, -1) > LAYER.get(a, -1) else ""
            out.append(f"  {a:>10} → {b:<10} {top:>3} / {lazy:<3}{up}")
        return out

    lines = ["subpackage → subpackage: module-level imports / function-level imports"]
    lines += edge_lines(subpackage_edges(imports))
    sizes = sorted(((len(p.read_text(encoding="utf-8").splitlines()), module_name(p, src))
                    for p in (src / "lmrec").rglob("*.py")), reverse=True)
    lines.append("largest modules (lines):")
    lines += [f"  {n:>5}  {m}" for n, m in sizes[:12]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe(Path(sys.argv[1]) if len(sys.argv) > 1 else None))


def test_every_module_imports_first() -> None:
    """Each module can be the first lmrec module a program imports (a cycle through a package's
    ``__init__`` only shows in some import orders). One fresh interpreter; lmrec's modules are dropped from
    ``sys.modules`` before each import, third-party ones stay loaded."""
    import subprocess

    names = sorted({module_name(p, SRC) for p in (SRC / "lmrec").rglob("*.py")} - {"lmrec.__main__"})
    script = (
        "import importlib, sys\n"
        f"bad = []\nfor name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'lmrec' or m.startswith('lmrec.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception as exc:\n        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "PYTHONPATH": str(SRC)})
    assert r.returncode == 0, f"modules that fail when imported first:\n{r.stdout}{r.stderr[-2000:]}"
