"""Where the policy that sampled and the policy that trains differ, and what we do about it.

The rollout engine reports log π_rollout(t) for every token it sampled; the trainer's forward gives
log π_trainer(t) for the same tokens. They differ through the engine's numerics (vLLM kernels, bf16, the latent
cache's absorbed attention), and, for an MoE, through routing: a near-tie in a gate flips, another expert runs,
and the token's probability jumps. Three tools, each measured per step:

  * mismatch: |log π_trainer - log π_rollout| over completion tokens (`rollout/logprob_diff_mean|max`);
  * router replay (R3): the rollout records each token's experts (base_model/routing.py) and the training
    forward reuses them. `router/drift_tokens` is the share of completion tokens whose experts differ in some layer
    between the rollout and a training forward WITHOUT replay (what replay removes);
  * truncated importance sampling (TIS): each token's loss is weighted by
        w_t = min(π_trainer(t) / π_rollout(t), C)          (C = `tis_cap`)
    which makes the gradient of samples drawn by the rollout engine an (almost) unbiased one for the trainer's
    policy; the cap bounds its variance. TRL applies this weight only to its own vLLM path; we fold it into the
    per-token advantages ([B, T], which TRL's loss accepts), w ≥ 0 passing through PPO's min and clip unchanged.
    Logged: `tis/weight_mean`, `tis/capped` (share of tokens at the cap).
"""
from __future__ import annotations

import torch

from base_model import routing


def routes_tensor(per_sample: list, prompt_width: int, completion_width: int, device) -> torch.Tensor:
    """Per-sample (prompt routes [p, L, K], completion routes [c, L, K]) -> [B, P + C, L, K] laid out as TRL's
    batch (prompts left-padded to P, completions right-padded to C); -1 where nothing was recorded."""
    pr0 = per_sample[0][0]
    out = torch.full((len(per_sample), prompt_width + completion_width, *pr0.shape[1:]), -1, dtype=torch.int16)
    for i, (pr, cr) in enumerate(per_sample):
        p, c = min(pr.shape[0], prompt_width), min(cr.shape[0], completion_width)
        if p:
            out[i, prompt_width - p:prompt_width] = pr[pr.shape[0] - p:]
        out[i, prompt_width:prompt_width + c] = cr[:c]
    return out.to(device)


@torch.no_grad()
def trainer_logps(trainer, out: dict, routes: torch.Tensor | None = None, record: bool = False):
    """log π_trainer of the completion tokens [B, C] with the current weights (replaying `routes` if given); with
    `record`, also the experts this forward chose [B, P + C, L, K]."""
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    att = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    c = out["completion_ids"].size(1)
    model = trainer.model
    chosen = []
    bs = trainer.args.per_device_train_batch_size
    pieces = []
    for s in range(0, ids.shape[0], bs):
        sl = slice(s, s + bs)
        with routing.replay(model, None if routes is None else routes[sl]):
            if record:
                with routing.record(model) as rec:
                    pieces.append(trainer._get_per_token_logps_and_entropies(model, ids[sl], att[sl], c)[0])
                    chosen.append(rec.pop())
            else:
                pieces.append(trainer._get_per_token_logps_and_entropies(model, ids[sl], att[sl], c)[0])
    lp = torch.cat(pieces)
    return (lp, torch.cat(chosen)) if record else lp


def mismatch(trainer_lp: torch.Tensor, rollout_lp: torch.Tensor, mask: torch.Tensor) -> dict:
    diff = (trainer_lp - rollout_lp).abs()[mask.bool()]
    diff = diff[torch.isfinite(diff)]
    if diff.numel() == 0:
        return {}
    return {"rollout/logprob_diff_mean": float(diff.mean()), "rollout/logprob_diff_max": float(diff.max())}


def tis_weights(trainer_lp: torch.Tensor, rollout_lp: torch.Tensor, cap: float) -> torch.Tensor:
    """w = min(exp(log π_trainer - log π_rollout), cap), per token; 1 where the rollout gave no logprob (NaN)."""
    log_ratio = torch.nan_to_num(trainer_lp - rollout_lp, nan=0.0)
    return torch.exp(log_ratio).clamp(max=cap)


def apply_tis(out: dict, weights: torch.Tensor, mask: torch.Tensor, cap: float) -> dict:
    """Fold the TIS weights into per-token advantages [B, T]; returns the metrics."""
    adv = out["advantages"]
    out["advantages"] = (adv.unsqueeze(1) if adv.dim() == 1 else adv) * weights.to(adv.dtype)
    m = mask.bool()
    if not m.any():
        return {}
    w = weights[m]
    return {"tis/weight_mean": float(w.mean()), "tis/capped": float((w >= cap).float().mean())}


def ratio_stats(per_token_logps: torch.Tensor, old_logps: torch.Tensor | None, mask: torch.Tensor) -> dict:
    """Spread of the policy ratio ρ = π/π_old over the loss's tokens (std and max |ρ - 1|)."""
    if old_logps is None:
        return {}
    m = mask.bool()
    if not m.any():
        return {}
    r = torch.exp(per_token_logps.detach() - old_logps)[m]
    return {"policy/ratio_std": float(r.std()) if r.numel() > 1 else 0.0,
            "policy/ratio_absdev_max": float((r - 1).abs().max())}
