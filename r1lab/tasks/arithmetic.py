"""Multi-digit arithmetic with worked column-by-column steps.

difficulty d: 1: one-digit +/-, 2: two-digit +/- and two-digit × one digit, 3: three-digit +/- and three-digit ×
two digits, 4: four-digit, 5: three operands of two or three digits. Subtraction never goes negative.

The worked steps are the pretraining corpus's own (`base_model.corpus`: the operands restated, then one line per
column with its carry or borrow, then "so a op b = r"): a base model pretrained on that corpus already knows the
procedure, as DeepSeek-V3-Base knows mathematics before R1's stages; cold-start SFT teaches it this task's
question and the R1 answer shape. With a cold start that mixes in short answers (a data source's
`short_fraction`), GRPO's accuracy reward teaches the model to show its working, as in R1-Zero.
"""
from __future__ import annotations

from base_model.corpus import add_steps, mul_steps, sub_steps
from r1lab.tasks.base import r1_format

PROMPT = "Compute {expr}. Give the final number in <answer></answer>."


def _digits(rng, d):
    lo = 10 ** (d - 1) if d > 1 else 0
    return rng.randint(lo, 10 ** d - 1)


def _binary(a, op, b):
    """(result, worked lines) for `a op b`, the operands restated first as in the corpus."""
    steps = {"+": add_steps, "-": sub_steps, "*": mul_steps}[op](a, b)
    return {"+": a + b, "-": a - b, "*": a * b}[op], [f"{a} {op} {b}"] + steps


def make(rng, d: int):
    if d >= 5:
        a, b, c = (_digits(rng, rng.randint(2, 3)) for _ in range(3))
        op1, op2 = rng.choice("+-"), rng.choice("+-")
        if op1 == "-" and a < b:
            a, b = b, a
        r1, s1 = _binary(a, op1, b)
        if op2 == "-" and r1 < c:
            op2 = "+"
        r2, s2 = _binary(r1, op2, c)
        expr = f"{a} {op1} {b} {op2} {c}"
        think = f"First {a} {op1} {b}:\n" + "\n".join(s1) + f"\nThen {r1} {op2} {c}:\n" + "\n".join(s2)
        return {"key": expr, "prompt": PROMPT.format(expr=expr), "answer": str(r2), "solution": r1_format(think, str(r2))}
    ops = "+-" if d == 1 else "+-*"
    op = rng.choice(ops)
    a, b = _digits(rng, d), _digits(rng, d if op != "*" else max(1, d - 1))
    if op == "-" and a < b:
        a, b = b, a
    r, steps = _binary(a, op, b)
    expr = f"{a} {op} {b}"
    return {"key": expr, "prompt": PROMPT.format(expr=expr), "answer": str(r), "solution": r1_format("\n".join(steps), str(r))}
