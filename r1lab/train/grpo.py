"""What we own of GRPO on top of TRL's GRPOTrainer: generation through r1lab's rollout engine, flat groups, dynamic
sampling, the reference model's loader and the rewards.

    for each step (TRL):   prompts --rollout_func--> G completions each --rewards--> A_i = (r_i - mean) / std
                           [ours: count flat groups (all rewards equal); dynamic sampling masks them out]
                           loss = clipped surrogate on rho = pi/pi_old (+ beta KL), aggregated per loss_type

Hooks into TRL, each isolated here and pinned by tests/test_grpo_loss.py and tests/test_layers.py:
  * `rollout_func` (TRL's public, experimental argument): our engine generates; TRL does the rest;
  * `_calculate_rewards` / `_generate_and_score_completions` (private; TRL has no public hook after scoring): we
    read the per-function rewards and mask flat groups;
  * `trl.trainer.grpo_trainer.create_model_from_path` (module function), swapped while TRL builds the reference
    model, so it loads with our loader.
"""
from __future__ import annotations

import contextlib
import hashlib
import time

from r1lab.params import short_name


def rollout_func(engine_name: str, tokenizer, seed: int, engine_kwargs: dict | None = None):
    """TRL's `rollout_func`: the rollout engine samples each distinct prompt of the batch G times.

    TRL hands over the process's prompts as its sampler repeats them (G copies in a row); the engine gets each
    distinct prompt once with n = G. The weights reach the engine after every optimizer step (a no-op for the
    native engine, which runs the trainer's own model). Sampling is seeded from (seed, step, process, call), so a
    resumed run draws what the uninterrupted one drew."""
    from r1lab.rollout import SamplingParams, get_engine

    state = {"engine": None, "step": None, "calls": 0}

    def rollout(prompts: list, trainer) -> dict:
        model = trainer.accelerator.unwrap_model(trainer.model)
        step = trainer.state.global_step
        if state["engine"] is None:
            state["engine"] = get_engine(engine_name, model, tokenizer, **(engine_kwargs or {}))
        elif state["step"] != step:
            t0 = time.perf_counter()
            state["engine"].sync_weights(model)
            trainer._metrics["train"]["rollout/weight_sync_s"].append(time.perf_counter() - t0)
        if state["step"] != step:
            state["step"], state["calls"] = step, 0
        g = trainer.num_generations if model.training else trainer.num_generations_eval
        groups = [prompts[i:i + g] for i in range(0, len(prompts), g)]
        if len(prompts) % g or any(any(p != grp[0] for p in grp) for grp in groups):
            groups, g = [[p] for p in prompts], 1          # not TRL's repeated layout: one sample per entry
        ids = _prompt_ids(trainer, [grp[0] for grp in groups])
        args = trainer.args
        call_seed = _seed(seed, step, trainer.accelerator.process_index, state["calls"])
        state["calls"] += 1
        sp = SamplingParams(n=g, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k or 0,
                            max_new_tokens=args.max_completion_length, seed=call_seed)
        out = state["engine"].generate(ids, sp)
        flat = [(p, s) for p, samples in zip(ids, out) for s in samples]
        return {"prompt_ids": [p for p, _ in flat], "completion_ids": [s.token_ids for _, s in flat],
                "logprobs": [s.logprobs for _, s in flat]}

    return rollout


def _prompt_ids(trainer, prompts: list) -> list[list[int]]:
    """The prompts tokenized exactly as TRL's own generation path does (its chat template and template kwargs)."""
    tok = trainer.processing_class
    if isinstance(prompts[0], list):
        out = tok.apply_chat_template(conversation=prompts, chat_template=getattr(trainer, "chat_template", None),
                                      add_generation_prompt=True, tokenize=True, return_dict=True,
                                      **(getattr(trainer, "chat_template_kwargs", None) or {}))
        return [list(x) for x in out["input_ids"]]
    return [list(x) for x in tok(text=prompts)["input_ids"]]


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def reward_funcs(p):
    """(callables, weights, names) for TRL; the callables are the registry's checked rewards."""
    import rewards

    funcs = [rewards.get_reward(spec) for spec in p.rewards]
    names = []
    for f, spec in zip(funcs, p.rewards):
        f.__name__ = short_name(spec)   # TRL logs rewards/<__name__>/mean
        names.append(f.__name__)
    return funcs, [float(w) for w in p.rewards.values()], names


def accuracy_name(p, names: list[str]) -> str:
    if p.accuracy_reward:
        return short_name(p.accuracy_reward)
    return next((n for n in names if "accuracy" in n or "tests" in n), names[0])


def trainer_class(dynamic_sampling: bool, log_mismatch: bool = False):
    """TRL's GRPOTrainer, logging the share of flat groups (`groups/flat`: all rewards equal, no gradient) and,
    with dynamic sampling, masking those groups out (see the module doc). `log_mismatch`: log how far the rollout
    engine's token logprobs are from the trainer's on the same tokens (one more forward per step unless TRL already
    computed the old policy's logprobs): what importance-sampling correction would need."""
    from trl import GRPOTrainer

    class R1GRPOTrainer(GRPOTrainer):
        def _calculate_rewards(self, inputs, *args, **kwargs):
            self._rewards_per_func = super()._calculate_rewards(inputs, *args, **kwargs)
            return self._rewards_per_func

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            mode = "train" if self.model.training else "eval"
            flat = flat_groups(self, len(inputs), self.num_generations if mode == "train" else self.num_generations_eval)
            self._metrics[mode]["groups/flat"].append(float(flat.float().mean()))
            if log_mismatch and out.get("sampling_per_token_logps") is not None:
                for k, v in rollout_mismatch(self, out).items():
                    self._metrics[mode][k].append(v)
            return drop_flat_groups(self, out, flat) if dynamic_sampling else out

    return R1GRPOTrainer


