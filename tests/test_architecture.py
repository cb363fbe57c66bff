"""The package's shape: no import cycles (lazy and type-checking imports count), small modules.

A cycle means two modules cannot be understood, tested or changed apart; Python
hides it when one side imports lazily or only for type checking, so this test reads
every import statement in the source, wherever it sits.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pycrane

SRC = Path(pycrane.__file__).parent
#: A module longer than this must say why in its docstring ("... lines because ...").
MAX_LINES = 500
#: Splits in progress (issue 15): an entry goes when its module's split lands.
PENDING_SPLITS: set[str] = set()
PENDING_CYCLES: list[list[str]] = []


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module; ``from mod import name`` the module.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph = {name: _imports(name, path, known) for name, path in mods.items()}
    # A package's __init__ re-exports its modules: the edge from a package to its own
    # submodules is how packages work, not a cycle between concepts.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    return graph


def test_the_import_graph_sees_lazy_and_type_checking_imports() -> None:
    graph = _graph()
    # crane imports the layout only for type checking and inside functions, the
    # tarball package only inside a function: both are edges.
    assert {"pycrane.layout", "pycrane.tarball", "pycrane.remote"} <= graph["pycrane.crane"]
    assert "pycrane.remote._api" in graph["pycrane.remote._client"]


def test_no_import_cycles() -> None:
    cycles = [c for c in _cycles(_graph()) if c not in PENDING_CYCLES]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_modules_stay_small_or_say_why() -> None:
    long = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines <= MAX_LINES or name in PENDING_SPLITS:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "lines because" not in doc:
            long.append(f"{name} ({lines} lines)")
    assert not long, f"modules over {MAX_LINES} lines without a reason: " + ", ".join(long)


def test_pending_lists_are_not_stale() -> None:
    mods = _modules()
    for name in PENDING_SPLITS:
        lines = mods[name].read_text(encoding="utf-8").count("\n")
        assert lines > MAX_LINES, f"{name} is split now: remove it from PENDING_SPLITS"
    cycles = _cycles(_graph())
    for c in PENDING_CYCLES:
        assert c in cycles, f"{' <-> '.join(c)} is gone: remove it from PENDING_CYCLES"
