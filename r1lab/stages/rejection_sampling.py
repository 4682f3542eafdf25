"""`rejection_sampling` stage: R1's second data round — sample, keep what is right, write an SFT dataset.

From the stage's model (the `from:` stage, e.g. the R1-Zero-style GRPO model), sample `n` completions per prompt,
keep those every named reward passes (≥ `threshold`) and that pass R1's filters (format, language, length,
duplicates, a cap per prompt), and write them to data/samples.jsonl as prompt/completion pairs with provenance — what
the sft stage reads. The sampling, scoring and filtering are r1lab/train/sampling.py (its doc has the details; the
distill stage's teacher sampling is the same code); generation goes through the rollout engine the pipeline's
`rollout:` names, or this stage's `engine:`.
"""
from __future__ import annotations

from r1lab.stages.base import StageContext
from r1lab.train.sampling import RejectionParams, rejection_sample

METRICS = ("prompts", "sampled", "kept", "yield", "rollout_tokens_per_s", "rollout_tokens", "mtp_acceptance")   # run() returns
PRODUCES_MODEL = False   # a `from:` naming this stage is a config error: it saves no model/


class Params(RejectionParams):
    pass


def run(ctx: StageContext) -> dict:
    return rejection_sample(ctx, ctx.params, ctx.model_path, ctx.tokenizer_path or ctx.model_path)
