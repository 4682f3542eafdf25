"""Compute/communication overlap at small scale: the DualPipe idea on a 2-rank pipeline (gloo on CPU).

DeepSeek-V3 trains with DualPipe: a bidirectional pipeline where each rank holds two model chunks, backward is
split into input-grad (B/"I") and weight-grad (W) so weight-grads can fill bubbles (zero-bubble), and a forward
chunk of one micro-batch runs while a backward chunk of another does, hiding communication behind compute.
DualPipeV is its "V" half: with P ranks the model is cut into 2P stages, rank r holds stages r and 2P-1-r
(here: rank 0 = stages 0 and 3, rank 1 = stages 1 and 2), so the first and last stage live on rank 0.

torch 2.13 ships it as torch.distributed.pipelining.ScheduleDualPipeV; this module runs the same model and batch
under four schedules and compares them:
  gpipe            2 stages (one per rank): all forwards, then all backwards
  1f1b             2 stages: one-forward-one-backward steady state
  interleaved1f1b  4 stages, looped placement (rank r: r, r+2)
  dualpipev        4 stages, V placement, F/I/W split with overlapped F&B chunks
and against a single-process step on the unsplit model. Per schedule it reports: loss per step (must equal
the single-process loss), step time, and a bubble ratio = 1 - busy/step, where busy is the compute time of the
rank's stages measured alone (micro-batch F+B, no communication) x the number of micro-batches.
Note: torch's DualPipeV runs an overlapped F&B pair one after the other unless a custom overlap function is
registered, and gloo sends are CPU copies, so on a CPU the win is the smaller bubble, not hidden transfers.

What is not in the pipeline: the MTP head and the sequence-wise balance loss (set to 0 for the comparison: both
need tensors from other stages), and the expert-bias update (MoE.update_bias all-reduces over the WORLD group,
which in a pipeline is not a data-parallel group). The main next-token loss is exact.

    torchrun --standalone --nproc_per_node 2 -m base_model.overlap --out results.json [--steps 4 --microbatches 4]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SCHEDULES = ("gpipe", "1f1b", "interleaved1f1b", "dualpipev")


class Stage(nn.Module):
    """A contiguous slice of the model: [embedding] + main layers[lo:hi] + [final norm + lm_head]."""

    def __init__(self, model, lo: int, hi: int, first: bool, last: bool):
        super().__init__()
        self.first, self.last = first, last
        self.embed = model.model.embed_tokens if first else None
        self.layers = nn.ModuleList(model.model.layers[lo:hi])
        self.norm = model.model.norm if last else None
        self.head = model.lm_head if last else None
        self.rotary = model.model.rotary_emb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) if self.first else x
        pos = torch.arange(h.shape[1], device=h.device)[None].expand(h.shape[0], -1)
        cos, sin = self.rotary(pos)
        for layer in self.layers:
            h = layer(h, cos, sin, None, None)
        return self.head(self.norm(h)) if self.last else h


def split_points(n_layers: int, n_stages: int) -> list[tuple[int, int]]:
    """Layer ranges per stage, as even as possible."""
    base, extra = divmod(n_layers, n_stages)
    out, lo = [], 0
    for s in range(n_stages):
        hi = lo + base + (1 if s < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def stages_of_rank(schedule: str, rank: int, world: int) -> tuple[int, list[int]]:
    """(number of stages, the stage indices this rank holds)."""
    if schedule in ("gpipe", "1f1b"):
        return world, [rank]
    if schedule == "interleaved1f1b":
        return 2 * world, [rank, rank + world]
    if schedule == "dualpipev":
        return 2 * world, [rank, 2 * world - 1 - rank]
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


def lm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy (the model's main loss) of one micro-batch."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), target[:, 1:].reshape(-1))


def build_model(preset: str, n_layers: int, seed: int, vocab: int):
    from base_model import DeepSeekForCausalLM, get_preset

    cfg = get_preset(preset, vocab_size=vocab, num_hidden_layers=n_layers, mtp_loss_weight=0.0, aux_loss_alpha=0.0,
                     num_nextn_predict_layers=0)
    torch.manual_seed(seed)
    return DeepSeekForCausalLM(cfg).train()


def batches(steps: int, batch: int, seq: int, vocab: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randint(0, vocab, (batch, seq), generator=g) for _ in range(steps)]


def reference_losses(args) -> list[float]:
    """The single-process run: same model, batches, optimizer."""
    model = build_model(args.preset, args.layers, args.seed, args.vocab)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    out = []
    for x in batches(args.steps, args.batch, args.seq, args.vocab, args.seed):
        loss = model(x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(loss.item())
    return out


def _time_alone(stage: Stage, mb: torch.Tensor, reps: int = 3) -> float:
    """Seconds for one micro-batch forward + backward through `stage` with no communication."""
    x = mb
    if not stage.first:
        x = torch.randn(mb.shape[0], mb.shape[1], stage.layers[0].input_layernorm.weight.shape[0], requires_grad=True)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        y = stage(x)
        (lm_loss(y, mb) if stage.last else y.float().pow(2).mean()).backward()
        best = min(best, time.perf_counter() - t)
    stage.zero_grad(set_to_none=True)
    return best


def run_schedule(name: str, args, rank: int, world: int) -> dict:
    import torch.distributed as dist
    from torch.distributed import pipelining as pp

    n_stages, mine = stages_of_rank(name, rank, world)
    model = build_model(args.preset, args.layers, args.seed, args.vocab)   # same init on every rank
    ranges = split_points(args.layers, n_stages)
    modules = [Stage(model, *ranges[s], first=s == 0, last=s == n_stages - 1) for s in mine]
    mb_size = args.batch // args.microbatches
    busy = sum(_time_alone(m, torch.randint(0, args.vocab, (mb_size, args.seq))) for m in modules) * args.microbatches
    stages = [pp.PipelineStage(m, s, n_stages, torch.device("cpu")) for m, s in zip(modules, mine)]
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=args.lr)
    if name == "gpipe":
        sched = pp.ScheduleGPipe(stages[0], args.microbatches, loss_fn=lm_loss)
    elif name == "1f1b":
        sched = pp.Schedule1F1B(stages[0], args.microbatches, loss_fn=lm_loss)
    elif name == "interleaved1f1b":
        sched = pp.ScheduleInterleaved1F1B(stages, args.microbatches, loss_fn=lm_loss)
    else:
        sched = pp.ScheduleDualPipeV(stages, args.microbatches, loss_fn=lm_loss)
    holds_last = (n_stages - 1) in mine
    holds_first = 0 in mine
    losses, times = [], []
    for x in batches(args.steps, args.batch, args.seq, args.vocab, args.seed):
        dist.barrier()
        t = time.perf_counter()
        mb_losses: list = []
        kwargs = {}
        if holds_last:
            kwargs = {"target": x, "losses": mb_losses}
        if holds_first:
            sched.step(x, **kwargs)
        else:
            sched.step(**kwargs)
        opt.step()
        opt.zero_grad()
        dist.barrier()
        times.append(time.perf_counter() - t)
        loss = torch.tensor([torch.stack(mb_losses).mean().item() if holds_last else 0.0])
        dist.all_reduce(loss)              # exactly one rank holds the last stage
        losses.append(loss.item())
    step_t = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]   # median, first step excluded
    busy_t = torch.tensor([busy])
    dist.all_reduce(busy_t, op=dist.ReduceOp.MAX)
    return {"schedule": name, "stages": n_stages, "losses": losses, "step_time_s": step_t,
            "busy_s": busy_t.item(), "bubble_ratio": max(0.0, 1 - busy_t.item() / step_t)}


def main(argv=None):
    import torch.distributed as dist

    ap = argparse.ArgumentParser(description="pipeline schedules vs single process (run under torchrun, 2 ranks)")
    ap.add_argument("--preset", default="nano")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--microbatches", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schedules", default=",".join(SCHEDULES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the results JSON here (rank 0)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != 2:
        raise SystemExit(f"base_model.overlap runs on exactly 2 ranks (got WORLD_SIZE={world})")
    result = {"config": vars(args), "world": world}
    if rank == 0:
        t = time.perf_counter()
        result["single_process"] = {"losses": reference_losses(args), "total_s": time.perf_counter() - t}
    dist.barrier()
    result["schedules"] = [run_schedule(s, args, rank, world) for s in args.schedules.split(",")]
    if rank == 0:
        ref = result["single_process"]["losses"]
        print(f"{'schedule':<16}{'stages':>7}{'step ms':>10}{'bubble':>9}{'max |Δloss|':>14}")
        for r in result["schedules"]:
            r["max_abs_loss_diff"] = max(abs(a - b) for a, b in zip(r["losses"], ref))
            print(f"{r['schedule']:<16}{r['stages']:>7}{1000 * r['step_time_s']:>10.1f}{r['bubble_ratio']:>9.2f}"
                  f"{r['max_abs_loss_diff']:>14.2e}")
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
