"""Token sampling for the decode loops: temperature, top-k, top-p, and the logprob convention.

`process(logits, T, top_p, top_k)` -> (logp, probs):
  logp  = log_softmax(logits / T) BEFORE truncation (the logprob every engine reports; T = 1 when greedy);
  probs = the distribution actually sampled from: softmax(logits / T) restricted to the top-k set and then to the
          smallest prefix of the sorted tokens reaching top_p, renormalised; one-hot on the argmax when T == 0.
`draw(probs, gen)` samples one token per row by inverse CDF with one uniform per row (`probs` need not sum to 1).
Both the plain decode loop and MTP speculative sampling (speculative.py) use these, so the draft and the target
distributions are processed the same way.
"""
from __future__ import annotations

import torch


def process(logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [..., V] -> (logp [..., V] untruncated, probs [..., V] the sampling distribution)."""
    logits = logits.float()
    if temperature <= 0:
        logp = torch.log_softmax(logits, -1)
        return logp, torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    logp = torch.log_softmax(logits / temperature, -1)
    masked = logp.clone()
    if top_k and top_k < logits.shape[-1]:
        kth = masked.topk(top_k, -1).values[..., -1:]
        masked[masked < kth] = float("-inf")
    if top_p < 1.0:
        sorted_lp, order = masked.sort(-1, descending=True)
        sp = sorted_lp.softmax(-1)
        drop = sp.cumsum(-1) - sp > top_p                          # keep the smallest prefix reaching top_p
        masked.scatter_(-1, order, sorted_lp.masked_fill(drop, float("-inf")))
    return logp, masked.softmax(-1)


def draw(probs: torch.Tensor, gen) -> torch.Tensor:
    """probs [B, V] (non-negative, any positive sum) -> tokens [B]: inverse CDF, one uniform per row
    (torch.multinomial draws an exponential per vocabulary entry: ~1 ms a call for 16 x 4096 on CPU, a fifth of a
    tiny model's decode step)."""
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=gen, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    tok = torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=cdf.shape[-1] - 1)
    return torch.where(probs.gather(1, tok[:, None])[:, 0] > 0, tok, probs.argmax(-1))   # cdf round-off


def sample(logits: torch.Tensor, temperature: float, top_p: float, top_k: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, V] -> (tokens [B], logprobs [B]); greedy (argmax, no randomness drawn) when temperature is 0."""
    logp, probs = process(logits, temperature, top_p, top_k)
    tok = logits.argmax(-1) if temperature <= 0 else draw(probs, gen)
    return tok, logp.gather(1, tok[:, None])[:, 0]
