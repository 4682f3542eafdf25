"""The packages as layers, read from the source with `ast` (every import, at module level or inside a function):

    base_model, rewards  <-  r1lab leaves  <-  r1lab.train  <-  r1lab.stages  <-  config / status / pipeline  <-  cli

No import cycle among the modules of base_model, rewards and r1lab; no module imports a higher layer; base_model and
rewards import nothing of r1lab (nor of each other); no stage kind imports another stage kind; no file is longer
than LIMIT lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("base_model", "rewards", "r1lab")
LIMIT = 400

LEAF, TRAIN, STAGES, RUNNER, CLI = 1, 2, 3, 4, 5
TOP = {"r1lab.cli": CLI, "r1lab.eval.cli": CLI, "r1lab.eval.__main__": CLI,
       "r1lab.config": RUNNER, "r1lab.status": RUNNER, "r1lab.rundir": RUNNER, "r1lab.pipeline": RUNNER}


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name: str, f: Path, known: dict) -> set[str]:
    """The project modules `name` imports anywhere in its source (`from pkg import mod` counts as pkg.mod)."""
    found = set()
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {m: imports(m, f, known) for m, f in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def layer(m: str) -> int:
    if m.startswith(("base_model", "rewards")):
        return 0
    if m in TOP:
        return TOP[m]
    if m.startswith("r1lab.stages"):
        return STAGES
    if m.startswith("r1lab.train"):
        return TRAIN
    return LEAF


def stage_kind_modules() -> set[str]:
    from r1lab.stages import STAGE_KINDS

    return {m for m in STAGE_KINDS.values() if m.startswith("r1lab.stages.")}


def violations(g: dict[str, set[str]], kinds: set[str]) -> list[str]:
    bad = []
    for m, deps in sorted(g.items()):
        for d in sorted(deps):
            if layer(d) > layer(m):
                bad.append(f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})")
            elif layer(m) == 0 and d.split(".")[0] != m.split(".")[0]:
                bad.append(f"{m} imports {d}: base_model and rewards stand on their own")
            elif m in kinds and d in kinds:
                bad.append(f"stage {m} imports stage {d}: share a function in r1lab/train instead")
    return bad


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_no_upward_imports_and_no_stage_imports_another():
    assert violations(graph(), stage_kind_modules()) == []


def test_files_do_one_job_in_at_most_limit_lines():
    long = {str(f.relative_to(ROOT)): n for f in modules().values() if (n := len(f.read_text().splitlines())) > LIMIT}
    assert long == {}


def test_the_checks_catch_what_they_forbid(tmp_path):
    """The scan itself: a cycle through a function-level import, an upward import and a stage importing a stage."""
    files = {
        "base_model/__init__.py": "", "rewards/__init__.py": "",
        "r1lab/__init__.py": "", "r1lab/stages/__init__.py": "",
        "r1lab/config.py": "from r1lab.stages import base\n",
        "r1lab/stages/base.py": "def f():\n    from r1lab import config\n",
        "r1lab/stages/sft.py": "from r1lab.stages.base import f\n",
        "r1lab/stages/grpo.py": "from r1lab.stages import sft\n",
        "r1lab/io.py": "from r1lab.pipeline import run\n", "r1lab/pipeline.py": "",
        "base_model/model.py": "import rewards\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    g = graph(tmp_path)
    assert cycles(g) == [["r1lab.config", "r1lab.stages.base"]]
    bad = violations(g, {"r1lab.stages.sft", "r1lab.stages.grpo"})
    assert any("r1lab.stages.base (layer 3) imports r1lab.config (layer 4)" in b for b in bad)
    assert any("r1lab.io (layer 1) imports r1lab.pipeline (layer 4)" in b for b in bad)
    assert any("stage r1lab.stages.grpo imports stage r1lab.stages.sft" in b for b in bad)
    assert any("base_model.model imports rewards" in b for b in bad)


@pytest.mark.parametrize("rel", ["r1lab/io.py", "r1lab/params.py", "r1lab/loading.py"])
def test_leaves_import_no_stage(rel):
    g = graph()
    name = rel[:-3].replace("/", ".")
    assert not [d for d in g[name] if d.startswith(("r1lab.stages", "r1lab.train", "r1lab.pipeline", "r1lab.config"))]
