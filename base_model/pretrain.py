"""Pretraining: one plain loop (nanoGPT style) for the DeepSeek-V3-style model.

    python -m base_model.pretrain --preset tiny --corpus docs.jsonl --out runs/tiny [--config x.yaml] [--resume] ...
    torchrun --nproc_per_node 2 -m base_model.pretrain --preset nano --corpus docs.jsonl --out runs/ddp   # DDP

The corpus: a path (corpus.py reads .txt/.jsonl/.parquet/datasets dirs), or, from Python, any document-stream
factory passed as `pretrain(cfg, docs=...)`: the r1lab `pretrain` stage passes r1lab's synthetic corpus that way
(`corpus: synthetic`, the default); `python -m r1lab.tasks.corpus --out docs.jsonl` writes it to a file.

Per optimizer step: `grad_accum` micro-batches of packed rows (corpus.TokenPacker), loss = next-token CE +
λ·MTP CE + α·balance loss (the model computes it), backward, clip the global grad norm, AdamW with decoupled
weight decay (matrices only; norms/biases/gates' vectors get none), warmup then cosine (or WSD) learning rate,
then `model.update_expert_bias()` — DeepSeek-V3's auxiliary-loss-free balancing, the load summed over ranks.
bf16 autocast on GPU; fp32 on CPU. `--fp8` swaps the Linear layers for fine-grained FP8 ones (fp8.py).

Global batch: `batch_size` rows per optimizer step, whatever the number of processes: each of W ranks runs
batch_size / (W · micro_batch_size) micro-batches on its slice of the same global batch, so 1 process and 2
processes see the same rows per step and (up to float summation order) the same gradients.

Checkpoints (checkpoint.py): every `ckpt_every` steps, atomic. `--resume` loads the newest one and continues; on
CPU with the same thread count the final weights are bitwise identical to an uninterrupted run
(tests/test_pretrain_resume.py checks it). The config and its CLI/YAML layering: pretrain_config.py.
The final model: OUT/model (save_pretrained, a stock deepseek_v3 checkpoint, + the tokenizer); OUT/metrics.jsonl;
OUT/plots/{loss,expert_load}.png; OUT/samples.md (a few greedy generations) (pretrain_outputs.py).
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from base_model import threads

threads.prepare()   # before torch loads, for `python -m base_model.pretrain` (see threads.py)

import torch  # noqa: E402

from base_model.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from base_model.corpus import SYNTHETIC_HINT, DocFactory, TokenPacker, corpus_factory  # noqa: E402
from base_model.pretrain_config import RUN_PRESETS, PretrainConfig, load_config, to_yaml  # noqa: E402,F401 (RUN_PRESETS: re-export)
from base_model.pretrain_outputs import plot, write_samples  # noqa: E402

# ----------------------------------------------------------------------------------------------- schedule


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup, then cosine to min_lr (or WSD: constant, then a linear decay over the last wsd_decay_frac)."""
    min_lr = cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "wsd":
        decay_start = int(cfg.max_steps * (1 - cfg.wsd_decay_frac))
        if step < decay_start:
            return cfg.lr
        frac = (step - decay_start) / max(1, cfg.max_steps - decay_start)
        return cfg.lr + (min_lr - cfg.lr) * frac
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return min_lr + 0.5 * (cfg.lr - min_lr) * (1 + math.cos(math.pi * min(1.0, frac)))


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, decoupled weight decay on matrices (Linear/embedding weights) only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8,
                             fused=device.type == "cuda")

# ----------------------------------------------------------------------------------------------- distributed


