"""Pretraining: one plain loop (nanoGPT style) for the DeepSeek-V3-style model.

    python -m base_model.pretrain --preset tiny --out runs/tiny [--config x.yaml] [--resume] [--fp8] [--max-steps N] ...
    torchrun --nproc_per_node 2 -m base_model.pretrain --preset nano --out runs/ddp      # data parallel (DDP)

Per optimizer step: `grad_accum` micro-batches of packed rows (corpus.TokenPacker), loss = next-token CE +
λ·MTP CE + α·balance loss (the model computes it), backward, clip the global grad norm, AdamW with decoupled
weight decay (matrices only; norms/biases/gates' vectors get none), warmup then cosine (or WSD) learning rate,
then `model.update_expert_bias()` — DeepSeek-V3's auxiliary-loss-free balancing, the load summed over ranks.
bf16 autocast on GPU; fp32 on CPU. `--fp8` swaps the Linear layers for fine-grained FP8 ones (fp8.py).

Global batch: `batch_size` rows per optimizer step, whatever the number of processes: each of W ranks runs
batch_size / (W · micro_batch_size) micro-batches on its slice of the same global batch, so 1 process and 2
processes see the same rows per step and (up to float summation order) the same gradients.

Checkpoints: every `ckpt_every` steps OUT/checkpoints/step_XXXXXXX/ holds model.safetensors (exact weights and the
MoE bias buffers) and state.pt (optimizer, step, data-packer position, Python/torch RNG states). It is written to a
temporary directory and renamed into place, so a kill -9 at any moment leaves either the old or the new
checkpoint, never half of one. `--resume` loads the newest one and continues; on CPU with the same thread count
the final weights are bitwise identical to an uninterrupted run (tests/test_pretrain_resume.py checks it).
The final model: OUT/model (save_pretrained, a stock deepseek_v3 checkpoint, + the tokenizer); OUT/metrics.jsonl;
OUT/plots/{loss,expert_load}.png; OUT/samples.md (a few greedy generations).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Literal

from base_model import threads

threads.prepare()   # before torch loads, for `python -m base_model.pretrain` (see threads.py)

import torch  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Run-size defaults per model preset (any field can still be set by YAML or CLI).
RUN_PRESETS: dict[str, dict] = {
    "nano": dict(seq_len=64, batch_size=8, micro_batch_size=8, max_steps=20, warmup_steps=4, lr=3e-3,
                 vocab_size=512, tokenizer_docs=2000, log_every=1, ckpt_every=10),
    "tiny": dict(seq_len=256, batch_size=8, micro_batch_size=8, max_steps=1000, warmup_steps=40, lr=2e-3,
                 vocab_size=4096, tokenizer_docs=20000, log_every=10, ckpt_every=100),
    "tiny-576": dict(seq_len=256, batch_size=8, micro_batch_size=8, max_steps=1000, warmup_steps=40, lr=2e-3,
                     vocab_size=4096, tokenizer_docs=20000, log_every=10, ckpt_every=100),
    "student": dict(seq_len=256, batch_size=8, micro_batch_size=8, max_steps=500, warmup_steps=30, lr=3e-3,
                    vocab_size=4096, tokenizer_docs=20000, log_every=10, ckpt_every=100),
    "small": dict(seq_len=1024, batch_size=64, micro_batch_size=16, max_steps=20000, warmup_steps=1000, lr=1e-3,
                  vocab_size=32768, tokenizer_docs=200000, log_every=20, ckpt_every=1000),
}

DEFAULT_SAMPLE_PROMPTS = ["What is 23 + 45?", "What is 507 + 386?", "Compute 91 - 37.", "What is 46 * 7?",
                          "Solve for x: x + 12 = 30", "Solve for x: 3x + 4 = 19",
                          "Mia has 12 apples. Sam gives Mia 5 more. How many apples does Mia have now?"]


class PretrainConfig(BaseModel):
    """Everything one pretraining run needs. YAML keys and `--flag-names` are these field names."""
    model_config = ConfigDict(extra="forbid")

    preset: str = "tiny"                       # model preset (base_model.config.PRESETS)
    model_overrides: dict = Field(default_factory=dict)   # DeepSeekConfig fields to override
    out: str = "runs/pretrain"
    seed: int = 0
    # data
    corpus: str = "synthetic"                  # "synthetic" or a path: .txt / .jsonl / .parquet / datasets dir
    corpus_field: str = "text"
    r1_share: float = 0.75                     # synthetic: share of worked problems in the <think>/<answer> shape
    max_level: int = 5                         # synthetic: hardest difficulty level
    tokenizer: str | None = None               # a tokenizer dir to use; default: train one on the corpus
    vocab_size: int = 4096
    tokenizer_docs: int = 20000
    seq_len: int = 256
    # optimisation
    batch_size: int = 8                        # GLOBAL rows per optimizer step (all ranks, all micro-batches)
    micro_batch_size: int = 8                  # rows per forward/backward on one rank
    max_steps: int = 1000
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    schedule: Literal["cosine", "wsd"] = "cosine"
    warmup_steps: int = 40
    wsd_decay_frac: float = 0.2                # WSD: last fraction of steps decays linearly to min_lr
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    fp8: bool = False
    bf16: bool | None = None                   # default: on when training on a GPU
    device: str = "auto"
    num_threads: int | None = None             # torch CPU threads (default: base_model/threads.py's policy)
    # bookkeeping
    log_every: int = 10
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    resume: bool = False
    progress: bool = True
    sample_prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_SAMPLE_PROMPTS))
    sample_max_new_tokens: int = 96
    sleep_per_step: float = 0.0                # test hook: slow a run down so a test can kill it mid-run

    @classmethod
    def for_preset(cls, preset: str, **overrides) -> "PretrainConfig":
        return cls(**{**RUN_PRESETS.get(preset, {}), "preset": preset, **overrides})


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

# ----------------------------------------------------------------------------------------------- checkpoints


def _rng_state(device: torch.device) -> dict:
    s = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        s["cuda"] = torch.cuda.get_rng_state(device)
    return s


def _set_rng_state(s: dict, device: torch.device):
    random.setstate(s["python"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and device.type == "cuda":
        torch.cuda.set_rng_state(s["cuda"], device)


def save_checkpoint(ckpt_root: Path, step: int, model, optimizer, packer, device, keep: int = 2) -> Path:
    """Write checkpoints/step_N atomically: into a temp dir, fsync, then one rename."""
    from safetensors.torch import save_file

    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:07d}"
    tmp = ckpt_root / f".tmp_step_{step:07d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp / "model.safetensors"))
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "packer": packer.state_dict(),
                "rng": _rng_state(device)}, tmp / "state.pt")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(ckpt_root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    done = sorted(p for p in ckpt_root.glob("step_*") if (p / "state.pt").exists() and (p / "model.safetensors").exists())
    return done[-1] if done else None


def load_checkpoint(path: Path, model, optimizer, packer, device) -> int:
    from safetensors.torch import load_file

    sd = load_file(str(path / "model.safetensors"), device=str(device))
    model.load_state_dict(sd, strict=True)
    st = torch.load(path / "state.pt", map_location=device, weights_only=False)
    optimizer.load_state_dict(st["optimizer"])
    packer.load_state_dict(st["packer"])
    _set_rng_state(st["rng"], device)
    return int(st["step"])

# ----------------------------------------------------------------------------------------------- outputs


def _plot(out: Path, metrics_path: Path, final_load: torch.Tensor | None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in open(metrics_path)] if metrics_path.exists() else []
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return
    (out / "plots").mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    for key in ("loss", "main_loss", "mtp_loss"):
        if rows[0].get(key) is not None:
            ax.plot(steps, [r[key] for r in rows], label=key)
    ax.set_xlabel("step"), ax.set_ylabel("cross-entropy (nats)"), ax.set_yscale("log"), ax.legend(), ax.grid(alpha=.3)
    ax.set_title("pretraining loss")
    fig.tight_layout(), fig.savefig(out / "plots" / "loss.png", dpi=110), plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(steps, [r.get("load_max_over_mean", 1.0) for r in rows])
    axes[0].set_xlabel("step"), axes[0].set_ylabel("max / mean expert load"), axes[0].grid(alpha=.3)
    axes[0].set_title("routing balance (1 = perfect)")
    if final_load is not None and final_load.numel():
        im = axes[1].imshow((final_load / final_load.mean(1, keepdim=True).clamp_min(1e-9)).numpy(), aspect="auto",
                            cmap="viridis")
        axes[1].set_xlabel("expert"), axes[1].set_ylabel("MoE layer"), axes[1].set_title("load / mean, last window")
        fig.colorbar(im, ax=axes[1])
    fig.tight_layout(), fig.savefig(out / "plots" / "expert_load.png", dpi=110), plt.close(fig)


def write_samples(model, tok, prompts: list[str], max_new_tokens: int, path: Path) -> list[dict]:
    """Greedy completions of a few chat prompts (how the R1 stages will prompt the model)."""
    from base_model.generate import generate

    model.eval()
    ids = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in prompts]
    ids = [x["input_ids"] if isinstance(x, dict) or hasattr(x, "keys") else x for x in ids]
    res = generate(model, ids, max_new_tokens=max_new_tokens, temperature=0.0, eos_token_id=tok.eos_token_id,
                   pad_token_id=tok.pad_token_id)
    out = []
    with open(path, "w") as f:
        f.write("# Greedy samples after pretraining\n\n")
        for p, r in zip(prompts, res):
            text = tok.decode(r[0].token_ids, skip_special_tokens=True)
            out.append({"prompt": p, "completion": text})
            f.write(f"**{p}**\n\n```\n{text}\n```\n\n")
    return out

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


def pretrain(cfg: PretrainConfig, callback: Callable[[dict, int], None] | None = None) -> Path:
    """Run (or resume) pretraining; returns OUT/model. `callback(metrics, step)` is called at every log step."""
    from base_model import DeepSeekForCausalLM, get_preset
    from base_model.corpus import TokenPacker, corpus_factory

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
        (out / "config.yaml").write_text(_to_yaml(cfg.model_dump()))
    _barrier(world)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    syn = {"r1_share": cfg.r1_share, "max_level": cfg.max_level} if cfg.corpus == "synthetic" else {}
    docs = corpus_factory(cfg.corpus, seed=cfg.seed, field=cfg.corpus_field, **syn)
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
        _plot(out, metrics_path, last_load.float().cpu() if last_load is not None else None)
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

# ----------------------------------------------------------------------------------------------- config + CLI


def _to_yaml(d: dict) -> str:
    import yaml
    return yaml.safe_dump(d, sort_keys=False)


def load_config(argv=None) -> PretrainConfig:
    """Defaults < run preset < YAML (--config) < CLI flags. Every PretrainConfig field is a --flag."""
    import yaml

    ap = argparse.ArgumentParser(prog="python -m base_model.pretrain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="YAML file with PretrainConfig fields")
    for name, f in PretrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        ann = f.annotation
        if ann is bool:
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif ann in (int, float, str):
            ap.add_argument(flag, type=ann, default=None)
        else:  # optional scalars, lists, dicts: given as YAML text, e.g. --model-overrides '{num_hidden_layers: 2}'
            ap.add_argument(flag, type=yaml.safe_load, default=None, metavar="YAML")
    a = vars(ap.parse_args(argv))
    from_yaml: dict = {}
    if a.get("config"):
        path = Path(a["config"])
        if not path.exists():
            raise SystemExit(f"--config {path}: no such file")
        from_yaml = yaml.safe_load(path.read_text()) or {}
        if not isinstance(from_yaml, dict):
            raise SystemExit(f"{path}: expected a mapping of PretrainConfig fields at the top level")
    cli = {k: v for k, v in a.items() if v is not None and k != "config"}
    preset = cli.get("preset", from_yaml.get("preset", "tiny"))
    merged = {**RUN_PRESETS.get(preset, {}), **from_yaml, **cli, "preset": preset}
    try:
        return PretrainConfig(**merged)
    except ValidationError as e:
        err = e.errors()[0]
        src = "the YAML config" if err["loc"] and err["loc"][0] in from_yaml else "the command line"
        raise SystemExit(f"pretrain config ({src}): key {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def main(argv=None):
    import torch.distributed as dist

    cfg = load_config(argv)
    print(threads.configure(cfg.num_threads), file=sys.stderr)
    try:
        pretrain(cfg)
    finally:   # under torchrun: tear the process group down before exit (without it gloo's threads can abort a
        if dist.is_available() and dist.is_initialized():   # rank at interpreter exit: "terminate called ...")
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
