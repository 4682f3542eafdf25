"""The rollout protocol (DESIGN Seam 3): token-id prompts in, n samples per prompt out.

Rejection sampling and evaluation take any engine; `native` works everywhere, `vllm` where a GPU is.
Logprobs are those of the sampled tokens under softmax(logits / temperature) (temperature 1 when greedy),
before top-k/top-p truncation — as base_model.generate reports them. `text` is the decoded completion without
EOS and cut before the first stop string (vLLM's default); `token_ids` keep the EOS / stop-string tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0        # 0 -> greedy
    top_p: float = 1.0
    top_k: int = 0                  # 0 -> off
    max_new_tokens: int = 256
    stop: list[str] | None = None   # stop strings (not included in `text`)
    seed: int | None = None


@dataclass
class Sample:
    token_ids: list[int]
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"   # "stop" (EOS or a stop string) | "length"
    routes: object | None = None    # router replay: experts [len(prompt) + len(token_ids), n_moe_layers, K] (-1: not fed)


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[list[Sample]]: ...

    def sync_weights(self, model) -> None: ...


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    if not stop:
        return text, False
    hits = [text.find(s) for s in stop if s and s in text]
    if not hits:
        return text, False
    return text[: min(hits)], True
