"""A decoder block: x + MLA(norm(x)), then + FFN(norm(.)); the FFN is dense for the first
`first_k_dense_replace` layers and DeepSeekMoE after."""
from __future__ import annotations

from torch import nn

from base_model.mla import MLA
from base_model.moe import MLP, MoE
from base_model.norm import RMSNorm


class DecoderLayer(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.self_attn = MLA(config, layer_idx)
        self.mlp = MoE(config) if layer_idx >= config.first_k_dense_replace else MLP(config.hidden_size,
                                                                                   config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, mask=None, cache=None, routes=None):
        """`routes` [B, S, K]: the experts this layer's MoE uses (router replay); None chooses as usual."""
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        h = self.post_attention_layernorm(x)
        return x + (self.mlp(h, routes) if routes is not None else self.mlp(h))
