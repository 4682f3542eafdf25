"""code_tests on real benchmarks: every reference solution scores 1, every prompt-only stub scores 0."""

import json
import re
import textwrap
import time
from pathlib import Path

import pytest

from rewards import get_reward
from rewards.code import extract_code, split_tests

BENCH = Path(__file__).resolve().parents[1] / "r1lab" / "data" / "benchmarks"


def rows(name):
    return [json.loads(line) for line in (BENCH / name).read_text().splitlines() if line.strip()]


def fenced(code: str) -> str:
    return f"<think>Let me write it.</think>\nHere is the solution:\n```python\n{code}\n```\nDone."


def mbpp_tests(r) -> str:
    return r["test_setup_code"] + "\n" + "\n".join(r["test_list"])


def mbpp_stub(r) -> str:
    name, args = re.search(r"def\s+(\w+)\s*\(([^)]*)\)", r["solution"]).groups()
    return f"def {name}({args}):\n    pass\n"


def test_extract_code():
    text = "```python\nprint(1)\n```\nand\n```python\ndef f():\n    return 2\n```\n```text\nout\n```"
    assert extract_code(text) == "def f():\n    return 2\n"
    assert extract_code("def g(): return 3") == "def g(): return 3"
    assert extract_code("<think>```python\nx=1\n```</think>\n```py\ny=2\n```") == "y=2\n"


def test_split_tests():
    units = split_tests("import math\nassert f(1) == 1\nx = 2\nassert f(x) == 2\n")
    assert units == ["import math\nassert f(1) == 1", "x = 2\nassert f(x) == 2"]
    assert split_tests(["assert a", "assert b\nassert c"]) == ["assert a", "assert b", "assert c"]
    assert len(split_tests("def check(c):\n    assert c(1)\n\ncheck(f)\n")) == 1


def test_humaneval_and_mbpp_references_pass_and_stubs_fail():
    he, mb = rows("humaneval.jsonl"), rows("mbpp_test.jsonl")
    assert (len(he), len(mb)) == (164, 500)
    completions = ([fenced(r["problem"] + r["solution"]) for r in he] + [fenced(r["solution"]) for r in mb]
                   + [fenced(r["problem"]) for r in he] + [fenced(mbpp_stub(r)) for r in mb])
    tests = ([r["test"] for r in he] + [mbpp_tests(r) for r in mb]) * 2
    entry = ([r["entry_point"] for r in he] + [None] * len(mb)) * 2
    t = time.monotonic()
    scores = get_reward("code_tests")(completions, tests=tests, entry_point=entry)
    secs = time.monotonic() - t
    n = len(he) + len(mb)
    ids = [r["id"] for r in he] + [r["id"] for r in mb]
    assert [i for i, s in zip(ids, scores[:n]) if s != 1.0] == []
    assert [i for i, s in zip(ids, scores[n:]) if s != 0.0] == []
    assert secs < 240, secs


def test_fraction_and_none_for_rows_without_tests():
    frac = get_reward("code_tests_fraction")
    code = "```python\ndef add(a, b):\n    return a + b if a else 0\n```"
    out = frac([code, code], tests=["assert add(1, 2) == 3\nassert add(0, 5) == 5", None])
    assert out == [0.5, None]
    assert get_reward("code_tests")([code], tests=["assert add(1, 2) == 3\nassert add(0, 5) == 5"]) == [0.0]


# Item 10 of issue 13: a wrong `add` (returns 42) dressed up to fake passing tests must score 0.
FORGERIES = {
    "patch_compile": """
        import builtins
        _compile = builtins.compile
        builtins.compile = lambda src, name, mode, *a, **k: _compile("pass", name, mode)
    """,
    "patch_exec": """
        import builtins
        builtins.exec = lambda *a, **k: None
    """,
    "always_equal": """
        class Anything:
            def __eq__(self, other):
                return True
            __ne__ = lambda self, other: False
            __bool__ = lambda self: True
        def add(a, b):
            return Anything()
    """,
    "int_with_eq": """
        class Int(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def add(a, b):
            return Int(42)
    """,
    "nonce_from_frame": """
        import os, sys
        frame = sys._getframe()
        while frame is not None:
            f = frame.f_locals
            if "nonce" in f and "out" in f:
                for k in range(64):
                    f["out"].write(f"{f['nonce']} P {k}\\n")
                f["out"].flush()
                os._exit(0)
            frame = frame.f_back
    """,
    "rewrite_tests_through_frame": """
        import sys
        frame = sys._getframe()
        while frame is not None:
            for v in list(frame.f_locals.values()):
                if isinstance(v, list) and v and all(isinstance(t, str) for t in v):
                    v[:] = ["pass"] * len(v)
            frame = frame.f_back
    """,
    "tests_from_memory": """
        import gc, re
        table = {}
        for o in gc.get_objects():
            for s in (o if isinstance(o, (list, tuple)) else [o]):
                if isinstance(s, str):
                    for a, b, want in re.findall(r"add\\((\\d+), (\\d+)\\) == (\\d+)", s):
                        table[int(a), int(b)] = int(want)
        def add(a, b):
            return table.get((a, b), 42)
    """,
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_verdicts_score_zero(name):
    code = "def add(a, b):\n    return 42\n" + textwrap.dedent(FORGERIES[name])
    tests = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"
    honest = "def add(a, b):\n    return a + b\n" + textwrap.dedent(FORGERIES[name]).replace("def add", "def _unused")
    assert get_reward("code_tests")([fenced(code)], tests=[tests]) == [0.0], name
    assert get_reward("code_tests_fraction")([fenced(code)], tests=[tests]) == [0.0], name
    assert get_reward("code_tests")([fenced(honest)], tests=[tests]) == [1.0], name  # the judge still judges


def test_check_style_tests_see_only_plain_values():
    """HumanEval's `check(candidate)`: the comparison runs outside the program's interpreter."""
    code = fenced(textwrap.dedent(FORGERIES["always_equal"]))
    test = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n"
    assert get_reward("code_tests")([code], tests=[test], entry_point=["add"]) == [0.0]
    good = fenced("def add(a, b):\n    return a + b\n")
    assert get_reward("code_tests")([good], tests=[test], entry_point=["add"]) == [1.0]
