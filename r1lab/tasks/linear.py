"""Linear equations in one unknown with an integer solution, solved step by step.

difficulty 1: x + b = c; 2: a·x + b = c; 3: a·x + b = c·x + d; 4+: a(x + b) = c·x + d with larger numbers.
"""
from __future__ import annotations

from r1lab.tasks.base import r1_format

PROMPT = "Solve for x: {eq}. Give the value of x in <answer></answer>."


def _term(coef, var="x"):
    return var if coef == 1 else (f"-{var}" if coef == -1 else f"{coef}{var}")


def _plus(v):
    return f"+ {v}" if v >= 0 else f"- {-v}"


def make(rng, d: int):
    span = 10 * d
    x = rng.randint(-span, span)
    if d == 1:
        b = rng.randint(-span, span)
        c = x + b
        eq = f"x {_plus(b)} = {c}"
        think = f"Subtract {b} from both sides: x = {c} - ({b}) = {x}."
    elif d == 2:
        a = rng.choice([k for k in range(-9, 10) if k not in (0, 1)])
        b = rng.randint(-span, span)
        c = a * x + b
        eq = f"{_term(a)} {_plus(b)} = {c}"
        think = f"Subtract {b}: {_term(a)} = {c - b}.\nDivide by {a}: x = {c - b} / {a} = {x}."
    elif d == 3:
        a, c = rng.sample([k for k in range(-9, 10) if k != 0], 2)
        b = rng.randint(-span, span)
        dd = a * x + b - c * x
        eq = f"{_term(a)} {_plus(b)} = {_term(c)} {_plus(dd)}"
        think = (f"Move the x terms left: ({a} - ({c}))x = {dd} - ({b}).\n"
                 f"So {a - c}x = {dd - b}.\nDivide by {a - c}: x = {x}.")
    else:
        a = rng.choice([k for k in range(2, 10)])
        c = rng.choice([k for k in range(-9, 10) if k not in (0, a)])
        b = rng.randint(-span, span)
        dd = a * (x + b) - c * x
        eq = f"{a}(x {_plus(b)}) = {_term(c)} {_plus(dd)}"
        think = (f"Expand: {a}x {_plus(a * b)} = {_term(c)} {_plus(dd)}.\n"
                 f"Move the x terms left: {a - c}x = {dd} - ({a * b}) = {dd - a * b}.\nDivide by {a - c}: x = {x}.")
    return {"key": eq, "prompt": PROMPT.format(eq=eq), "answer": str(x), "solution": r1_format(think, str(x))}
