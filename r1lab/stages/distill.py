"""`distill` stage: R1's distillation — a smaller student fine-tuned (SFT) on the teacher's reasoning traces.

The teacher is the stage's `from:` model. Traces come from `traces:` (e.g. `stage:rs`, an earlier rejection
sampling stage's data) and/or are generated here: with `generate:` the teacher samples completions for the
`generate.data` prompts, and only those passing the rewards are kept — this is the rejection_sampling stage run
on the teacher (same code, its data/samples.jsonl lands in this stage's data/). The student is a base_model preset
(`student: student`, random init, the teacher's tokenizer) or a path to any HF causal LM that shares the
teacher's tokenizer; it is trained by the sft stage's own code (same trainer, checkpoints, resume, LoRA), and
its model/ is this stage's output.

Token-level KD on the teacher's logits (α·T²·KL(teacher_T ‖ student_T) + (1-α)·CE) is NOT implemented yet:
`kd_alpha` must stay 0 (the parameter is there so a pipeline can say what it wants; validation rejects > 0).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from r1lab.config import DataSpec, RewardSpec
from r1lab.stages.base import StageContext, StageParams, atomic_dir, load_tokenizer
from r1lab.stages.sft import LoraParams


class GenerateParams(StageParams):
    data: list[DataSpec] = Field(min_length=1)
    rewards: dict[RewardSpec, float] = Field(default_factory=lambda: {"math_accuracy": 1.0})
    n: int = Field(4, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    max_per_prompt: int | None = Field(1, ge=1)
    engine: str = "native"
    require_format: bool = True
    drop_truncated: bool = True

    @field_validator("rewards", mode="before")
    @classmethod
    def _weights(cls, v):
        from r1lab.stages.grpo import reward_weights

        return reward_weights(v)


class Params(StageParams):
    student: str = Field("student", description="a base_model preset, or a path to an HF causal LM sharing the tokenizer")
    traces: list[DataSpec] = Field(default_factory=list, description="teacher traces (prompt + completion rows)")
    generate: GenerateParams | None = None
    mix_size: int | None = Field(None, ge=1)
    kd_alpha: float = Field(0.0, ge=0, le=1, description="weight of token-level KD (not implemented: must be 0)")
    kd_temperature: float = Field(1.0, gt=0)
    # SFT of the student (same meaning as in the sft stage)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_scheduler: str = "linear"
    warmup_steps: float = Field(0, ge=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=8)
    lora: LoraParams | None = None
    save_steps: int = Field(50, ge=1)
    logging_steps: int = Field(1, ge=1)
    seed: int | None = None

    @model_validator(mode="after")
    def _check(self):
        if not self.traces and self.generate is None:
            raise ValueError("give `traces` (e.g. stage:rs) and/or `generate` (teacher sampling)")
        if self.kd_alpha > 0:
            raise ValueError("kd_alpha: token-level KD on teacher logits is not implemented yet; use 0 (SFT on traces)")
        return self


def _student_path(ctx: StageContext, p: Params, tok) -> str:
    """The student's starting weights: a preset materialised once (teacher's tokenizer, its vocab), or a path."""
    if "/" in p.student or Path(p.student).exists():
        return p.student
    import torch

    from base_model import DeepSeekForCausalLM, get_preset

    init = ctx.out_dir / "_student_init"
    if not (init / "config.json").exists():
        torch.manual_seed(ctx.seed if p.seed is None else p.seed)
        cfg = get_preset(p.student, vocab_size=len(tok))
        cfg.eos_token_id, cfg.pad_token_id = tok.eos_token_id, tok.pad_token_id
        with atomic_dir(init) as tmp:
            DeepSeekForCausalLM(cfg).save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
    return str(init)


def run(ctx: StageContext) -> dict:
    from r1lab.stages import rejection_sampling as rs
    from r1lab.stages import sft

    p: Params = ctx.params
    teacher = ctx.model_path
    tok = load_tokenizer(ctx.tokenizer_path or teacher)
    traces = list(p.traces)
    gen_metrics = None
    if p.generate is not None:
        g = p.generate
        rs_params = rs.Params(data=g.data, rewards=g.rewards, n=g.n, temperature=g.temperature, top_p=g.top_p,
                              max_new_tokens=g.max_new_tokens, max_per_prompt=g.max_per_prompt, engine=g.engine,
                              require_format=g.require_format, drop_truncated=g.drop_truncated)
        samples = ctx.data_dir / "samples.jsonl"
        if not samples.exists():   # a resumed stage reuses its traces
            gen_metrics = rs.run(dataclasses.replace(ctx, params=rs_params))
        traces.append(DataSpec(path=str(samples)))
        if not samples.read_text().strip():
            raise ValueError(f"stage {ctx.name}: the teacher produced no trace passing {list(g.rewards)}; "
                             "raise generate.n or use `traces`")

    student = _student_path(ctx, p, tok)
    sft_params = sft.Params(data=traces, mix_size=p.mix_size, epochs=p.epochs, max_steps=p.max_steps, lr=p.lr,
                            lr_scheduler=p.lr_scheduler, warmup_steps=p.warmup_steps, batch_size=p.batch_size,
                            grad_accum=p.grad_accum, max_length=p.max_length, lora=p.lora, save_steps=p.save_steps,
                            logging_steps=p.logging_steps, seed=p.seed)
    # the sft stage, run with the student as its starting model and the teacher's tokenizer
    sub = dataclasses.replace(ctx, params=sft_params, from_stage=None, model_spec=student,
                              tokenizer_path=ctx.tokenizer_path or teacher)
    metrics = sft.run(sub)

    n_student = _n_params(str(ctx.model_dir))   # both counted from their checkpoints
    n_teacher = _n_params(teacher)
    metrics.update({"teacher": teacher, "student": p.student, "teacher_params": n_teacher, "student_params": n_student,
                    "param_ratio": n_student / n_teacher if n_teacher else None})
    if gen_metrics:
        metrics.update({"traces_sampled": gen_metrics["sampled"], "traces_kept": gen_metrics["kept"]})
    ctx.add_report(f"Distilled `{teacher}` ({n_teacher:,} params) into `{p.student}` ({n_student:,} params, "
                   f"{metrics['param_ratio']:.2f}×) by SFT on {metrics['rows']} teacher traces.")
    return metrics


def _n_params(model_dir: str) -> int:
    """Parameter count from a checkpoint's safetensors headers (no weights loaded)."""
    import struct

    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for k, v in header.items():
            if k != "__metadata__":
                n = 1
                for d in v["shape"]:
                    n *= d
                total += n
    return total
