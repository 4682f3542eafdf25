"""Bridge from a transformers/TRL Trainer to the stage context: metrics.jsonl, rich progress, checkpoint markers,
DeepSeek's aux-loss-free expert balancing (bias update after each optimizer step), and the divergence guard:
a non-finite gradient (checked before the optimizer applies it), weight (after the step) or logged loss /
grad_norm raises TrainingDiverged before the step's checkpoint is saved, so the newest checkpoint on disk is
always a finite one."""
from __future__ import annotations

import math

from transformers import TrainerCallback

from base_model import threads
from r1lab.errors import TrainingDiverged


def _all_finite(tensors) -> bool:
    import torch

    ts = [t.detach() for t in tensors if t is not None]
    if not ts:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in ts]).all())


def make_callback(ctx, total_steps: int | None = None):
    return _StageCallback(ctx, total_steps)


class _StageCallback(TrainerCallback):
    def __init__(self, ctx, total_steps=None):
        self.ctx = ctx
        self.total = total_steps
        self._progress_cm = None
        self._update = None
        self._last = {}

    def on_train_begin(self, args, state, control, **kw):
        total = self.total or state.max_steps or None
        self._progress_cm = self.ctx.progress(total, f"{self.ctx.name}", completed=state.global_step)
        self._update = self._progress_cm.__enter__()

    def on_step_begin(self, args, state, control, **kw):
        threads.adapt()     # follow the cores other processes leave free (base_model/threads.py)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if model is not None and not _all_finite(p.grad for p in model.parameters() if p.requires_grad):
            self._stop(TrainingDiverged(self.ctx.name, state.global_step + 1, "non-finite gradient (NaN or inf)"))

    def on_step_end(self, args, state, control, model=None, **kw):
        if model is not None and not _all_finite(p for p in model.parameters() if p.requires_grad):
            self._stop(TrainingDiverged(self.ctx.name, state.global_step, "non-finite weights after the optimizer step"))
        m = _unwrap(model)
        if m is not None and hasattr(m, "update_expert_bias") and getattr(m, "training", True):
            stats = m.update_expert_bias()
            if isinstance(stats, dict) and "max_over_mean" in stats:
                self._last["expert_load_max_over_mean"] = float(stats["max_over_mean"])
        if self._update:
            self._update(completed=state.global_step, **{k: v for k, v in self._last.items() if k in ("loss", "reward")})

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs:
            return
        row = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for k in ("loss", "grad_norm"):
            if k in row and not math.isfinite(row[k]):
                self.ctx.log(row, step=state.global_step)
                self._stop(TrainingDiverged(self.ctx.name, state.global_step, f"{k} is {row[k]}"))
        if "expert_load_max_over_mean" in self._last and "loss" in row:
            row["expert_load_max_over_mean"] = self._last["expert_load_max_over_mean"]
        self._last.update(row)
        self.ctx.log(row, step=state.global_step)

    def on_save(self, args, state, control, **kw):
        # Trainer calls on_save after the checkpoint dir is fully written: this marker is the commit point.
        from pathlib import Path

        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            self.ctx.mark_checkpoint_complete(ckpt)

    def _stop(self, exc: Exception):
        self.on_train_end(None, None, None)
        raise exc

    def on_train_end(self, args, state, control, **kw):
        if self._progress_cm is not None:
            self._progress_cm.__exit__(None, None, None)
            self._progress_cm = None


def _unwrap(model):
    if model is None:
        return None
    base = model
    if hasattr(base, "get_base_model"):
        try:
            base = base.get_base_model()
        except Exception:  # noqa: BLE001
            pass
    return getattr(base, "module", base)
