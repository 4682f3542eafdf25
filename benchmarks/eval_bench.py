"""Evaluation throughput: problems per second with the native rollout engine vs plain HF `model.generate`,
same model, same prompts, same sampling settings, measured side by side in one run.

Engines: `native` (r1lab.rollout native engine: base_model's latent-KV-cache generate for our model),
`hf` (``model.generate`` on the model as r1lab loads it -- for DeepSeekForCausalLM that API is itself routed
to the same fast path), `transformers` (the same checkpoint loaded by plain
``transformers.AutoModelForCausalLM`` -- transformers' own DeepseekV3ForCausalLM and its standard generate;
the reference the speed-up is measured against).

    python benchmarks/eval_bench.py                        # a random-init `tiny` DeepSeek model, CPU
    python benchmarks/eval_bench.py --model runs/.../model --limit 64 --samples 4 --max-new-tokens 256

Without --model it builds the `tiny` preset with random weights and a tokenizer trained on the synthetic
corpus (a random model rarely stops early, so every completion runs to max_new_tokens: a clean, fixed-length
throughput comparison). Prints a table; writes benchmarks/results/eval_bench.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_model(preset: str, out: Path):
    from base_model import DeepSeekForCausalLM, get_preset
    from r1lab.tasks.corpus import synthetic_corpus
    from base_model.tokenizer import train_tokenizer
    tok = train_tokenizer(synthetic_corpus(seed=0, limit=3000), vocab_size=4096, save_dir=out)
    torch.manual_seed(0)
    cfg = get_preset(preset, vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = DeepSeekForCausalLM(cfg)
    model.save_pretrained(out)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: a random-init preset model)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--benchmark", default="gsm8k")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="sequences per generate call")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--engines", default="native,hf,transformers")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eval_bench.json"))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    from rich.console import Console
    from rich.table import Table

    from r1lab.eval.benchmarks import load_benchmark
    from r1lab.eval.generation import make_generator
    from r1lab.eval.runner import EvalConfig, evaluate_model, load_model

    tmp = None
    path = a.model
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="eval_bench_")
        path = str(build_model(a.preset, Path(tmp.name)))
    model, tok = load_model(path)
    device = str(next(model.parameters()).device)
    cfg = EvalConfig(benchmarks=[a.benchmark], samples=a.samples, greedy=False, limit=a.limit,
                     max_new_tokens=a.max_new_tokens, batch_size=a.batch_size, n_boot=0)
    bench = load_benchmark(a.benchmark, limit=a.limit)
    rows = []
    for eng in a.engines.split(","):
        if eng == "transformers":
            from transformers import AutoModelForCausalLM

            ref = AutoModelForCausalLM.from_pretrained(path, dtype=next(model.parameters()).dtype).to(device).eval()
            gen = make_generator("hf", ref, tok)
        else:
            gen = make_generator(eng, model, tok)
        warm = EvalConfig(**{**cfg.model_dump(), "limit": 1, "max_new_tokens": 4})
        evaluate_model(model, tok, warm, benchmarks=[load_benchmark(a.benchmark, limit=1)], generator=gen)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = evaluate_model(model, tok, cfg, benchmarks=[bench], generator=gen)[bench.name]
        dt = time.perf_counter() - t0
        n_tok = res["response_tokens"]["mean"] * len(bench) * a.samples
        rows.append({"engine": eng, "problems": len(bench), "samples": a.samples, "seconds": dt,
                     "problems_per_s": len(bench) / dt, "tokens_per_s": n_tok / dt,
                     "mean_tokens": res["response_tokens"]["mean"], "pass@1": res["pass@1"]["mean"]})
    base = next((r for r in rows if r["engine"] == "transformers"), rows[-1])
    for r in rows:
        r["speedup"] = r["problems_per_s"] / base["problems_per_s"]

    t = Table(title=f"eval throughput: {a.benchmark}, {a.limit} problems x {a.samples} samples, "
                    f"{a.max_new_tokens} new tokens max, {device}")
    for c in ("engine", "seconds", "problems/s", "tokens/s", "mean tokens", f"speed-up vs {base['engine']}"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["engine"], f"{r['seconds']:.1f}", f"{r['problems_per_s']:.3f}", f"{r['tokens_per_s']:.1f}",
                  f"{r['mean_tokens']:.1f}", f"{r['speedup']:.2f}x")
    Console().print(t)
    out = {"model": a.model or f"random-init {a.preset} preset", "model_class": type(model).__name__,
           "speedup_baseline": base["engine"],
           "n_params": sum(p.numel() for p in model.parameters()), "device": device,
           "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
           "settings": vars(a), "results": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.out}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
