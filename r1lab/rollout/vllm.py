"""`vllm` rollout engine: vllm.LLM on the stock checkpoint (GPU). Imported lazily; weights synced in place."""
from __future__ import annotations

import tempfile

from r1lab.rollout.base import Sample, SamplingParams


def vllm_available() -> bool:
    try:
        import torch
        import vllm  # noqa: F401

        return torch.cuda.is_available()
    except ImportError:
        return False


class VLLMEngine:
    def __init__(self, model, tokenizer=None, gpu_memory_utilization: float = 0.4, dtype: str = "auto",
                 max_model_len: int | None = None, seed: int = 0, **llm_kwargs):
        from vllm import LLM

        path = model
        if not isinstance(model, str):          # a live model: write it once as a checkpoint vLLM can open
            self._tmp = tempfile.TemporaryDirectory(prefix="r1lab-vllm-")
            model.save_pretrained(self._tmp.name)
            if tokenizer is not None and not isinstance(tokenizer, str):
                tokenizer.save_pretrained(self._tmp.name)
            path = self._tmp.name
        tok_path = tokenizer if isinstance(tokenizer, str) else path
        self.llm = LLM(model=path, tokenizer=tok_path, gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                       max_model_len=max_model_len, seed=seed, **llm_kwargs)

    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[list[Sample]]:
        from vllm import SamplingParams as VSP

        sp = VSP(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                 top_k=sampling.top_k if sampling.top_k > 0 else -1, max_tokens=sampling.max_new_tokens,
                 stop=sampling.stop, seed=sampling.seed, logprobs=0)
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], sp, use_tqdm=False)
        res = []
        for o in outs:
            group = []
            for c in o.outputs:
                ids = list(c.token_ids)
                lps = [float(d[t].logprob) for d, t in zip(c.logprobs or [], ids)] if c.logprobs else []
                group.append(Sample(ids, lps, c.text, "stop" if c.finish_reason == "stop" else "length"))
            res.append(group)
        return res

    def sync_weights(self, model) -> None:
        """Load the trainer's current weights into the running vLLM model (TRL's colocate approach)."""
        inner = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        for name, p in model.state_dict().items():
            inner.load_weights([(name, p)])
        self.llm.reset_prefix_cache()
