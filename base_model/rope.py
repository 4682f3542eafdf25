"""Decoupled RoPE: rotary embedding on the small rope part of q and k only (MLA's q_pe / k_pe), with YaRN.

DeepSeek rotates INTERLEAVED pairs (x0,x1), (x2,x3), ... each by one frequency (the reference, transformers with
rope_interleave=true and vLLM all do). `apply_rope` returns the rotated pairs de-interleaved —
[rotated evens | rotated odds] — the same permutation for q and k, so q·k is unchanged and no copy is needed.

YaRN (context extension): frequencies blend interpolation (pos/factor) and extrapolation with a linear ramp between
beta_fast and beta_slow rotations; cos/sin are multiplied by an attention factor, and the softmax scale by mscale².
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_frequencies(config) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [d_r/2] and the cos/sin attention factor, for 'default' or 'yarn' rope_parameters."""
    rp = config.rope_parameters
    dim, base = config.qk_rope_head_dim, rp["rope_theta"]
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)
    if rp.get("rope_type", "default") == "default":
        return 1.0 / pos_freqs, 1.0
    if rp["rope_type"] != "yarn":
        raise ValueError(f"rope_type {rp['rope_type']!r} is not supported (use 'default' or 'yarn')")
    orig = rp["original_max_position_embeddings"]
    factor = rp.get("factor") or config.max_position_embeddings / orig
    attn = rp.get("attention_factor")
    if attn is None:
        ms, ms_all = rp.get("mscale"), rp.get("mscale_all_dim")
        attn = _mscale(factor, ms) / _mscale(factor, ms_all) if ms and ms_all else _mscale(factor)
    beta_fast, beta_slow = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rp.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolate) + (1.0 / pos_freqs) * extrapolate
    return inv_freq, float(attn)


def softmax_scale(config) -> float:
    """(d_n + d_r)^-0.5, times mscale² under YaRN when mscale_all_dim is set (V3)."""
    scale = (config.qk_nope_head_dim + config.qk_rope_head_dim) ** -0.5
    rp = config.rope_parameters
    if rp.get("rope_type", "default") != "default" and rp.get("mscale_all_dim"):
        m = _mscale(rp["factor"], rp["mscale_all_dim"])
        scale = scale * m * m
    return scale


class RotaryEmbedding(nn.Module):
    """position_ids [B, S] -> (cos, sin), each [B, S, d_r/2] in fp32."""

    def __init__(self, config):
        super().__init__()
        inv_freq, self.attention_factor = rope_frequencies(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.float().to(position_ids.device)
        return freqs.cos() * self.attention_factor, freqs.sin() * self.attention_factor


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, S, d_r] (interleaved pairs); cos/sin [B, S, d_r/2]. Returns [rot evens | rot odds]."""
    cos, sin = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
