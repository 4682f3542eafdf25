"""code_tests: run the completion's code against the row's tests in the sandbox (many programs at once).

Column `tests` (per row) is Python source that raises on failure -- asserts, or a `check(candidate)` call
-- or a list of such sources. A source string is split into its top-level statements: each `assert` and
each bare call (`check(f)`) is one test, carrying the setup statements that precede it, so a score can be
the fraction of tests passed. The completion's code always runs first, then the tests in order
(HumanEval: test + `check(entry_point)`; MBPP: setup + asserts -- mbpp-367's setup uses a class the
solution defines, so code-before-setup is the order that works).

The verdict is not the program's to give: the tests run in a judge process that never runs the program's
code, where each name the code defined stands for a remote object whose calls come back as plain data
(`rewards/jail.py` argues why a program cannot forge a pass).
"""

from __future__ import annotations

import ast
import re

from rewards.registry import completion_texts, record_reasons, register
from rewards.sandbox import run_many

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The program in a completion: the last ```python block (the last one defining a function, if any),
    else the last fenced block, else the text after `</think>` as it stands."""
    text = text.rsplit("</think>", 1)[-1]
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    py = [b for lang, b in blocks if lang in ("python", "py", "python3", "")]
    with_def = [b for b in py if re.search(r"^\s*(def|class) ", b, re.MULTILINE)]
    if with_def or py:
        return (with_def or py)[-1]
    if blocks:
        return blocks[-1][1]
    return text.replace("<answer>", "").replace("</answer>", "")


def _is_test(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assert) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))


def split_tests(tests) -> list[str]:
    """Test source (or a list of them) -> list of units, each ending in one assert / call."""
    if isinstance(tests, (list, tuple)):
        return [u for t in tests for u in split_tests(t)]
    src = str(tests or "")
    try:
        body = ast.parse(src).body
    except SyntaxError:
        return [src] if src.strip() else []
    units, pending = [], []
    for node in body:
        pending.append(ast.get_source_segment(src, node) or ast.unparse(node))
        if _is_test(node):
            units.append("\n".join(pending))
            pending = []
    if pending and units:
        units[-1] += "\n" + "\n".join(pending)
    elif pending:
        units.append("\n".join(pending))
    return units


def _with_entry_point(tests, entry_point) -> str | list:
    """HumanEval rows give `check` and the function name separately: add the `check(name)` call."""
    if not entry_point:
        return tests
    src = "\n".join(tests) if isinstance(tests, (list, tuple)) else str(tests)
    return src if re.search(r"^check\(", src, re.MULTILINE) else f"{src}\ncheck({entry_point})\n"


def score_programs(codes: list[str], tests: list, partial: bool = False, timeout: float = 10.0,
                   workers: int | None = None, **limits) -> tuple[list[float], list[str]]:
    """Run each code with its tests; returns (scores, reasons)."""
    units = [split_tests(t) for t in tests]
    jobs = [(c, u) for c, u in zip(codes, units)]
    results = run_many(jobs, workers=workers, timeout=timeout, **limits)
    scores, reasons = [], []
    for res in results:
        if res.total == 0:
            scores.append(0.0), reasons.append("no_tests")
            continue
        scores.append(res.fraction if partial else float(res.passed == res.total))
        reasons.append("ok" if res.passed == res.total else res.status if res.status != "ok" else "failed")
    return scores, reasons


def _code_reward(name: str, completions, tests, partial: bool, timeout: float, entry_point=None, **columns):
    texts = completion_texts(completions)
    entry = entry_point if entry_point is not None else [None] * len(texts)
    rows = [i for i in range(len(texts)) if tests[i] is not None]
    scores, reasons = score_programs([extract_code(texts[i]) for i in rows],
                                     [_with_entry_point(tests[i], entry[i]) for i in rows], partial, timeout)
    out: list[float | None] = [None] * len(texts)
    why = ["no_tests"] * len(texts)
    for i, s, r in zip(rows, scores, reasons):
        out[i], why[i] = s, r
    record_reasons(name, why, columns.get("log_metric"))
    return out


@register("code_tests")
def code_tests(completions, tests=None, timeout: float = 10.0, **columns) -> list[float | None]:
    """1.0 if the completion's code passes every test in column `tests` (sandboxed), else 0.0."""
    tests = tests if tests is not None else [None] * len(completions)
    return _code_reward("code_tests", completions, tests, False, timeout, **columns)


@register("code_tests_fraction")
def code_tests_fraction(completions, tests=None, timeout: float = 10.0, **columns) -> list[float | None]:
    """Fraction of the tests in column `tests` that the completion's code passes (sandboxed)."""
    tests = tests if tests is not None else [None] * len(completions)
    return _code_reward("code_tests_fraction", completions, tests, True, timeout, **columns)
