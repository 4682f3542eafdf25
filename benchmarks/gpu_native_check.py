"""GPU check of the native engine's RL numbers: bf16 vs fp32 rollouts against an fp32 trainer forward (logprob
mismatch, routing drift, and what router replay leaves), and MTP speculative sampling's speed-up and acceptance.
Needs only torch, transformers and base_model (the GPU box has no TRL), a trained checkpoint and token-id prompts:

    python benchmarks/gpu_native_check.py --model DIR --prompts prompts.json [--n 8] [--max-new 160] [--out X.json]

prompts.json: {"prompts": [[ids...], ...], "eos": id, "pad": id} (held-out arithmetic prompts in the chat template).
The trainer forward is the training form (no cache, sorted MoE dispatch) in fp32, as GRPO's loss runs it.
Prints a table and writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def trainer_logps(model, prompt, sample, temperature, routes=None):
    """fp32 training-form log π of the sampled tokens (one row, no padding); and the experts it chose."""
    from base_model import routing

    ids = torch.tensor([prompt + sample.token_ids], device=model.lm_head.weight.device)
    with torch.no_grad(), routing.record(model) as rec, routing.replay(model, routes):
        logits = model(ids).logits[0, len(prompt) - 1:-1].float() / temperature
        chosen = rec.pop()[0]
    lp = torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt):, None])[:, 0]
    return lp.cpu(), chosen.cpu()


def compare(trainer, res, prompts, temperature, replay: bool):
    from base_model.routing import routing_drift

    diffs, drift_tok, n_tok = [], 0.0, 0
    for p, group in zip(prompts, res):
        for s in group:
            if not s.token_ids:
                continue
            routes = s.routes[None].to(trainer.lm_head.weight.device).long() if replay else None
            lp, chosen = trainer_logps(trainer, p, s, temperature, routes)
            diffs.append((lp - torch.tensor(s.logprobs)).abs())
            c = len(s.token_ids)
            rec = s.routes[len(p):len(p) + c][None]
            d = routing_drift(rec, chosen[len(p):len(p) + c][None], torch.ones(1, c))
            drift_tok += d["tokens"] * c
            n_tok += c
    d = torch.cat(diffs)
    return {"logprob_diff_mean": float(d.mean()), "logprob_diff_max": float(d.max()),
            "routing_drift_tokens": drift_tok / max(n_tok, 1), "tokens": n_tok}


def timed(model, prompts, a, use_mtp, record=False, seed=0):
    from base_model.generate import generate

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = generate(model, prompts, max_new_tokens=a.max_new, temperature=a.temperature, top_p=1.0, eos_token_id=a.eos,
                   pad_token_id=a.pad, num_samples=a.n, seed=seed, use_mtp=use_mtp, record_routing=record)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    toks = sum(len(s.token_ids) for g in res for s in g)
    stats = res[0][0].stats if res and res[0] else {}
    return res, {"seconds": secs, "tokens": toks, "tok_s": toks / secs, **{k: v for k, v in stats.items()
                                                                          if k.startswith("mtp")}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=160)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--compare-prompts", type=int, default=16, help="prompts whose samples are re-scored by the trainer")
    ap.add_argument("--out", default="gpu_native_check.json")
    a = ap.parse_args()
    from base_model import DeepSeekForCausalLM

    spec = json.loads(Path(a.prompts).read_text())
    prompts, a.eos, a.pad = spec["prompts"], spec["eos"], spec["pad"]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    fp32 = DeepSeekForCausalLM.from_pretrained(a.model, dtype=torch.float32).to(dev).eval()
    bf16 = DeepSeekForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).to(dev).eval()
    out = {"device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "torch": torch.__version__,
           "prompts": len(prompts), "n": a.n, "max_new": a.max_new, "temperature": a.temperature}
    few = prompts[:a.compare_prompts]
    rows = {}
    for name, model in (("fp32", fp32), ("bf16", bf16)):
        res, _ = timed(model, few, a, use_mtp=False, record=True, seed=1)
        rows[f"{name} rollout, no replay"] = compare(fp32, res, few, a.temperature, replay=False)
        rows[f"{name} rollout, replay"] = compare(fp32, res, few, a.temperature, replay=True)
    out["mismatch"] = rows
    speed = {}
    for name, model in (("fp32", fp32), ("bf16", bf16)):
        timed(model, prompts[:8], a, use_mtp=False)                        # warm-up
        for mtp in (False, True):
            _, st = timed(model, prompts, a, use_mtp=mtp, seed=2)
            speed[f"{name}{' + MTP' if mtp else ''}"] = st
    out["speed"] = speed
    print("| rollout | trainer | replay | |Δ logprob| mean | max | routing drift (tokens) |")
    print("|---|---|---|---|---|---|")
    for k, v in rows.items():
        print(f"| {k.split()[0]} | fp32 | {'yes' if 'replay' in k and 'no' not in k else 'no'} | "
              f"{v['logprob_diff_mean']:.2e} | {v['logprob_diff_max']:.2e} | {v['routing_drift_tokens']:.4f} |")
    print(f"\n| sampling ({len(prompts)} prompts × {a.n}, T={a.temperature}) | tok/s | seconds | MTP acceptance |")
    print("|---|---|---|---|")
    for k, v in speed.items():
        print(f"| {k} | {v['tok_s']:.0f} | {v['seconds']:.2f} | {v.get('mtp_acceptance', '–')} |")
    Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
