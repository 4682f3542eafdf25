"""r1lab's synthetic pretraining corpus: deterministic and restartable at any index, built from the tasks' own
generators with correct worked solutions, graded, mixed as configured — and never a test-split problem."""
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sympy

from r1lab.tasks import arithmetic, code, linear, word_problems
from r1lab.tasks import corpus as C
from r1lab.tasks.arithmetic import add_steps, mul_steps, sub_steps
from r1lab.tasks.base import split_of

ROOT = Path(__file__).resolve().parents[1]


def test_deterministic_and_restartable():
    a = list(C.synthetic_corpus(seed=3, limit=50))
    assert a == list(C.synthetic_corpus(seed=3, limit=50))
    assert a != list(C.synthetic_corpus(seed=4, limit=50))
    assert a[20:50] == list(C.synthetic_corpus(seed=3, start=20, limit=30))   # O(1) restart at any index
    assert [t for _, t in zip(range(5), C.synthetic_factory(seed=3)(7))] == a[7:12]


def test_step_functions_compute_the_right_result():
    rng = random.Random(0)
    for _ in range(300):
        a, b = rng.randint(0, 10 ** 6), rng.randint(0, 10 ** 6)
        sa = add_steps(a, b)
        assert sa[-1] == f"so {a} + {b} = {a + b}"
        written = [int(m) for m in re.findall(r"write (?:the last carry )?(\d+)", "\n".join(sa))]
        assert int("".join(map(str, written[::-1]))) == a + b               # the digits written are the answer
        ss = sub_steps(a, b)
        assert ss[-1] == f"so {a} - {b} = {a - b}"
        big, small = max(a, b), min(a, b)
        written = [int(m) for m in re.findall(r"write (\d+)", "\n".join(ss))]
        assert int("".join(map(str, written[::-1]))) == big - small
        m = rng.randint(0, 999)
        assert mul_steps(a, m)[-1] == f"so {a} * {m} = {a * m}"


def _question(text):
    """The question a worked-math document poses, in whichever of the three shapes it is written."""
    m = re.match(r"<\|user\|>(.*?)<\|assistant\|>", text, re.S) or re.match(r"Question: (.*?)\n<think>", text, re.S) \
        or re.match(r"Problem: (.*?)\nSolution:\n", text, re.S)
    assert m, text
    return m.group(1)


def _answer(text):
    m = re.search(r"<answer>(-?\d+)</answer>", text) or re.search(r"The answer is (-?\d+)\.$", text)
    assert m, text
    return int(m.group(1))


def _solve_linear(eq):
    x = sympy.symbols("x")
    tr = sympy.parsing.sympy_parser
    t = tr.standard_transformations + (tr.implicit_multiplication_application,)
    lhs, rhs = eq.split("=")
    return sympy.solve(tr.parse_expr(lhs, transformations=t) - tr.parse_expr(rhs, transformations=t), x)


def test_worked_math_documents_are_correct_and_mixed_format():
    shapes, checked = Counter(), 0
    for i in range(600):
        d = C.synthetic_document(7, i, r1_share=0.5)
        t = d["text"]
        if d["kind"] not in ("arithmetic", "equation", "word_problem"):
            continue
        assert d["key"] in _question(t)
        ans = _answer(t)
        if d["kind"] == "arithmetic":                           # independent oracle: Python on the expression
            assert ans == eval(d["key"]), t  # noqa: S307 (our own generated expression)
            assert re.search(r"so (\d+) ([-+*]) (\d+) = (-?\d+)", t)   # worked digit by digit
        elif d["kind"] == "equation":
            assert _solve_linear(d["key"]) == [ans], t
        else:                                                   # every step's arithmetic is right, the last is the answer
            steps = re.findall(r"(\d+) ([-+*×/]) (\d+) = (\d+)", t)
            for x, op, y, v in steps:
                assert {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y), "×": int(x) * int(y),
                        "/": int(x) // int(y)}[op] == int(v), t
            assert int(steps[-1][3]) == ans
        checked += 1
        if "<think>" in t:
            assert re.search(r"<think>\n.+\n</think>\n<answer>-?\d+</answer>", t, re.S), t
            shapes["chat" if t.startswith("<|user|>") and t.endswith("<|endoftext|>") else "bare"] += 1
        else:
            shapes["prose"] += 1
    assert checked > 300
    r1 = shapes["chat"] + shapes["bare"]
    assert 0.35 < r1 / checked < 0.65 and 0.2 < shapes["chat"] / checked < 0.55     # r1_share=0.5, 3/4 of it chat


