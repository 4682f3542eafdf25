"""Router record and replay (R3) for DeepSeekMoE.

An MoE layer picks each token's experts from its gate's scores. In RL the rollout and the training forward compute
those scores apart (another engine, another batch shape, another dtype, or weights a step older), so near-ties flip
and the policy trained is not the one that sampled: the routing drifts. Replay removes that drift: the rollout
records the experts it used for every token and layer, and the training forward uses the same ones (its gate still
weighs them, so the gate keeps learning).

    with record(model) as rec:           # generation: after each forward, rec.pop() -> [B, S, n_moe_layers, K]
        model(ids, ...)
        routes = rec.pop()
    with replay(model, routes):          # training: every forward inside uses `routes` (shape [B, S, n_moe, K])
        model(ids, ...)                  # == model(ids, ..., routed_experts=routes)

A row of -1 (a position the rollout never fed, such as a completion's last token) chooses its experts as usual.
"""
from __future__ import annotations

import contextlib

import torch

from base_model.moe import MoE


def _is_causal_lm(m) -> bool:
    """A DeepSeekForCausalLM, recognised by what its class defines (not by importing base_model.model: the decode
    loops that record routes sit below model.py, and the import graph stays acyclic)."""
    return hasattr(type(m), "moe_layers") and hasattr(type(m), "new_cache")


def _causal_lm(model):
    """The DeepSeekForCausalLM inside `model` (itself, or under a peft / DDP / FSDP wrapper)."""
    if _is_causal_lm(model):
        return model
    found = next((m for m in model.modules() if _is_causal_lm(m)), None)
    if found is None:
        raise TypeError(f"router record/replay needs a DeepSeekForCausalLM; got {type(model).__name__}")
    return found


def moe_layers(model) -> list[MoE]:
    return _causal_lm(model).moe_layers()


class Recorder:
    def __init__(self, layers: list[MoE]):
        self.layers = layers

    def pop(self) -> torch.Tensor:
        """The experts of the newest forward: [B, S, n_moe_layers, K] (int16); clears what was recorded."""
        calls = [m.recorded.pop() for m in self.layers]
        for m in self.layers:
            m.recorded.clear()
        return torch.stack(calls, dim=2)


@contextlib.contextmanager
def record(model):
    layers = moe_layers(model)
    for m in layers:
        m.recorded = []
    try:
        yield Recorder(layers)
    finally:
        for m in layers:
            m.recorded = None


def prompt_routes(routes: torch.Tensor, mask: torch.Tensor) -> list[list[torch.Tensor]]:
    """Per row, the routes of its real prompt tokens out of a left-padded prefill (`routes` [B, S, L, K], `mask`
    [B, S]), each as the first piece of that row's fed routes (see rollout_routes)."""
    width = routes.shape[1]
    return [[routes[r, width - int(mask[r].sum()):]] for r in range(routes.shape[0])]


def rollout_routes(pieces: list[torch.Tensor], total: int) -> torch.Tensor:
    """One rollout row's routes [total, n_moe_layers, K] (int16) from the routings of the tokens fed, in order
    (`pieces`: [n_i, L, K] each, prompt first). A sequence's last token is never fed: its row (and any row not
    fed) is -1; routings fed beyond total - 1 (a draft fed, then the row stopped on it) are dropped."""
    fed = torch.cat(pieces)[: max(total - 1, 0)]
    out = torch.full((total, *fed.shape[1:]), -1, dtype=torch.int16)
    out[: fed.shape[0]] = fed
    return out


@contextlib.contextmanager
def replay(model, routes: torch.Tensor | None):
    """Every forward of `model` inside uses `routes` [B, S, n_moe_layers, K] (None: no replay)."""
    backbone = _causal_lm(model).model
    prev = backbone.replay_routes
    backbone.replay_routes = routes
    try:
        yield
    finally:
        backbone.replay_routes = prev


def routing_drift(recorded: torch.Tensor, current: torch.Tensor, mask: torch.Tensor) -> dict:
    """How often two routings of the same tokens differ: `recorded` and `current` [B, S, L, K], `mask` [B, S] (1 =
    a token to count; rows of -1 in `recorded` are skipped). Experts are compared as sets (order within top-k does
    not matter). Returns {"tokens": share of tokens where any layer differs, "token_layers": share of (token,
    layer) pairs that differ}."""
    a, b = recorded.long().sort(-1).values, current.long().sort(-1).values
    known = (recorded[..., 0] >= 0)                                   # [B, S, L]
    differ = (a != b).any(-1) & known                                 # [B, S, L]
    m = mask.bool() & known.all(-1)
    n = int(m.sum())
    if n == 0:
        return {"tokens": 0.0, "token_layers": 0.0}
    return {"tokens": float(differ.any(-1)[m].float().mean()),
            "token_layers": float(differ[m].float().mean())}
