"""Pretraining checkpoints: OUT/checkpoints/step_XXXXXXX/ with model.safetensors (exact weights and the MoE bias
buffers) and state.pt (optimizer, step, data-packer position, Python/torch RNG states).

A checkpoint is written to a temporary directory, fsynced and renamed into place, so a kill -9 at any moment leaves
either the old or the new checkpoint, never half of one; loading one restores everything a bitwise-exact resume
needs. The newest `keep` checkpoints are kept.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import torch


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
