"""The GRPO trainer class: TRL's GRPOTrainer plus what DeepSeek-style RL on our MoE needs, one switch each.

    for each step:  prompts --rollout--> G completions each --rewards--> A_i = (r_i - mean) / std      (TRL)
        groups/flat: share of groups whose rewards are all equal (no gradient)
        dynamic_sampling: mask    -> those groups are masked out of the loss
                          resample-> fresh prompts are generated to replace them, up to max_resample_tries rounds
                                     (DAPO; r1lab/train/dynamic_sampling.py), the rest masked
        router_replay     -> the training forward uses the experts the rollout used (base_model/routing.py)
        tis_cap           -> token loss × min(π_trainer/π_rollout, cap)       (r1lab/train/rollout_correction.py)
        mtp_refresh       -> one step on the MTP head with this round's completions (r1lab/train/mtp_refresh.py)
    loss = TRL's clipped surrogate on ρ = π/π_old (+ β KL), aggregated per loss_type                        (TRL)

Hooks into TRL, each isolated here and pinned by tests: `_generate_and_score_completions` (private; TRL has no
public hook after scoring), `_calculate_rewards` (to read the per-function rewards), `_compute_loss` and
`_get_per_token_logps_and_entropies` (to replay routes in the training forward).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from base_model import routing
from r1lab.train import dynamic_sampling as ds
from r1lab.train import rollout_correction as rc


@dataclass
class RLOptions:
    dynamic_sampling: str = "off"          # off | mask | resample
    max_resample_tries: int = 3            # generation rounds per step, the first included
    log_mismatch: bool = False             # |log π_trainer - log π_rollout| per step
    router_replay: bool = False
    log_routing_drift: bool = False        # share of tokens routed differently by rollout and training forward
    tis_cap: float | None = None
    mtp_refresh_lr: float | None = None    # None: no refresh
    seed: int = 0


def flat_groups(trainer, n_local: int, g: int):
    """Which of this process's groups have all rewards equal, from the weighted rewards themselves. (Not from the
    advantages, and not TRL's `frac_reward_zero_std`: for G=8 the mean of eight 0.2+1.0 rewards is off by an ulp,
    so a flat group's std is ~1e-7, not 0, and its advantages ~1e-3.)"""
    rpf = trainer._rewards_per_func
    w = trainer.reward_weights.to(rpf.device)
    r = (rpf * w.unsqueeze(0)).nansum(dim=1)
    i = trainer.accelerator.process_index
    groups = r[i * n_local:(i + 1) * n_local].view(-1, g)
    spread = groups.amax(dim=1) - groups.amin(dim=1)
    return (spread <= 1e-6 * torch.clamp(groups.abs().amax(dim=1), min=1.0)).cpu()


def drop_flat_groups(trainer, out: dict, flat) -> dict:
    """Mask out the completions of flat groups (all rewards equal: no learning signal), and recount the active
    tokens TRL's dapo normaliser uses. Groups are contiguous blocks of rows, one block per entry of `flat`."""
    g = out["completion_mask"].shape[0] // len(flat)
    keep = (~flat).repeat_interleave(g).to(out["completion_mask"].device, out["completion_mask"].dtype)
    out["completion_mask"] = out["completion_mask"] * keep.unsqueeze(1)
    loss_mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
    out["num_items_in_batch"] = trainer.accelerator.gather(loss_mask.sum()).sum()
    mode = "train" if trainer.model.training else "eval"
    trainer._metrics[mode]["dynamic_sampling/kept_groups"].append(float((~flat).float().mean()))
    return out


