"""Labelled tricky-equivalence table: rewards.math_accuracy vs math-verify (as TRL's accuracy_reward calls it).

Both judge the same (gold, completion) pairs from tests/data/math_equiv_pairs.jsonl; the labels are what a
careful human grader would say. math-verify runs exactly as `trl.rewards.accuracy_reward` runs it (gold
wrapped in `$...$` so that it parses; a gold it cannot parse gives None, counted as "not equal").
Prints accuracy per category side by side and every pair where the two disagree, and writes
benchmarks/results/math_verify_bench.json.

    python benchmarks/math_verify_bench.py
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAIRS = ROOT / "tests" / "data" / "math_equiv_pairs.jsonl"


def load_pairs() -> list[dict]:
    return [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]


def judge_ours(pairs: list[dict]) -> tuple[list[bool], float]:
    from rewards.math import math_accuracy

    math_accuracy(["\\boxed{1}"], answer=["x+1"])  # start the worker pool outside the timing
    t = time.perf_counter()
    scores = math_accuracy([p["pred"] for p in pairs], answer=[p["gold"] for p in pairs])
    return [s == 1.0 for s in scores], time.perf_counter() - t


def judge_math_verify(pairs: list[dict]) -> tuple[list[bool], float]:
    from trl.rewards import accuracy_reward

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    t = time.perf_counter()
    out = []
    for p in pairs:
        r = accuracy_reward([[{"role": "assistant", "content": p["pred"]}]], solution=[f"${p['gold']}$"])[0]
        out.append(r == 1.0)
    return out, time.perf_counter() - t


def judge_math_verify_default(pairs: list[dict]) -> tuple[list[bool], float]:
    """math-verify's own defaults (`parse(text)` both sides, extraction without anchors allowed)."""
    from math_verify import parse, verify

    t = time.perf_counter()
    out = [bool(verify(parse(f"${p['gold']}$"), parse(p["pred"]))) for p in pairs]
    return out, time.perf_counter() - t


def table(pairs, ours, mv) -> dict:
    per = defaultdict(lambda: [0, 0, 0])
    for p, o, m in zip(pairs, ours, mv):
        c = per[p["category"]]
        c[0] += 1
        c[1] += o == p["equal"]
        c[2] += m == p["equal"]
    return {k: {"pairs": v[0], "ours": v[1] / v[0], "math_verify": v[2] / v[0]} for k, v in sorted(per.items())}


def main() -> None:
    pairs = load_pairs()
    ours, t_ours = judge_ours(pairs)
    mv, t_mv = judge_math_verify(pairs)
    mv_default, _ = judge_math_verify_default(pairs)
    acc_d = sum(m == p["equal"] for p, m in zip(pairs, mv_default)) / len(pairs)
    cats = table(pairs, ours, mv)
    acc_o = sum(o == p["equal"] for p, o in zip(pairs, ours)) / len(pairs)
    acc_m = sum(m == p["equal"] for p, m in zip(pairs, mv)) / len(pairs)
    print(f"{'category':32s} {'pairs':>5s} {'ours':>7s} {'math-verify':>11s}")
    for k, v in cats.items():
        print(f"{k:32s} {v['pairs']:5d} {v['ours']:7.1%} {v['math_verify']:11.1%}")
    print(f"{'ALL':32s} {len(pairs):5d} {acc_o:7.1%} {acc_m:11.1%}")
    print(f"(math-verify with its default parse() on both sides instead of TRL's settings: {acc_d:.1%})")
    print(f"time: ours {t_ours:.2f}s (batched, process pool), math-verify {t_mv:.2f}s (sequential, as in TRL)")
    dis = [dict(p, ours=o, math_verify=m) for p, o, m in zip(pairs, ours, mv) if o != m]
    wrong = [dict(p, ours=o) for p, o in zip(pairs, ours) if o != p["equal"]]
    print(f"\n{len(dis)} disagreements (label = careful grader):")
    for d in dis:
        print(f"  [{d['id']}] label={d['equal']!s:5} ours={d['ours']!s:5} mv={d['math_verify']!s:5} "
              f"gold={d['gold']!r} pred={d['pred'][-70:]!r}")
    print(f"\nours wrong on {len(wrong)}: " + ", ".join(w["id"] for w in wrong))
    out = {"pairs": len(pairs), "accuracy_ours": acc_o, "accuracy_math_verify": acc_m,
           "accuracy_math_verify_default_parse": acc_d, "seconds_ours": t_ours,
           "seconds_math_verify": t_mv, "per_category": cats, "disagreements": dis, "ours_wrong": wrong}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "math_verify_bench.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