def rollout_mismatch(trainer, out: dict) -> dict:
    """|log π_trainer(t) - log π_rollout(t)| over the completion tokens: mean and max (the rollout engine's logprobs
    are TRL's `sampling_per_token_logps`)."""
    import torch

    mask = out["completion_mask"].bool()
    trainer_lp = out.get("old_per_token_logps")
    if trainer_lp is None:
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        att = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad():
            trainer_lp = trainer._get_per_token_logps_and_entropies(trainer.model, ids, att, out["completion_ids"].size(1))[0]
    diff = (trainer_lp - out["sampling_per_token_logps"]).abs()[mask]
    diff = diff[torch.isfinite(diff)]
    if diff.numel() == 0:
        return {}
    return {"rollout/logprob_diff_mean": float(diff.mean()), "rollout/logprob_diff_max": float(diff.max())}


def flat_groups(trainer, n_local: int, g: int):
    """Which of this process's groups have all rewards equal, from the weighted rewards themselves. (Not from the
    advantages, and not TRL's `frac_reward_zero_std`: for G=8 the mean of eight 0.2+1.0 rewards is off by an ulp,
    so a flat group's std is ~1e-7, not 0, and its advantages ~1e-3.)"""
    import torch

    rpf = trainer._rewards_per_func
    w = trainer.reward_weights.to(rpf.device)
    r = (rpf * w.unsqueeze(0)).nansum(dim=1)
    i = trainer.accelerator.process_index
    groups = r[i * n_local:(i + 1) * n_local].view(-1, g)
    spread = groups.amax(dim=1) - groups.amin(dim=1)
    return spread <= 1e-6 * torch.clamp(groups.abs().amax(dim=1), min=1.0)


def drop_flat_groups(trainer, out: dict, flat) -> dict:
    """Mask out the completions of flat groups (all rewards equal: no learning signal), and recount the active
    tokens TRL's dapo normaliser uses. Groups are contiguous blocks of rows, one block per entry of `flat`."""
    g = out["completion_mask"].shape[0] // len(flat)
    keep = (~flat).repeat_interleave(g).to(out["completion_mask"].dtype)
    out["completion_mask"] = out["completion_mask"] * keep.unsqueeze(1)
    loss_mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
    out["num_items_in_batch"] = trainer.accelerator.gather(loss_mask.sum()).sum()
    mode = "train" if trainer.model.training else "eval"
    trainer._metrics[mode]["dynamic_sampling/kept_groups"].append(float((~flat).float().mean()))
    return out


@contextlib.contextmanager
def reference_loader(loader):
    """While TRL builds its reference model (beta > 0), load it with our loader (DeepSeekForCausalLM for our
    checkpoints) instead of transformers' AutoModel class."""
    import trl.trainer.grpo_trainer as G

    orig = G.create_model_from_path

    def create(model_id, architecture=None, **kw):
        dtype = kw.get("dtype")
        return loader(model_id, dtype=dtype if not isinstance(dtype, str) else None)

    G.create_model_from_path = create
    try:
        yield
    finally:
        G.create_model_from_path = orig


def _text(x) -> str:
    """A prompt or completion as text: a string, or a conversation's last message."""
    if isinstance(x, list):
        return str(x[-1].get("content", "")) if x and isinstance(x[-1], dict) else " ".join(map(str, x))
    return str(x)


def completions_recorder(trainer, path, per_step: int):
    """A callback writing, at each logged training step, `per_step` rows of the newest generation batch (the first
    group: one prompt's G completions) to `path` as JSON lines: step, prompt, completion, reward (weighted sum),
    rewards (per function), advantage. Read from TRL's own completion log (`trainer._logs`, what `log_completions`
    prints); a resumed run first drops the rows after its checkpoint."""
    import json
    from pathlib import Path

    from transformers import TrainerCallback

    from r1lab.io import read_jsonl, write_jsonl

    path = Path(path)

    class CompletionsRecorder(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if path.exists() and state.is_world_process_zero:
                write_jsonl(path, [r for r in read_jsonl(path) if r.get("step", 0) <= state.global_step])

        def on_log(self, args, state, control, logs=None, **kw):
            logs_ = getattr(trainer, "_logs", None)
            if not state.is_world_process_zero or not logs or "reward" not in logs or not logs_ or not logs_.get("prompt"):
                return
            prompts, comps = list(logs_["prompt"]), list(logs_["completion"])
            rewards = {name: list(v) for name, v in logs_["rewards"].items()}
            adv = list(logs_["advantages"])
            weights = list(getattr(args, "reward_weights", None) or [1.0] * len(rewards))
            rows = []
            for i in range(min(per_step, len(prompts), len(comps))):
                parts = {name: (v[i] if i < len(v) else None) for name, v in rewards.items()}
                vals = [x for x in parts.values()]
                total = (sum(w * x for w, x in zip(weights, vals) if x is not None and x == x)
                         if any(x is not None and x == x for x in vals) else None)
                rows.append({"step": state.global_step, "prompt": _text(prompts[i]), "completion": _text(comps[i]),
                             "reward": total, "rewards": {k: (None if v != v else v) if v is not None else None
                                                          for k, v in parts.items()},
                             "advantage": adv[i] if i < len(adv) else None})
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))

    return CompletionsRecorder()
