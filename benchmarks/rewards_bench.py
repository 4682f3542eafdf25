"""Reward throughput on this machine: math answers judged per second (ours vs math-verify, same inputs)
and sandboxed code programs per second.

Math inputs: (a) MATH-500 reference solutions vs their gold answers (mostly settled without sympy),
(b) the labelled equivalence table without its hostile rows (sympy-heavy), (c) the MATH-500 golds each
judged against a different problem's gold (wrong answers: every pair needs the full check).
Ours is `rewards.math.math_accuracy` (batched, process pool); math-verify is TRL's `accuracy_reward`
(sequential, signal timeouts), both on identical (completion, gold) lists.
Code: HumanEval reference solutions + their tests through `code_tests`, with 2 and 4 concurrent jails.

    python benchmarks/rewards_bench.py
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH = ROOT / "r1lab" / "data" / "benchmarks"


def rows(name):
    return [json.loads(line) for line in (BENCH / name).read_text().splitlines() if line.strip()]


def math_inputs() -> dict[str, tuple[list[str], list[str]]]:
    m5 = rows("math500_test.jsonl")
    table = [json.loads(x) for x in (ROOT / "tests/data/math_equiv_pairs.jsonl").read_text().splitlines()]
    table = [p for p in table if p["category"] != "hostile"]
    shifted = m5[1:] + m5[:1]
    return {
        "math500_solutions": ([r["solution"] for r in m5], [r["answer"] for r in m5]),
        "equivalence_table": ([p["pred"] for p in table], [p["gold"] for p in table]),
        "math500_wrong_answers": ([f"\\boxed{{{s['answer']}}}" for s in shifted], [r["answer"] for r in m5]),
    }


def time_ours(preds, golds) -> tuple[float, list]:
    from rewards.math import math_accuracy

    t = time.perf_counter()
    out = math_accuracy(preds, answer=golds)
    return time.perf_counter() - t, out


def time_math_verify(preds, golds) -> tuple[float, list]:
    from trl.rewards import accuracy_reward

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    t = time.perf_counter()
    out = accuracy_reward([[{"role": "assistant", "content": p}] for p in preds], solution=[f"${g}$" for g in golds])
    return time.perf_counter() - t, out


def bench_math() -> dict:
    from rewards.math import math_accuracy

    math_accuracy([r"\boxed{x+1}"], answer=["1+x"])  # start the pool outside the timing
    res = {}
    for name, (preds, golds) in math_inputs().items():
        t_o, o = time_ours(preds, golds)
        t_m, m = time_math_verify(preds, golds)
        agree = sum((a == 1.0) == (b == 1.0) for a, b in zip(o, m)) / len(o)
        res[name] = {"n": len(preds), "ours_per_s": len(preds) / t_o, "math_verify_per_s": len(preds) / t_m,
                     "speedup": t_m / t_o, "verdict_agreement": agree}
    return res


def bench_code() -> dict:
    from rewards import get_reward

    he = rows("humaneval.jsonl")
    comps = [f"```python\n{r['problem']}{r['solution']}\n```" for r in he]
    tests, entry = [r["test"] for r in he], [r["entry_point"] for r in he]
    res = {}
    for workers in (2, 4):
        os.environ["R1LAB_SANDBOX_WORKERS"] = str(workers)
        t = time.perf_counter()
        scores = get_reward("code_tests")(comps, tests=tests, entry_point=entry)
        secs = time.perf_counter() - t
        res[f"workers_{workers}"] = {"programs": len(comps), "programs_per_s": len(comps) / secs,
                                     "passed": sum(scores)}
    return res


def main() -> None:
    out = {"cpus": os.cpu_count(), "math": bench_math(), "code": bench_code()}
    print(f"{'math input':24s} {'n':>5s} {'ours/s':>9s} {'math-verify/s':>14s} {'speed-up':>9s} {'same verdict':>13s}")
    for k, v in out["math"].items():
        print(f"{k:24s} {v['n']:5d} {v['ours_per_s']:9.1f} {v['math_verify_per_s']:14.1f} {v['speedup']:8.1f}x "
              f"{v['verdict_agreement']:12.1%}")
    print(f"\ncode (HumanEval references, {out['cpus']} CPUs):")
    for k, v in out["code"].items():
        print(f"  {k}: {v['programs_per_s']:.1f} programs/s ({v['passed']:.0f}/{v['programs']} passed)")
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "rewards_bench.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
