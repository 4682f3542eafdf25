"""Multi-Token Prediction (V3 §2.2): D sequential modules, the k-th predicting token t_{i+k+1}.

Module k at position i:  x = eh_proj([enorm(Emb(t_{i+k})) ; hnorm(h_i^{k-1})])  (embedding FIRST, as vLLM and
transformers), then one full MLA+MoE block, logits = lm_head(shared_head.norm(x)). The embedding and output head
are the main model's. h^0 is the main model's final-normed hidden state. Loss: λ/D Σ_k CE_k.
On disk module k is layer index num_hidden_layers + k - 1 (model.layers.N.*), with copies of the embedding and
head (shared_head.head, embed_tokens) written for vLLM; at inference it can draft tokens for self-speculation.
"""
from __future__ import annotations

import torch
from torch import nn

from base_model.block import DecoderLayer
from base_model.norm import RMSNorm


class SharedHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)   # .head is the main lm_head (shared)


class MTPLayer(DecoderLayer):
    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        d = config.hidden_size
        self.enorm = RMSNorm(d, config.rms_norm_eps)
        self.hnorm = RMSNorm(d, config.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * d, d, bias=False)
        self.shared_head = SharedHead(config)

    def predict(self, h_prev: torch.Tensor, next_emb: torch.Tensor, cos, sin, mask=None, cache=None):
        """h_prev [B,S,D] (depth k-1 states at i), next_emb [B,S,D] (Emb(t_{i+k})) -> (new states, pre-head x)."""
        x = self.eh_proj(torch.cat([self.enorm(next_emb), self.hnorm(h_prev)], dim=-1))
        x = super().forward(x, cos, sin, mask, cache)
        return x, self.shared_head.norm(x)
