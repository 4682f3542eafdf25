"""Synthetic tasks: deterministic from a seed, disjoint train/test splits, correct answers (checked against
independent oracles: Python eval, sympy, the unit tests themselves), R1-format solutions."""
from __future__ import annotations

import re

import pytest
import sympy

from r1lab.tasks import TASKS, task_rows
from r1lab.tasks.countdown import check

R1 = re.compile(r"^<think>\n.*\n?</think>\n<answer>.+</answer>$", re.S)


@pytest.mark.parametrize("task", list(TASKS))
def test_deterministic_and_seed_dependent(task):
    a = task_rows(task, n=40, seed=1)
    assert a == task_rows(task, n=40, seed=1)
    assert [r["id"] for r in a] != [r["id"] for r in task_rows(task, n=40, seed=2)]
    assert len({r["id"] for r in a}) == 40


@pytest.mark.parametrize("task", list(TASKS))
def test_train_and_test_never_share_a_problem(task):
    for d in (1, 2, 3):
        train = task_rows(task, n=100, split="train", seed=0, difficulty=d)
        test = task_rows(task, n=20, split="test", seed=5, difficulty=d)
        assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
        assert not {r["id"] for r in train} & {r["id"] for r in test}
    # across seeds too: a test problem is never a train problem for any seed
    trains = {r["prompt"] for s in range(3) for r in task_rows(task, n=100, split="train", seed=s)}
    tests = {r["prompt"] for s in range(3) for r in task_rows(task, n=30, split="test", seed=s)}
    assert not trains & tests


@pytest.mark.parametrize("task", list(TASKS))
def test_solutions_are_r1_format_and_answer_matches(task):
    for r in task_rows(task, n=60, seed=0, difficulty=[1, 2, 3, 4, 5]):
        assert R1.match(r["solution"]), r["solution"]
        inner = re.search(r"<answer>(.*)</answer>", r["solution"], re.S).group(1)
        if "answer" in r:
            assert inner == r["answer"]


def test_arithmetic_answers_equal_python_eval():
    for r in task_rows("arithmetic", n=200, seed=0, difficulty=[1, 2, 3, 4, 5]):
        expr = re.search(r"Compute (.*)\. Give", r["prompt"]).group(1).replace("×", "*")
        assert int(r["answer"]) == eval(expr)  # noqa: S307 (our own generated expression)


def test_linear_answers_equal_sympy_solution():
    x = sympy.symbols("x")
    for r in task_rows("linear", n=100, seed=0, difficulty=[1, 2, 3, 4]):
        eq = re.search(r"Solve for x: (.*)\. Give", r["prompt"]).group(1)
        lhs, rhs = eq.split("=")
        tr = sympy.parsing.sympy_parser
        expr = tr.parse_expr(lhs, transformations=tr.standard_transformations + (tr.implicit_multiplication_application,)) - \
            tr.parse_expr(rhs, transformations=tr.standard_transformations + (tr.implicit_multiplication_application,))
        assert sympy.solve(expr, x) == [int(r["answer"])], eq


def test_word_problem_answers_follow_from_their_steps():
    for r in task_rows("word_problems", n=100, seed=0, difficulty=[1, 2, 3]):
        steps = re.findall(r"(\d+) ([-+×/]) (\d+) = (\d+)", r["solution"])
        assert steps
        ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b, "/": lambda a, b: a // b}
        for a, op, b, c in steps:
            assert ops[op](int(a), int(b)) == int(c)
        assert steps[-1][3] == r["answer"]


def test_countdown_answers_check_and_wrong_ones_do_not():
    for r in task_rows("countdown", n=100, seed=0, difficulty=[1, 2, 3, 4]):
        assert check(r["answer"], r["numbers"], r["target"])
        assert not check(r["answer"] + " + 1", r["numbers"], r["target"])
    assert not check("2 * 2 * 2", [2, 2], 8)          # uses a number twice
    assert not check("__import__('os')", [1], 1)


def test_code_reference_passes_its_tests_and_a_wrong_one_fails():
    rows = task_rows("code", n=60, seed=0, difficulty=[1, 2, 3])
    for r in rows:
        code = re.search(r"```python\n(.*)\n```", r["solution"], re.S).group(1)
        assert code == r["reference"]
        exec(compile(code + "\n" + r["tests"], "<t>", "exec"), {})  # noqa: S102 (our own generated code)
        name = re.search(r"def (\w+)\(", code).group(1)
        wrong = f"def {name}(*a, **k):\n    return 10**9\n"
        with pytest.raises(AssertionError):
            exec(compile(wrong + "\n" + r["tests"], "<t>", "exec"), {})  # noqa: S102


