"""FP8 training, DeepSeek-V3's fine-grained recipe (V3 report §3.3), for every nn.Linear except the sensitive ones.

The idea: a GEMM's inputs are cast to float8 E4M3 (4 exponent bits, 3 mantissa bits, max 448) with *many small
scales* instead of one per tensor, so one outlier only spoils the 128 values that share its scale:
  - activations and activation gradients: 1x128 tiles (one token x 128 channels), one scale each;
  - weights: 128x128 blocks, one scale each;
  - scale = amax(group) / 448, so each group uses the whole E4M3 range (online, from the current values);
  - the groups always lie along the GEMM's contraction dimension, so a scale is constant inside each 128-long
    partial dot product: the result of each 128-wide K chunk is multiplied by its two scales and added up in
    fp32 ("promotion to CUDA cores every 128 elements"; on CPU the whole GEMM is fp32 anyway).
All three GEMMs of a linear layer are FP8:
  Fprop  y  = x  @ W^T   x: 1x128 tiles along K (in-features),   W: 128x128 blocks
  Dgrad  dx = dy @ W     dy: 1x128 tiles along N (out-features), W: 128x128 blocks (same blocks, transposed)
  Wgrad  dW = dy^T @ x   contraction over tokens, so dy and x are quantised in 128x1 tiles (128 tokens x 1 channel)
Kept in high precision (as in V3): embeddings, the output head, the MoE router (`mlp.gate`), norms, the attention
core (softmax(QK^T)V is not an nn.Linear), master weights, gradients and optimizer state (fp32 here).

Two backends, same numerics up to accumulation order:
  - CPU (and any device without FP8 GEMMs): quantise-dequantise — the tensors really are rounded through
    torch.float8_e4m3fn and back (not a no-op), and the GEMM runs in fp32. torch 2.13's CPU `_scaled_mm` rejects
    block-wise scales and an fp8 GEMM on CPU is slower than fp32, so this is both the faithful and fast option.
  - CUDA with FP8 tensor cores (sm89+): for each 128-wide K chunk one `torch._scaled_mm` on the raw fp8 operands
    (unit tensor-wise scales, fp32 output), then the chunk's outer product of row scales x column scales is
    applied and the chunks are summed in fp32 — the same math DeepGEMM does inside one kernel, written with
    stock torch. Correct and faithful; not the fastest (one GEMM launch per 128 of K).
Switch on with `convert_to_fp8(model)` (pretrain.py: `--fp8`). The modules stay `nn.Linear` subclasses with the same
parameter names, so checkpoints are unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0          # largest finite E4M3 value
GROUP = 128              # tile length / block side
_EPS = 1e-12

# ------------------------------------------------------------------------------------------------ quantisers


def _pad_last(x: torch.Tensor, multiple: int) -> torch.Tensor:
    r = (-x.shape[-1]) % multiple
    return F.pad(x, (0, r)) if r else x


def quantize_tiles(x: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """1 x `group` tiles along the last dim: x [..., K] -> (q [..., Kp] float8, scale [..., Kp/group] fp32).

    K is zero-padded up to a multiple of `group` (a zero pad changes no amax and no dot product).
    """
    xp = _pad_last(x.float(), group)
    t = xp.reshape(*xp.shape[:-1], -1, group)
    scale = t.abs().amax(-1).clamp_min(_EPS) / FP8_MAX
    q = (t / scale[..., None]).to(FP8)          # real E4M3 rounding (round-to-nearest-even, saturating)
    return q.reshape(xp.shape), scale


def dequantize_tiles(q: torch.Tensor, scale: torch.Tensor, k: int | None = None, group: int = GROUP) -> torch.Tensor:
    t = q.float().reshape(*q.shape[:-1], -1, group) * scale[..., None]
    t = t.reshape(q.shape)
    return t[..., :k] if k is not None else t


def quantize_blocks(w: torch.Tensor, block: int = GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """`block` x `block` blocks of a 2-D weight: w [N, K] -> (q [Np, Kp] float8, scale [Np/block, Kp/block] fp32)."""
    n, k = w.shape
    wp = F.pad(w.float(), (0, (-k) % block, 0, (-n) % block))
    Np, Kp = wp.shape
    b = wp.reshape(Np // block, block, Kp // block, block)
    scale = b.abs().amax(dim=(1, 3)).clamp_min(_EPS) / FP8_MAX
    q = (b / scale[:, None, :, None]).to(FP8)
    return q.reshape(Np, Kp), scale


def dequantize_blocks(q: torch.Tensor, scale: torch.Tensor, shape: tuple[int, int] | None = None,
                      block: int = GROUP) -> torch.Tensor:
    Np, Kp = q.shape
    w = (q.float().reshape(Np // block, block, Kp // block, block) * scale[:, None, :, None]).reshape(Np, Kp)
    return w[:shape[0], :shape[1]] if shape is not None else w


def qdq_tiles(x: torch.Tensor, group: int = GROUP) -> torch.Tensor:
    """Round x through E4M3 with 1x`group` tile scales along the last dim; returns fp32 of x's shape."""
    q, s = quantize_tiles(x, group)
    return dequantize_tiles(q, s, x.shape[-1], group)


def qdq_blocks(w: torch.Tensor, block: int = GROUP) -> torch.Tensor:
    q, s = quantize_blocks(w, block)
    return dequantize_blocks(q, s, tuple(w.shape), block)


def qdq_tensorwise(x: torch.Tensor) -> torch.Tensor:
    """One scale for the whole tensor (the coarse baseline the fine-grained scheme improves on)."""
    s = x.abs().amax().float().clamp_min(_EPS) / FP8_MAX
    return (x.float() / s).to(FP8).float() * s

