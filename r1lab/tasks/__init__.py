"""Synthetic tasks with graded difficulty, deterministic from a seed, with disjoint train/test splits.

    from r1lab.tasks import task_rows, load_task, TASKS
    rows = task_rows("arithmetic", n=100, split="test", seed=0, difficulty=[1, 2])
    # [{id, task, difficulty, prompt, answer | tests, solution, ...}]

Reasoning tasks: arithmetic, countdown, linear, word_problems, code (column `tests`).
Non-reasoning: chat (for the blended SFT). `solution` is always in R1 format <think>…</think><answer>…</answer>.
The synthetic pretraining corpus is written from these same generators, train split only: r1lab/tasks/corpus.py.
"""
from __future__ import annotations

import importlib

from r1lab.tasks.base import TEST_FRACTION, generate_rows, r1_format, split_of

TASKS: dict[str, str] = {
    "arithmetic": "r1lab.tasks.arithmetic",
    "countdown": "r1lab.tasks.countdown",
    "linear": "r1lab.tasks.linear",
    "word_problems": "r1lab.tasks.word_problems",
    "code": "r1lab.tasks.code",
    "chat": "r1lab.tasks.chat",
}
REASONING_TASKS = ["arithmetic", "countdown", "linear", "word_problems", "code"]


def register_task(name: str, module: str) -> None:
    """Add a task: `module` must define `make(rng, difficulty) -> dict | None` (see r1lab/tasks/base.py)."""
    TASKS[name] = module


def task_rows(name: str, n: int = 1000, split: str = "train", seed: int = 0, difficulty=None) -> list[dict]:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; expected one of: {', '.join(TASKS)}")
    mod = importlib.import_module(TASKS[name])
    return generate_rows(name, mod.make, n=n, split=split, seed=seed, difficulty=difficulty)


def load_task(name: str, n: int = 1000, split: str = "train", seed: int = 0, difficulty=None):
    """The same rows as a `datasets.Dataset`."""
    import datasets

    return datasets.Dataset.from_list(task_rows(name, n=n, split=split, seed=seed, difficulty=difficulty))


__all__ = ["TASKS", "REASONING_TASKS", "register_task", "task_rows", "load_task", "split_of", "r1_format", "TEST_FRACTION"]
