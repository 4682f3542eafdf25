"""Multi-digit arithmetic with worked column-by-column steps.

difficulty d: operands of up to d+... digits — 1: one-digit +/-, 2: two-digit +/-/×, 3: three-digit,
4: four-digit, 5: three operands of up to three digits. Subtraction never goes negative.
"""
from __future__ import annotations

from r1lab.tasks.base import r1_format

PROMPT = "Compute {expr}. Give the final number in <answer></answer>."


def _digits(rng, d):
    lo = 10 ** (d - 1) if d > 1 else 0
    return rng.randint(lo, 10 ** d - 1)


def _add_steps(a, b):
    xs, ys = str(a)[::-1], str(b)[::-1]
    carry, lines, out = 0, [], []
    for i in range(max(len(xs), len(ys))):
        x = int(xs[i]) if i < len(xs) else 0
        y = int(ys[i]) if i < len(ys) else 0
        s = x + y + carry
        lines.append(f"{x} + {y}" + (f" + {carry}" if carry else "") + f" = {s}, write {s % 10}" + (", carry 1" if s >= 10 else ""))
        out.append(s % 10)
        carry = s // 10
    if carry:
        lines.append("write the final carry 1")
    return lines


def _sub_steps(a, b):
    xs, ys = str(a)[::-1], str(b)[::-1]
    borrow, lines = 0, []
    for i in range(len(xs)):
        x = int(xs[i]) - borrow
        y = int(ys[i]) if i < len(ys) else 0
        if x < y:
            lines.append(f"{x} - {y} needs a borrow: {x + 10} - {y} = {x + 10 - y}")
            borrow = 1
        else:
            lines.append(f"{x} - {y} = {x - y}")
            borrow = 0
    return lines


def _mul_steps(a, b):
    lines, parts = [], []
    for i, ch in enumerate(str(b)[::-1]):
        place = int(ch) * 10 ** i
        if place == 0:
            continue
        parts.append(a * place)
        lines.append(f"{a} × {place} = {a * place}")
    if len(parts) > 1:
        lines.append(" + ".join(map(str, parts)) + f" = {sum(parts)}")
    return lines


def _binary(a, op, b):
    if op == "+":
        return a + b, _add_steps(a, b)
    if op == "-":
        return a - b, _sub_steps(a, b)
    return a * b, _mul_steps(a, b) or [f"{a} × {b} = {a * b}"]


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
        think = f"First {a} {op1} {b}:\n" + "\n".join(s1) + f"\nSo {a} {op1} {b} = {r1}.\nThen {r1} {op2} {c}:\n" + "\n".join(s2) + f"\nSo {expr} = {r2}."
        return {"key": expr, "prompt": PROMPT.format(expr=expr), "answer": str(r2), "solution": r1_format(think, str(r2))}
    ops = "+-" if d == 1 else "+-*"
    op = rng.choice(ops)
    a, b = _digits(rng, d), _digits(rng, d if op != "*" else max(1, d - 1))
    if op == "-" and a < b:
        a, b = b, a
    r, steps = _binary(a, op, b)
    sym = "×" if op == "*" else op
    expr = f"{a} {sym} {b}"
    think = f"Compute {expr} step by step.\n" + "\n".join(steps) + f"\nSo {expr} = {r}."
    return {"key": expr, "prompt": PROMPT.format(expr=expr), "answer": str(r), "solution": r1_format(think, str(r))}
