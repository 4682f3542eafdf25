"""DeepSeek-native RL, side by side: the main job's GRPO stage (pipelines/r1_tiny.yaml's grpo_zero, from its cold
start) run four ways with the same seed and the same rollout budget, then evaluated on held-out problems.

    python benchmarks/rl_native_bench.py [--base runs/r1_tiny_main] [--out runs/rl_native] [--budget 2560]
        [--variants baseline,resample,r3,mtp] [--steps-per-generation 2] [--limit 100] [--samples 8] [--threads 1]

  baseline  the stage as the main job runs it
  resample  + DAPO dynamic sampling with re-sampling (dynamic_sampling: resample, 3 rounds at most)
  r3        + router replay (the training forward uses the rollout's experts)
  mtp       + MTP-drafted rollouts (speculative sampling with the MTP head, refreshed each round)

Every variant logs routing drift (one more forward a step, the same cost for all) and trains two optimizer steps
per generation (steps_per_generation 2), so the policy ratio and its clipping are not trivially 1 and 0.
`--base` must hold the main job's pretrain and cold_start (done); they are copied, not rerun (their fingerprints
match). Columns: seconds per optimizer step, rollout tokens/s, flat-group share (first round), routing drift (share of
completion tokens whose experts differ in some layer between rollout and a training forward without replay),
clip fraction (TRL's clip_ratio/region_mean), policy-ratio std, MTP acceptance, held-out pass@1 and pass@8 (test
split, levels 1-3, `--samples` samples at temperature 0.6) with the paired difference to baseline. Prints a table
and writes benchmarks/results/rl_native_bench.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "baseline": {},
    "resample": {"dynamic_sampling": "resample", "max_resample_tries": 3},
    "r3": {"dynamic_sampling": "resample", "max_resample_tries": 3, "router_replay": True},
    "mtp": {"dynamic_sampling": "resample", "max_resample_tries": 3, "router_replay": True, "mtp_rollouts": True},
}
METRICS = {"tok_s": "rollout/tokens_per_s", "flat": "groups/flat", "drift": "router/drift_tokens",
           "clip": "clip_ratio/region_mean", "ratio_std": "policy/ratio_std", "mtp_accept": "rollout/mtp_acceptance",
           "tries": "dynamic_sampling/tries", "logprob_diff": "rollout/logprob_diff_mean"}


def variant_yaml(base_yaml: Path, out_dir: Path, keys: dict, budget: int, spg: int) -> dict:
    cfg = yaml.safe_load(base_yaml.read_text())
    cfg["name"] = "r1_tiny"                          # the same stage fingerprints as the main job's
    cfg["output_dir"] = str(out_dir)
    stages = {s["name"]: s for s in cfg["stages"]}
    grpo = dict(stages["grpo_zero"])
    grpo.update(keys, rollout_budget=budget, max_steps=10_000, save_steps=10_000, steps_per_generation=spg,
                log_routing_drift=True, log_rollout_mismatch=True)
    cfg["stages"] = [stages["pretrain"], stages["cold_start"], grpo]
    return cfg


def run_variant(name: str, a) -> dict:
    out = Path(a.out) / name
    out.mkdir(parents=True, exist_ok=True)
    for stage in ("pretrain", "cold_start"):
        if not (out / stage).exists():
            shutil.copytree(Path(a.base) / stage, out / stage)
    if not (out / ".r1lab-run").exists():
        shutil.copy(Path(a.base) / ".r1lab-run", out / ".r1lab-run")
    cfg = variant_yaml(ROOT / "pipelines/r1_tiny.yaml", out, VARIANTS[name], a.budget, a.steps_per_generation)
    path = out / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.time()
    log = open(out / "run.log", "w")
    rc = subprocess.call([sys.executable, "-m", "r1lab.cli", "run", str(path), "--threads", str(a.threads)],
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if rc:
        raise SystemExit(f"{name}: r1lab run failed (exit {rc}); see {out / 'run.log'}")
    done = json.loads((out / "grpo_zero/done.json").read_text())
    rows = [json.loads(line) for line in (out / "grpo_zero/metrics.jsonl").read_text().splitlines() if line.strip()]
    res = {"wall_s": time.time() - t0, "stage_s": done.get("seconds"), "steps": done["metrics"]["steps"],
           "rollouts": done["metrics"].get("rollouts"), "model": str(out / "grpo_zero/model")}
    res["s_per_step"] = res["stage_s"] / max(res["steps"], 1)
    for key, metric in METRICS.items():
        vals = [r[metric] for r in rows if r.get(metric) is not None]
        res[key] = sum(vals) / len(vals) if vals else None
    return res


def evaluate(models: dict, a, out: Path, tokenizer: str | None = None) -> dict:
    """One `r1lab eval` over all models (same problems, same seeds): pass@1, pass@8 and per-problem pass@1."""
    spec = ",".join(f"{k}={v}" for k, v in models.items())
    extra = ["--tokenizer", tokenizer] if tokenizer else []
    subprocess.check_call([sys.executable, "-m", "r1lab.cli", "eval", *extra, "--model", spec, "--benchmarks",
                           "task:arithmetic@1-3", "--samples", str(a.samples), "--limit", str(a.limit),
                           "--max-new-tokens", "160", "--out", str(out), "--threads", str(a.threads), "--quiet"],
                          cwd=ROOT)
    res = json.loads((out / "results.json").read_text())["models"]
    return {k: next(iter(v["benchmarks"].values())) for k, v in res.items()}


def summarize(b: dict, samples: int) -> dict:
    return {"pass@1": b["pass@1"]["mean"], "pass@1_se": b["pass@1"]["stderr"],
            f"pass@{samples}": b["pass@k"].get(str(samples), b["pass@k"].get(samples)),
            "tokens": (b.get("response_tokens") or {}).get("mean")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="runs/r1_tiny_main")
    ap.add_argument("--out", default="runs/rl_native")
    ap.add_argument("--budget", type=int, default=2560, help="completions generated per variant")
    ap.add_argument("--variants", default="baseline,resample,r3,mtp")
    ap.add_argument("--steps-per-generation", type=int, default=2)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/rl_native_bench.json"))
    a = ap.parse_args()
    from r1lab.eval.metrics import paired_difference

    names = a.variants.split(",")
    runs = {}
    for n in names:
        print(f"== {n}", flush=True)
        runs[n] = run_variant(n, a)
        print(json.dumps(runs[n]), flush=True)
    models = {"cold_start": str(Path(a.base) / "cold_start/model"), **{n: runs[n]["model"] for n in names}}
    ev = evaluate(models, a, Path(a.out) / "eval")
    k = a.samples
    print(f"\n| variant | s/step | rollout tok/s | flat groups | routing drift | clip frac | ratio std | MTP accept | "
          f"rollouts | steps | pass@1 | pass@{k} | Δ pass@1 vs baseline |")
    print("|---|" + "---|" * 12)
    table = {}
    for n in ["cold_start"] + names:
        s = summarize(ev[n], k)
        r = runs.get(n, {})
        d = paired_difference(ev[names[0]]["per_problem"], ev[n]["per_problem"]) if n in runs and n != names[0] else None
        table[n] = {**r, **s, "paired_vs_baseline": d,
                    "paired_vs_cold_start": paired_difference(ev["cold_start"]["per_problem"], ev[n]["per_problem"])}
        f = lambda v, p=3: "–" if v is None else (f"{v:.{p}g}" if isinstance(v, float) else str(v))  # noqa: E731
        print(f"| {n} | {f(r.get('s_per_step'))} | {f(r.get('tok_s'))} | {f(r.get('flat'), 2)} | {f(r.get('drift'), 2)} | "
              f"{f(r.get('clip'), 2)} | {f(r.get('ratio_std'), 2)} | {f(r.get('mtp_accept'), 2)} | {r.get('rollouts', '–')} | "
              f"{r.get('steps', '–')} | {100 * s['pass@1']:.1f} ± {100 * s['pass@1_se']:.1f} | "
              f"{100 * (s[f'pass@{k}'] or 0):.1f} | "
              + (f"{100 * d['mean']:+.1f} ± {100 * d['stderr']:.1f}" if d else "–") + " |")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"args": vars(a), "variants": table}, indent=2))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
