"""How much a run slows down when the machine is shared, under each CPU thread policy.

One fixed workload (a few tiny-preset pretrain steps, then a batch decode with our `generate`) is timed in a
fresh process: idle, next to a plain busy loop, next to one other torch job and next to three. The other torch
jobs run the same workload in a loop under the same policy (two users of r1lab on one box). Each figure is the
workload's wall time (imports and model building excluded) over its idle time under the same policy.

    python benchmarks/contention_bench.py                    # all policies, table + benchmarks/results/contention.json
    python benchmarks/contention_bench.py --policies auto,torch --reps 3

Policies (base_model/threads.py): `auto` (the default), `torch` (torch's own: a thread per core, spinning
waits), `N` (fixed N threads, passive waits).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = {"idle": (0, 0), "busy loop": (1, 0), "1 torch job": (0, 1), "3 torch jobs": (0, 3)}


def workload(steps: int, decode_rows: int, decode_tokens: int) -> float:
    """Seconds for `steps` train steps then one batch decode, after a warm-up step."""
    import torch

    from base_model import DeepSeekForCausalLM, get_preset, threads
    from base_model.generate import generate

    torch.manual_seed(0)
    model = DeepSeekForCausalLM(get_preset("tiny"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.randint(0, model.config.vocab_size, (steps + 1, 8, 128))

    def step(batch):
        threads.adapt()
        model.train()
        model(batch, labels=batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.update_expert_bias()

    step(data[0])                                           # warm-up, not timed
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step(data[i])
    prompts = [list(range(1 + r, 17 + r)) for r in range(decode_rows)]
    generate(model, prompts, max_new_tokens=decode_tokens, temperature=1.0, seed=0)
    return time.perf_counter() - t0


def worker(args) -> None:
    from base_model import threads

    desc = threads.configure(args.policy)
    while True:
        secs = workload(args.steps, args.decode_rows, args.decode_tokens)
        if not args.loop:
            print(json.dumps({"seconds": secs, "threads": desc}), flush=True)
            return


def _spawn(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def measure(policy: str, condition: str, args) -> dict:
    loops, jobs = CONDITIONS[condition]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "R1LAB_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    me = [sys.executable, str(Path(__file__).resolve()), "--worker", "--policy", policy, "--steps", str(args.steps),
          "--decode-rows", str(args.decode_rows), "--decode-tokens", str(args.decode_tokens)]
    others = [_spawn([sys.executable, "-c", "while True: pass"], env) for _ in range(loops)]
    others += [_spawn(me + ["--loop"], env) for _ in range(jobs)]
    try:
        if others:
            time.sleep(args.settle)                          # let the neighbours import torch and get going
        out = subprocess.run(me, env=env, capture_output=True, text=True, timeout=args.timeout)
        if out.returncode:
            raise RuntimeError(f"worker failed ({policy}, {condition}): {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for p in others:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default="auto,torch,2,1", help="comma-separated thread policies")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated, from: " + ", ".join(CONDITIONS))
    ap.add_argument("--reps", type=int, default=1, help="runs per cell (the median is reported)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--decode-rows", type=int, default=16)
    ap.add_argument("--decode-tokens", type=int, default=48)
    ap.add_argument("--settle", type=float, default=8.0, help="seconds the neighbours run before the timed job")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/contention.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--policy", default="auto", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    policies, conditions = args.policies.split(","), args.conditions.split(",")
    if "idle" not in conditions:
        conditions.insert(0, "idle")
    rows = []
    for pol in policies:
        cells = {}
        for cond in conditions:
            runs = [measure(pol, cond, args) for _ in range(args.reps)]
            secs = statistics.median(r["seconds"] for r in runs)
            cells[cond] = {"seconds": secs, "runs": [r["seconds"] for r in runs], "threads": runs[-1]["threads"]}
            print(f"  {pol:6s} {cond:13s} {secs:7.2f} s", flush=True)
        idle = cells["idle"]["seconds"]
        for c in cells.values():
            c["slowdown"] = c["seconds"] / idle
        rows.append({"policy": pol, "cells": cells})

    base = next((r for r in rows if r["policy"] == "torch"), rows[0])["cells"]["idle"]["seconds"]
    head = f"| policy | idle s | vs torch idle | " + " | ".join(f"{c} slowdown" for c in conditions[1:]) + " |"
    print("\n" + head + "\n|" + "---|" * (head.count("|") - 1))
    for r in rows:
        c = r["cells"]
        print(f"| {r['policy']} | {c['idle']['seconds']:.2f} | {c['idle']['seconds'] / base:.2f}x | "
              + " | ".join(f"{c[k]['slowdown']:.2f}x" for k in conditions[1:]) + " |")
    info = {"cores": os.cpu_count(), "steps": args.steps, "decode": [args.decode_rows, args.decode_tokens],
            "reps": args.reps, "settle_s": args.settle, "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out + ".tmp"
    Path(tmp).write_text(json.dumps(info, indent=2))
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
