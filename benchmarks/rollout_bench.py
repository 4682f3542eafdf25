"""Rollout throughput on CPU: native (base_model.generate, our latent-cache decode) vs vLLM-CPU (VLLMEngine, via
the .venv-vllm worker unless vllm imports here) vs transformers' `generate` (DeepseekV3ForCausalLM), on the
same checkpoint, greedy, EOS ignored so every row makes exactly --new tokens.

    python benchmarks/rollout_bench.py                      # tiny-576, batches 8 64 256, 160 new tokens
    python benchmarks/rollout_bench.py --preset tiny --batches 8 64

Prints a table and writes benchmarks/results/rollout_bench.json. vLLM's start-up (engine build, KV cache) is
reported apart from its tokens/s; each engine gets one warm-up call first.

MTP speculative decoding against plain decoding on a trained checkpoint (the native engine, side by side in one
process; task prompts through the chat template, n samples each, EOS honoured, sampling at --temperature):

    python benchmarks/rollout_bench.py --mtp --model /work/runs/r1_tiny_main/cold_start/model \
        --batches 64 --n 8 --temperature 1 --engines --out benchmarks/results/rollout_bench_mtp.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_checkpoint(preset: str, out: Path) -> Path:
    import torch

    from base_model import DeepSeekForCausalLM, get_preset

    from base_model.tokenizer import train_tokenizer
    from r1lab.tasks import TASKS, task_rows

    texts = [r["prompt"] + "\n" + r["solution"] for t in TASKS for r in task_rows(t, n=200, seed=1)]
    tok = train_tokenizer(texts, vocab_size=4096, save_dir=out)
    torch.manual_seed(0)
    model = DeepSeekForCausalLM(get_preset(preset, vocab_size=len(tok), eos_token_id=tok.eos_token_id,
                                           pad_token_id=tok.pad_token_id)).eval()
    model.save_pretrained(out)
    return out


def prompts_for(batch: int, vocab: int, length: int, seed: int = 0) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    return [[rng.randrange(2, vocab) for _ in range(length)] for _ in range(batch)]


def bench_native(path, batches, new, plen, vocab):
    import torch

    from base_model import DeepSeekForCausalLM
    from base_model.generate import generate

    model = DeepSeekForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    generate(model, prompts_for(2, vocab, plen), max_new_tokens=4, eos_token_id=None)
    out = {}
    for b in batches:
        ps = prompts_for(b, vocab, plen)
        t = time.perf_counter()
        res = generate(model, ps, max_new_tokens=new, eos_token_id=None)
        dt = time.perf_counter() - t
        n = sum(len(g[0].token_ids) for g in res)
        out[b] = {"tokens": n, "seconds": dt, "tokens_per_s": n / dt}
        print(f"  native  batch {b:4d}: {n / dt:8.1f} tok/s ({dt:.1f} s)", flush=True)
    return out


def bench_mtp(path, batches, new, n, temperature, rounds=2):
    """Native engine with and without MTP speculative decoding on `batches` task prompts x n samples, alternating
    the two `rounds` times (so drift in the box's load hits both alike); tokens/s, acceptance and the ratio."""
    from r1lab.loading import load_model, load_tokenizer
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.native import NativeEngine
    from r1lab.tasks import TASKS, task_rows

    model, tok = load_model(str(path)), load_tokenizer(str(path))
    texts = [r["prompt"] for t in TASKS for r in task_rows(t, n=max(batches), seed=2)]
    chat = lambda t: tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,  # noqa: E731
                                             tokenize=True, return_dict=True)["input_ids"]
    engines = {"plain": NativeEngine(model, tok), "mtp": NativeEngine(model, tok, use_mtp=True)}
    for e in engines.values():
        e.generate([chat(texts[0])], SamplingParams(max_new_tokens=4))          # warm-up
    out = {}
    for b in batches:
        ps = [chat(t) for t in texts[::max(1, len(texts) // b)][:b]]
        tot = {k: {"tokens": 0, "seconds": 0.0, "mtp_proposed": 0, "mtp_accepted": 0} for k in engines}
        for r in range(rounds):
            for k, e in engines.items():
                e.generate(ps, SamplingParams(n=n, temperature=temperature, max_new_tokens=new, seed=r))
                for f in tot[k]:
                    tot[k][f] += e.stats.get(f, 0)
        for k, x in tot.items():
            x["tokens_per_s"] = x["tokens"] / x["seconds"]
            x["acceptance"] = x["mtp_accepted"] / x["mtp_proposed"] if x["mtp_proposed"] else None
        ratio = tot["mtp"]["tokens_per_s"] / tot["plain"]["tokens_per_s"]
        out[b] = {**tot, "speedup": ratio}
        print(f"  mtp     {b:4d} prompts x {n}: plain {tot['plain']['tokens_per_s']:8.1f} tok/s, mtp "
              f"{tot['mtp']['tokens_per_s']:8.1f} tok/s (x{ratio:.2f}), acceptance {tot['mtp']['acceptance']:.3f}, "
              f"mean length plain {tot['plain']['tokens'] / (rounds * b * n):.1f} / mtp "
              f"{tot['mtp']['tokens'] / (rounds * b * n):.1f}", flush=True)
    return out


def bench_hf(path, batches, new, plen, vocab, max_batch_seconds):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def run(ps, n):
        ids = torch.tensor(ps)
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                  min_new_tokens=n, do_sample=False, pad_token_id=0)

    run(prompts_for(2, vocab, plen), 4)
    out, last_rate = {}, None
    for b in batches:
        if last_rate and b * new / last_rate > max_batch_seconds:
            print(f"  hf      batch {b:4d}: skipped (would take ~{b * new / last_rate:.0f} s)", flush=True)
            out[b] = {"skipped": f"estimated {b * new / last_rate:.0f} s at {last_rate:.1f} tok/s"}
            continue
        ps = prompts_for(b, vocab, plen)
        t = time.perf_counter()
        seq = run(ps, new)
        dt = time.perf_counter() - t
        n = (seq.shape[1] - plen) * b
        last_rate = n / dt
        out[b] = {"tokens": n, "seconds": dt, "tokens_per_s": n / dt}
        print(f"  hf      batch {b:4d}: {n / dt:8.1f} tok/s ({dt:.1f} s)", flush=True)
    return out


def bench_vllm(path, batches, new, plen, vocab):
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.vllm import VLLMEngine

    t = time.perf_counter()
    eng = VLLMEngine(str(path), max_num_seqs=max(batches), kv_cache_memory_bytes=1 << 30)
    startup = time.perf_counter() - t
    print(f"  vllm    start-up {startup:.1f} s (MLA kernel: {eng.info['mla']})", flush=True)
    greedy = lambda n: SamplingParams(temperature=0, max_new_tokens=n)  # noqa: E731
    eng.generate(prompts_for(2, vocab, plen), greedy(4), ignore_eos=True)
    out = {"startup_s": startup, "mla": eng.info["mla"]}
    for b in batches:
        ps = prompts_for(b, vocab, plen)
        t = time.perf_counter()
        res = eng.generate(ps, greedy(new), ignore_eos=True)
        dt = time.perf_counter() - t
        n = sum(len(g[0].token_ids) for g in res)
        out[b] = {"tokens": n, "seconds": dt, "tokens_per_s": n / dt}
        print(f"  vllm    batch {b:4d}: {n / dt:8.1f} tok/s ({dt:.1f} s)", flush=True)
    eng.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a checkpoint dir (default: a fresh --preset model; speed does not depend on "
                                    "the weights since EOS is ignored)")
    ap.add_argument("--preset", default="tiny-576")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 64, 256])
    ap.add_argument("--new", type=int, default=160)
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="per engine (1: the box is shared; OpenMP threads "
                                                           "that outnumber free cores spin-wait each other)")
    ap.add_argument("--hf-max-seconds", type=float, default=600, help="skip an HF batch estimated to take longer")
    ap.add_argument("--engines", nargs="*", default=["native", "vllm", "hf"], choices=["native", "vllm", "hf"])
    ap.add_argument("--mtp", action="store_true", help="also: native with vs without MTP speculative decoding, on "
                                                       "task prompts (--batches of them) x --n at --temperature")
    ap.add_argument("--n", type=int, default=8, help="--mtp: samples per prompt")
    ap.add_argument("--temperature", type=float, default=1.0, help="--mtp: sampling temperature (0: greedy)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rollout_bench.json"))
    args = ap.parse_args(argv)

    os.environ["OMP_NUM_THREADS"] = str(args.threads)            # the vLLM worker inherits it (unbound threads)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    import torch

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="rollout-bench-")
    path = Path(args.model) if args.model else make_checkpoint(args.preset, Path(tmp.name) / args.preset)
    cfg = json.loads((path / "config.json").read_text())
    vocab = cfg["vocab_size"]
    print(f"checkpoint {path} (kv_lora_rank {cfg['kv_lora_rank']}, qk_rope_head_dim {cfg['qk_rope_head_dim']}); "
          f"batches {args.batches}, {args.new} new tokens, prompts of {args.prompt_len}; {args.threads} threads",
          flush=True)
    results = {}
    if args.mtp:
        results["native_mtp"] = bench_mtp(path, args.batches, args.new, args.n, args.temperature)
    if "native" in args.engines:
        results["native"] = bench_native(path, args.batches, args.new, args.prompt_len, vocab)
    if "vllm" in args.engines:
        results["vllm_cpu"] = bench_vllm(path, args.batches, args.new, args.prompt_len, vocab)
    if "hf" in args.engines:
        results["transformers"] = bench_hf(path, args.batches, args.new, args.prompt_len, vocab, args.hf_max_seconds)

    def cell(name, b):
        x = results.get(name, {}).get(b, {})
        return f"{x['tokens_per_s']:10.1f}" if "tokens_per_s" in x else f"{'-':>10}"

    print(f"\n{'batch':>6} | {'native':>10} | {'vllm-cpu':>10} | {'hf generate':>10}   (tokens/s, greedy, EOS ignored)")
    for b in args.batches:
        print(f"{b:>6} | {cell('native', b)} | {cell('vllm_cpu', b)} | {cell('transformers', b)}")
    if "vllm_cpu" in results:
        print(f"vLLM start-up: {results['vllm_cpu']['startup_s']:.1f} s")
    for b, x in results.get("native_mtp", {}).items():
        print(f"{b:>6} prompts x {args.n}, T={args.temperature}: plain {x['plain']['tokens_per_s']:.1f} | MTP "
              f"{x['mtp']['tokens_per_s']:.1f} tok/s (x{x['speedup']:.2f}), acceptance {x['mtp']['acceptance']:.3f}")
    rec = {"checkpoint": str(args.model or f"fresh {args.preset}"), "preset": None if args.model else args.preset,
           "batches": args.batches, "new_tokens": args.new, "prompt_len": args.prompt_len, "threads": args.threads,
           "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "date": time.strftime("%Y-%m-%d"), "results": {k: {str(b): v for b, v in r.items()}
                                                         for k, r in results.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
