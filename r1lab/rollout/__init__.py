"""Rollout engines (DESIGN Seam 3): `get_engine("native" | "vllm" | "auto", model, tokenizer)`.

    engine = get_engine("native", model_or_path, tokenizer_or_path)
    groups = engine.generate([prompt_ids, ...], SamplingParams(n=4, temperature=0.6, top_p=0.95, max_new_tokens=128))
    groups[i][k] -> Sample(token_ids, logprobs, text, finish_reason)
"""
from __future__ import annotations

from r1lab.rollout.base import RolloutEngine, Sample, SamplingParams, cut_at_stop


def get_engine(name: str, model, tokenizer, **kwargs) -> RolloutEngine:
    """'native' (default, anywhere), 'vllm' (vLLM: in-process, or on CPU through the .venv-vllm worker; see
    r1lab/rollout/vllm.py), 'auto' (vllm when importable here and a GPU is present, else native)."""
    if name == "auto":
        from r1lab.rollout.vllm import vllm_available

        name = "vllm" if vllm_available() else "native"
    if name == "native":
        from r1lab.rollout.native import NativeEngine

        return NativeEngine(model, tokenizer, **kwargs)
    if name == "vllm":
        from r1lab.rollout.vllm import VLLMEngine

        return VLLMEngine(model, tokenizer, **kwargs)
    raise ValueError(f"unknown rollout engine {name!r}; expected native, vllm or auto")


__all__ = ["get_engine", "RolloutEngine", "Sample", "SamplingParams", "cut_at_stop"]
