"""Evaluation's view of a rollout engine (r1lab.rollout, the one generation path), behind one call:

    gen(prompts: list[list[int]], n, temperature, top_p, top_k, max_new_tokens, seed) -> list[list[Completion]]

Engines: "native", "hf" (plain ``model.generate`` on left-padded batches, any HF causal LM), "vllm", "auto".
Completions are decoded with special tokens kept (``</think>`` must survive) and cut at the first end-of-sequence
token; `n_tokens` counts the tokens before it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Completion:
    text: str
    n_tokens: int
    finish_reason: str   # "stop" | "length"


def eos_ids(model, tokenizer) -> list[int]:
    ids = []
    gc = getattr(model, "generation_config", None)
    for src in (getattr(gc, "eos_token_id", None), tokenizer.eos_token_id):
        if src is None:
            continue
        ids += [src] if isinstance(src, int) else list(src)
    return sorted(set(ids))


class EngineGenerator:
    """A rollout engine (r1lab.rollout.get_engine(kind, model, tokenizer)) as eval's generator."""

    def __init__(self, kind, model, tokenizer):
        from r1lab.rollout import SamplingParams, get_engine

        self.engine, self.SamplingParams, self.tok = get_engine(kind, model, tokenizer), SamplingParams, tokenizer
        self.eos = set(eos_ids(model, tokenizer)) if not isinstance(model, str) else {tokenizer.eos_token_id}

    def __call__(self, prompts, n=1, temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=256, seed=None):
        sp = self.SamplingParams(n=n, temperature=temperature, top_p=top_p, top_k=top_k,
                                 max_new_tokens=max_new_tokens, seed=seed)
        out = self.engine.generate(prompts, sp)
        # engines keep the EOS in token_ids; the response length counts the tokens before it
        return [[Completion(s.text, len(s.token_ids) - bool(s.token_ids and s.token_ids[-1] in self.eos),
                            s.finish_reason) for s in row] for row in out]


def make_generator(engine: str, model, tokenizer):
    """engine: "native", "hf", "vllm" or "auto" (see r1lab.rollout)."""
    return EngineGenerator(engine, model, tokenizer)
