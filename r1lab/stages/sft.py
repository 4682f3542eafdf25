"""`sft` stage: supervised fine-tuning on TRL's SFTTrainer — cold-start SFT and R1's blended SFT.

Data is a weighted mixture of sources (tasks' worked solutions, rejection-sampled traces, non-reasoning
chat, local files). Each row becomes a conversational prompt/completion pair rendered by the tokenizer's
chat template, so the loss falls on the completion tokens only (TRL's completion_only_loss). Optional:
packing, LoRA through peft (merged into a stock checkpoint at the end; the adapter is kept in adapter/).

Resume: TRL's Trainer writes checkpoints/checkpoint-N (model, optimizer, scheduler, RNG, step); our
callback marks one complete after Trainer finishes writing it. A rerun after a kill starts from the newest
complete checkpoint with `resume_from_checkpoint`, so the step count continues (and the data order, which
the Trainer derives from the seed and the epoch, skips the batches already seen).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from r1lab.config import DataSpec
from r1lab.stages.base import DataError, StageContext, StageParams, load_model, load_tokenizer


class LoraParams(StageParams):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class Params(StageParams):
    data: list[DataSpec] = Field(min_length=1, description="sources mixed by their `weight`")
    mix_size: int | None = Field(None, ge=1, description="rows in the mixture (default: sum of the sources)")
    system_prompt: str | None = None
    chat_template: str | None = Field(None, description="a .jinja path or template text (default: the tokenizer's)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs")
    lr: float = Field(1e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"] = "linear"
    warmup_steps: float = Field(0, ge=0, description="steps, or a ratio of all steps when < 1")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=8)
    packing: bool = False
    completion_only: bool = True
    lora: LoraParams | None = None
    save_steps: int = Field(50, ge=1)
    logging_steps: int = Field(1, ge=1)
    seed: int | None = None
    bf16: bool | None = Field(None, description="default: on when a CUDA GPU supports it")
    gradient_checkpointing: bool = False
    report_to: list[str] = Field(default_factory=list, description="e.g. [tensorboard]")

    @field_validator("report_to", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, str) else v


def to_prompt_completion(row: dict, system_prompt: str | None = None) -> dict:
    """One data row -> {"prompt": [messages], "completion": [assistant message]} (TRL conversational format).

    Accepts `messages` (the last assistant turn is the completion), or `prompt` plus one of `completion`,
    `solution`, `response` (strings)."""
    sys = [{"role": "system", "content": system_prompt}] if system_prompt else []
    if row.get("messages"):
        msgs = list(row["messages"])
        if msgs[-1]["role"] != "assistant":
            raise ValueError(f"row {row.get('id')}: `messages` must end with an assistant turn")
        return {"prompt": sys + msgs[:-1], "completion": [msgs[-1]]}
    prompt = row.get("prompt")
    target = next((row[k] for k in ("completion", "solution", "response") if row.get(k)), None)
    if prompt is None or target is None:
        raise DataError(f"sft rows need `messages`, or `prompt` with `completion`/`solution`/`response`; "
                         f"got columns {sorted(row)}")
    if isinstance(prompt, list):
        return {"prompt": sys + prompt, "completion": target if isinstance(target, list) else [{"role": "assistant", "content": target}]}
    return {"prompt": sys + [{"role": "user", "content": prompt}], "completion": [{"role": "assistant", "content": target}]}


def build_dataset(ctx: StageContext, p: Params):
    import datasets

    mixed = ctx.load_mixture(p.data, size=p.mix_size)
    rows = [to_prompt_completion(r, p.system_prompt) for r in mixed]
    return datasets.Dataset.from_list(rows)


def run(ctx: StageContext, kd=None) -> dict:
    """Train; `kd` (internal, set by the distill stage) is an object whose `trainer_class(base)` returns a subclass
    of the trainer class that adds token-level distillation on a teacher's logits (r1lab.stages.distill.KD)."""
    import torch
    from trl import SFTConfig

    p: Params = ctx.params
    seed = ctx.seed if p.seed is None else p.seed
    tok = load_tokenizer(ctx.tokenizer_path or ctx.model_path, p.chat_template)
    train = build_dataset(ctx, p)
    model = load_model(ctx.model_path)
    if model.generation_config is not None and tok.eos_token_id is not None:
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id

    peft_config = None
    if p.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=p.lora.r, lora_alpha=p.lora.alpha, lora_dropout=p.lora.dropout,
                                 target_modules=p.lora.target_modules, task_type="CAUSAL_LM")

    cuda = torch.cuda.is_available()
    bf16 = p.bf16 if p.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    args = SFTConfig(
        output_dir=str(ctx.checkpoint_dir),
        learning_rate=p.lr, lr_scheduler_type=p.lr_scheduler, warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay, max_grad_norm=p.max_grad_norm,
        num_train_epochs=p.epochs, max_steps=p.max_steps or -1,
        per_device_train_batch_size=p.batch_size, gradient_accumulation_steps=p.grad_accum,
        max_length=p.max_length, packing=p.packing, completion_only_loss=p.completion_only,
        save_strategy="steps", save_steps=p.save_steps, save_total_limit=2,
        logging_steps=p.logging_steps, logging_first_step=True, logging_nan_inf_filter=False,
        report_to=p.report_to or "none",
        seed=seed, data_seed=seed, bf16=bf16, fp16=False, use_cpu=not cuda,
        gradient_checkpointing=p.gradient_checkpointing, dataloader_num_workers=0, disable_tqdm=True,
        loss_type="nll",   # the plain loss on every TRL we admit (older ones default to chunked_nll: no logits for KD)
    )
    trainer_class = _trainer_class(model)
    if kd is not None:
        trainer_class = kd.trainer_class(trainer_class)
    trainer = trainer_class(model=model, args=args, train_dataset=train, processing_class=tok,
                            peft_config=peft_config, callbacks=[ctx.trainer_callback()])
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):   # our callback shows rich progress and logs to metrics.jsonl
        trainer.remove_callback(cb)
    out, info = train_and_save(ctx, trainer, tok, lora=bool(p.lora))
    resumed_from, n_trainable, n_total = info["resumed_from"], info["trainable_params"], info["total_params"]

    logged = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "train_loss": float(out.training_loss),
        "final_loss": float(logged[-1]["loss"]) if logged else None,
        "first_loss": float(logged[0]["loss"]) if logged else None,
        "steps": int(trainer.state.global_step),
        "resumed_from_step": resumed_from,
        "rows": len(train),
        "trainable_params": int(n_trainable),
        "total_params": int(n_total),
    }
    ctx.add_report(f"SFT on {len(train)} rows from {', '.join(d.describe() for d in p.data)}"
                   f"{' with LoRA r=%d' % p.lora.r if p.lora else ''}; {metrics['steps']} steps"
                   f"{f' (resumed at step {resumed_from})' if resumed_from else ''}.")
    return metrics