def trainer_class(opts: RLOptions):
    from trl import GRPOTrainer

    from r1lab.train.mtp_refresh import MTPRefresh

    class R1GRPOTrainer(GRPOTrainer):
        r1 = opts
        _replay_routes = None
        _loss_inputs = None
        _mtp_refresh = MTPRefresh(opts.mtp_refresh_lr) if opts.mtp_refresh_lr else None

        def _calculate_rewards(self, inputs, *args, **kwargs):
            self._rewards_per_func = super()._calculate_rewards(inputs, *args, **kwargs)
            return self._rewards_per_func

        def _log(self, mode, values: dict):
            for k, v in values.items():
                self._metrics[mode][k].append(v)

        def _one_round(self, inputs, g):
            """Generate and score one round; attach the rollout's routes as a [B, P+C, L, K] tensor."""
            out = super()._generate_and_score_completions(inputs)
            roll = getattr(self, "_r1_rollout", None) or {}
            self._r1_rollout = None
            if roll.get("routes") is not None and (self.r1.router_replay or self.r1.log_routing_drift):
                out["_r1_routes"] = roll["routes"]
            self._round_stats.append({**roll, "completions": out["completion_ids"].shape[0]})
            if self.model.training:
                self._rollouts_total = self._rollouts_so_far() + out["completion_ids"].shape[0]
            return out, flat_groups(self, len(inputs), g)

        def _generate_and_score_completions(self, inputs):
            mode = "train" if self.model.training else "eval"
            g = self.num_generations if mode == "train" else self.num_generations_eval
            self._round_stats = []
            out, flat = self._one_round(inputs, g)
            self._log(mode, {"groups/flat": float(flat.float().mean())})
            tries = 1
            if self.r1.dynamic_sampling == "resample" and mode == "train":
                pad = self.processing_class.pad_token_id
                while tries < self.r1.max_resample_tries:
                    n = ds.global_max(self, int(flat.sum()))      # one collective: every rank decides alike
                    if n == 0:
                        break
                    fresh = ds.draw_prompts(self, n, g, self.r1.seed, self.state.global_step, tries)
                    new, new_flat = self._one_round(fresh, g)
                    out, flat = ds.refill(out, flat, new, new_flat, g, pad)
                    tries += 1
                trained = out["completion_ids"].shape[0]
                self._log(mode, {"dynamic_sampling/tries": tries, "dynamic_sampling/flat_after": float(flat.float().mean()),
                                 "dynamic_sampling/rollouts": sum(r["completions"] for r in self._round_stats) / trained})
            self._rollout_stats(mode, out)
            if self._mtp_refresh is not None and mode == "train":     # every completion, flat groups' too
                self._log(mode, self._mtp_refresh.step(self.accelerator.unwrap_model(self.model), out))
            if self.r1.dynamic_sampling in ("mask", "resample"):
                out = drop_flat_groups(self, out, flat)
            return out

        def _rollouts_so_far(self) -> int:
            """Completions generated so far in training (restored from the log on resume)."""
            if getattr(self, "_rollouts_total", None) is None:
                logged = [h["rollout/total"] for h in self.state.log_history if "rollout/total" in h]
                self._rollouts_total = int(logged[-1]) if logged else 0
            return self._rollouts_total

        def _rollout_stats(self, mode, out):
            """Timing and MTP acceptance of this step's rollouts; routes, drift, mismatch and TIS."""
            if mode == "train":
                self._log(mode, {"rollout/total": self._rollouts_so_far()})
            secs = sum(r.get("seconds", 0.0) for r in self._round_stats)
            toks = sum(r.get("tokens", 0) for r in self._round_stats)
            if secs > 0:
                self._log(mode, {"rollout/tokens_per_s": toks / secs, "rollout/seconds": secs})
            prop = sum(r.get("stats", {}).get("mtp_proposed", 0) for r in self._round_stats)
            if prop:
                acc = sum(r.get("stats", {}).get("mtp_accepted", 0) for r in self._round_stats)
                self._log(mode, {"rollout/mtp_acceptance": acc / prop})
            per_sample = out.pop("_r1_routes", None)
            routes = None
            if per_sample is not None:
                routes = rc.routes_tensor(per_sample, out["prompt_ids"].shape[1], out["completion_ids"].shape[1],
                                          out["prompt_ids"].device)
            mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
            rollout_lp = out.get("sampling_per_token_logps")
            need_lp = rollout_lp is not None and (self.r1.log_mismatch or self.r1.tis_cap is not None)
            trainer_lp = None
            if routes is not None and self.r1.log_routing_drift:
                lp_free, chosen = rc.trainer_logps(self, out, None, record=True)
                p = out["prompt_ids"].shape[1]
                drift = routing.routing_drift(routes[:, p:], chosen[:, p:], mask)
                self._log(mode, {"router/drift_tokens": drift["tokens"], "router/drift_token_layers": drift["token_layers"]})
                if rollout_lp is not None:
                    self._log(mode, {f"{k}_no_replay": v for k, v in rc.mismatch(lp_free, rollout_lp, mask).items()})
                if not self.r1.router_replay:
                    trainer_lp = lp_free
            if self.r1.router_replay and routes is not None:
                out["routed_experts"] = routes
                if out.get("old_per_token_logps") is not None:      # TRL's old logps, recomputed with the routes
                    out["old_per_token_logps"] = rc.trainer_logps(self, out, routes)
                    trainer_lp = out["old_per_token_logps"]
            if need_lp:
                if trainer_lp is None:
                    trainer_lp = out.get("old_per_token_logps")
                if trainer_lp is None:
                    trainer_lp = rc.trainer_logps(self, out, routes if self.r1.router_replay else None)
                if self.r1.log_mismatch:
                    self._log(mode, rc.mismatch(trainer_lp, rollout_lp, mask))
                if self.r1.tis_cap is not None:
                    w = rc.tis_weights(trainer_lp, rollout_lp, self.r1.tis_cap)
                    self._log(mode, rc.apply_tis(out, w, mask, self.r1.tis_cap))

        def _compute_loss(self, model, inputs):
            self._replay_routes = inputs.get("routed_experts")
            self._loss_inputs = inputs
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._replay_routes, self._loss_inputs = None, None

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kw):
            routes = self._replay_routes
            replay = routes is not None and routes.shape[0] == input_ids.shape[0]
            with routing.replay(model, routes) if replay else contextlib.nullcontext():
                res = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                                 *args, **kw)
            inputs = self._loss_inputs
            if inputs is not None and self.model.training:      # the loss's own forward: how far ρ is from 1
                self._log("train", rc.ratio_stats(res[0], inputs.get("old_per_token_logps"), inputs["completion_mask"]))
            return res

    return R1GRPOTrainer


def rollout_budget_callback(trainer, budget: int):
    """Stops training once the generated completions reach `budget` and the last generation's batch has been
    trained on (all its steps_per_generation × num_iterations steps). With re-sampling a step costs more than its
    batch, so a budget, not a step count, makes runs comparable."""
    from transformers import TrainerCallback

    class RolloutBudget(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            every = max(1, args.steps_per_generation * trainer.num_iterations // args.gradient_accumulation_steps)
            if trainer._rollouts_so_far() >= budget and state.global_step % every == 0:
                control.should_training_stop = True
                control.should_save = True

    return RolloutBudget()
