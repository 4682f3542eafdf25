"""math_accuracy against a policy (or a data file) that attacks the reward: answer and gold text is never
run as code, no task can change later verdicts, and adversarial text is judged in bounded time.

Each test here failed on the reward as it was before the safe parser (sympy's parse_expr, which evals) and
the linear-time extraction: the payloads below created directories and made wrong answers score 1.0, and the
adversarial texts took seconds to forever.
"""

import ast
import contextlib
import signal
import time
from pathlib import Path

import pytest

from rewards.math import extract_answer, math_accuracy
from rewards.pool import TimeoutPool

ROOT = Path(__file__).resolve().parents[1]


def mkdir_payload(path: Path) -> str:
    """An answer that, if evaluated as Python, creates `path` (spelled with chr() so that no character of
    the path is rewritten by LaTeX clean-up before it reaches the parser)."""
    spelled = "\"\".join(map(chr,(" + ",".join(str(ord(c)) for c in str(path)) + ")))"
    return f"exec('import os;os.mkdir({spelled})')"


# Evaluated as Python, this rebinds rewards.math.equiv's code to "always equal" inside the worker.
POISON = ("exec(\"import rewards.math as m;setattr(m.equiv,chr(95)*2+'code'+chr(95)*2,"
          "getattr(lambda pred,gold:True,chr(95)*2+'code'+chr(95)*2))\")")


@pytest.mark.parametrize("template", [
    "<answer>\\boxed{{{}}}</answer>",
    "<think>easy</think><answer>{}</answer>",
    "So the final answer is {}",
    "#### {}",
])
def test_hostile_completion_runs_no_code(tmp_path, template):
    target = tmp_path / "pwned"
    scores = math_accuracy([template.format(mkdir_payload(target))], answer=["1"])
    assert scores == [0.0]
    assert not target.exists()


def test_hostile_gold_runs_no_code(tmp_path):
    target, boxed = tmp_path / "pwned", tmp_path / "pwned_boxed"
    scores = math_accuracy([r"\boxed{1}", r"\boxed{1}"],
                           answer=[mkdir_payload(target), f"Solution ... \\boxed{{{mkdir_payload(boxed)}}}"])
    assert scores == [0.0, 0.0]
    assert not target.exists() and not boxed.exists()


def test_poisoning_attempt_leaves_later_verdicts_right():
    first = math_accuracy([f"\\boxed{{{POISON}}}"] * 8, answer=["1"] * 8)
    later = math_accuracy([r"\boxed{\sqrt{2}}", r"\boxed{x+1}", r"\boxed{\pi}", r"\boxed{42}", r"\boxed{41}"],
                          answer=["42"] * 5)
    assert first == [0.0] * 8
    assert later == [0.0, 0.0, 0.0, 1.0, 0.0]


class _Tamper:
    """Unpickled inside a worker, it rebinds rewards.math.equiv to "always equal": it stands for a task that
    found some way to run code in the worker."""

    def __reduce__(self):
        return exec, ("import rewards.math as m; m.equiv.__code__ = (lambda pred, gold: True).__code__",)


def test_a_worker_whose_code_was_changed_is_replaced():
    pool = TimeoutPool("rewards.math:equiv", workers=1)
    try:
        tampered = pool.map([(_Tamper(), "42")], timeout=60)
        after = pool.map([(r"\sqrt{2}", "42"), ("x+1", "42"), (r"\pi", "42"), ("6\\cdot 7", "42")], timeout=60)
    finally:
        pool.close()
    assert isinstance(tampered[0], RuntimeError) and "TamperError" in str(tampered[0])
    assert after == [False, False, False, True]


def test_worker_replies_build_no_objects():
    """A worker's reply is read as plain values: a reply naming a class (here a Fraction) is refused."""
    pool = TimeoutPool("fractions:Fraction", workers=1)
    try:
        out = pool.map([("1/2",)], timeout=60)
    finally:
        pool.close()
    assert isinstance(out[0], RuntimeError)


