"""The synthetic pretraining corpus, written from the tasks' own generators (train split only).

An endless, deterministic stream of documents that gives a tiny model something worth learning, because the R1
stages after pretraining need a base model that can already do a little arithmetic and knows the
`<think>…</think><answer>…</answer>` shape:
  - arithmetic worked digit by digit (r1lab/tasks/arithmetic.py: addition with carries, subtraction with borrows,
    multiplication by partial products), linear equations solved step by step (linear.py), word problems with
    their solutions (word_problems.py),
  - small Python functions with a docstring and asserts (code.py), and plain templated prose (here: no task has it).
Each document has a difficulty level 1..max_level (the task's difficulty), drawn with weights that favour the easy
levels (LEVEL_WEIGHTS); the kinds are mixed in the shares of DEFAULT_MIX. Worked math is written in three shapes:
the chat/R1 shape (`<|user|>question<|assistant|><think>steps</think><answer>x</answer><|endoftext|>`, exactly what
`apply_chat_template` + a good completion looks like), the bare R1 shape (question, then the tags, no role tokens),
and plain prose ("Solution: … The answer is x.").

No test-split problem is ever a document: every problem is drawn through `tasks.base.draw(..., split="train")`,
the same split filter `task_rows` uses, so the RL and eval test splits stay unseen by the base model.
Document i depends only on (seed, i), so a stream can be restarted at any index in O(1) — exact resume needs that.

    python -m r1lab.tasks.corpus --out corpus.jsonl --docs 20000      # for `python -m base_model.pretrain --corpus`
"""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Callable, Iterator

from base_model.tokenizer import format_chat
from r1lab.tasks import arithmetic, code, linear, word_problems
from r1lab.tasks.base import draw

# Easy problems are the most frequent (a small model learns the digit procedure on them first), hard ones stay present.
LEVEL_WEIGHTS = [0.30, 0.25, 0.20, 0.15, 0.10] + [0.05] * 20
DEFAULT_MIX = {"arithmetic": 0.40, "equation": 0.15, "word_problem": 0.15, "code": 0.12, "prose": 0.18}
# document kind -> (task name for the split, its generator)
KIND_TASKS = {"arithmetic": ("arithmetic", arithmetic.make), "equation": ("linear", linear.make),
              "word_problem": ("word_problems", word_problems.make), "code": ("code", code.make)}
MAX_TRIES = 1000   # draws of one document's problem until one falls in the train split (~80% of them do)

# How a question is put: the task's key (the bare expression or equation) in one of a few phrasings.
_QUESTIONS = {
    "arithmetic": ["What is {k}?", "Compute {k}.", "Calculate {k}.", "{k} = ?", "Find the value of {k}.",
                   "Evaluate {k}."],
    "equation": ["Solve for x: {k}", "Find x if {k}.", "Solve the equation {k}.", "What is x when {k}?"],
    "word_problem": ["{k}"],
}

# ----------------------------------------------------------------------------------------------- rendering


def render_math(rng: random.Random, question: str, steps: list[str], answer: str, r1_share: float) -> str:
    """Write a worked problem in the chat/R1 shape, the bare R1 shape, or plain prose."""
    r = rng.random()
    think = "<think>\n" + "\n".join(steps) + "\n</think>\n<answer>" + answer + "</answer>"
    if r < r1_share * 0.75:
        return format_chat([{"role": "user", "content": question}, {"role": "assistant", "content": think}])
    if r < r1_share:
        return f"Question: {question}\n{think}"
    return f"Problem: {question}\nSolution:\n" + "\n".join(steps) + f"\nThe answer is {answer}."


def worked_steps(solution: str) -> tuple[list[str], str]:
    """The think lines and the answer of an R1-format solution (tasks.base.r1_format)."""
    m = re.fullmatch(r"<think>\n(.*)\n</think>\n<answer>(.*)</answer>", solution, re.S)
    if not m:
        raise ValueError(f"not an R1-format solution: {solution[:60]!r}")
    return m.group(1).split("\n"), m.group(2)


def code_document(problem: dict) -> str:
    """A code task's reference function with its behaviour as the docstring, then the task's asserts."""
    desc = problem["key"].split("` that ", 1)[1]                 # "returns x plus 5."
    doc = "Return" + desc[len("returns"):] if desc.startswith("returns ") else desc[:1].upper() + desc[1:]
    head, body = problem["reference"].split("\n", 1)
    return f'{head}\n    """{doc}"""\n{body}\n\n\n{problem["tests"]}'


# ----------------------------------------------------------------------------------------------- prose

_ANIMALS = ["cat", "dog", "fox", "owl", "horse", "rabbit", "bear", "duck"]
_PLACES = ["the forest", "the river", "the market", "the hill", "the village", "the garden", "the school", "the lake"]
_ADJ = ["small", "quiet", "brave", "old", "happy", "curious", "tired", "clever"]
_FACTS = ["Water boils at 100 degrees Celsius at sea level.", "The sun rises in the east and sets in the west.",
          "A week has seven days.", "A triangle has three sides.", "Plants need light and water to grow.",
          "Ice is frozen water.", "A year has twelve months.", "The moon goes around the earth.",
          "A square has four equal sides.", "Bees make honey from the nectar of flowers.",
          "Even numbers can be divided by two without a remainder.", "Zero is neither positive nor negative."]


