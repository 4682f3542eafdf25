"""Countdown: reach a target with given numbers, each used at most once, with + - × ÷ (exact division).

difficulty d uses d+1 numbers (2..6). `answer` is one valid expression; `numbers` and `target` are columns so a
reward can check any expression with `check(expr, numbers, target)`.
"""
from __future__ import annotations

import ast
import operator
from collections import Counter

from r1lab.tasks.base import r1_format

PROMPT = ("Using the numbers {nums}, each at most once, and + - * /, make {target}. "
          "Give the expression in <answer></answer>.")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def make(rng, d: int):
    k = min(max(d + 1, 2), 6)
    nums = [rng.randint(1, 25) for _ in range(k)]
    value, expr, steps = nums[0], str(nums[0]), []
    for x in nums[1:]:
        choices = ["+", "*"] + (["-"] if value > x else []) + (["/"] if x > 1 and value % x == 0 else [])
        op = rng.choice(choices)
        new = {"+": value + x, "-": value - x, "*": value * x, "/": value // x}[op]
        if new > 1000:
            op, new = "+", value + x
        steps.append(f"{value} {op} {x} = {new}")
        expr = f"({expr} {op} {x})" if op in "+-" else f"{expr} {op} {x}"
        value = new
    if value <= 0:
        return None
    expr = expr[1:-1] if expr.startswith("(") and expr.endswith(")") and _balanced(expr[1:-1]) else expr
    shuffled = nums[:]
    rng.shuffle(shuffled)
    think = f"Target {value} from {shuffled}.\n" + "\n".join(steps) + f"\nThat reaches {value}: {expr}."
    return {"key": f"{sorted(nums)}->{value}", "prompt": PROMPT.format(nums=shuffled, target=value),
            "answer": expr, "numbers": shuffled, "target": value, "solution": r1_format(think, expr)}


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0


def check(expr: str, numbers: list[int], target: int) -> bool:
    """True iff `expr` uses only + - * / and numbers from `numbers` (each at most once) and equals `target`."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        return False
    used = []

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.Constant) and isinstance(n.value, int):
            used.append(n.value)
            return n.value
        raise ValueError("bad node")

    try:
        val = ev(tree)
    except (ValueError, ZeroDivisionError):
        return False
    return not (Counter(used) - Counter(numbers)) and abs(val - target) < 1e-9
