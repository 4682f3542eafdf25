"""rewards.math_accuracy vs math-verify (called exactly as `trl.rewards.accuracy_reward` calls it), on two sets.

1. The labelled tricky-equivalence table, tests/data/math_equiv_pairs.jsonl (205 pairs; labels are what a
   careful human grader would say). Accuracy per category, and every pair where the two disagree.
2. The peer-suite set, benchmarks/data/math_peer_suites.jsonl: the (gold, completion, equal?) cases of the
   public test suites of Math-Verify, lighteval, NeMo-Skills, hendrycks MATH, Qwen2.5-Math and TRL (built
   by benchmarks/data/build_math_peer_suites.py; each row cites its file and test). `label` is what the peer's
   suite asserts. How the completion was made from the peer's string (`wrap`): a string that already has a
   final-answer marker (`\\boxed`, "answer is", ...) or is prose is given verbatim; a bare answer string
   (the peer's test compares it after extraction: `$\\frac13$`, `28 pct`) is given as `\\boxed{...}` with
   its `$` dropped. Where we judge the peer's label wrong, the row has `our_label` and `why`; both scores
   are reported ("suite labels" and "our labels").

math-verify gets the gold as TRL's accuracy_reward does (`solution=[gold]`; a bare gold is wrapped in
`$...$` so that it parses; a gold it cannot parse gives None, counted as "not equal").
Also times both on the MATH-500 reference solutions (answers/s). Prints tables and writes
benchmarks/results/math_verify_bench.json.

    python benchmarks/math_verify_bench.py [table] [peers] [speed]   # all three by default
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAIRS = ROOT / "tests" / "data" / "math_equiv_pairs.jsonl"
PEERS = ROOT / "benchmarks" / "data" / "math_peer_suites.jsonl"
MATH500 = ROOT / "r1lab" / "data" / "benchmarks" / "math500_test.jsonl"


def load_pairs() -> list[dict]:
    return [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]


def judge_ours(pairs: list[dict], key: str = "pred") -> tuple[list[bool], float]:
    from rewards.math import math_accuracy

    math_accuracy(["\\boxed{1}"], answer=["x+1"])  # start the worker pool outside the timing
    t = time.perf_counter()
    scores = math_accuracy([p[key] for p in pairs], answer=[p["gold"] for p in pairs])
    return [s == 1.0 for s in scores], time.perf_counter() - t


def _trl_solution(gold: str) -> str:
    """A bare gold wrapped in `$...$` (math-verify reads only delimited or boxed LaTeX); others as they are."""
    return gold if re.search(r"\$|\\\(|\\\[|\\boxed", gold) else f"${gold}$"


def judge_math_verify(pairs: list[dict], key: str = "pred") -> tuple[list[bool], float]:
    from trl.rewards import accuracy_reward

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    t = time.perf_counter()
    out = []
    for p in pairs:
        r = accuracy_reward([[{"role": "assistant", "content": p[key]}]], solution=[_trl_solution(p["gold"])])[0]
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


def table_section() -> dict:
    pairs = load_pairs()
    ours, t_ours = judge_ours(pairs)
    mv, t_mv = judge_math_verify(pairs)
    mv_default, _ = judge_math_verify_default(pairs)
    acc_d = sum(m == p["equal"] for p, m in zip(pairs, mv_default)) / len(pairs)
    cats = table(pairs, ours, mv)
    acc_o = sum(o == p["equal"] for p, o in zip(pairs, ours)) / len(pairs)
    acc_m = sum(m == p["equal"] for p, m in zip(pairs, mv)) / len(pairs)
    print("== 1. the labelled equivalence table (tests/data/math_equiv_pairs.jsonl)")
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
    return {"pairs": len(pairs), "accuracy_ours": acc_o, "accuracy_math_verify": acc_m,
            "accuracy_math_verify_default_parse": acc_d, "seconds_ours": t_ours,
            "seconds_math_verify": t_mv, "per_category": cats, "disagreements": dis, "ours_wrong": wrong}


def load_peers() -> list[dict]:
    return [json.loads(line) for line in PEERS.read_text().splitlines() if line.strip()]


def _scores(rows, verdicts, key) -> tuple[int, float]:
    right = sum(v == r.get(key, r["label"]) for r, v in zip(rows, verdicts))
    return right, right / len(rows) if rows else 0.0


def peer_section() -> dict:
    rows = load_peers()
    ours, t_ours = judge_ours(rows, "completion")
    mv, t_mv = judge_math_verify(rows, "completion")
    groups = defaultdict(list)
    for k, r in enumerate(rows):
        groups[r["source"]].append(k)
    groups["ALL"] = list(range(len(rows)))
    groups["math-verify + lighteval"] = groups["math-verify"] + groups["lighteval"]
    print("\n== 2. the peer-suite set (benchmarks/data/math_peer_suites.jsonl)")
    print(f"{'suite':26s} {'cases':>5s} | {'suite labels: ours':>18s} {'math-verify':>11s} | "
          f"{'our labels: ours':>16s} {'math-verify':>11s}")
    per = {}
    for name, idx in groups.items():
        sub = [rows[k] for k in idx]
        o, m = [ours[k] for k in idx], [mv[k] for k in idx]
        (o_n, o_s), (m_n, m_s) = _scores(sub, o, "label"), _scores(sub, m, "label")
        (oo_n, oo_s), (mo_n, mo_s) = _scores(sub, o, "our_label"), _scores(sub, m, "our_label")
        per[name] = {"cases": len(sub), "suite_labels": {"ours": o_s, "math_verify": m_s, "ours_right": o_n,
                                                          "math_verify_right": m_n},
                     "our_labels": {"ours": oo_s, "math_verify": mo_s, "ours_right": oo_n,
                                    "math_verify_right": mo_n}}
        print(f"{name:26s} {len(sub):5d} | {o_s:18.1%} {m_s:11.1%} | {oo_s:16.1%} {mo_s:11.1%}")
    print(f"time: ours {t_ours:.2f}s, math-verify {t_mv:.2f}s")
    relabelled = [{k: r[k] for k in ("id", "file", "test", "gold", "completion", "label", "our_label", "why")}
                  for r in rows if "our_label" in r]
    print(f"\n{len(relabelled)} peer labels we judge wrong (scored both ways above):")
    for r in relabelled:
        print(f"  [{r['id']}] suite={r['label']!s:5} ours={r['our_label']!s:5} gold={r['gold'][:40]!r} "
              f"completion={r['completion'][-50:]!r}: {r['why']}")
    wrong = [dict(id=r["id"], label=r.get("our_label", r["label"]), ours=o, math_verify=m, gold=r["gold"][-80:],
                  completion=r["completion"][-120:]) for r, o, m in zip(rows, ours, mv) if o != r.get("our_label", r["label"])]
    print(f"\nours wrong (by our labels) on {len(wrong)}:")
    for w in wrong:
        print(f"  [{w['id']}] label={w['label']!s:5} mv={w['math_verify']!s:5} gold={w['gold'][-40:]!r} "
              f"completion={w['completion'][-60:]!r}")
    return {"cases": len(rows), "per_suite": per, "relabelled": relabelled, "ours_wrong": wrong,
            "seconds_ours": t_ours, "seconds_math_verify": t_mv}


def speed_section() -> dict:
    """Answers per second on the MATH-500 reference solutions vs their golds (both graders, same inputs)."""
    m5 = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
    rows = [{"pred": r["solution"], "gold": r["answer"]} for r in m5]
    ours, t_ours = judge_ours(rows)
    mv, t_mv = judge_math_verify(rows)
    res = {"n": len(rows), "ours_right": sum(ours), "math_verify_right": sum(mv), "ours_per_s": len(rows) / t_ours,
           "math_verify_per_s": len(rows) / t_mv, "speedup": t_mv / t_ours}
    print(f"\n== 3. MATH-500 solutions: ours {sum(ours)}/{len(rows)} at {res['ours_per_s']:.0f} answers/s, "
          f"math-verify {sum(mv)}/{len(rows)} at {res['math_verify_per_s']:.0f}/s: {res['speedup']:.1f}x")
    return res


def main() -> None:
    which = set(sys.argv[1:]) or {"table", "peers", "speed"}
    out_path = ROOT / "benchmarks" / "results" / "math_verify_bench.json"
    out = json.loads(out_path.read_text()) if out_path.exists() and which != {"table", "peers", "speed"} else {}
    if "table" in which:
        out.update(table_section())
    if "peers" in which:
        out["peer_suites"] = peer_section()
    if "speed" in which:
        out["math500_speed"] = speed_section()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