def _number_fact(rng: random.Random, level: int) -> str:
    n = rng.randint(1, 10 ** (level + 1))
    parity = "even" if n % 2 == 0 else "odd"
    return f"The number {n} is {parity}. {n} plus one is {n + 1}, and {n} times two is {2 * n}."


def prose_document(rng: random.Random, level: int) -> str:
    sents = []
    for _ in range(1 + level):
        r = rng.random()
        if r < 0.45:
            name, animal, place = rng.choice(word_problems.NAMES), rng.choice(_ANIMALS), rng.choice(_PLACES)
            adj = rng.choice(_ADJ)
            sents.append(rng.choice([
                f"{name} saw a {adj} {animal} near {place}.",
                f"One morning, {name} walked to {place} and met a {adj} {animal}.",
                f"The {adj} {animal} lived near {place} with its family.",
                f"{name} told a story about a {animal} from {place}.",
            ]))
        elif r < 0.75:
            sents.append(rng.choice(_FACTS))
        else:
            sents.append(_number_fact(rng, level))
    return " ".join(sents)


# ----------------------------------------------------------------------------------------------- the stream


def train_problem(kind: str, rng: random.Random, level: int) -> tuple[str, dict]:
    """(task name, a train-split problem of that task at `level`), drawn from the task's own generator."""
    task, make = KIND_TASKS[kind]
    p = draw(task, make, rng, level, split="train", tries=MAX_TRIES)
    if p is None:
        raise RuntimeError(f"corpus: no train-split {task} problem at level {level} in {MAX_TRIES} draws")
    return task, p


def synthetic_document(seed: int, index: int, max_level: int = 5, r1_share: float = 0.75,
                       mix: dict[str, float] | None = None) -> dict:
    """Document `index` of the stream for `seed`: {"text", "kind", "level", "task", "key"} (task and key None for
    prose). Depends only on its arguments."""
    rng = random.Random(f"r1lab-corpus-{seed}-{index}")
    mix = mix or DEFAULT_MIX
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    level = rng.choices(range(1, max_level + 1), weights=LEVEL_WEIGHTS[:max_level])[0]
    task = key = None
    if kind == "prose":
        text = prose_document(rng, level)
    elif kind == "code":
        task, p = train_problem(kind, rng, level)
        key, text = p["key"], code_document(p)
    elif kind in KIND_TASKS:
        task, p = train_problem(kind, rng, level)
        key = p["key"]
        steps, answer = worked_steps(p["solution"])
        question = rng.choice(_QUESTIONS[kind]).format(k=key)
        text = render_math(rng, question, steps, answer, r1_share)
    else:
        raise ValueError(f"corpus mix: unknown kind {kind!r} (expected one of {sorted(DEFAULT_MIX)})")
    return {"text": text, "kind": kind, "level": level, "task": task, "key": key}


def synthetic_corpus(seed: int = 0, start: int = 0, max_level: int = 5, r1_share: float = 0.75,
                     mix: dict[str, float] | None = None, limit: int | None = None) -> Iterator[str]:
    """Endless (or `limit`-long) deterministic stream of synthetic documents, beginning at document `start`."""
    i = start
    while limit is None or i < start + limit:
        yield synthetic_document(seed, i, max_level, r1_share, mix)["text"]
        i += 1


def synthetic_factory(seed: int = 0, **kwargs) -> Callable[[int], Iterator[str]]:
    """start -> the stream from document `start` (O(1)): what base_model.corpus.corpus_factory / pretrain take."""
    return lambda start: synthetic_corpus(seed=seed, start=start, **kwargs)


# ----------------------------------------------------------------------------------------------- CLI


def write_corpus(path: str | Path, docs: int, seed: int = 0, start: int = 0, **kwargs) -> Path:
    """Write documents start..start+docs-1 as JSONL ({"text": ...} a line), atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for text in synthetic_corpus(seed=seed, start=start, limit=docs, **kwargs):
            f.write(json.dumps({"text": text}) + "\n")
    os.replace(tmp, path)
    return path


def main(argv=None):
    """`python -m r1lab.tasks.corpus --out corpus.jsonl [--docs 20000] [--seed 0] [--r1-share 0.75] [--max-level 5]`"""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m r1lab.tasks.corpus", description=main.__doc__)
    ap.add_argument("--out", required=True, help="a .jsonl file (field `text`), for base_model's --corpus")
    ap.add_argument("--docs", type=int, default=20000, help="number of documents to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="index of the first document")
    ap.add_argument("--r1-share", type=float, default=0.75, help="share of worked problems in the <think>/<answer> shape")
    ap.add_argument("--max-level", type=int, default=5, help="hardest difficulty level")
    a = ap.parse_args(argv)
    if not a.out.endswith(".jsonl"):
        raise SystemExit(f"--out {a.out}: expected a .jsonl path")
    p = write_corpus(a.out, a.docs, seed=a.seed, start=a.start, r1_share=a.r1_share, max_level=a.max_level)
    print(f"wrote {a.docs} documents to {p}")


if __name__ == "__main__":
    main()
