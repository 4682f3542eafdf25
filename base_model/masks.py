"""Position ids and attention masks for a batch that may be left-padded and may continue a KV cache.

Shared by the model's forward (model.py) and the decode loops (generate.py), which is why it sits below both.
"""
from __future__ import annotations

import torch


def positions_and_mask(attention_mask, batch, seq, past, device):
    """Position ids and the boolean attention mask [B,1,S,T] (None = plain causal, the fast path).
    With padding, positions count real tokens only (left padding -> the first real token is position 0)."""
    total = past + seq
    if attention_mask is None or bool(attention_mask.all()):
        pos = torch.arange(past, total, device=device).expand(batch, seq)
        return pos, None
    am = attention_mask[:, :total].bool()
    pos = (am.long().cumsum(-1) - 1).clamp(min=0)[:, past:total]
    causal = torch.ones(seq, total, dtype=torch.bool, device=device).tril(past)
    mask = causal[None] & am[:, None, :]
    mask |= torch.ones(seq, total, dtype=torch.bool, device=device).tril(past).triu(past)[None]  # self: no NaN rows
    return pos, mask[:, None]
