"""Fast generation for DeepSeekForCausalLM: batched, left-padded prompts over the MLA latent KV cache.

Prefill runs the training form of MLA once over the prompts and fills the cache with c_kv and k_pe; each decode
step feeds one token per row and attends over the cached latents in the absorbed form. Finished rows are dropped
from the batch (their cache rows too), so a long straggler does not pay for the whole batch.
Sampling: greedy (temperature 0) or temperature / top-k / top-p; stops on EOS ids or stop strings.
MTP self-speculation (`use_mtp`, speculative.py): the MTP head drafts the token after next, the main model verifies
[token, draft] in one pass; exact in distribution when sampling, exactly the greedy output at temperature 0.
`record_routing` fills each result's `routes` with the experts every token used when it was fed (router replay).
`generate(...)` is the list-of-token-ids API the rollout engine uses; `hf_generate` is the model's
`.generate(input_ids, attention_mask, ...)` (the transformers API TRL calls).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch

from base_model import routing, threads
from base_model.sampling import sample
from base_model.speculative import decode_mtp


@dataclass
class GenerationResult:
    token_ids: list[int]
    logprobs: list[float]          # log p(token) under softmax(logits / temperature) (temperature 1 when greedy)
    finish_reason: str             # "stop" (EOS or stop string) | "length"
    text: str | None = None
    stats: dict = field(default_factory=dict)
    routes: torch.Tensor | None = None   # record_routing: [len(prompt) + len(tokens), n_moe_layers, K] int16, -1 = not fed


def _left_pad(prompts: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p):] = torch.tensor(p, device=device)
            mask[i, width - len(p):] = 1
    return ids, mask


class _StopChecker:
    def __init__(self, eos_ids, stop_strings, tokenizer):
        self.eos = set([eos_ids] if isinstance(eos_ids, int) else (eos_ids or []))
        self.stops = [s for s in (stop_strings or []) if s]
        self.tokenizer = tokenizer
        if self.stops and tokenizer is None:
            raise ValueError("stop_strings need a tokenizer to decode with")

    def hit(self, tokens: list[int]) -> bool:
        if tokens and tokens[-1] in self.eos:
            return True
        if self.stops:
            tail = self.tokenizer.decode(tokens[-16:], skip_special_tokens=False)
            return any(s in tail for s in self.stops)
        return False


@torch.no_grad()
def _decode(model, ids, mask, max_new_tokens, temperature, top_p, top_k, checker, gen, recorder=None):
    """Plain latent-cache decoding. Returns per row (tokens, logprobs, finish_reason, fed routes or None).
    `recorder` (routing.record): the routes of every token fed, prompt (its real positions) first."""
    b = ids.shape[0]
    cache = model.new_cache(b, ids.shape[1] + max_new_tokens + 1)
    logits = model(ids, attention_mask=mask, past_key_values=cache, logits_to_keep=1).logits[:, -1]
    fed = [None] * b
    if recorder is not None:
        routes = recorder.pop().cpu()
        fed = routing.prompt_routes(routes, mask)
    rows = torch.arange(b, device=ids.device)            # original row of each active row
    out = [([], [], "length") for _ in range(b)]
    for step in range(max_new_tokens):
        tok, lp = sample(logits, temperature, top_p, top_k, gen)
        done = []
        for j, (r, t, l) in enumerate(zip(rows.tolist(), tok.tolist(), lp.tolist())):
            out[r][0].append(t)
            out[r][1].append(l)
            if checker.hit(out[r][0]):
                out[r] = (out[r][0], out[r][1], "stop")
                done.append(j)
        if step == max_new_tokens - 1:
            break
        if done:
            keep = torch.tensor([j for j in range(len(rows)) if j not in set(done)], dtype=torch.long,
                                device=ids.device)
            if keep.numel() == 0:
                break
            rows, tok, mask = rows[keep], tok[keep], mask[keep]
            cache.select(keep)
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        threads.adapt()
        logits = model(tok[:, None], attention_mask=mask, past_key_values=cache).logits[:, -1]
        if recorder is not None:
            routes = recorder.pop().cpu()
            for j, r in enumerate(rows.tolist()):
                fed[r].append(routes[j])
    return [(*o, f) for o, f in zip(out, fed)]


@torch.no_grad()
def generate(model, prompts: list[list[int]], max_new_tokens: int = 64, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, eos_token_id=None, pad_token_id: int = 0, stop_strings=None,
             tokenizer=None, num_samples: int = 1, seed: int | None = None,
             use_mtp: bool = False, record_routing: bool = False) -> list[list[GenerationResult]]:
    """Generate `num_samples` completions for each prompt (lists of token ids). Returns [prompt][sample].
    `use_mtp`: MTP speculative decoding (greedy or sampling; stats mtp_proposed / mtp_accepted / mtp_acceptance).
    `record_routing`: each result's `routes` holds the experts of every prompt and completion token."""
    was_training = model.training
    model.eval()
    dev = model.lm_head.weight.device
    flat = [p for p in prompts for _ in range(num_samples)]
    ids, mask = _left_pad(flat, pad_token_id, dev)
    checker = _StopChecker(eos_token_id, stop_strings, tokenizer)
    gen = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
    stats = {}
    if use_mtp and not len(model.model.mtp_layers):
        raise ValueError("MTP speculative decoding needs a model with MTP layers (num_nextn_predict_layers >= 1)")
    with (routing.record(model) if record_routing else contextlib.nullcontext()) as rec:
        if use_mtp:
            rows, stats = decode_mtp(model, ids, mask, max_new_tokens, temperature, top_p, top_k, checker, gen, rec)
        else:
            rows = _decode(model, ids, mask, max_new_tokens, temperature, top_p, top_k, checker, gen, rec)
    model.train(was_training)
    results = []
    for prompt, (toks, lps, reason, fed) in zip(flat, rows):
        text = tokenizer.decode(toks, skip_special_tokens=False) if tokenizer is not None else None
        if text is not None and reason == "stop" and checker.stops:       # cut after the stop string
            for s in checker.stops:
                if s in text:
                    text = text[: text.index(s) + len(s)]
        routes = routing.rollout_routes(fed, len(prompt) + len(toks)) if fed is not None else None
        results.append(GenerationResult(toks, lps, reason, text, stats, routes))
    return [results[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]


# generation options the fast path does not implement, each with the value that means "off" (None is off too)
_UNSUPPORTED = {"num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0,
                "penalty_alpha": 0, "constraints": None, "force_words_ids": None, "bad_words_ids": None,
                "output_scores": False, "output_logits": False, "return_dict_in_generate": False}
_UNSUPPORTED_KWARGS = ("logits_processor", "stopping_criteria", "streamer", "prefix_allowed_tokens_fn",
                       "assistant_model")


@torch.no_grad()
def hf_generate(model, input_ids, attention_mask=None, generation_config=None, **kwargs):
    """`model.generate` with the transformers API on our fast path: left-padded input_ids [B, P] in, [B·n, P+new]
    out (rows padded with pad_token_id after they stop). Options our path does not implement fall back to
    transformers' generic loop (no cache), so nothing is silently ignored."""
    gc = copy.deepcopy(generation_config if generation_config is not None else model.generation_config)
    rest = gc.update(**kwargs)
    needs_hf = any(getattr(gc, k, None) not in (off, None) for k, off in _UNSUPPORTED.items()) \
        or any(rest.get(k) is not None for k in _UNSUPPORTED_KWARGS)
    if needs_hf or input_ids is None:
        return _transformers_generate(model, input_ids, attention_mask, gc, rest)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    p = input_ids.shape[1]
    max_new = gc.max_new_tokens if gc.max_new_tokens is not None else max(gc.max_length - p, 1)
    eos = gc.eos_token_id
    pad = gc.pad_token_id if gc.pad_token_id is not None else (eos if isinstance(eos, int) else (eos or [0])[0])
    n = gc.num_return_sequences or 1
    ids = input_ids.repeat_interleave(n, 0)
    mask = attention_mask.repeat_interleave(n, 0)
    checker = _StopChecker(eos, gc.stop_strings if isinstance(gc.stop_strings, list) else
                           ([gc.stop_strings] if gc.stop_strings else None), rest.get("tokenizer"))
    was_training = model.training
    model.eval()
    if gc.do_sample:
        rows = _decode(model, ids, mask, max_new, gc.temperature or 1.0, gc.top_p or 1.0, gc.top_k or 0, checker, None)
    else:
        rows = _decode(model, ids, mask, max_new, 0.0, 1.0, 0, checker, None)
    model.train(was_training)
    width = max(len(r[0]) for r in rows)
    new = torch.full((len(rows), width), pad, dtype=torch.long, device=ids.device)
    for i, (toks, *_) in enumerate(rows):
        new[i, :len(toks)] = torch.tensor(toks, device=ids.device)
    return torch.cat([ids, new], dim=1)


def _transformers_generate(model, input_ids, attention_mask, gc, rest):
    """transformers' generic generation loop on our model, without a KV cache (the forward recomputes)."""
    from transformers import GenerationMixin
    if not gc.stop_strings:
        rest.pop("tokenizer", None)
    return GenerationMixin.generate(model, input_ids=input_ids, attention_mask=attention_mask,
                                    generation_config=gc, use_cache=False, **rest)
