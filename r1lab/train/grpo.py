"""What we own of GRPO around TRL's GRPOTrainer, besides the trainer class (r1lab/train/grpo_trainer.py):
generation through r1lab's rollout engine, the rewards, the reference model's loader and the completions log.

  * `rollout_func` (TRL's public, experimental argument): our engine generates; TRL does the rest;
  * `trl.trainer.grpo_trainer.create_model_from_path` (module function), swapped while TRL builds the reference
    model, so it loads with our loader.
"""
from __future__ import annotations

import contextlib
import time

from r1lab.params import short_name
from r1lab.train.seeding import stable_seed


def rollout_func(engine_name: str, tokenizer, seed: int, engine_kwargs: dict | None = None):
    """TRL's `rollout_func`: the rollout engine samples each distinct prompt of the batch G times.

    TRL hands over the process's prompts as its sampler repeats them (G copies in a row); the engine gets each
    distinct prompt once with n = G. The weights reach the engine after every optimizer step (a no-op for the
    native engine, which runs the trainer's own model). Sampling is seeded from (seed, step, process, call), so a
    resumed run draws what the uninterrupted one drew. What TRL's output has no place for (the experts each token
    was routed to, the engine's timing and MTP acceptance) is left on `trainer._r1_rollout` for the trainer class."""
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
        call_seed = stable_seed(seed, step, trainer.accelerator.process_index, state["calls"])
        state["calls"] += 1
        sp = SamplingParams(n=g, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k or 0,
                            max_new_tokens=args.max_completion_length, seed=call_seed)
        t0 = time.perf_counter()
        out = state["engine"].generate(ids, sp)
        flat = [(p, s) for p, samples in zip(ids, out) for s in samples]
        routes = [(s.routes[:len(p)], s.routes[len(p):]) if getattr(s, "routes", None) is not None else None
                  for p, s in flat]
        trainer._r1_rollout = {"routes": routes if all(r is not None for r in routes) else None,
                               "stats": dict(getattr(state["engine"], "stats", None) or {}),
                               "seconds": time.perf_counter() - t0,
                               "tokens": sum(len(s.token_ids) for _, s in flat)}
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
