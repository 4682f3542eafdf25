"""Train a TRL trainer inside a stage: resume from the newest good checkpoint, never one step too many, and save
the model atomically (the merged model with LoRA, the adapter beside it)."""
from __future__ import annotations

from r1lab.io import atomic_dir


def prepare(model, tok) -> None:
    """The model's generation config also ends at the tokenizer's EOS and pads with its pad token (what TRL and our
    engines read). A model's own list of end tokens (e.g. [2, 0]) is kept: the tokenizer's EOS joins it."""
    gc = model.generation_config
    if gc is None or tok.eos_token_id is None:
        return
    own = gc.eos_token_id
    ids = [] if own is None else [own] if isinstance(own, int) else list(own)
    if tok.eos_token_id not in ids:
        ids.append(tok.eos_token_id)
    gc.eos_token_id = ids[0] if len(ids) == 1 else ids
    if gc.pad_token_id is None:
        gc.pad_token_id = tok.pad_token_id


def quiet(trainer):
    """Drop transformers' printing and tqdm callbacks: the stage callback shows rich progress and logs metrics."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer


def train_and_save(ctx, trainer, tok, lora: bool):
    """Train a TRL trainer from the stage's last complete checkpoint (if any) and save the model atomically;
    with LoRA the adapter is saved too and the merged model becomes the stage's model.
    Returns (trainer.train's output, {"resumed_from", "trainable_params", "total_params"})."""
    from r1lab.trackers import attach

    attach(trainer, ctx)                     # tensorboard's events in OUTPUT_DIR/STAGE/tb
    ctx.discard_incomplete_checkpoints()     # so Trainer's rotation and resume never see a half-written one
    ctx.set_aside_bad_checkpoints()          # a damaged newest checkpoint: resume from the previous good one
    ckpt = ctx.resume_checkpoint()
    resumed_from = 0
    if ckpt:
        resumed_from = int(ckpt.rsplit("-", 1)[1])
        ctx.truncate_metrics(resumed_from)
        ctx.print(f"{ctx.name}: resuming from {ckpt} (step {resumed_from})", style="yellow", markup=False)
    if ckpt and _is_final(ckpt):
        out = _finish_from_final_checkpoint(ctx, trainer, ckpt)
    else:
        out = trainer.train(resume_from_checkpoint=ckpt)
    trained = trainer.model
    full = None
    if (getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)) and not lora:
        # sharded weights: every rank takes part in gathering them; rank 0 saves (GPU-only path, not tested here)
        full = trainer.accelerator.get_state_dict(trainer.model_wrapped)
        trained = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    info = {"resumed_from": resumed_from,
            "trainable_params": sum(x.numel() for x in trained.parameters() if x.requires_grad),
            "total_params": sum(x.numel() for x in trained.parameters())}
    if lora:
        if ctx.main:
            with atomic_dir(ctx.out_dir / "adapter") as tmp:
                trained.save_pretrained(tmp)
        trained = trained.merge_and_unload()
    _unpatch_forward(trained)
    ctx.save_model(trained, tok, state_dict=full)
    return out, info


def _is_final(ckpt: str) -> bool:
    """The checkpoint Trainer saved at its last step (a kill came between it and done.json)."""
    import json
    from pathlib import Path

    try:
        st = json.loads((Path(ckpt) / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(st.get("max_steps")) and st.get("global_step", 0) >= st["max_steps"]


def _finish_from_final_checkpoint(ctx, trainer, ckpt: str):
    """Resuming from the final checkpoint: training is over, so load its weights and state instead of calling
    train() (which would run one more step: Trainer fast-forwards into the epoch and steps before it checks
    max_steps). train_loss is the step-weighted mean of the logged losses, as Trainer's own."""
    from pathlib import Path

    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    ctx.print(f"{ctx.name}: {Path(ckpt).name} is the final step; no training left, saving its model",
              style="yellow", markup=False)
    trainer._load_from_checkpoint(ckpt)
    trainer.state = TrainerState.load_from_json(str(Path(ckpt) / "trainer_state.json"))
    total, last = 0.0, 0
    for h in trainer.state.log_history:
        if "loss" in h and "step" in h:
            total += float(h["loss"]) * (h["step"] - last)
            last = h["step"]
    step = trainer.state.global_step
    return TrainOutput(step, total / max(last, 1), {"train_loss": total / max(last, 1)})


def _unpatch_forward(model) -> None:
    """TRL patches `model.forward` on the instance (its fused LM head); drop the patch before saving/returning."""
    if "forward" in vars(model):
        del model.forward
