"""Multi-digit arithmetic with worked column-by-column steps.

difficulty d: 1: one-digit +/-, 2: two-digit +/- and two-digit × one digit, 3: three-digit +/- and three-digit ×
two digits, 4: four-digit, 5: three operands of two or three digits. Subtraction never goes negative.

The worked steps (add_steps, sub_steps, mul_steps: the operands restated, then one line per column with its carry
or borrow, then "so a op b = r") are also what the pretraining corpus (r1lab/tasks/corpus.py) writes, from this
same generator: a base model pretrained on it already knows the procedure, as DeepSeek-V3-Base knows mathematics
before R1's stages; cold-start SFT teaches it this task's question and the R1 answer shape. With a cold start
that mixes in short answers (a data source's `short_fraction`), GRPO's accuracy reward teaches the model to show
its working, as in R1-Zero.
"""
from __future__ import annotations

from r1lab.tasks.base import r1_format

PROMPT = "Compute {expr}. Give the final number in <answer></answer>."


def add_steps(a: int, b: int) -> list[str]:
    """Column addition, right to left, one line per column with the carry."""
    sa, sb = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(sa), len(sb))):
        da = int(sa[i]) if i < len(sa) else 0
        db = int(sb[i]) if i < len(sb) else 0
        s = da + db + carry
        steps.append(f"{da} + {db} + {carry} = {s}, write {s % 10}, carry {s // 10}")
        carry = s // 10
    if carry:
        steps.append(f"write the last carry {carry}")
    steps.append(f"so {a} + {b} = {a + b}")
    return steps


def sub_steps(a: int, b: int) -> list[str]:
    """Column subtraction with borrows; a negative result is computed as -(b - a)."""
    if a < b:
        return [f"{a} is smaller than {b}, so {a} - {b} = -({b} - {a})"] + sub_steps(b, a)[:-1] + \
               [f"so {a} - {b} = {a - b}"]
    sa, sb = str(a)[::-1], str(b)[::-1]
    steps, borrow = [], 0
    for i in range(len(sa)):
        top, bot = int(sa[i]), int(sb[i]) if i < len(sb) else 0
        v = top - bot - borrow
        if v < 0:
            steps.append(f"{top} - {bot} - {borrow} is negative, borrow: {top + 10} - {bot} - {borrow} = {v + 10}, "
                         f"write {v + 10}, borrow 1")
            borrow = 1
        else:
            steps.append(f"{top} - {bot} - {borrow} = {v}, write {v}, borrow 0")
            borrow = 0
    steps.append(f"so {a} - {b} = {a - b}")
    return steps


def mul1_steps(a: int, d: int) -> list[str]:
    """Multi-digit times one digit, right to left with carries."""
    steps, carry = [], 0
    for ch in str(a)[::-1]:
        p = int(ch) * d + carry
        steps.append(f"{ch} * {d} + {carry} = {p}, write {p % 10}, carry {p // 10}")
        carry = p // 10
    if carry:
        steps.append(f"write the last carry {carry}")
    steps.append(f"so {a} * {d} = {a * d}")
    return steps


def mul_steps(a: int, b: int) -> list[str]:
    """Long multiplication: one partial product per digit of b, then their sum."""
    if b < 10:
        return mul1_steps(a, b)
    steps, partials = [], []
    for k, ch in enumerate(str(b)[::-1]):
        p = a * int(ch) * 10 ** k
        steps.append(f"{a} * {int(ch) * 10 ** k} = {p}")
        partials.append(p)
    total = partials[0]
    for p in partials[1:]:
        steps.append(f"{total} + {p} = {total + p}")
        total += p
    steps.append(f"so {a} * {b} = {a * b}")
    return steps


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
