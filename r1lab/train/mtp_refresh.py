"""Keep the MTP head a good drafter through RL.

GRPO's loss never runs the MTP module, so as the policy moves the head drafts for a model that no longer exists and
MTP-drafted rollouts accept less. The refresh is cheap: after each generation round, one optimizer step on the MTP
module alone, its usual loss (predict token t+2 from the main model's state at t and the embedding of t+1) on the
round's own completions, with the main model frozen (its states computed without gradient). The embedding and
output head it shares with the main model get no update from here.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from base_model import routing


class MTPRefresh:
    def __init__(self, lr: float = 3e-4):
        self.lr, self.opt, self.params = lr, None, None

    def step(self, model, out: dict) -> dict:
        lm = routing._causal_lm(model)
        layers = lm.model.mtp_layers
        if not len(layers):
            return {}
        if self.opt is None:
            self.params = [p for layer in layers for p in layer.parameters() if p.requires_grad]
            if not self.params:
                return {}
            self.opt = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=0.0)
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        att = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        labels = ids.masked_fill(att == 0, -100)
        labels[:, :out["prompt_ids"].shape[1]] = -100                  # learn the completions, not the prompts
        with torch.no_grad():
            h_out = lm.model(ids, att)
        h, (cos, sin, mask) = h_out.last_hidden_state, h_out.rope_and_mask
        with torch.enable_grad():
            loss = lm._mtp_loss(h.detach(), ids, labels, cos, sin, mask)
            if loss is None or not torch.isfinite(loss):
                return {"mtp/refresh_skipped": 1.0}
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)   # nothing lands on shared weights
        for p, g in zip(self.params, grads):
            if g is not None and dist.is_available() and dist.is_initialized():
                dist.all_reduce(g)
                g /= dist.get_world_size()
            p.grad = g
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        for p in self.params:
            p.grad = None
        return {"mtp/refresh_loss": float(loss.detach())}
