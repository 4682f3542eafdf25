"""Multi-head Latent Attention (DeepSeek-V2/V3).

Keys and values are compressed jointly into a small latent c_kv (kv_lora_rank) plus ONE roped key k_pe per token
shared by all heads (qk_rope_head_dim). The query may be low-rank too (q_lora_rank). Per head:
    q = [q_nope | q_pe],   k = [W_UK c_kv | k_pe],   v = W_UV c_kv
Two equal forms:
  * training / prefill ("naive"): expand c_kv through kv_b_proj into per-head k_nope and v, then attention;
  * decode ("absorbed"): fold W_UK into the query and W_UV into the output, so attention runs directly over the
    cached latents:  scores = (q_nope W_UK) · c_kv + q_pe · k_pe,   out = (softmax · c_kv) W_UVᵀ.
    The cache holds d_c + d_r numbers per token per layer instead of 2·H·d_h.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from base_model.norm import RMSNorm
from base_model.rope import apply_rope, softmax_scale


class LatentCache:
    """The MLA KV cache: normed c_kv [B, T, d_c] and roped k_pe [B, T, d_r] per layer, preallocated to max_len.

    `length` is the number of valid positions; the model advances it after each forward. Rolling back
    (speculative decoding) is just lowering `length`.
    """

    def __init__(self, n_layers: int, batch: int, max_len: int, d_c: int, d_r: int, dtype, device,
                 first_layer: int = 0):
        self.first_layer = first_layer     # MTP layers keep their own cache, indexed from num_hidden_layers
        self.c_kv = torch.zeros(n_layers, batch, max_len, d_c, dtype=dtype, device=device)
        self.k_pe = torch.zeros(n_layers, batch, max_len, d_r, dtype=dtype, device=device)
        self.length = 0

    def write(self, layer: int, c_kv: torch.Tensor, k_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's latents at [length, length+S) and return all valid ones for the layer."""
        end, i = self.length + c_kv.shape[1], layer - self.first_layer
        self.c_kv[i, :, self.length:end] = c_kv
        self.k_pe[i, :, self.length:end] = k_pe
        return self.c_kv[i, :, :end], self.k_pe[i, :, :end]

    def bytes_per_token(self) -> int:
        n_layers, _, _, d_c = self.c_kv.shape
        return n_layers * (d_c + self.k_pe.shape[-1]) * self.c_kv.element_size()

    def select(self, rows: torch.Tensor) -> None:
        """Keep only some batch rows (finished sequences dropped)."""
        self.c_kv, self.k_pe = self.c_kv[:, rows], self.k_pe[:, rows]


class MLA(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = config.num_attention_heads
        self.d_nope, self.d_rope, self.d_v = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
        self.d_c, self.q_lora_rank = config.kv_lora_rank, config.q_lora_rank
        d, h, d_qk = config.hidden_size, self.n_heads, self.d_nope + self.d_rope
        if self.q_lora_rank is None:
            self.q_proj = nn.Linear(d, h * d_qk, bias=False)
        else:
            self.q_a_proj = nn.Linear(d, self.q_lora_rank, bias=config.attention_bias)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank, eps=1e-6)   # transformers & vLLM: eps 1e-6 here
            self.q_b_proj = nn.Linear(self.q_lora_rank, h * d_qk, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d, self.d_c + self.d_rope, bias=config.attention_bias)
        self.kv_a_layernorm = RMSNorm(self.d_c, eps=1e-6)
        self.kv_b_proj = nn.Linear(self.d_c, h * (self.d_nope + self.d_v), bias=False)
        self.o_proj = nn.Linear(h * self.d_v, d, bias=config.attention_bias)
        self.scale = softmax_scale(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
                cache: LatentCache | None = None) -> torch.Tensor:
        """x [B, S, D]; cos/sin [B, S, d_r/2]; mask: bool [B, 1, S, T] (True = may attend) or None for causal."""
        b, s, _ = x.shape
        q = self.q_proj(x) if self.q_lora_rank is None else self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.view(b, s, self.n_heads, -1).transpose(1, 2)
        q_nope, q_pe = q.split([self.d_nope, self.d_rope], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)
        c_kv, k_pe = self.kv_a_proj_with_mqa(x).split([self.d_c, self.d_rope], dim=-1)
        c_kv = self.kv_a_layernorm(c_kv)                                   # the norm is on c_kv only, never k_pe
        k_pe = apply_rope(k_pe.unsqueeze(1), cos, sin).squeeze(1)         # [B, S, d_r], one key for all heads
        if cache is not None:
            prefill = cache.length == 0
            c_kv, k_pe = cache.write(self.layer_idx, c_kv, k_pe)
            if not prefill and self._absorbable():
                return self._absorbed(q_nope, q_pe, c_kv, k_pe, mask)
        return self._naive(q_nope, q_pe, c_kv, k_pe, mask)

    def _naive(self, q_nope, q_pe, c_kv, k_pe, mask):
        b, h, s, _ = q_nope.shape
        t = c_kv.shape[1]
        kv = self.kv_b_proj(c_kv).view(b, t, h, self.d_nope + self.d_v).transpose(1, 2)
        k_nope, v = kv.split([self.d_nope, self.d_v], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)
        k = torch.cat([k_nope, k_pe.unsqueeze(1).expand(b, h, t, self.d_rope)], dim=-1)
        causal = mask is None and s == t
        if mask is None and s != t:   # queries are the last s positions of t
            mask = torch.ones(s, t, dtype=torch.bool, device=q.device).tril(t - s)[None, None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, h * self.d_v))

    def _absorbable(self) -> bool:
        # a wrapped kv_b_proj (peft LoRA) changes the effective weight: expand through the module instead
        return isinstance(self.kv_b_proj, nn.Linear) and not hasattr(self.kv_b_proj, "base_layer")

    def _absorbed(self, q_nope, q_pe, c_kv, k_pe, mask):
        b, h, s, _ = q_nope.shape
        t = c_kv.shape[1]
        w = self.kv_b_proj.weight.view(h, self.d_nope + self.d_v, self.d_c)
        w_uk, w_uv = w[:, : self.d_nope], w[:, self.d_nope:]
        q_lat = torch.einsum("bhsn,hnc->bhsc", q_nope, w_uk)                   # W_UK folded into the query
        scores = (torch.einsum("bhsc,btc->bhst", q_lat, c_kv)
                  + torch.einsum("bhsr,btr->bhst", q_pe, k_pe)) * self.scale
        if mask is None:
            mask = torch.ones(s, t, dtype=torch.bool, device=q_nope.device).tril(t - s)[None, None]
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.softmax(dim=-1, dtype=torch.float32).to(c_kv.dtype)
        o_lat = torch.einsum("bhst,btc->bhsc", probs, c_kv)                     # attend over latents only
        out = torch.einsum("bhsc,hvc->bshv", o_lat, w_uv)                       # W_UV folded into the output
        return self.o_proj(out.reshape(b, s, h * self.d_v))
