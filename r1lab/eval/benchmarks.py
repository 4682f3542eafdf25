"""Benchmarks: the math and code sets shipped in r1lab/data/benchmarks, the synthetic tasks' test splits, and
any user JSONL / JSON / Parquet file or `datasets` directory with a problem and an answer column.

Every benchmark becomes a list of rows ``{id, problem, answer | tests, ...}`` plus a kind ("math": the
answer is checked by the math verifier; "code": ``tests`` run after the completion's code) and the
instruction appended to the problem (R1's "reason step by step ... \\boxed{}" for math).
A spec is a built-in name (``gsm8k``), a synthetic task (``task:countdown``, or ``task:arithmetic@2-4`` for
given difficulties), or a path;
``name=spec`` gives it a display name.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from r1lab.eval.prompting import CODE_INSTRUCTION, R1_INSTRUCTION

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "benchmarks"

# name -> (file, kind, metadata columns used for breakdowns)
BUILTIN = {
    "gsm8k": ("gsm8k_test.jsonl", "math", ()),
    "math500": ("math500_test.jsonl", "math", ("subject", "level")),
    "aime24": ("aime24.jsonl", "math", ()),
    "aime25": ("aime25.jsonl", "math", ()),
    "amc23": ("amc23.jsonl", "math", ()),
    "humaneval": ("humaneval.jsonl", "code", ()),
    "mbpp": ("mbpp_test.jsonl", "code", ()),
}
ALIASES = {"math": "math500", "math-500": "math500", "aime2024": "aime24", "aime2025": "aime25",
           "amc": "amc23", "amc2023": "amc23", "gsm8k_test": "gsm8k", "mbpp_test": "mbpp"}


@dataclass
class Benchmark:
    name: str
    kind: str                                  # "math" | "code" | "countdown" (synthetic task)
    rows: list[dict]                           # id, problem, answer (math) | tests (code), metadata ...
    instruction: str | None = R1_INSTRUCTION   # appended to each problem (None: the problem is the whole prompt)
    breakdown: tuple[str, ...] = field(default_factory=tuple)   # columns to break metrics down by

    def __len__(self):
        return len(self.rows)


def code_tests(row: dict) -> str:
    """The ``tests`` column of DESIGN's code_tests reward: HumanEval test + check(entry_point); MBPP setup + asserts."""
    if "tests" in row:
        return row["tests"]
    if "entry_point" in row:
        return f"{row['test']}\n\ncheck({row['entry_point']})\n"
    if "test_list" in row:
        return "\n".join([row.get("test_setup_code") or ""] + list(row["test_list"])) + "\n"
    raise ValueError(f"code benchmark row {row.get('id')!r}: no tests, entry_point/test or test_list column")


def list_benchmarks() -> list[str]:
    names = list(BUILTIN)
    try:
        from r1lab import tasks
        names += [f"task:{n}" for n in _task_names(tasks)]
    except Exception:
        pass
    return names


def load_benchmark(spec: str, limit: int | None = None, problem_key: str = "problem",
                   answer_key: str = "answer", seed: int = 0) -> Benchmark:
    """Load one benchmark by built-in name, synthetic task name or path (see the module docstring)."""
    display = None
    if "=" in spec and not Path(spec).exists():
        display, spec = spec.split("=", 1)
    key = ALIASES.get(spec.lower(), spec.lower())
    if key in BUILTIN:
        fname, kind, brk = BUILTIN[key]
        rows = _read_jsonl(DATA_DIR / fname)
        if kind == "code":
            rows = [dict(r, tests=code_tests(r)) for r in rows]
        if key == "mbpp":   # MBPP's own prompt format (Austin et al. 2021): the text, then the tests it must pass
            rows = [dict(r, problem=r["problem"] + "\nYour code should pass these tests:\n" + "\n".join(r["test_list"]))
                    for r in rows]
        bench = Benchmark(display or key, kind, rows, R1_INSTRUCTION if kind == "math" else CODE_INSTRUCTION, brk)
    elif Path(spec).exists():
        bench = _load_path(Path(spec), display, problem_key, answer_key)
    else:
        bench = _load_task(spec.removeprefix("task:"), display, seed, limit)
    if limit is not None:
        bench.rows = bench.rows[:limit]
    return bench


