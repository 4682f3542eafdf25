"""`native` rollout engine: batched generation in-process, for any transformers causal LM.

DeepSeekForCausalLM goes through base_model.generate.generate (absorbed-MLA latent KV cache); every other
model through `model.generate` with left-padded batches. Greedy when temperature is 0.
On the fast path `use_mtp` decodes with MTP speculative sampling (same distribution, fewer main-model passes) and
`record_routing` returns each sample's routed experts (`Sample.routes`, for router replay in training).
After each `generate`, `engine.stats` sums that call's batches: tokens (generated), seconds, and with MTP
mtp_proposed, mtp_accepted, mtp_acceptance.
"""
from __future__ import annotations

import time

import torch

from r1lab.rollout.base import Sample, SamplingParams, cut_at_stop


class NativeEngine:
    """`plain=True` uses `model.generate` even for DeepSeekForCausalLM (the "hf" engine: the reference)."""

    def __init__(self, model, tokenizer, batch_size: int = 16, device: str | None = None, plain: bool = False,
                 use_mtp: bool = False, record_routing: bool = False):
        if isinstance(model, str):
            from r1lab.loading import load_model

            model = load_model(model)
        if isinstance(tokenizer, str):
            from r1lab.loading import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        self.model, self.tok, self.batch_size, self.plain = model, tokenizer, batch_size, plain
        self.device = device or next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = self._eos_ids()
        self.use_mtp, self.record_routing = use_mtp, record_routing
        if (use_mtp or record_routing) and self._fast_path() is None:
            raise ValueError("use_mtp / record_routing need the fast path: a DeepSeekForCausalLM with plain=False "
                             f"(got {type(model).__name__}, plain={plain})")
        if use_mtp and not len(model.model.mtp_layers):
            raise ValueError("use_mtp needs a model with MTP layers (num_nextn_predict_layers >= 1)")
        self.stats: dict = {}

    def _eos_ids(self) -> list[int]:
        ids = set()
        if self.tok.eos_token_id is not None:
            ids.add(self.tok.eos_token_id)
        gc = getattr(self.model, "generation_config", None)
        e = getattr(gc, "eos_token_id", None) if gc is not None else None
        ids.update([e] if isinstance(e, int) else (e or []))
        return sorted(ids)

    def sync_weights(self, model) -> None:
        if model is not self.model:
            self.model.load_state_dict(model.state_dict())

    def _fast_path(self):
        from base_model import DeepSeekForCausalLM
        from base_model.generate import generate

        return generate if isinstance(self.model, DeepSeekForCausalLM) and not self.plain else None

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[list[Sample]]:
        was_training = self.model.training
        self.model.eval()
        try:
            fast = self._fast_path()
            out: list[list[Sample]] = []
            self.stats = {"tokens": 0, "seconds": 0.0}
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]):
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                for i in range(0, len(prompts), self.batch_size):
                    chunk = prompts[i: i + self.batch_size]
                    out.extend(self._fast(fast, chunk, sampling) if fast else self._hf(chunk, sampling))
            self.stats["tokens"] = sum(len(s.token_ids) for g in out for s in g)
            self.stats["seconds"] = time.perf_counter() - t0
            if self.use_mtp:
                p, a = self.stats.get("mtp_proposed", 0), self.stats.get("mtp_accepted", 0)
                self.stats.update(mtp_proposed=p, mtp_accepted=a, mtp_acceptance=a / p if p else 0.0)
            return out
        finally:
            self.model.train(was_training)

    def _fast(self, generate, prompts, sp: SamplingParams):
        res = generate(self.model, prompts, max_new_tokens=sp.max_new_tokens, temperature=sp.temperature,
                       top_p=sp.top_p, top_k=sp.top_k, eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
                       stop_strings=sp.stop, tokenizer=self.tok, num_samples=sp.n, seed=None,
                       use_mtp=self.use_mtp, record_routing=self.record_routing)
        stats = res[0][0].stats if res and res[0] else {}
        for k in ("mtp_proposed", "mtp_accepted"):
            if k in stats:
                self.stats[k] = self.stats.get(k, 0) + stats[k]
        out = []
        for group in res:
            samples = []
            for g in group:
                text = self.tok.decode([t for t in g.token_ids if t not in self.eos_ids], skip_special_tokens=False)
                text, hit = cut_at_stop(text, sp.stop)
                samples.append(Sample(list(g.token_ids), [float(x) for x in (g.logprobs or [])], text,
                                      "stop" if (hit or g.finish_reason == "stop") else "length", g.routes))
            out.append(samples)
        return out

    def _hf(self, prompts, sp: SamplingParams):
        from transformers import GenerationConfig

        L = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), L), dtype=torch.long)
        for j, p in enumerate(prompts):
            ids[j, L - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[j, L - len(p):] = 1
        sample = sp.temperature > 0
        gc = GenerationConfig(max_new_tokens=sp.max_new_tokens, do_sample=sample, num_return_sequences=sp.n,
                              eos_token_id=self.eos_ids or None, pad_token_id=self.pad_id,
                              return_dict_in_generate=True, output_logits=True, stop_strings=sp.stop or None,
                              **({"temperature": sp.temperature, "top_p": sp.top_p, "top_k": sp.top_k} if sample else {}))
        kw = {"tokenizer": self.tok} if sp.stop else {}
        res = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                  generation_config=gc, **kw)
        new = res.sequences[:, L:].cpu()
        logits = torch.stack(res.logits, dim=1).float().cpu()          # [B*n, T, V] raw logits
        if sample:
            logits = logits / sp.temperature
        lp = torch.log_softmax(logits, -1).gather(-1, new[:, : logits.shape[1], None]).squeeze(-1)
        out = []
        for j in range(len(prompts)):
            group = []
            for k in range(sp.n):
                r = j * sp.n + k
                toks = new[r].tolist()
                finish = "length"
                end = len(toks)
                for t, tid in enumerate(toks):
                    if tid in self.eos_ids:
                        end, finish = t + 1, "stop"
                        break
                toks = toks[:end]
                text = self.tok.decode([t for t in toks if t not in self.eos_ids], skip_special_tokens=False)
                text, hit = cut_at_stop(text, sp.stop)
                if hit:
                    finish = "stop"
                group.append(Sample(toks, lp[r, :end].tolist(), text, finish))
            out.append(group)
        return out
