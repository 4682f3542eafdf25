"""Rebuild math_peer_suites.jsonl from the peers' public test files (a one-off; the jsonl is the artifact).

    python benchmarks/data/build_math_peer_suites.py /path/to/mirrors   # holds owner+name/repo git dirs

Each row: source, file (`owner/repo:path`), test (the peer's test function), gold, peer_pred (the string
the peer's test passes), completion (what both graders are given; see `completion_of`), wrap (how the
completion was made), label (what the peer's suite asserts), and optionally label_basis, note.

Cases are read from the peers' `pytest.mark.parametrize` lists with `ast` (values only; no peer code is
run). Skipped: non-English cases, cases whose gold the peer itself calls unparsable (reward None), a
second copy of a parametrize row that only flips a non-default option (we keep the peer's defaults).
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).with_name("math_peer_suites.jsonl")
_MARKER = re.compile(r"\\boxed|\\fbox|<answer>|answer\s*(?:is|:)|####|^answer[ \t]+(?=\$|\\[(\[])", re.I | re.M)
_PROSE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}\s+[A-Za-z]{2,}\s+[A-Za-z]{2,}")
# free-text preds of the peers' extraction tests that have no three-word run but are still prose
_KEEP_VERBATIM = {"Soucis : 2,74 $ a..", "AZYUK2A", "D. it can't be A or B", "not it's not 10 it's 1,000.99m²",
                  "Because B is valid"}


def completion_of(pred: str) -> tuple[str, str]:
    """The completion a model would write for a peer's pred: a pred that already carries a final-answer
    marker, or is prose (a run of three words outside LaTeX commands), is used verbatim; a bare answer
    string (what the peer's test compares after extraction: `$\\frac13$`, `28 pct`, `1,000.99`) is boxed,
    its `$` delimiters dropped: `\\boxed{\\frac13}`."""
    if _MARKER.search(pred):
        return pred, "verbatim"
    if pred in _KEEP_VERBATIM:
        return pred, "verbatim (prose without a final-answer marker)"
    if (_PROSE.search(re.sub(r"\\[A-Za-z]+\{[^{}]*\}", " ", pred)) or len(pred) > 200
            or re.match(r"[A-Za-z ]+:", pred) or pred.startswith("Answer")):
        return pred, "verbatim (prose without a final-answer marker)"
    body = pred.strip()
    for a, b in (("$$", "$$"), ("$", "$"), (r"\(", r"\)"), (r"\[", r"\]")):
        if body.startswith(a) and body.endswith(b) and len(body) >= len(a) + len(b):
            body = body[len(a):len(body) - len(b)].strip()
            break
    return "\\boxed{" + re.sub(r"(?<!\\)\$", "", body).strip() + "}", "boxed"


def git_show(mirrors: Path, repo: str, path: str) -> str:
    d = mirrors / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "-C", str(d), "show", f"HEAD:{path}"], capture_output=True, text=True,
                          check=True).stdout


def parametrized(code: str):
    """(test name, argnames, values) of every literal parametrize row in a test file."""
    tree = ast.parse(code)
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for dec in fn.decorator_list:
            if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                continue
            names = [n.strip() for n in ast.literal_eval(dec.args[0]).split(",")]
            for el in dec.args[1].elts:
                try:
                    yield fn.name, names, ast.literal_eval(el)
                except ValueError:
                    yield fn.name, names, ast.get_source_segment(code, el)


_NO_MARKER = ("no final-answer marker: under the R1 policy a completion must mark its answer (\\boxed{}, "
              "<answer>, 'the answer is', 'Final Answer:'); prose without one scores 0")
_ROUNDED = "exact policy: a rounded decimal is not the exact value (the peer compares at a set precision)"
# (test, peer's pred) -> (our label, why), where we judge the peer's label wrong
OUR_LABELS = {
    ("test_string_extraction", r"$1 + \frac{1}{\mathrm{e}}$"): (False, "1 - 1/e (~0.632) and 1 + 1/e (~1.368) "
                                                                 "differ; the suite asserts they are equal"),
    ("test_order", "10, 4, -2"): (True, "a comma list of answers ('enter all solutions') is unordered; hendrycks "
                                        "compares the strings"),
    ("test_decimals", "0.1, 4, 2"): (True, "a comma list of answers is unordered, and .1 = 0.1"),
    ("test_set_rel_assymetry", r"$-2 \\le x \\le 7$"): (True, "x in [-2,7] and -2 <= x <= 7 say the same; "
                                                             "math-verify's default accepts it one way round only"),
    ("test_complex_math_expressions", "$0.0833333333333333$"): (False, _ROUNDED),
    ("test_complex_math_expressions", r"$\begin{pmatrix}0.33\\0.2 \end{pmatrix}$"): (False, _ROUNDED),
    ("test_complex_math_expressions", "$(0.6,2.6667]$"): (False, _ROUNDED),
    ("test_float_precision", r"$\sqrt{17}$"): (False, _ROUNDED),
}


def row(source, file, test, gold, pred, label, **extra) -> dict:
    completion, wrap = completion_of(pred)
    out = dict(source=source, file=file, test=test, gold=gold, peer_pred=pred, completion=completion, wrap=wrap,
               label=bool(label), **extra)
    if (test, pred) in OUR_LABELS:
        out["our_label"], out["why"] = OUR_LABELS[(test, pred)]
    elif wrap.startswith("verbatim (") and label:
        out["our_label"], out["why"] = False, _NO_MARKER
    return out


def math_verify_like(mirrors, source, repo, paths, seen) -> list[dict]:
    """Math-Verify's tests and lighteval's copy of them: parametrize rows of (gold, pred, expected, ...)."""
    out = []
    for path in paths:
        file = f"{repo}:{path}"
        for test, names, vals in parametrized(git_show(mirrors, repo, path)):
            if isinstance(vals, str):
                if test == "test_float_precision":  # f"{math.sqrt(17):.15f}" vs $\sqrt{17}$, expected 1
                    out.append(row(source, file, test, f"{math.sqrt(17):.15f}", r"$\sqrt{17}$", 1,
                                   note="peer compares at precision=5"))
                continue
            v = dict(zip(names, vals))
            if "language" in v and "ENGLISH" not in str(v["language"]):
                continue  # non-English prompts
            if v.get("allow_set_relation_comp") is True or v.get("strict") is False:
                continue  # a non-default option; the default-option row of the same pair is kept
            if test == "test_string_extraction" and "config" in names:
                continue  # string-config rows (read from source below)
            if "gold" not in v or "pred" not in v:
                continue
            key = (v["gold"], v["pred"])
            if key in seen:
                continue
            seen.add(key)
            label = v.get("expected", v.get("result"))
            extra = {"note": f"peer compares at precision={v['precision']}"} if v.get("precision", 6) != 6 else {}
            out.append(row(source, file, test, v["gold"], v["pred"], label, **extra))
    return out


def math_verify_strings(mirrors) -> list[dict]:
    """tests/test_string_extraction.py: (pred, expected extraction, config); the gold is the expected string."""
    repo, path = "huggingface/Math-Verify", "tests/test_string_extraction.py"
    out = []
    for test, _, vals in parametrized(git_show(mirrors, repo, path)):
        m = re.match(r'\(\s*"([^"]*)",\s*\[([^\]]*)\]', vals) if isinstance(vals, str) else None
        if m and m.group(2).strip():
            gold = ast.literal_eval("[" + m.group(2) + "]")[-1]
            out.append(row("math-verify", f"{repo}:{path}", test, gold, m.group(1), 1))
    return out


def nemo_skills(mirrors) -> list[dict]:
    """NeMo-Skills asserts math_equal both ways round for every pair: both orders are cases."""
    repo, path = "NVIDIA/NeMo-Skills", "tests/test_math_equal.py"
    out = []
    for test, _, pair in parametrized(git_show(mirrors, repo, path)):
        if isinstance(pair, str) or None in pair:
            if isinstance(pair, str) and "5 / 2" in pair:
                pair = (2.5, "\\frac{5}{2}")
            else:
                continue
        label = test == "test_correct_examples"
        a, b = (str(x) for x in pair)
        out.append(row("nemo-skills", f"{repo}:{path}", test, b, a, label))
        out.append(row("nemo-skills", f"{repo}:{path}", test, a, b, label))
    return out


def hendrycks(mirrors) -> list[dict]:
    repo, path = "hendrycks/math", "modeling/math_equivalence_test.py"
    code = git_show(mirrors, repo, path)
    out = []
    for m in re.finditer(r"def (test_\w+)\(self\):\s*test_in = (\".*?\")\s*test_out = (\".*?\")\s*"
                         r"self\.assert(True|False)", code, re.DOTALL):
        test_in, test_out = ast.literal_eval(m.group(2)), ast.literal_eval(m.group(3))
        out.append(row("hendrycks-math", f"{repo}:{path}", m.group(1), test_out, test_in, m.group(4) == "True"))
    return out


# Qwen2.5-Math's grader has no assertions: `_test_math_equal` in evaluation/grader.py lists (pred, gt) pairs
# its authors checked by hand. Their labels here are the mathematical fact (label_basis says so).
_QWEN = [
    ("0.0833333333333333", r"\frac{1}{12}", False, "a 16-digit decimal is not 1/12 exactly (exact policy)"),
    ("(1,4.5)", r"(1,\frac{9}{2})", True, ""),
    (r"\frac{x}{7}+\frac{2}{7}", r"\frac{x+2}{7}", True, ""),
    (r"\sec^2(y)", r"\tan^2(y)+1", True, ""),
    (r"\begin{pmatrix}-\frac{7}{4}&-2\\4&\frac{1}{4}\end{pmatrix}",
     r"(\begin{pmatrix}-\frac{7}{4}&-2\\4&\frac{1}{4}\\\end{pmatrix})", True, ""),
    (r"-34x-45y+20z-100=0", r"34x+45y-20z+100=0", True, ""),
    (r"\frac{100}{3}", "33.3", False, "33.3 is a rounding of 100/3"),
    (r"\frac{\sqrt{\sqrt{11}+\sqrt{194}}}{2\sqrt{33}+15}", r"\frac{\sqrt{\sqrt{11}+\sqrt{194}}}{15+2\sqrt{33}}", True, ""),
    ("(+5)(b+2)", "(a+5)(b+2)", False, ""),
    (r"\frac{1+\sqrt{5}}{2}", "2", False, ""),
    (r"\frac{34}{16}+\frac{\sqrt{1358}}{16}", "4", False, ""),
    ("(0.6,2.6667]", r"(\frac{3}{5},\frac{8}{3}]", False, "2.6667 is a rounding of 8/3"),
    ("x+1", "x+2n+1", False, ""),
]


def qwen() -> list[dict]:
    file = "QwenLM/Qwen2.5-Math:evaluation/grader.py"
    return [row("qwen2.5-math", file, "_test_math_equal", g, p, lab, label_basis="mathematical fact (the file "
                "lists the pair without an expected value)" + (f": {why}" if why else ""))
            for p, g, lab, why in _QWEN]


# TRL tests/test_rewards.py: accuracy_reward and reasoning_accuracy_reward (completions given verbatim).
_TRL = [
    ("test_accuracy_reward_correct_answer", r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", True),
    ("test_accuracy_reward_correct_answer", r"\boxed{\frac{63}{400}}", "63/400", True),
    ("test_accuracy_reward_wrong_answer", r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", False),
    ("test_accuracy_reward_wrong_answer_no_latex", r"\boxed{3}", "6", False),
    ("test_accuracy_reward_in_worker_thread", r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", True),
    ("test_correct_answer_yields_unit_reward", r"<think> Reasoning content </think> \boxed{\frac{63}{400}}", r"\frac{63}{400}", True),
    ("test_correct_answer_yields_unit_reward", r"Reasoning content </think> \boxed{\frac{63}{400}}", r"\frac{63}{400}", True),
    ("test_incorrect_answer_yields_zero_reward", r"<think> Reasoning content </think> \boxed{\frac{64}{400}}", r"\frac{63}{400}", False),
    ("test_correct_answer_in_reasoning_yields_zero_reward", r"<think> My answer is \boxed{42} </think> Some other text.", r"\boxed{42}", False),
    ("test_correct_answer_in_reasoning_yields_zero_reward", r"<think> The answer is \boxed{42} </think> Here's a wrong answer: \boxed{43}.", r"\boxed{42}", False),
    ("test_incomplete_reasoning_yields_zero_reward", r"Correct answer \frac{63}{400} but completely missing reasoning content", r"\frac{63}{400}", False),
    ("test_wrong_longer_penalized_less", r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", False),
]


def trl() -> list[dict]:
    file = "huggingface/trl:tests/test_rewards.py"
    return [dict(source="trl", file=file, test=t, gold=g, peer_pred=c, completion=c, wrap="verbatim", label=lab)
            for t, c, g, lab in _TRL]


def main(mirrors: Path) -> None:
    seen: set = set()
    mv = math_verify_like(mirrors, "math-verify", "huggingface/Math-Verify", [
        "tests/test_all.py", "tests/test_boxed.py", "tests/test_numina_cases.py", "tests/test_open_thoughts.py",
        "tests/test_strict.py", "tests/test_yujianll.py"], seen) + math_verify_strings(mirrors)
    le = math_verify_like(mirrors, "lighteval", "huggingface/lighteval",
                          ["tests/unit/metrics/test_extractive_match.py"], seen)
    rows = mv + le + nemo_skills(mirrors) + hendrycks(mirrors) + qwen() + trl()
    for i, r in enumerate(rows):
        r["id"] = f"{r['source']}-{i:03d}"
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    from collections import Counter
    print(len(rows), Counter(r["source"] for r in rows), Counter(r["wrap"] for r in rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