def _dist_setup(device_str: str) -> tuple[int, int, torch.device]:
    """rank, world, device; initialises torch.distributed when launched by torchrun (gloo on CPU, nccl on GPU)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_str == "auto":
        device_str = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_str)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _barrier(world: int):
    if world > 1:
        import torch.distributed as dist
        dist.barrier()

# ----------------------------------------------------------------------------------------------- the loop


def _get_tokenizer(cfg: PretrainConfig, out: Path, rank: int, world: int, docs_factory):
    from base_model.tokenizer import load_tokenizer, train_tokenizer

    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    tok_dir = out / "tokenizer"
    if rank == 0 and not (tok_dir / "tokenizer.json").exists():
        import itertools
        train_tokenizer(itertools.islice(docs_factory(0), cfg.tokenizer_docs), vocab_size=cfg.vocab_size,
                        save_dir=tok_dir)
    _barrier(world)
    return load_tokenizer(tok_dir)


def pretrain(cfg: PretrainConfig, callback: Callable[[dict, int], None] | None = None,
             docs: DocFactory | None = None) -> Path:
    """Run (or resume) pretraining; returns OUT/model. `callback(metrics, step)` is called at every log step.
    `docs`: the corpus as a document-stream factory (start -> documents from index start); default: the path
    `cfg.corpus`."""
    from base_model import DeepSeekForCausalLM, get_preset

    if cfg.batch_size % cfg.micro_batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of micro_batch_size {cfg.micro_batch_size}")
    rank, world, device = _dist_setup(cfg.device)
    if cfg.batch_size % (cfg.micro_batch_size * world):
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of micro_batch_size x world "
                         f"({cfg.micro_batch_size} x {world})")
    grad_accum = cfg.batch_size // (cfg.micro_batch_size * world)
    if cfg.num_threads:
        threads.configure(cfg.num_threads)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg.model_dump()))
    _barrier(world)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    docs = corpus_factory(cfg.corpus if docs is None else docs, field=cfg.corpus_field)
    tok = _get_tokenizer(cfg, out, rank, world, docs)
    mcfg = get_preset(cfg.preset, **{"vocab_size": len(tok), "eos_token_id": tok.eos_token_id,
                                     "pad_token_id": tok.pad_token_id, **cfg.model_overrides})
    if cfg.seq_len > mcfg.max_position_embeddings:
        raise ValueError(f"seq_len {cfg.seq_len} > model max_position_embeddings {mcfg.max_position_embeddings}")
    torch.manual_seed(cfg.seed)
    model = DeepSeekForCausalLM(mcfg).to(device)
    if cfg.fp8:
        from base_model.fp8 import convert_to_fp8
        convert_to_fp8(model)
    model.train()
    optimizer = make_optimizer(model, cfg, device)
    packer = TokenPacker(docs, tok, cfg.seq_len)

    ckpt_root = out / "checkpoints"
    step = 0
    if cfg.resume and (ck := latest_checkpoint(ckpt_root)) is not None:
        step = load_checkpoint(ck, model, optimizer, packer, device)
        if rank == 0:
            print(f"resumed from {ck} (step {step})", file=sys.stderr)
    elif rank == 0:   # a fresh run: forget what an earlier run left in OUT
        if (out / "metrics.jsonl").exists():
            (out / "metrics.jsonl").unlink()
        shutil.rmtree(ckpt_root, ignore_errors=True)
    metrics_path = out / "metrics.jsonl"
    if rank == 0 and metrics_path.exists():   # drop lines logged after the checkpoint we resumed from
        kept = [l for l in open(metrics_path) if json.loads(l).get("step", 0) <= step]
        metrics_path.write_text("".join(kept))

    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # experts that get no token on a rank have no grad there: find_unused_parameters lets DDP all-reduce zeros
        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=True)
    use_bf16 = cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"
    n_params = sum(p.numel() for p in model.parameters())
    tokens_per_step = cfg.batch_size * cfg.seq_len
    bar = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.max_steps, initial=step, desc=f"pretrain {cfg.preset}", dynamic_ncols=True)
    t_last, toks_since = time.time(), 0
    last_load = None
    while step < cfg.max_steps:
        threads.adapt()
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        x_all, _ = packer.next_batch(cfg.batch_size)           # the same global batch on every rank
        per_rank = cfg.batch_size // world
        x_rank = x_all[rank * per_rank:(rank + 1) * per_rank].to(device)
        sums = torch.zeros(4, dtype=torch.float64)
        for micro in range(grad_accum):
            x = x_rank[micro * cfg.micro_batch_size:(micro + 1) * cfg.micro_batch_size]
            sync = micro == grad_accum - 1
            ctx = ddp_model.no_sync() if (world > 1 and not sync) else _null()
            with ctx, torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                o = ddp_model(input_ids=x, labels=x)
                (o.loss / grad_accum).backward()
            sums += torch.tensor([o.loss.item(), o.main_loss.item(),
                                  o.mtp_loss.item() if o.mtp_loss is not None else float("nan"),
                                  o.aux_loss.item() if o.aux_loss is not None else 0.0], dtype=torch.float64)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last_load = model.expert_load()
        balance = model.update_expert_bias()                     # load summed over ranks inside
        step += 1
        toks_since += tokens_per_step
        if cfg.sleep_per_step:
            time.sleep(cfg.sleep_per_step)

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            sums /= grad_accum
            if world > 1:
                import torch.distributed as dist
                dist.all_reduce(sums)
                sums /= world
            dt = time.time() - t_last
            m = {"step": step, "loss": sums[0].item(), "main_loss": sums[1].item(),
                 "mtp_loss": None if math.isnan(sums[2].item()) else sums[2].item(), "aux_loss": sums[3].item(),
                 "lr": lr, "grad_norm": float(grad_norm), "load_max_over_mean": balance["max_over_mean"],
                 "tokens": step * tokens_per_step, "tokens_per_s": toks_since / max(dt, 1e-9)}
            t_last, toks_since = time.time(), 0
            if rank == 0:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(m) + "\n")
                if bar is not None:
                    bar.set_postfix(loss=f"{m['loss']:.3f}", tok_s=f"{m['tokens_per_s']:.0f}", lr=f"{lr:.1e}")
            if callback is not None:
                callback(m, step)
        if bar is not None:
            bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            if rank == 0:
                save_checkpoint(ckpt_root, step, model, optimizer, packer, device, cfg.keep_checkpoints)
            _barrier(world)
    if bar is not None:
        bar.close()

    model_dir = out / "model"
    if rank == 0:
        tmp = out / ".model_tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
        plot(out, metrics_path, last_load.float().cpu() if last_load is not None else None)
        if cfg.sample_prompts:
            write_samples(model, tok, cfg.sample_prompts, cfg.sample_max_new_tokens, out / "samples.md")
        print(f"pretrained {n_params / 1e6:.2f}M params for {step} steps; model saved to {model_dir}", file=sys.stderr)
    _barrier(world)
    return model_dir


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

def main(argv=None):
    import torch.distributed as dist

    cfg = load_config(argv, description=__doc__.split("\n\n")[0])
    if cfg.corpus == "synthetic":
        raise SystemExit(f"python -m base_model.pretrain: {SYNTHETIC_HINT}")
    print(threads.configure(cfg.num_threads), file=sys.stderr)
    try:
        pretrain(cfg)
    finally:   # under torchrun: tear the process group down before exit (without it gloo's threads can abort a
        if dist.is_available() and dist.is_initialized():   # rank at interpreter exit: "terminate called ...")
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
