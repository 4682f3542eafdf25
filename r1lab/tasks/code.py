"""Small Python functions with unit tests (DESIGN Seam 2: column `tests` is Python source that raises on failure).

Each problem is a function family with random constants: the prompt names the function and its behaviour,
`tests` holds asserts run after the completion's code, `solution` is the R1-format worked answer whose
<answer> holds a ```python block. difficulty 1: one-liners; 2: a loop or condition; 3+: two conditions/loops.
"""
from __future__ import annotations

from r1lab.tasks.base import r1_format

SUFFIX = " Put the code in a ```python block inside <answer></answer>."


def _fam_add(rng):
    k = rng.randint(1, 99)
    name = f"add_{k}"
    return (f"Write a Python function `{name}(x)` that returns x plus {k}.",
            f"def {name}(x):\n    return x + {k}",
            [f"assert {name}({x}) == {x + k}" for x in (0, 5, -3)], f"Adding {k} to the argument is enough.")


def _fam_mul(rng):
    k = rng.randint(2, 30)
    name = f"times_{k}"
    return (f"Write a Python function `{name}(x)` that returns x multiplied by {k}.",
            f"def {name}(x):\n    return x * {k}",
            [f"assert {name}({x}) == {x * k}" for x in (0, 7, -2)], f"Multiply the argument by {k}.")


def _fam_divisible(rng):
    k = rng.randint(2, 20)
    name = f"divisible_by_{k}"
    return (f"Write a Python function `{name}(n)` that returns True if n is divisible by {k} and False otherwise.",
            f"def {name}(n):\n    return n % {k} == 0",
            [f"assert {name}({x}) == {x % k == 0}" for x in (0, k, k + 1, 3 * k, 7)], f"n is divisible by {k} when n % {k} is 0.")


def _fam_sum_above(rng):
    k = rng.randint(0, 20)
    name = f"sum_above_{k}"
    cases = [[1, 5, 30, k + 1], [], [k, k - 1, 100]]
    return (f"Write a Python function `{name}(xs)` that returns the sum of the numbers in the list xs that are greater than {k}.",
            f"def {name}(xs):\n    total = 0\n    for x in xs:\n        if x > {k}:\n            total += x\n    return total",
            [f"assert {name}({c}) == {sum(x for x in c if x > k)}" for c in cases],
            f"Loop over xs and add each x with x > {k}.")


def _fam_count_char(rng):
    ch = rng.choice("abcdefghijklmnopqrstuvwxyz")
    name = f"count_{ch}"
    cases = ["banana", "", f"{ch}{ch}x{ch}", "hello world"]
    return (f"Write a Python function `{name}(s)` that returns how many times the letter '{ch}' occurs in the string s.",
            f"def {name}(s):\n    return s.count('{ch}')",
            [f"assert {name}({c!r}) == {c.count(ch)}" for c in cases], f"str.count counts the occurrences of '{ch}'.")


def _fam_clamp(rng):
    lo = rng.randint(-20, 10)
    hi = lo + rng.randint(1, 30)
    def tag(v):
        return f"m{-v}" if v < 0 else str(v)
    name = f"clamp_{tag(lo)}_{tag(hi)}"
    cases = [lo - 5, lo, (lo + hi) // 2, hi, hi + 7]
    return (f"Write a Python function `{name}(x)` that returns x limited to the range [{lo}, {hi}].",
            f"def {name}(x):\n    if x < {lo}:\n        return {lo}\n    if x > {hi}:\n        return {hi}\n    return x",
            [f"assert {name}({x}) == {min(max(x, lo), hi)}" for x in cases],
            f"Return {lo} below the range, {hi} above it, x otherwise.")


def _fam_fizz(rng):
    a, b = rng.sample(range(2, 8), 2)
    name = f"fizz_{a}_{b}"

    def ref(n):
        return "FizzBuzz" if n % a == 0 and n % b == 0 else ("Fizz" if n % a == 0 else ("Buzz" if n % b == 0 else str(n)))
    cases = [1, a, b, a * b, a * b + 1]
    return (f"Write a Python function `{name}(n)` that returns 'FizzBuzz' if n is divisible by both {a} and {b}, "
            f"'Fizz' if only by {a}, 'Buzz' if only by {b}, and str(n) otherwise.",
            f"def {name}(n):\n    if n % {a} == 0 and n % {b} == 0:\n        return 'FizzBuzz'\n    if n % {a} == 0:\n"
            f"        return 'Fizz'\n    if n % {b} == 0:\n        return 'Buzz'\n    return str(n)",
            [f"assert {name}({n}) == {ref(n)!r}" for n in cases],
            f"Check divisibility by both first, then by {a}, then by {b}.")


def _fam_poly(rng):
    a, b, c = rng.randint(1, 9), rng.randint(-9, 9), rng.randint(-9, 9)
    name = f"poly_{a}_{b % 10}_{c % 10}_{rng.randint(0, 99)}"
    return (f"Write a Python function `{name}(x)` that returns {a}*x*x + ({b})*x + ({c}).",
            f"def {name}(x):\n    return {a} * x * x + ({b}) * x + ({c})",
            [f"assert {name}({x}) == {a * x * x + b * x + c}" for x in (0, 1, -2, 5)], "Evaluate the polynomial directly.")


LEVELS = {1: [_fam_add, _fam_mul, _fam_count_char], 2: [_fam_divisible, _fam_sum_above, _fam_poly], 3: [_fam_clamp, _fam_fizz]}


def make(rng, d: int):
    fams = LEVELS[min(max(d, 1), 3)]
    prompt, code, tests, idea = rng.choice(fams)(rng)
    answer = f"```python\n{code}\n```"
    return {"key": prompt, "prompt": prompt + SUFFIX, "tests": "\n".join(tests) + "\n",
            "solution": r1_format(idea, answer), "reference": code}
