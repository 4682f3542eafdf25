"""base_model's layering, as an `ast` scan of its source sees it (imports inside functions count too): no module
imports r1lab (or anything else of ours above it), and no two base_model modules import each other, even through
others (no cycle)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "base_model"


def _modules() -> dict[str, Path]:
    out = {}
    for f in (ROOT / PKG).rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every dotted name module `name` imports (absolute; `from a import b` gives a and a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    g = {}
    for m, f in mods.items():
        deps = set()
        for n in _imports(m, f):
            while n and n not in mods:
                n = n.rpartition(".")[0]
            if n and n != m:
                deps.add(n)
        g[m] = deps
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
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

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_base_model_imports_nothing_of_ours_above_it():
    ours = {"r1lab", "rewards"}
    up = sorted((m, n) for m, f in _modules().items() for n in _imports(m, f) if n.split(".")[0] in ours)
    assert up == []


def test_base_model_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_scan_sees_a_cycle_and_imports_inside_functions():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    g = _graph()
    assert "base_model.generate" in g["base_model.model"]          # model.generate() uses it
    assert "base_model.model" not in g["base_model.generate"]
