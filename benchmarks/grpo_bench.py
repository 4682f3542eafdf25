"""GRPO step time: our DeepSeekForCausalLM (fast latent-KV-cache generate) vs the same checkpoint loaded as
transformers' DeepseekV3ForCausalLM, both inside TRL's GRPOTrainer through r1lab's grpo stage code, same data,
same settings, side by side in one run. Also rollout tokens/s of the rejection-sampling engine (native) for both.

    python benchmarks/grpo_bench.py [--preset tiny] [--steps 3] [--G 4] [--prompts 4] [--max-new 64] [--threads 2]
                                    [--rounds 2]

The two models alternate for `rounds` rounds and each keeps its fastest round (the first round of whichever runs
first also pays one-time warm-ups, e.g. the math verifier's). Run it on an otherwise idle machine: on a 2-core box
another process makes torch's threads spin, and the slow-down is not the same for both models.

The checkpoint has random weights (no EOS is likely), so every completion runs to max_new tokens in both
models: the comparison is per generated token, not per answer. Prints a table and writes
benchmarks/results/grpo_bench.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def make_checkpoint(preset: str, out: Path) -> Path:
    from base_model import DeepSeekForCausalLM, get_preset
    from r1lab.tasks.corpus import synthetic_corpus
    from base_model.tokenizer import train_tokenizer

    tok = train_tokenizer(synthetic_corpus(seed=0, limit=3000), vocab_size=1024 if preset == "nano" else 4096)
    torch.manual_seed(0)
    cfg = get_preset(preset, vocab_size=len(tok))
    cfg.eos_token_id, cfg.pad_token_id = tok.eos_token_id, tok.pad_token_id
    DeepSeekForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def hf_loader(path, dtype=None, **kw):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, **kw)


def grpo_seconds_per_step(ckpt: Path, work: Path, which: str, a) -> dict:
    import r1lab.stages.grpo as G
    from r1lab.stages.base import StageContext

    p = G.Params(data=[{"task": "arithmetic", "n": 64, "difficulty": [1, 2]}],
                 rewards={"math_accuracy": 1.0, "think_format": 0.2}, num_generations=a.G, per_device_train_batch_size=a.prompts * a.G,
                 max_steps=a.steps + 1, max_completion_length=a.max_new, learning_rate=1e-5, save_steps=10_000)
    ctx = StageContext(name=which, kind="grpo", params=p, out_dir=work / which, output_dir=work, seed=0,
                       model_spec=str(ckpt))
    orig = G.load_model
    if which == "transformers":
        G.load_model = hf_loader
    try:
        trainer, _, _ = G.build_trainer(ctx, p, seed=0)
    finally:
        G.load_model = orig
    times = []

    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    trainer.add_callback(Timer())
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    steady = times[1:] or times   # the first step pays one-time setup
    return {"model_class": type(trainer.model).__name__, "s_per_step": sum(steady) / len(steady),
            "steps_timed": len(steady), "mean_completion_length": sum(lengths) / max(len(lengths), 1)}


def rollout_tokens_per_s(ckpt: Path, which: str, a) -> dict:
    from r1lab.rollout import SamplingParams, get_engine
    from r1lab.loading import load_model, load_tokenizer
    from r1lab.train.sampling import chat_prompt_ids
    from r1lab.tasks import task_rows

    tok = load_tokenizer(str(ckpt))
    model = (load_model if which == "ours" else hf_loader)(str(ckpt)).eval()
    prompts = [chat_prompt_ids(tok, [{"role": "user", "content": r["prompt"]}])
               for r in task_rows("arithmetic", n=a.prompts * 2, seed=0)]
    engine = get_engine("native", model, tok)
    sp = SamplingParams(n=a.G, temperature=0.7, top_p=0.95, max_new_tokens=a.max_new, seed=0)
    engine.generate(prompts[:1], SamplingParams(n=1, max_new_tokens=4))   # warm-up
    t = time.perf_counter()
    with torch.no_grad():
        out = engine.generate(prompts, sp)
    dt = time.perf_counter() - t
    n = sum(len(s.token_ids) for ss in out for s in ss)
    return {"model_class": type(model).__name__, "tokens": n, "seconds": dt, "tokens_per_s": n / dt}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--G", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new", dest="max_new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ckpt = make_checkpoint(a.preset, d / "ckpt")
        res = {"settings": vars(a), "device": "cuda" if torch.cuda.is_available() else "cpu", "grpo": {}, "rollout": {}}
        for r in range(a.rounds):
            for which in ("ours", "transformers"):
                g = grpo_seconds_per_step(ckpt, d / f"round{r}", which, a)
                ro = rollout_tokens_per_s(ckpt, which, a)
                print(f"round {r + 1}/{a.rounds} {which}: {g['s_per_step']:.3f} s/step, {ro['tokens_per_s']:.0f} rollout tok/s")
                if which not in res["grpo"] or g["s_per_step"] < res["grpo"][which]["s_per_step"]:
                    res["grpo"][which] = g
                if which not in res["rollout"] or ro["tokens_per_s"] > res["rollout"][which]["tokens_per_s"]:
                    res["rollout"][which] = ro
    g, r = res["grpo"], res["rollout"]
    res["grpo_speedup"] = g["transformers"]["s_per_step"] / g["ours"]["s_per_step"]
    res["rollout_speedup"] = r["ours"]["tokens_per_s"] / r["transformers"]["tokens_per_s"]
    print(f"\nGRPO step ({a.preset}, G={a.G}, {a.prompts} prompts/step, {a.max_new} new tokens, {a.threads} threads)")
    print(f"{'model':<24}{'s/step':>10}{'mean len':>10}{'rollout tok/s':>16}")
    for which in ("ours", "transformers"):
        print(f"{g[which]['model_class']:<24}{g[which]['s_per_step']:>10.2f}{g[which]['mean_completion_length']:>10.1f}"
              f"{r[which]['tokens_per_s']:>16.1f}")
    print(f"speed-up: GRPO step {res['grpo_speedup']:.2f}x, rollout {res['rollout_speedup']:.2f}x")
    default = (a.preset, a.G, a.prompts, a.max_new) == ("tiny", 4, 4, 64)
    out = ROOT / "benchmarks" / "results" / ("grpo_bench.json" if default else
                                             f"grpo_bench_{a.preset}_G{a.G}_P{a.prompts}_{a.max_new}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
