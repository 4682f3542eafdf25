"""What a synthetic task is, and how train/test splits stay disjoint.

A task is a function `make(rng, difficulty) -> dict | None` that draws one problem:
{"key": canonical identity, "prompt", "answer" (or "tests"), "solution" (R1 format), ...extra columns}.
`generate_rows` calls it until it has `n` distinct problems of the requested split. The split of a
problem is a pure function of its key (a hash bucket), never of the seed or of the order of drawing, so
a problem is in train or in test for every seed: the splits can never share a problem.
"""
from __future__ import annotations

import hashlib
import random
import re
from typing import Callable

TEST_FRACTION = 0.2   # share of the problem space that belongs to the test split


def split_of(task: str, key: str) -> str:
    h = int.from_bytes(hashlib.sha256(f"{task}|{key}".encode()).digest()[:8], "big")
    return "test" if (h % 10_000) < TEST_FRACTION * 10_000 else "train"


def r1_format(think: str, answer: str) -> str:
    """The R1 response format used for every worked solution."""
    return f"<think>\n{think.strip()}\n</think>\n<answer>{answer}</answer>"


def short_solution(solution: str) -> str:
    """The same R1-format answer with the working cut to its last line: the result stated, no steps shown."""
    m = re.match(r"<think>\n(.*)\n</think>\n(.*)", solution, re.S)
    if not m:
        raise ValueError(f"not an R1-format solution: {solution[:60]!r}")
    last = m.group(1).strip().splitlines()[-1]
    return f"<think>\n{last}\n</think>\n{m.group(2)}"


def shorten(rows: list[dict], fraction: float) -> list[dict]:
    """Give `fraction` of the rows (chosen by a hash of their id, so the same problems for every seed) a
    short solution instead of the worked one; their `style` column says which (worked | short)."""
    out = []
    for r in rows:
        h = int.from_bytes(hashlib.sha256(f"short|{r['id']}".encode()).digest()[:8], "big") % 10_000
        short = h < fraction * 10_000
        out.append({**r, "solution": short_solution(r["solution"]) if short else r["solution"],
                    "style": "short" if short else "worked"})
    return out


def draw(task: str, make: Callable, rng: random.Random, d: int, split: str = "train", tries: int = 1) -> dict | None:
    """One problem of `split` at difficulty d (its "key" still in it): up to `tries` calls of make(rng, d); None if
    none of them drew a problem of that split. The one split filter, for task rows and the pretraining corpus alike."""
    for _ in range(tries):
        p = make(rng, d)
        if p is not None and split_of(task, p["key"]) == split:
            return p
    return None


def generate_rows(task: str, make: Callable, n: int, split: str = "train", seed: int = 0,
                  difficulty: int | list[int] | None = None, default_difficulty=(1, 2, 3)) -> list[dict]:
    """`n` distinct problems of `split`, deterministic from (task, split, seed, difficulty)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    levels = list(default_difficulty) if difficulty is None else ([difficulty] if isinstance(difficulty, int) else list(difficulty))
    rng = random.Random(f"{task}|{split}|{seed}|{levels}")
    rows, seen = [], set()
    tries, max_tries = 0, 200 * n + 1000
    misses, max_misses = 0, 50_000      # a finite problem space runs dry: stop looking after this many misses in a row
    while len(rows) < n:
        tries += 1
        misses += 1
        if tries > max_tries or misses > max_misses:
            raise ValueError(f"task {task!r}: only {len(rows)} distinct {split} problems found at difficulty {levels} "
                             f"(asked for {n}); lower n or raise the difficulty")
        d = levels[len(rows) % len(levels)] if len(levels) > 1 else levels[0]
        p = draw(task, make, rng, d, split)
        if p is None:
            continue
        key = p.pop("key")
        if key in seen:
            continue
        seen.add(key)
        misses = 0
        pid = hashlib.sha256(f"{task}|{key}".encode()).hexdigest()[:12]
        rows.append({"id": f"{task}-{pid}", "task": task, "difficulty": d, **p})
    return rows
