"""Verdicts on responses, through the rewards package (the same judges the RL rewards use).

Math: ``rewards.math.extract_answer`` on the part of the response after ``</think>`` (all of it when there is
no ``</think>``), then ``rewards.math.is_equiv(pred, gold)``; the same ``is_equiv`` clusters answers for cons@k.
Countdown (synthetic task): the expression is checked against the row's numbers and target.
Code: the last ```python block (or the whole answer region), prefixed by the problem's own prompt when
it is a function stub (HumanEval: its imports and signature), judged by the ``code_tests`` reward.
"""
from __future__ import annotations

from functools import lru_cache

from r1lab.eval.prompting import answer_region

@lru_cache(maxsize=None)
def _math():
    from rewards.math import extract_answer, is_equiv
    return extract_answer, is_equiv


def extract_answer(response: str) -> str | None:
    try:
        return _math()[0](answer_region(response))
    except Exception:
        return None


@lru_cache(maxsize=200_000)
def is_equiv(pred: str, gold: str) -> bool:
    """The math verifier's equivalence (cached: cons@k clustering asks the same pairs many times)."""
    if pred is None or gold is None:
        return False
    try:
        return bool(_math()[1](pred, gold))
    except Exception:
        return False


def score_math(responses: list[str], golds: list[str]) -> list[tuple[str | None, bool]]:
    """Batched: cheap decisions in-process, the rest in the rewards package's time-bounded sympy pool."""
    from rewards.math import judge_many
    preds = [extract_answer(r) for r in responses]
    todo = [i for i, p in enumerate(preds) if p is not None]
    ok = dict(zip(todo, (v for v, _ in judge_many([(preds[i], str(golds[i])) for i in todo]))))
    return [(p, bool(ok.get(i, False))) for i, p in enumerate(preds)]


def extract_code(response: str) -> str | None:
    """The code reward's own extraction (last ```python block defining a function, ...)."""
    from rewards.code import extract_code as _extract
    code = _extract(answer_region(response))
    return code if code and code.strip() else None


def score_code(responses: list[str], rows: list[dict]) -> list[tuple[str | None, bool]]:
    import rewards
    reward = rewards.get_reward("code_tests")
    codes, programs = [], []
    for resp, row in zip(responses, rows):
        code = extract_code(resp)
        codes.append(code)
        prefix = row["problem"] if "entry_point" in row else ""
        programs.append("```python\n" + (prefix + "\n" if prefix else "") + (code or "") + "\n```")
    scores = reward(programs, tests=[row["tests"] for row in rows])
    return [(c, bool(s) and c is not None) for c, s in zip(codes, scores)]


def score_countdown(responses: list[str], rows: list[dict]) -> list[tuple[str | None, bool]]:
    """Countdown (synthetic task): any expression that uses the given numbers at most once and hits the target.
    Not math equivalence: the bare target number is equal in value but is not a solution."""
    from r1lab.tasks.countdown import check
    preds = [extract_answer(r) for r in responses]
    return [(p, p is not None and check(p, row["numbers"], row["target"])) for p, row in zip(preds, rows)]


def same_expression(a: str, b: str) -> bool:
    return a.replace(" ", "") == b.replace(" ", "")


def vote_equiv(kind: str):
    """The equivalence that clusters answers for cons@k: the math verifier's, or literal for countdown."""
    return is_equiv if kind == "math" else same_expression


def score(kind: str, responses: list[str], rows: list[dict]) -> list[tuple[str | None, bool]]:
    """(extracted answer or code, correct) per response; ``rows[i]`` is the benchmark row of response i."""
    if kind == "math":
        return score_math(responses, [row["answer"] for row in rows])
    if kind == "countdown":
        return score_countdown(responses, rows)
    if kind == "code":
        return score_code(responses, rows)
    raise ValueError(f"unknown benchmark kind {kind!r} (expected math, countdown or code)")
