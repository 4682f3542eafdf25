"""Pretraining speed and FP8 accuracy, measured side by side in one run.

1. Training-step throughput (forward + backward + AdamW step, tokens/s) of our DeepSeekForCausalLM vs transformers'
   DeepseekV3ForCausalLM with the same config, the same weights (loaded from our save_pretrained) and the same batch.
   Ours is measured with MTP off (same work as transformers) and with MTP on (what pretraining runs).
2. Model FLOP/s as a fraction of this machine's measured fp32 matmul peak (same thread count, same run). Model FLOPs
   are the matmul FLOPs of one training step of our model as counted by torch.utils.flop_counter (fwd + bwd, all
   GEMMs including attention and the head; elementwise ops not counted). transformers runs the same GEMMs and is
   credited with the same count (the counter does not see its fused torch._grouped_mm experts).
3. FP8 vs fp32: the same short pretraining run (preset, seed, data, steps) with and without --fp8; relative gap of
   the final loss (mean of the last 10 logged steps).

    python benchmarks/pretrain_bench.py [--preset tiny] [--threads 1] [--fp8-steps 80]
Writes benchmarks/results/pretrain_bench.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """Best-of fp32 GEMM FLOP/s (n x n x n), the machine's practical peak for our threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def train_step_fn(model, opt, x):
    def step():
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()
    return step


def count_flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


def time_steps(steps: dict, reps: int) -> dict[str, float]:
    """Median seconds per step, the candidates interleaved so machine noise hits all of them alike."""
    times = {k: [] for k in steps}
    for _ in range(reps):
        for k, fn in steps.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def throughput(args) -> dict:
    from transformers import DeepseekV3ForCausalLM

    from base_model import DeepSeekForCausalLM, get_preset

    cfg = get_preset(args.preset, vocab_size=args.vocab)
    torch.manual_seed(0)
    ours_mtp = DeepSeekForCausalLM(cfg).train()
    with tempfile.TemporaryDirectory() as d:
        ours_mtp.save_pretrained(d)
        hf = DeepseekV3ForCausalLM.from_pretrained(d).train()
        ours = DeepSeekForCausalLM.from_pretrained(d, mtp_loss_weight=0.0).train()
    x = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():   # same weights -> same logits (sanity: we compare equal models)
        ours.eval(), hf.eval()
        diff = (ours(x).logits - hf(x).logits).abs().max().item()
        ours.train(), hf.train()
    steps = {name: train_step_fn(m, torch.optim.AdamW(m.parameters(), lr=1e-4), x)
             for name, m in (("ours", ours), ("ours_mtp", ours_mtp), ("transformers", hf))}
    for fn in steps.values():   # warm up
        fn()
    flops = {k: count_flops(fn) for k, fn in steps.items()}
    sec = time_steps(steps, args.reps)
    peak = matmul_peak()
    tokens = args.batch * args.seq
    rows = {}
    for k in steps:
        # model FLOPs of one step: the same model does the same GEMMs, so transformers is credited with our count
        # (FlopCounterMode misses its fused torch._grouped_mm experts; its own count is kept as counted_flops)
        model_flops = flops["ours_mtp"] if k == "ours_mtp" else flops["ours"]
        rows[k] = {"step_s": sec[k], "tokens_per_s": tokens / sec[k], "counted_flops_per_step": flops[k],
                   "matmul_flops_per_step": model_flops, "model_flops_per_s": model_flops / sec[k],
                   "mfu_vs_measured_peak": model_flops / sec[k] / peak}
    return {"preset": args.preset, "batch": args.batch, "seq": args.seq, "vocab": args.vocab,
            "params": sum(p.numel() for p in ours_mtp.parameters()), "logits_max_abs_diff": diff,
            "matmul_peak_flops": peak, "rows": rows,
            "speedup_vs_transformers": rows["transformers"]["step_s"] / rows["ours"]["step_s"]}


def fp8_gap(args) -> dict:
    from base_model.pretrain import PretrainConfig, pretrain
    from r1lab.tasks.corpus import synthetic_factory

    res = {}
    with tempfile.TemporaryDirectory() as d:
        for fp8 in (False, True):
            losses: list[float] = []
            cfg = PretrainConfig.for_preset(args.preset, out=f"{d}/{'fp8' if fp8 else 'fp32'}", fp8=fp8, seed=0,
                                            max_steps=args.fp8_steps, warmup_steps=max(1, args.fp8_steps // 10),
                                            log_every=1, ckpt_every=10 ** 9, progress=False, sample_prompts=[],
                                            tokenizer=(f"{d}/fp32/tokenizer" if fp8 else None))
            t = time.perf_counter()
            pretrain(cfg, callback=lambda m, s: losses.append(m["main_loss"]), docs=synthetic_factory(seed=0))
            res["fp8" if fp8 else "fp32"] = {"final_loss": statistics.mean(losses[-10:]), "first_loss": losses[0],
                                             "wall_s": time.perf_counter() - t}
    a, b = res["fp32"]["final_loss"], res["fp8"]["final_loss"]
    res["relative_gap"] = (b - a) / a
    res["steps"] = args.fp8_steps
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fp8-steps", type=int, default=80)
    ap.add_argument("--skip-fp8", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json", default="pretrain_bench.json", help="file name under benchmarks/results/")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                       "torch": torch.__version__, "cuda": torch.cuda.is_available()}}
    if not args.skip_throughput:
        out["throughput"] = tp = throughput(args)
        _print_throughput(tp, args)
    if not args.skip_fp8:
        out["fp8_vs_fp32"] = g = fp8_gap(args)
        print(f"\nFP8 vs fp32, preset {args.preset}, {g['steps']} steps, seed 0: final loss fp32 "
              f"{g['fp32']['final_loss']:.4f}, fp8 {g['fp8']['final_loss']:.4f}, relative gap "
              f"{100 * g['relative_gap']:+.2f}% (wall {g['fp32']['wall_s']:.0f}s vs {g['fp8']['wall_s']:.0f}s)")
    path = ROOT / "benchmarks" / "results" / args.json
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


def _print_throughput(tp, args):
    print(f"\ntraining step, preset {tp['preset']} ({tp['params'] / 1e6:.2f}M params), batch {args.batch}x{args.seq}, "
          f"{args.threads} thread(s); measured fp32 matmul peak {tp['matmul_peak_flops'] / 1e9:.1f} GFLOP/s")
    print(f"{'model':<16}{'ms/step':>10}{'tokens/s':>11}{'GFLOP/step':>12}{'GFLOP/s':>10}{'of peak':>9}")
    for k, r in tp["rows"].items():
        print(f"{k:<16}{1000 * r['step_s']:>10.0f}{r['tokens_per_s']:>11.0f}{r['matmul_flops_per_step'] / 1e9:>12.2f}"
              f"{r['model_flops_per_s'] / 1e9:>10.1f}{100 * r['mfu_vs_measured_peak']:>8.0f}%")
    print(f"ours vs transformers (same config, weights, batch; MTP off): {tp['speedup_vs_transformers']:.2f}x "
          f"(logits max |diff| {tp['logits_max_abs_diff']:.1e})")


if __name__ == "__main__":
    main()
