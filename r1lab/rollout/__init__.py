"""Rollout engines (DESIGN Seam 3): the one thing in r1lab that turns prompts into completions, for GRPO (plugged into
TRL's trainer as its `rollout_func`), rejection sampling, distillation's teacher sampling and eval alike.

    engine = get_engine("native", model_or_path, tokenizer_or_path)
    groups = engine.generate([prompt_ids, ...], SamplingParams(n=4, temperature=0.6, top_p=0.95, max_new_tokens=128))
    groups[i][k] -> Sample(token_ids, logprobs, text, finish_reason)

Engines: "native" (in-process; our latent-KV-cache generate for DeepSeekForCausalLM, `model.generate` for any other
causal LM), "hf" (plain `model.generate` for every model: the reference the native engine is checked against),
"vllm" (vLLM: in-process, or on CPU through the .venv-vllm worker; see r1lab/rollout/vllm.py), "auto" (vllm
where it is importable here and a GPU is present, else native). The pipeline's `rollout:` picks the engine of every
stage that samples; a stage's own `engine:` overrides it.
"""
from __future__ import annotations

from r1lab.rollout.base import RolloutEngine, Sample, SamplingParams, cut_at_stop

ENGINES = ("native", "hf", "vllm", "auto")


def resolve_engine(name: str | None) -> str:
    """The one place "auto" (and None) is decided: vllm where it is installed and usable, else native."""
    if name in (None, "auto"):
        from r1lab.rollout.vllm import vllm_available

        return "vllm" if vllm_available() else "native"
    if name not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; expected one of: {', '.join(ENGINES)}")
    return name


def require_native(name: str | None, what: list[str]) -> None:
    """Options only the native engine has (MTP drafting, routing records), named by `what` (the keys that asked for
    them; empty: nothing asked): an error with any other engine ("auto" resolved first), never silently dropped."""
    if what and resolve_engine(name) != "native":
        raise ValueError(f"{', '.join(what)} needs the native rollout engine, not {resolve_engine(name)}")


def get_engine(name: str | None, model, tokenizer, **kwargs) -> RolloutEngine:
    """An engine over a loaded model (or a checkpoint path; vllm opens the path itself)."""
    name = resolve_engine(name)
    if name in ("native", "hf"):
        from r1lab.rollout.native import NativeEngine

        return NativeEngine(model, tokenizer, plain=name == "hf", **kwargs)
    from r1lab.rollout.vllm import VLLMEngine

    return VLLMEngine(model, tokenizer, **kwargs)


def open_engine(name: str | None, model_path: str, tokenizer, device: str | None = None, **kwargs) -> RolloutEngine:
    """An engine over the checkpoint at `model_path`: loaded here (on the GPU when there is one, in the inference
    dtype) for native/hf; vLLM loads it itself."""
    name = resolve_engine(name)
    if name == "vllm":
        return get_engine(name, model_path, tokenizer, **kwargs)
    import torch

    from r1lab.loading import inference_dtype, load_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(model_path, dtype=inference_dtype(device), device=device).eval()
    return get_engine(name, model, tokenizer, **kwargs)


__all__ = ["ENGINES", "get_engine", "open_engine", "require_native", "resolve_engine", "RolloutEngine", "Sample", "SamplingParams",
           "cut_at_stop"]
