"""`sft` stage: supervised fine-tuning on TRL's SFTTrainer — cold-start SFT and R1's blended SFT.

Data is a weighted mixture of sources (tasks' worked solutions, rejection-sampled traces, non-reasoning chat,
local files); the training itself is r1lab/train/sft.py (completion-only loss, packing, LoRA, resume).
"""
from __future__ import annotations

from pydantic import Field

from r1lab.params import DataBlock
from r1lab.stages.base import StageContext
from r1lab.train.sft import SFT_DEFAULTS, SFT_METRICS, train_sft
from r1lab.trl_fields import TRLParams

METRICS = SFT_METRICS   # the keys run() returns (a later stage's `gate:` may read them)


class Params(TRLParams, DataBlock):   # data first; then any trl.SFTConfig field by its TRL name
    model_config = TRLParams.model_config   # TRL's fields are extra keys, checked by TRLParams
    TRL_CONFIG = "SFTConfig"
    TRL_DEFAULTS = SFT_DEFAULTS

    eval_fraction: float | None = Field(None, gt=0, lt=1, description="hold out this share of the mixture and log "
                                        "its loss (eval_loss) every `eval_steps` (default: every `save_steps`)")


def run(ctx: StageContext) -> dict:
    p: Params = ctx.params
    rows = ctx.load_mixture(p.data, size=p.mix_size)
    metrics = train_sft(ctx, p, rows, ctx.model_path, ctx.tokenizer_path or ctx.model_path, p.system_prompt,
                        p.chat_template)
    resumed_from = metrics["resumed_from_step"]
    ctx.add_report(f"SFT on {metrics['rows']} rows from {', '.join(d.describe() for d in p.data)}"
                   f"{' with LoRA r=%d' % p.lora.r if p.lora else ''}; {metrics['steps']} steps"
                   f"{f' (resumed at step {resumed_from})' if resumed_from else ''}.")
    return metrics
