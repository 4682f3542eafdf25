"""`rejection_sampling` stage: R1's second data round — sample, keep what is right, write an SFT dataset.

From the stage's model (the `from:` stage, e.g. the R1-Zero-style GRPO model), sample `n` completions per
prompt with a rollout engine (native fast generate, or vLLM), score each with the named rewards, and keep a
sample only when EVERY named reward gives it ≥ `threshold` (default 1: "correct"; a reward returning None does
not apply to that row and is skipped; a sample no reward applies to is dropped). Then the filters R1 describes:
  format     the think/answer format is well formed (think_format = 1)
  language   no language mixing (language_consistency ≠ 0)
  length     min_tokens ≤ completion tokens ≤ max_tokens, and the completion finished (not cut by max_new_tokens)
  duplicates identical completions (whitespace-normalised) of one prompt are kept once
and at most `max_per_prompt` survivors per prompt. Rows go to data/samples.jsonl as prompt/completion pairs
(what the sft stage reads) with provenance: model, prompt id, sample index, reward (weighted sum) and each
reward's value, task, difficulty. The report gives the yield (kept / sampled and prompts with ≥ 1 kept) per task
and difficulty, and where the rejected samples went (which check rejected them first).
The sampling, scoring and filtering are r1lab/train/sampling.py (shared with the distill stage's teacher sampling);
generation goes through the rollout engine the pipeline's `rollout:` names (or this stage's `engine:`).
"""
from __future__ import annotations

from r1lab.stages.base import StageContext
from r1lab.train.sampling import RejectionParams, rejection_sample

PRODUCES_MODEL = False   # a `from:` naming this stage is a config error: it saves no model/


class Params(RejectionParams):
    pass


def run(ctx: StageContext) -> dict:
    return rejection_sample(ctx, ctx.params, ctx.model_path, ctx.tokenizer_path or ctx.model_path)