def test_math_reward_source_never_evaluates_text():
    """No call, import or name in the math reward's modules reaches a string evaluator."""
    evaluators = {"eval", "exec", "compile", "__import__", "parse_expr", "sympify", "S"}
    names = sorted(p.name for p in (ROOT / "rewards").glob("math*.py"))
    assert {"math.py", "math_extract.py", "math_normalize.py", "math_structure.py", "math_verdict.py",
            "math_sympy.py", "math_parse.py"} <= set(names)
    for name in names:
        tree = ast.parse((ROOT / "rewards" / name).read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        used |= {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        used |= {n.attr for n in ast.walk(tree)  # sympy.sympify, sympy.S(...); re.compile is fine
                 if isinstance(n, ast.Attribute) and not (isinstance(n.value, ast.Name) and n.value.id == "re")}
        assert not used & evaluators, (name, used & evaluators)


# ------------------------------------------------------------------ bounded time on adversarial text

@contextlib.contextmanager
def hard_limit(seconds: float):
    """Raise TimeoutError if the block runs past `seconds`, instead of hanging the suite (SIGALRM interrupts
    even a backtracking regex); the alarm pytest-timeout may have set is restored afterwards."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(0.01, outer - (time.monotonic() - start)))


N = 10_000  # characters of adversarial text per case
ADVERSARIAL = {
    "unit_tail": "<answer>1" + "m" * N + "!</answer>",  # backtracked exponentially in the unit regex
    "unclosed_boxed": "\\boxed{" * (N // 7),  # each \boxed scanned to the end: quadratic
    "boxed_then_spaces": "\\boxed" + " " * N + "$",  # \s*(\s+...) backtracking: quadratic
    "nested_text": "\\boxed{" + "\\text{" * (N // 7) + "1" + "}" * (N // 7) + "}",  # \text unwrapped one by one
    "answer_is_newlines": "The answer is" + "\n" * N,  # \s*:?\s* backtracking: quadratic
    "deep_parens": "\\boxed{" + "(" * (N // 2) + "2" + ")" * (N // 2) + "}",  # sympy worker until its timeout
}


@pytest.fixture(scope="module")
def warm_pool():
    math_accuracy([r"\boxed{x+1}"], answer=["1+x"])  # start the worker pool outside the timing


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_completion_is_judged_within_a_second(name, warm_pool):
    text = ADVERSARIAL[name]
    assert len(text) >= 0.9 * N
    start = time.monotonic()
    with hard_limit(30):
        scores = math_accuracy([text], answer=["2"])
    assert time.monotonic() - start < 1.0
    assert scores == [0.0]


def test_adversarial_gold_is_judged_within_a_second(warm_pool):
    start = time.monotonic()
    with hard_limit(30):
        scores = math_accuracy([r"\boxed{1}"], answer=["1" + "m" * N + "!"])
    assert time.monotonic() - start < 1.0
    assert scores == [0.0]


def test_huge_numeral_is_refused_within_a_second(warm_pool):
    """`1e99999999` would be a 100-million-digit integer: refused by the parser instead of computed until the
    worker's time limit."""
    start = time.monotonic()
    with hard_limit(30):
        scores = math_accuracy([r"\boxed{1e99999999}", r"\boxed{1e3}"], answer=["1", "1000"])
    assert time.monotonic() - start < 1.0
    assert scores == [0.0, 1.0]


def test_extraction_still_finds_the_answer_after_junk():
    junk = "\\boxed{" * 500 + "The answer is" + "\n" * 500
    assert extract_answer(junk + "\\boxed{42}") == "42"
    assert extract_answer("<answer>" * 100 + "<answer>7</answer>") == "7"
    assert math_accuracy([junk + "\\boxed{42}"], answer=["42"]) == [1.0]



# ------------------------------------------------------------------ the math workers run jailed

def test_math_worker_is_jailed_and_cannot_write_outside(tmp_path):
    """A task that gets code running in a math worker (here: the pool's target itself is a file writer)
    cannot create a file anywhere the trainer sees -- not in /tmp, not in the repository -- nor start a
    process. The math reward's own pool is jailed the same way (`rewards.math._pool`)."""
    from rewards.math import _pool

    target = tmp_path / "x"
    pool = TimeoutPool("os:mkdir", workers=1, jailed=True)
    try:
        made = pool.map([(str(target),), ("/tmp/r1lab_math_worker_probe",), (str(ROOT / "probe"),)], timeout=60)
    finally:
        pool.close()
    assert all(isinstance(m, RuntimeError) for m in made), made
    assert not target.exists() and not Path("/tmp/r1lab_math_worker_probe").exists() and not (ROOT / "probe").exists()
    forker = TimeoutPool("os:system", workers=1, jailed=True)
    try:
        status = forker.map([(f"touch {tmp_path / 'y'}",)], timeout=60)
    finally:
        forker.close()
    assert not (tmp_path / "y").exists(), status
    assert _pool().jailed
    assert pool.isolation and pool.isolation.split("+")[0] in ("namespaces", "partial", "rlimits")


def test_unjailed_worker_can_write_so_the_jail_test_means_something(tmp_path):
    pool = TimeoutPool("os:mkdir", workers=1)
    try:
        assert pool.map([(str(tmp_path / "x"),)], timeout=60) == [None]
    finally:
        pool.close()
    assert (tmp_path / "x").exists()