def distinct_names(benches: list[Benchmark], specs: list[str]) -> list[Benchmark]:
    """Results, sample files and table rows are keyed by a benchmark's name, so two with one name (a/test.jsonl and
    b/test.jsonl) would collapse into one: each clash is renamed by as many of its path's folders as tell them apart
    (a-test, b-test); a clash that no folder resolves (the same spec twice) is numbered (NAME-2, NAME-3)."""
    from collections import Counter

    names = [b.name for b in benches]
    clash = {n for n, c in Counter(names).items() if c > 1}
    for n in clash:
        idx = [i for i, x in enumerate(names) if x == n and Path(specs[i]).exists()]   # plain paths, no NAME=
        parts = [Path(specs[i]).resolve().with_suffix("").parts for i in idx]
        for depth in range(2, max((len(p) for p in parts), default=0) + 1):
            cand = ["-".join(p[-depth:]) for p in parts]
            if len(set(cand)) == len(cand):
                for i, c in zip(idx, cand):
                    names[i] = c
                break
    seen: Counter = Counter()
    for i, n in enumerate(names):
        seen[n] += 1
        if seen[n] > 1:
            names[i] = f"{n}-{seen[n]}"
    for b, n in zip(benches, names):
        b.name = n
    return benches


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    return rows


def _load_path(path: Path, display, problem_key, answer_key) -> Benchmark:
    if path.is_dir():
        import datasets
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["test"] if "test" in ds else ds[next(iter(ds))]
        rows = [dict(r) for r in ds]
    elif path.suffix == ".parquet":
        import datasets
        rows = [dict(r) for r in datasets.Dataset.from_parquet(str(path))]
    elif path.suffix == ".json":
        data = json.loads(path.read_text())
        rows = data if isinstance(data, list) else data.get("rows") or data.get("data")
    else:
        rows = _read_jsonl(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    cols = set(rows[0])
    pkey = problem_key if problem_key in cols else ("prompt" if "prompt" in cols else problem_key)
    if pkey not in cols:
        raise ValueError(f"{path}: no problem column {problem_key!r} (columns: {sorted(cols)}); "
                         f"set --problem-key")
    is_code = answer_key not in cols and ({"tests", "test_list", "entry_point"} & cols)
    if not is_code and answer_key not in cols:
        raise ValueError(f"{path}: no answer column {answer_key!r} (columns: {sorted(cols)}); set --answer-key")
    out = []
    for i, r in enumerate(rows):
        row = dict(r, id=str(r.get("id", i)), problem=r[pkey])
        if is_code:
            row["tests"] = code_tests(r)
        else:
            row["answer"] = str(r[answer_key])
        out.append(row)
    brk = tuple(c for c in ("subject", "level", "difficulty", "task") if c in cols)
    kind = "code" if is_code else "math"
    return Benchmark(display or path.stem, kind, out, R1_INSTRUCTION if kind == "math" else CODE_INSTRUCTION, brk)


TASK_TEST_SIZE = 100   # problems drawn from a synthetic task's test split when no --limit is given


def _task_names(tasks_mod) -> list[str]:
    names = getattr(tasks_mod, "REASONING_TASKS", None) or list(getattr(tasks_mod, "TASKS", {}))
    return [n for n in names if n != "chat"]


def _parse_difficulty(spec: str):
    """"arithmetic@3" -> ("arithmetic", [3]); "arithmetic@2-4" -> ("arithmetic", [2, 3, 4]); no "@" -> task default."""
    if "@" not in spec:
        return spec, None
    name, d = spec.split("@", 1)
    try:
        lo, _, hi = d.partition("-")
        return name, list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"benchmark {spec!r}: difficulty after '@' must be N or A-B (e.g. task:arithmetic@2-4)") from None


def _load_task(spec: str, display, seed: int, limit: int | None) -> Benchmark:
    """A synthetic task's test split (r1lab.tasks.task_rows), optionally at given difficulties (task:NAME@2-4).
    Its prompt already says how to answer (R1 format, <answer> tags), so no instruction is appended."""
    name, difficulty = _parse_difficulty(spec)
    try:
        from r1lab import tasks
        names = _task_names(tasks)
    except ImportError:
        tasks, names = None, []
    if name not in names:
        raise ValueError(f"benchmark {name!r}: not a built-in ({', '.join(BUILTIN)}), a synthetic task "
                         f"({', '.join(names) or 'none available'}) or an existing path")
    try:
        rows = tasks.task_rows(name, n=limit or TASK_TEST_SIZE, split="test", seed=seed, difficulty=difficulty)
    except ValueError as e:            # no --limit: take every distinct test problem there is, if fewer
        m = re.search(r"only (\d+) distinct", str(e))
        if limit is not None or not m or int(m.group(1)) == 0:
            raise
        rows = tasks.task_rows(name, n=int(m.group(1)), split="test", seed=seed, difficulty=difficulty)
    out = []
    for i, r in enumerate(rows):
        row = dict(r, id=str(r.get("id", i)), problem=r.get("problem", r.get("prompt")))
        if r.get("answer") is not None:
            row["answer"] = str(r["answer"])
        out.append(row)
    kind = "code" if not out or "answer" not in out[0] else \
        "countdown" if {"numbers", "target"} <= set(out[0]) else "math"
    brk = tuple(c for c in ("difficulty",) if out and c in out[0])
    return Benchmark(display or spec.replace("@", "_d"), kind, out, None, brk)
