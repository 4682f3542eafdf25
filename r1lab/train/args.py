"""TRL's configs, built in one place: the stage's TRL fields (given by their TRL names, or r1lab's defaults) over
r1lab's run settings (r1lab/trl_fields.py), plus peft's LoraConfig from `lora:`."""
from __future__ import annotations

from r1lab.trl_fields import build_trl_config


def _trackers(ctx, p) -> dict:
    """report_to (the stage's, else the pipeline's), run_name PIPELINE/STAGE, project (r1lab/trackers.py)."""
    if ctx is None:
        return {}
    from r1lab.trackers import trl_args

    return trl_args(ctx, p)


def sft_config(out_dir, p, seed: int, ctx=None, evaluate: bool = False):
    """trl.SFTConfig of an sft (or distill) stage. `evaluate` (a held-out split, sft's `eval_fraction`): TRL's
    eval_strategy "steps" every `eval_steps`, default every `save_steps`, unless the stage sets its own."""
    own = p.__pydantic_extra__ or {}
    ev = {}
    if evaluate and own.get("eval_strategy", "no") == "no":
        ev = {"eval_strategy": "steps", "eval_steps": own.get("eval_steps") or p.save_steps}
    return build_trl_config(p, out_dir, seed, **ev, **_trackers(ctx, p))


def grpo_config(out_dir, p, seed: int, ctx=None):
    """trl.GRPOConfig of a grpo stage. Generation goes through r1lab's rollout engine (TRL's `rollout_func`), so
    TRL's own vLLM stays off: `use_vllm: true` picks r1lab's vllm engine instead."""
    return build_trl_config(p, out_dir, seed, use_vllm=False, **_trackers(ctx, p))


def peft_config(lora):
    """peft.LoraConfig from a LoraParams block, or None."""
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")
