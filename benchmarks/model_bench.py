"""Model benchmark (issue 2): side by side in one run, same weights, CPU.

  * KV-cache bytes per token: MLA latent cache vs an MHA cache with the same head count and head dims;
  * decode tokens/s: our generate (latent cache, absorbed decode) vs transformers' generate on the same checkpoint
    loaded as DeepseekV3ForCausalLM (batch 8, 128 new tokens, greedy, no early stop);
  * forward+backward tokens/s: our model vs transformers' DeepseekV3ForCausalLM, same config and batch;
  * MTP self-speculative decoding: acceptance rate and speedup over plain greedy decoding.
Timings alternate A/B/A/B and report the median, because this machine is noisy.

    python benchmarks/model_bench.py [--model CHECKPOINT] [--preset tiny] [--repeats 3] [--out benchmarks/results/model_bench.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM

from base_model import DeepSeekForCausalLM, get_preset
from base_model.generate import generate


def kv_bytes_per_token(cfg, bytes_per_value=2) -> dict:
    layers = cfg.num_hidden_layers
    mla = (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * layers * bytes_per_value
    mha = cfg.num_attention_heads * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim) * layers \
        * bytes_per_value
    return {"mla_bytes": mla, "mha_bytes": mha, "reduction_pct": 100 * (1 - mla / mha)}


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def alternate(fa, fb, repeats):
    """Run A and B alternately `repeats` times each; medians."""
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(fa, 1))
        tb.append(timed(fb, 1))
    return statistics.median(ta), statistics.median(tb)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a checkpoint dir (default: a randomly initialised --preset model)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--train-seq", type=int, default=256)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/model_bench.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console()
    torch.manual_seed(0)
    tmp = tempfile.TemporaryDirectory()
    path = args.model
    if path is None:
        path = tmp.name
        DeepSeekForCausalLM(get_preset(args.preset)).save_pretrained(path)
    ours = DeepSeekForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    theirs = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    cfg = ours.config
    results = {"checkpoint": args.model or f"random {args.preset}", "threads": args.threads,
               "torch": torch.__version__}

    # 1. KV cache bytes per token (bf16 values), for this config and for the presets
    results["kv_cache"] = {name: kv_bytes_per_token(get_preset(name)) for name in ("tiny", "small")}
    results["kv_cache"]["deepseek-v3 (671B config)"] = kv_bytes_per_token(SimpleNamespace(
        num_hidden_layers=61, kv_lora_rank=512, qk_rope_head_dim=64, num_attention_heads=128, qk_nope_head_dim=128,
        v_head_dim=128))
    cache = ours.new_cache(1, 1)
    results["kv_cache"]["measured LatentCache bytes/token (fp32, this model)"] = {"mla_bytes": cache.bytes_per_token()}

    # 2. decode tokens/s, batch 8, 128 new tokens, greedy, no EOS
    g = torch.Generator().manual_seed(0)
    lens = [args.prompt_len - (i % 4) * 4 for i in range(args.batch)]        # left-padded, different lengths
    prompts = [torch.randint(10, cfg.vocab_size, (n,), generator=g).tolist() for n in lens]
    width = max(lens)
    ids = torch.zeros(args.batch, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    n_tok = args.batch * args.new_tokens

    def ours_decode():
        generate(ours, prompts, max_new_tokens=args.new_tokens)

    def theirs_decode():
        with torch.no_grad():
            theirs.generate(ids, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                            do_sample=False, pad_token_id=0, eos_token_id=None)

    console.print("decode: ours vs transformers ...")
    t_ours, t_theirs = alternate(ours_decode, theirs_decode, args.repeats)
    same = [r[0].token_ids for r in generate(ours, prompts, max_new_tokens=16)]
    with torch.no_grad():
        ref = theirs.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False, pad_token_id=0,
                              eos_token_id=None)[:, width:].tolist()
    results["decode"] = {"batch": args.batch, "new_tokens": args.new_tokens,
                         "ours_tok_s": n_tok / t_ours, "transformers_tok_s": n_tok / t_theirs,
                         "speedup": t_theirs / t_ours, "first16_tokens_identical": same == ref}

    # 3. forward+backward tokens/s, same config and batch
    x = torch.randint(0, cfg.vocab_size, (args.train_batch, args.train_seq), generator=g)
    ours.train()
    theirs.train()

    def step(model):
        def run():
            out = model(input_ids=x, labels=x)
            out.loss.backward()
            model.zero_grad(set_to_none=True)
        return run

    console.print("forward+backward: ours vs transformers ...")
    step(ours)(), step(theirs)()                                          # warm up
    lam = ours.config.mtp_loss_weight
    ours.config.mtp_loss_weight = 0.0                                     # same computation as transformers
    t_ours, t_theirs = alternate(step(ours), step(theirs), args.repeats)
    ours.config.mtp_loss_weight = lam
    t_mtp = timed(step(ours), args.repeats)
    n = args.train_batch * args.train_seq
    results["train_step"] = {"batch": args.train_batch, "seq": args.train_seq, "ours_tok_s": n / t_ours,
                             "transformers_tok_s": n / t_theirs, "speedup": t_theirs / t_ours,
                             "ours_with_mtp_tok_s": n / t_mtp,
                             "note": "ours without the MTP head (transformers has none); with MTP reported apart"}
    ours.eval()

    # 4. MTP self-speculation vs plain greedy, same model
    if cfg.num_nextn_predict_layers:
        console.print("MTP speculative vs greedy ...")
        t_plain, t_spec = alternate(lambda: generate(ours, prompts, max_new_tokens=args.new_tokens),
                                    lambda: generate(ours, prompts, max_new_tokens=args.new_tokens, use_mtp=True),
                                    args.repeats)
        spec = generate(ours, prompts, max_new_tokens=args.new_tokens, use_mtp=True)
        plain = generate(ours, prompts, max_new_tokens=args.new_tokens)
        results["mtp"] = {"acceptance": spec[0][0].stats["mtp_acceptance"], "speedup": t_plain / t_spec,
                          "identical_to_greedy": [s[0].token_ids for s in spec] == [p[0].token_ids for p in plain]}

    table = Table(title=f"model_bench ({results['checkpoint']}, {args.threads} threads)")
    table.add_column("measure")
    table.add_column("ours", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    for name, kv in results["kv_cache"].items():
        if "mha_bytes" in kv:
            table.add_row(f"KV bytes/token bf16, {name}", f"{kv['mla_bytes']:,}", f"MHA {kv['mha_bytes']:,}",
                          f"-{kv['reduction_pct']:.1f}%")
    d = results["decode"]
    table.add_row(f"decode tok/s (batch {args.batch}, {args.new_tokens} new)", f"{d['ours_tok_s']:.0f}",
                  f"transformers {d['transformers_tok_s']:.0f}", f"{d['speedup']:.2f}x")
    t = results["train_step"]
    table.add_row(f"fwd+bwd tok/s (batch {args.train_batch}x{args.train_seq})", f"{t['ours_tok_s']:.0f}",
                  f"transformers {t['transformers_tok_s']:.0f}", f"{t['speedup']:.2f}x")
    table.add_row("fwd+bwd tok/s, ours with MTP loss", f"{t['ours_with_mtp_tok_s']:.0f}", "", "")
    if "mtp" in results:
        m = results["mtp"]
        table.add_row("MTP speculative decode", f"accept {m['acceptance']:.2f}", "greedy",
                      f"{m['speedup']:.2f}x")
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