def test_code_documents_run_and_their_asserts_pass():
    n = 0
    for i in range(400):
        d = C.synthetic_document(11, i)
        if d["kind"] == "code":
            assert '\n    """Return ' in d["text"]                     # a docstring
            assert "\nassert " in d["text"]
            exec(compile(d["text"], f"doc{i}", "exec"), {})
            n += 1
    assert n > 20


def test_mix_and_levels_follow_their_weights():
    docs = [C.synthetic_document(0, i) for i in range(2000)]
    kinds, levels = Counter(d["kind"] for d in docs), Counter(d["level"] for d in docs)
    for k, share in C.DEFAULT_MIX.items():
        assert abs(kinds[k] / 2000 - share) < 0.04, (k, kinds)
    for lv, w in enumerate(C.LEVEL_WEIGHTS[:5], 1):
        assert abs(levels[lv] / 2000 - w) < 0.04, (lv, levels)
    only = [C.synthetic_document(1, i, mix={"code": 1.0})["kind"] for i in range(20)]
    assert set(only) == {"code"}
    with pytest.raises(ValueError, match="unknown kind"):
        C.synthetic_document(0, 0, mix={"poetry": 1.0})


def test_difficulty_is_graded():
    by_level = {}
    for i in range(1500):
        d = C.synthetic_document(0, i)
        if d["kind"] in ("arithmetic", "equation"):
            by_level.setdefault((d["kind"], d["level"]), []).append(len(re.findall(r"\d", d["key"])))
    for kind in ("arithmetic", "equation"):
        means = [sum(v) / len(v) for (k, _), v in sorted(by_level.items()) if k == kind]
        assert means[0] < means[2] < means[4], (kind, means)


# ----------------------------------------------------------------------------------------------- contamination

_TASKS = {"arithmetic": ("arithmetic", arithmetic.make), "equation": ("linear", linear.make),
          "word_problem": ("word_problems", word_problems.make), "code": ("code", code.make)}


def _test_split_problems(draws=6000):
    """Test-split problems of each corpus task at every level, from the tasks' own generators: kind -> {key: problem}."""
    out = {}
    for kind, (task, make) in _TASKS.items():
        rng, keys = random.Random(f"contamination-{task}"), {}
        for i in range(draws):
            p = make(rng, 1 + i % 5)
            if p is not None and split_of(task, p["key"]) == "test":
                keys[p["key"]] = p
        assert keys, task
        out[kind] = keys
    return out


def _contaminated(docs, test):
    """Documents that pose a test-split problem: by the corpus's own record (task, key) and, independently, by the
    text: its question is a phrasing of a test problem, or (code) it defines a test problem's function."""
    questions = {kind: {q.format(k=k) for k in keys for q in C._QUESTIONS[kind]}
                 for kind, keys in test.items() if kind in C._QUESTIONS}
    code_defs = {p["reference"].split("\n")[0] for p in test["code"].values()}
    bad = []
    for d in docs:
        if d["kind"] == "prose":
            continue
        task = _TASKS[d["kind"]][0]
        if d["task"] != task or split_of(task, d["key"]) != "train" or d["key"] in test[d["kind"]]:
            bad.append(d)
        elif d["kind"] == "code":
            if d["text"].split("\n")[0] in code_defs:
                bad.append(d)
        elif _question(d["text"]) in questions[d["kind"]]:
            bad.append(d)
    return bad


def test_no_document_is_a_test_split_problem(monkeypatch):
    test = _test_split_problems()
    docs = [C.synthetic_document(seed, i) for seed in (0, 1) for i in range(1500)]
    assert _contaminated(docs, test) == []
    # the check has teeth: the same stream drawn from the test split instead is caught at once
    orig = C.draw
    monkeypatch.setattr(C, "draw", lambda task, make, rng, d, split="train", tries=1: orig(task, make, rng, d, "test", tries))
    leaked = [C.synthetic_document(0, i) for i in range(300)]
    assert len(_contaminated(leaked, test)) > 50


# ----------------------------------------------------------------------------------------------- the file writer


def test_writer_cli_writes_the_stream_as_jsonl(tmp_path):
    out = tmp_path / "c.jsonl"
    r = subprocess.run([sys.executable, "-m", "r1lab.tasks.corpus", "--out", str(out), "--docs", "25", "--seed", "2"],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [row["text"] for row in rows] == list(C.synthetic_corpus(seed=2, limit=25))
