"""Generation backends for evaluation, behind one call:

    gen(prompts: list[list[int]], n, temperature, top_p, top_k, max_new_tokens, seed) -> list[list[Completion]]

"native" / "vllm" go through the rollout engines (r1lab.rollout.get_engine); "hf" is plain
``model.generate`` on left-padded batches (any HF causal LM; also the reference the native engine is
benchmarked against). Completions are decoded with special tokens kept (``</think>`` must survive) and cut
at the first end-of-sequence token.
"""
from __future__ import annotations

import warnings
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


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)


class HFGenerator:
    """Batched ``model.generate`` with left padding; one sequence per (prompt, sample)."""

    def __init__(self, model, tokenizer):
        self.model, self.tok = model, tokenizer
        self.eos = eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad = pad if pad is not None else (self.eos[0] if self.eos else 0)

    def __call__(self, prompts, n=1, temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=256, seed=None):
        import torch
        if seed is not None:
            torch.manual_seed(seed)
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        kw = dict(max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=self.pad,
                  eos_token_id=self.eos or None)
        if temperature and temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or 0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            out = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kw)
        new = out[:, width:].tolist()
        results = []
        for i in range(len(prompts)):
            row = []
            for seq in new[i * n:(i + 1) * n]:
                stop = next((j for j, t in enumerate(seq) if t in self.eos), None)
                toks = seq if stop is None else seq[:stop]
                row.append(Completion(_decode(self.tok, toks), len(toks),
                                      "stop" if stop is not None else "length"))
            results.append(row)
        return results


class EngineGenerator:
    """A rollout engine (CONTRACTS: r1lab.rollout.get_engine(kind, model, tokenizer))."""

    def __init__(self, kind, model, tokenizer):
        from r1lab.rollout import SamplingParams, get_engine
        self.engine, self.SamplingParams, self.tok = get_engine(kind, model, tokenizer), SamplingParams, tokenizer
        self.eos = set(eos_ids(model, tokenizer))

    def __call__(self, prompts, n=1, temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=256, seed=None):
        sp = self.SamplingParams(n=n, temperature=temperature, top_p=top_p, top_k=top_k,
                                 max_new_tokens=max_new_tokens, seed=seed)
        out = self.engine.generate(prompts, sp)
        # engines keep the EOS in token_ids; the response length counts the tokens before it (as HFGenerator)
        return [[Completion(s.text, len(s.token_ids) - bool(s.token_ids and s.token_ids[-1] in self.eos),
                            s.finish_reason) for s in row] for row in out]


def make_generator(engine: str, model, tokenizer):
    """engine: "native" (rollout engine; falls back to HF generate while r1lab.rollout has no engine), "hf", "vllm"."""
    if engine == "hf":
        return HFGenerator(model, tokenizer)
    if engine in ("native", "vllm"):
        try:
            return EngineGenerator(engine, model, tokenizer)
        except ImportError:
            if engine == "vllm":
                raise
            warnings.warn("r1lab.rollout has no native engine yet; evaluating with HF generate")
            return HFGenerator(model, tokenizer)
    raise ValueError(f"engine {engine!r}: expected native, hf or vllm")
