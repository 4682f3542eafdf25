"""RL that improves the skill: held-out accuracy against rollouts, from GRPO's checkpoints.

    python benchmarks/rl_skill_curve.py [--run runs/rl_skill] [--start cold_start_worked] [--stage grpo]
        [--limit 100] [--samples 8] [--threads 1]

Runs after `r1lab run benchmarks/configs/rl_skill.yaml` (or any run with a GRPO stage saving checkpoints). Evaluates
the start model and every checkpoint of the GRPO stage (plus its final model) in one `r1lab eval` call (same problems,
same per-problem seeds), on the test split of arithmetic levels 1-3: pass@1 with its standard error, pass@k (k =
samples), greedy accuracy and response length; and the paired difference of pass@1 against the start model (per
problem, the start model's variance shared). pass@1 rising toward a flat pass@k is sharpening; pass@k rising too is
a real gain. Rollouts at each checkpoint come from the stage's `rollout/total` log. Prints a table, writes
benchmarks/results/rl_skill_curve.json and an R1-Zero-style plot (held-out accuracy and response length over RL
steps) to benchmarks/results/rl_skill_curve.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/rl_skill")
    ap.add_argument("--start", default="cold_start_worked")
    ap.add_argument("--stage", default="grpo")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--batch", type=int, default=64, help="completions trained per step (when rollout/total is not logged)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/rl_skill_curve.json"))
    a = ap.parse_args()
    from rl_native_bench import evaluate, summarize

    from r1lab.eval.metrics import paired_difference

    run = Path(a.run)
    stage = run / a.stage
    logs = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rollouts_at, total = {}, 0
    for r in logs:                     # rollout/total when logged; else the re-sampling ratio × the trained batch
        if r.get("step") is None or "groups/flat" not in r:
            continue
        total = int(r["rollout/total"]) if r.get("rollout/total") is not None else \
            total + round(r.get("dynamic_sampling/rollouts", 1.0) * a.batch)
        rollouts_at[int(r["step"])] = total
    points = {0: run / a.start / "model"}
    for ck in sorted((stage / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        if (ck / "config.json").exists():
            points[int(ck.name.split("-")[1])] = ck
    done = json.loads((stage / "done.json").read_text()) if (stage / "done.json").exists() else None
    if done and (stage / "model/config.json").exists():
        points[int(done["metrics"]["steps"])] = stage / "model"
    models = {f"step{s}": str(p) for s, p in sorted(points.items())}
    tok = str(run / a.start / "model")
    ev = evaluate(models, a, run / "curve_eval", tokenizer=tok)
    k = a.samples
    rows = []
    base = ev["step0"]["per_problem"]
    print(f"| step | rollouts | pass@1 | pass@{k} | greedy | response tokens | Δ pass@1 vs start (paired) |")
    print("|---|---|---|---|---|---|---|")
    for name in models:
        step = int(name[4:])
        s = summarize(ev[name], k)
        d = paired_difference(base, ev[name]["per_problem"])
        ro = rollouts_at.get(step, 0 if step == 0 else None)
        rows.append({"step": step, "rollouts": ro, **s, "greedy": ev[name].get("greedy"), "paired_vs_start": d})
        print(f"| {step} | {ro if ro is not None else '–'} | {100 * s['pass@1']:.1f} ± {100 * s['pass@1_se']:.1f} | "
              f"{100 * (s[f'pass@{k}'] or 0):.1f} | {100 * (ev[name].get('greedy') or 0):.0f} | {s['tokens']:.0f} | "
              f"{100 * d['mean']:+.1f} ± {100 * d['stderr']:.1f} |")
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "points": rows}, indent=2))
    plot(rows, out.with_suffix(".png"), k)
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(rows, path, k):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.errorbar(steps, [100 * r["pass@1"] for r in rows], yerr=[100 * r["pass@1_se"] for r in rows], marker="o",
               label="pass@1")
    a.plot(steps, [100 * (r[f"pass@{k}"] or 0) for r in rows], marker="s", label=f"pass@{k}")
    a.set_xlabel("GRPO step"); a.set_ylabel("held-out accuracy (%)"); a.legend(fontsize=8)
    a.set_title("held-out arithmetic L1-3 (test split)")
    b.plot(steps, [r["tokens"] for r in rows], marker="o", color="C1")
    b.set_xlabel("GRPO step"); b.set_ylabel("mean response length (tokens)"); b.set_title("response length")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