def _trainer_class(model):
    """TRL's SFTTrainer; for DeepSeekForCausalLM a subclass whose loss is the model's own.

    TRL computes SFT loss through a fused LM head over `model.base_model(...)`'s last_hidden_state, which
    skips our model's MTP and balance terms (and its backbone returns a tuple). The model's own forward with
    `labels` (prompt tokens already -100 from TRL's completion mask) gives next-token CE normalised by
    `num_items_in_batch` + λ·MTP CE + the balance loss — the same objective as pretraining, on completions."""
    from trl import SFTTrainer

    if type(model).__name__ != "DeepSeekForCausalLM":
        return SFTTrainer

    class ModelLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                        labels=inputs["labels"], num_items_in_batch=num_items_in_batch)
            loss = out.loss
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            mode = "train" if model.training else "eval"
            for k in ("main_loss", "mtp_loss", "aux_loss"):
                v = getattr(out, k, None)
                if v is not None:
                    self._metrics[mode][k].append(float(v.detach()))
            return (loss, out) if return_outputs else loss

    return ModelLossSFTTrainer



def train_and_save(ctx: StageContext, trainer, tok, lora: bool):
    """Train a TRL trainer from the stage's last complete checkpoint (if any) and save the model atomically;
    with LoRA the adapter is saved too and the merged model becomes the stage's model.
    Returns (trainer.train's output, {"resumed_from", "trainable_params", "total_params"})."""
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
    info = {"resumed_from": resumed_from,
            "trainable_params": sum(x.numel() for x in trained.parameters() if x.requires_grad),
            "total_params": sum(x.numel() for x in trained.parameters())}
    if lora:
        from r1lab.stages.base import atomic_dir

        with atomic_dir(ctx.out_dir / "adapter") as tmp:
            trained.save_pretrained(tmp)
        trained = trained.merge_and_unload()
    _unpatch_forward(trained)
    ctx.save_model(trained, tok)
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


def _finish_from_final_checkpoint(ctx: StageContext, trainer, ckpt: str):
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