def test_difficulty_grows():
    def mean_len(d):
        rows = task_rows("arithmetic", n=50, seed=0, difficulty=d)
        return sum(len(r["answer"]) for r in rows) / len(rows)
    assert mean_len(1) < mean_len(2) < mean_len(3) < mean_len(4)


def test_too_small_space_fails_clearly():
    with pytest.raises(ValueError, match="distinct"):
        task_rows("arithmetic", n=500, split="test", difficulty=1)


def test_arithmetic_worked_steps_hold_and_end_at_the_answer():
    """Every column line of the worked solution is true arithmetic, and the last `so a op b = r` is the answer."""
    col = re.compile(r"^(\d+) ([-+*]) (\d+) ([-+]) (\d+) = (\d+), write (\d+), (carry|borrow) (\d+)$")
    for r in task_rows("arithmetic", n=200, seed=0, difficulty=[1, 2, 3, 4, 5]):
        lines = re.search(r"<think>\n(.*)\n</think>", r["solution"], re.S).group(1).splitlines()
        checked = 0
        for line in lines:
            m = col.match(line.split("borrow: ")[-1])   # a borrow line restates its column after "borrow: "
            if m:
                a, op, b, op2, c, s, w, kind, k = m.groups()
                v = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
                v = v + int(c) if op2 == "+" else v - int(c)
                assert v == int(s) and int(w) == int(s) % 10, line
                checked += 1
        last = re.match(r"so (\d+) ([-+*]) (\d+) = (-?\d+)$", lines[-1])
        assert last and last.group(4) == r["answer"] and eval(f"{last.group(1)}{last.group(2)}{last.group(3)}") == int(r["answer"])  # noqa: S307
        assert checked or "*" in lines[0]


@pytest.mark.parametrize("task", ["arithmetic", "linear", "word_problems", "countdown"])
def test_short_fraction_cuts_the_working_to_its_last_line(task):
    """`short_fraction` (a cold start that mixes short and worked answers): that share of rows, the same problems
    for every seed, keep only the last line of their working; the answer, the R1 format and the rest are kept."""
    from r1lab.data.loaders import load_spec

    full = load_spec({"task": task, "n": 200, "difficulty": [1, 2, 3]}).to_list()
    mixed = load_spec({"task": task, "n": 200, "difficulty": [1, 2, 3], "short_fraction": 0.5}).to_list()
    short = [m for m in mixed if m["style"] == "short"]
    assert 70 <= len(short) <= 130                                   # about half
    by_id = {r["id"]: r for r in full}
    for m in mixed:
        f = by_id[m["id"]]
        assert R1.match(m["solution"]) and m["prompt"] == f["prompt"]
        answer = lambda s: re.search(r"<answer>(.*)</answer>", s, re.S).group(1)  # noqa: E731
        assert answer(m["solution"]) == answer(f["solution"])
        think = lambda s: s.split("</think>")[0][len("<think>\n"):].strip().splitlines()  # noqa: E731
        if m["style"] == "short":
            assert think(m["solution"]) == think(f["solution"])[-1:]
        else:
            assert m["solution"] == f["solution"]
    assert sum(len(by_id[m["id"]]["solution"]) > len(m["solution"]) for m in short) > len(short) / 2
    # which rows are short depends on the problem, not on the seed or the order
    other = load_spec({"task": task, "n": 200, "difficulty": [1, 2, 3], "seed": 7, "short_fraction": 0.5}).to_list()
    styles = {m["id"]: m["style"] for m in mixed}
    assert all(o["style"] == styles[o["id"]] for o in other if o["id"] in styles)


def test_short_fraction_only_for_tasks():
    from r1lab.params import DataSpec

    with pytest.raises(ValueError, match="short_fraction"):
        DataSpec.model_validate({"stage": "rs", "short_fraction": 0.5})
    assert DataSpec.model_validate({"task": "arithmetic", "short_fraction": 0.5}).describe() == "task:arithmetic (50% short)"
