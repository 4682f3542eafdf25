"""DeepSeekMoE (V3): shared experts + fine-grained routed experts, sigmoid gate, group-limited top-k,
auxiliary-loss-free balancing.

Gate: s = sigmoid(h·Wᵀ) in fp32. For SELECTION only, s' = s + b (b = e_score_correction_bias, no gradient):
experts are split into n_group groups, a group scores the sum of its top-2 s', the best topk_group groups are kept,
and the top-k experts are picked among them. The mixing weights use the UNBIASED s of the chosen experts,
normalised to sum 1 (norm_topk_prob) and scaled by routed_scaling_factor.
Balancing: after each optimizer step b_i -= γ for overloaded experts and += γ for underloaded ones
(`update_bias`), plus a tiny sequence-wise balance loss α·Σ f_i·P_i. No token dropping.
Dispatch: token-expert pairs are sorted by expert, each expert runs one matmul over its contiguous slice,
results are scattered back with index_add — no Python loop over tokens. At inference on a handful of tokens (a
decode step) every expert runs on every token in three batched matmuls instead (`_dense_decode`).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x)). Used as dense FFN, expert and shared expert."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.top_k, self.n_group, self.topk_group = config.num_experts_per_tok, config.n_group, config.topk_group
        self.norm_topk_prob, self.scaling = config.norm_topk_prob, config.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(config.n_routed_experts, dtype=torch.float32))

    def forward(self, x: torch.Tensor, replay: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T, D] -> weights [T, K] (fp32), expert indices [T, K], affinities s [T, E] (fp32).
        `replay` [T, K]: use these experts instead of choosing (router replay; a row starting with -1 chooses as
        usual). The mixing weights are still the current gate's affinities of the experts used, so the gate learns."""
        scores = F.linear(x.float(), self.weight.float()).sigmoid()
        biased = scores.detach() + self.e_score_correction_bias.float()
        t, e = biased.shape
        if self.n_group > 1:
            groups = biased.view(t, self.n_group, e // self.n_group)
            group_score = groups.topk(2, dim=-1).values.sum(-1)                      # [T, n_group]
            keep = group_score.topk(self.topk_group, dim=-1).indices
            group_mask = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, keep, True)
            biased = biased.masked_fill(~group_mask.repeat_interleave(e // self.n_group, dim=1), float("-inf"))
        idx = biased.topk(self.top_k, dim=-1).indices
        if replay is not None:
            idx = torch.where(replay[:, :1] >= 0, replay.to(idx.dtype), idx)
        weights = scores.gather(1, idx)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * self.scaling, idx, scores


class MoE(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_experts, self.top_k = config.n_routed_experts, config.num_experts_per_tok
        self.aux_alpha = getattr(config, "aux_loss_alpha", 0.0)
        self.gate = Gate(config)
        self.experts = nn.ModuleList(MLP(config.hidden_size, config.moe_intermediate_size)
                                     for _ in range(config.n_routed_experts))
        self.shared_experts = MLP(config.hidden_size, config.moe_intermediate_size * config.n_shared_experts)
        self.register_buffer("tokens_per_expert", torch.zeros(config.n_routed_experts), persistent=False)
        self.aux_loss: torch.Tensor | None = None
        self.recorded: list | None = None     # a list while base_model.routing.record is on: idx [B, S, K] per call

    def forward(self, x: torch.Tensor, routes: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, S, D]; `routes` [B, S, K]: the experts to use (router replay, see base_model/routing.py)."""
        b, s, d = x.shape
        flat = x.reshape(-1, d)
        weights, idx, scores = self.gate(flat, None if routes is None else routes.reshape(-1, self.top_k))
        if self.recorded is not None:
            self.recorded.append(idx.detach().view(b, s, -1).to(torch.int16))
        if (not self.training and not torch.is_grad_enabled() and flat.shape[0] * self.n_experts <= self.dense_decode_pairs
                and self._plain_experts()):
            return self._dense_decode(flat, weights, idx).view(b, s, d) + self.shared_experts(x)
        pair_expert = idx.reshape(-1)                                   # [T*K]
        order = pair_expert.argsort(stable=True)
        counts = torch.bincount(pair_expert, minlength=self.n_experts)
        token_of_pair = order // self.top_k
        routed_in = flat[token_of_pair]
        outs = [self.experts[e](chunk) for e, chunk in enumerate(routed_in.split(counts.tolist())) if chunk.numel()]
        routed_out = torch.cat(outs) if outs else routed_in[:0]
        routed_out = (routed_out.float() * weights.reshape(-1)[order, None]).to(x.dtype)
        y = torch.zeros_like(flat).index_add_(0, token_of_pair, routed_out)
        if self.training:
            self.tokens_per_expert += counts.detach().to(self.tokens_per_expert.dtype)
            self.aux_loss = self._sequence_balance_loss(scores.view(b, s, -1), idx.view(b, s, -1)) \
                if self.aux_alpha > 0 else None
        return y.view(b, s, d) + self.shared_experts(x)

    dense_decode_pairs = 512   # tokens × experts up to which inference runs every expert on every token (3 bmm)

    def _dense_decode(self, flat: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Inference with few tokens: run all experts on all tokens as three batched matmuls and mix with the
        gate's weights (zero for unchosen experts). Same result as the sorted dispatch, E/K times the FLOPs, but
        3 kernel calls instead of 3 per expert, which is what a decode step on a small model pays for (tiny preset,
        16 rows, 2 CPU threads: 15% off the decode time). Keeps one stacked copy of the experts' weights."""
        gate_w, up_w, down_w = self._stacked_weights()                      # [E, F, D], [E, F, D], [E, D, F]
        xe = flat.unsqueeze(0).expand(self.n_experts, -1, -1)              # [E, T, D]
        h = F.silu(torch.bmm(xe, gate_w.transpose(1, 2))) * torch.bmm(xe, up_w.transpose(1, 2))
        out = torch.bmm(h, down_w.transpose(1, 2))                          # [E, T, D]
        mix = torch.zeros(flat.shape[0], self.n_experts, device=flat.device, dtype=torch.float32)
        mix.scatter_(1, idx, weights)
        return torch.einsum("etd,te->td", out.float(), mix).to(flat.dtype)

    def _plain_experts(self) -> bool:
        """True when every expert projection is a plain Linear (peft LoRA wraps them: then the weights alone are
        not the layer, and the sorted dispatch, which calls the modules, is used)."""
        return all(type(m) is nn.Linear for e in self.experts for m in (e.gate_proj, e.up_proj, e.down_proj))

    def _stacked_weights(self):
        """The experts' weights stacked per projection, cached until a weight changes (in-place optimizer steps
        bump a tensor's version; loading or moving replaces it)."""
        params = [e.gate_proj.weight for e in self.experts] + [e.up_proj.weight for e in self.experts] + \
            [e.down_proj.weight for e in self.experts]
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        if getattr(self, "_stack_key", None) != key:
            e = self.n_experts
            self._stack = tuple(torch.stack(params[i * e:(i + 1) * e]) for i in range(3))
            self._stack_key = key
        return self._stack

    def _sequence_balance_loss(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """α Σ_i f_i P_i per sequence, averaged: f_i = E/(K·S)·#tokens choosing i, P_i = mean_s s_i/Σ_j s_j.
        Every position counts, padding included (the MoE layer does not see the attention mask); with α = 1e-4
        this only slightly dilutes the term for heavily padded batches."""
        b, s, e = scores.shape
        chosen = torch.zeros(b, s, e, device=scores.device).scatter_(2, idx, 1.0).sum(1)   # [B, E]
        f = chosen * e / (self.top_k * s)
        p = (scores / scores.sum(-1, keepdim=True)).mean(1)
        return self.aux_alpha * (f * p).sum(-1).mean()

    @torch.no_grad()
    def update_bias(self, gamma: float) -> torch.Tensor:
        """Auxiliary-loss-free balancing: nudge each expert's selection bias by ±γ from the observed load.
        The load is summed over data-parallel ranks first. Returns the load that was used."""
        load = self.tokens_per_expert.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(load)
        if load.sum() > 0:
            bias = self.gate.e_score_correction_bias
            bias += gamma * torch.sign(load.mean() - load).to(bias.dtype)
        self.tokens_per_expert.zero_()
        return load