# ------------------------------------------------------------------------------------------------ GEMMs


def _cuda_fp8_ok(t: torch.Tensor) -> bool:
    return t.is_cuda and hasattr(torch, "_scaled_mm") and torch.cuda.get_device_capability(t.device) >= (8, 9)


def _gemm_fp8_cuda(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [M, K] @ b[N, K]^T with a in 1x128 tiles and b in 128x128 blocks, FP8 tensor cores, fp32 promotion per K chunk."""
    M, N = a.shape[0], b.shape[0]
    aq, sa = quantize_tiles(F.pad(a, (0, 0, 0, (-M) % 16)))          # [Mp, Kp], [Mp, Kp/128]
    bq, sb = quantize_blocks(b)                                      # [Np, Kp], [Np/128, Kp/128]
    one = torch.ones((), device=a.device)
    out = torch.zeros(aq.shape[0], bq.shape[0], device=a.device, dtype=torch.float32)
    for k in range(sa.shape[1]):
        sl = slice(k * GROUP, (k + 1) * GROUP)
        part = torch._scaled_mm(aq[:, sl].contiguous(), bq[:, sl].contiguous().t(), scale_a=one, scale_b=one,
                                out_dtype=torch.float32)
        out += part * sa[:, k:k + 1] * sb[:, k].repeat_interleave(GROUP)[None, :]
    return out[:M, :N]


def fp8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [M, K] @ b [N, K]^T in fine-grained FP8: a quantised in 1x128 tiles, b in 128x128 blocks, fp32 result."""
    if _cuda_fp8_ok(a):
        return _gemm_fp8_cuda(a, b)
    return qdq_tiles(a) @ qdq_blocks(b).t()


def fp8_matmul_tt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Wgrad: a [T, N]^T @ b [T, K] -> [N, K], both quantised in 128x1 tiles along T (the contraction dim)."""
    at, bt = a.t().contiguous(), b.t().contiguous()                  # [N, T], [K, T]: tiles along T are now rows
    if _cuda_fp8_ok(a):
        # both operands tile-wise: treat bt's 1x128 tiles as a "block" operand by quantising it tile-wise too
        aq, sa = quantize_tiles(F.pad(at, (0, 0, 0, (-at.shape[0]) % 16)))
        bq, sb = quantize_tiles(F.pad(bt, (0, 0, 0, (-bt.shape[0]) % 16)))
        one = torch.ones((), device=a.device)
        out = torch.zeros(aq.shape[0], bq.shape[0], device=a.device, dtype=torch.float32)
        for k in range(sa.shape[1]):
            sl = slice(k * GROUP, (k + 1) * GROUP)
            out += torch._scaled_mm(aq[:, sl].contiguous(), bq[:, sl].contiguous().t(), scale_a=one, scale_b=one,
                                    out_dtype=torch.float32) * sa[:, k:k + 1] * sb[:, k][None, :]
        return out[:at.shape[0], :bt.shape[0]]
    return qdq_tiles(at) @ qdq_tiles(bt).t()


class Fp8LinearFunction(torch.autograd.Function):
    """y = x W^T + b with Fprop, Dgrad and Wgrad GEMMs all in fine-grained FP8; the bias add and outputs stay fp32."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        with torch.autocast(x.device.type, enabled=False):   # our GEMMs pick their own precision
            y = fp8_matmul(x2, weight.float())
        if bias is not None:
            y = y + bias.float()
        ctx.save_for_backward(x2, weight, bias)
        ctx.in_shape, ctx.in_dtype = shape, x.dtype
        return y.reshape(*shape[:-1], weight.shape[0]).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, bias = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1]).float()
        dx = dw = db = None
        with torch.autocast(dy.device.type, enabled=False):
            dx, dw = Fp8LinearFunction._grads(ctx, dy2, x2, weight)
        if bias is not None and ctx.needs_input_grad[2]:
            db = dy2.sum(0).to(bias.dtype)
        return dx, dw, db

    @staticmethod
    def _grads(ctx, dy2, x2, weight):
        dx = dw = None
        if ctx.needs_input_grad[0]:       # Dgrad: contraction over out-features N -> dy 1x128 tiles, W^T blocks
            dx = fp8_matmul(dy2, weight.float().t().contiguous()).reshape(ctx.in_shape).to(ctx.in_dtype)
        if ctx.needs_input_grad[1]:       # Wgrad: contraction over tokens -> 128x1 tiles of dy and x
            dw = fp8_matmul_tt(dy2, x2).to(weight.dtype)
        return dx, dw


class Fp8Linear(nn.Linear):
    """An nn.Linear whose three GEMMs run in fine-grained FP8 (same parameters and state-dict names)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Fp8LinearFunction.apply(x, self.weight, self.bias)


# Module-name components that stay in high precision (V3: output head, router; embeddings/norms are not Linear).
DEFAULT_SKIP = ("lm_head", "gate", "head")


def convert_to_fp8(model: nn.Module, skip: tuple[str, ...] = DEFAULT_SKIP) -> list[str]:
    """Swap every nn.Linear of `model` for an Fp8Linear in place (sharing its Parameters), except those whose own
    name (the last dotted component, exact match: `gate` is the router, `gate_proj` is an expert) is in `skip`.
    Returns the converted module names."""
    converted = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear and child_name not in skip:
                new = Fp8Linear(child.in_features, child.out_features, bias=child.bias is not None, device="meta")
                new.weight = child.weight
                new.bias = child.bias
                setattr(module, child_name, new)
                converted.append(f"{name}.{child_name}" if name else child_name)
    return converted


def fp8_linear_count(model: nn.Module) -> int:
    return sum(isinstance(m, Fp8Linear) for m in model.modules())
