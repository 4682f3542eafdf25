"""math_accuracy: pull the final answer out of a completion and decide whether it equals the gold answer.

The steps live in one module each, used in this order:
  1. `rewards.math_extract`: the final answer of a completion (R1 policy: it must be marked -- `\\boxed{}`,
     `<answer>`, `#### N`, "the answer is ..." / "Final Answer: ..."; prose without a marker has no answer
     and scores 0; after `</think>` only the text after it counts);
  2. `rewards.math_normalize`: a canonical spelling (LaTeX presentation, units, percent, thousands...);
  3. `rewards.math_structure` reads it into a structure (set, tuple, interval, equation, ratio...) and
     `rewards.math_verdict` compares structures piece by piece; expressions go to sympy (`math_sympy`,
     through the grammar of `math_parse`: no answer or gold text is ever evaluated as code).
This module batches the verdicts: cheap string/number decisions happen in the caller; the rest go to a pool
of worker processes (`rewards.pool`), each comparison limited to `timeout` seconds (a hostile
`10^{10^{10^{10}}}` scores 0 quickly and never hangs the trainer). The workers run jailed: see
`rewards.pool` (integrity check) and `rewards.jail_setup.confine_worker` (no writes, no network).

Policy: answers must be exact (`0.5` = `1/2`, `0.333` != `1/3`); there is no tolerance option.
"""

from __future__ import annotations

import os

from rewards.math_extract import MAX_ANSWER_CHARS, extract_answer, final_boxed, gold_answer, last_boxed, too_long
from rewards.math_normalize import normalize
from rewards.math_structure import split_top, structure, to_number
from rewards.math_verdict import equiv, node_equal, pool_warm_up, quick_equiv, scalar_equal
from rewards.registry import completion_texts, record_reasons, register

__all__ = ["MAX_ANSWER_CHARS", "equiv", "extract_answer", "final_boxed", "gold_answer", "is_equiv", "judge_many",
           "last_boxed", "math_accuracy", "node_equal", "normalize", "pool_warm_up", "quick_equiv",
           "scalar_equal", "split_top", "structure", "to_number", "too_long"]

_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        from rewards.pool import TimeoutPool

        workers = int(os.environ.get("R1LAB_REWARD_WORKERS", "0")) or None
        _POOL = TimeoutPool("rewards.math_verdict:equiv", workers, jailed=True)
    return _POOL



def judge_many(pairs: list[tuple[str, str]], timeout: float = 5.0) -> list[tuple[bool, str]]:
    """(pred, gold) pairs -> (equal?, reason) with reason in ok / wrong / too_long / timeout / error."""
    from rewards.pool import TIMEOUT

    out: list = [None] * len(pairs)
    slow = []
    for i, (p, g) in enumerate(pairs):
        if too_long(p) or too_long(g):
            out[i] = (False, "too_long")
            continue
        quick = quick_equiv(p, g)
        if quick is None:
            slow.append(i)
        else:
            out[i] = (quick, "ok" if quick else "wrong")
    for i, res in zip(slow, _pool().map([pairs[i] for i in slow], timeout) if slow else []):
        if res is TIMEOUT:
            out[i] = (False, "timeout")
        elif isinstance(res, Exception):
            out[i] = (False, "error")
        else:
            out[i] = (bool(res), "ok" if res else "wrong")
    return out


def is_equiv(pred: str, gold: str, timeout: float = 5.0) -> bool:
    """Do two answer strings mean the same thing? Never takes much longer than `timeout` seconds."""
    if pred is None or gold is None:
        return False
    return judge_many([(str(pred), str(gold))], timeout)[0][0]




@register("math_accuracy")
def math_accuracy(completions, answer=None, timeout: float = 5.0, **columns) -> list[float | None]:
    """1.0 if the completion's final answer (boxed / <answer> / #### / "the answer is") equals column `answer`."""
    texts = completion_texts(completions)
    golds = [gold_answer(g) for g in (answer if answer is not None else [None] * len(texts))]
    preds = [extract_answer(t) for t in texts]
    todo = [i for i in range(len(texts)) if preds[i] is not None and golds[i] is not None]
    verdicts = dict(zip(todo, judge_many([(preds[i], golds[i]) for i in todo], timeout)))
    scores, reasons = [], []
    for i in range(len(texts)):
        if golds[i] is None:
            scores.append(None), reasons.append("no_gold")
        elif preds[i] is None:
            scores.append(0.0), reasons.append("no_answer")
        else:
            scores.append(1.0 if verdicts[i][0] else 0.0), reasons.append(verdicts[i][1])
    record_reasons("math_accuracy", reasons, columns.get("log_metric"))
    return scores
