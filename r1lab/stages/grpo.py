"""`grpo` stage: Group Relative Policy Optimization on TRL's GRPOTrainer (R1-Zero's RL and R1's final RL).

For each prompt the policy samples a group of `num_generations` completions; every completion is scored by the
named rewards (weighted sum), and its advantage is its reward relative to the group, A_i = (r_i - mean(r)) / std(r)
(`scale_rewards: none` drops the division, as Dr.GRPO recommends). The loss is PPO's clipped surrogate on the
token ratio ρ = π/π_old, clipped to [1-ε, 1+ε_high] (ε_high > ε is DAPO's clip-higher), plus β·KL to the start model
(k3 estimator exp(ref-logπ) - (ref-logπ) - 1, times ρ unless `use_bias_correction_kl: false`),
aggregated per `loss_type`:
  grpo     mean over sequences of (mean over that sequence's tokens)        — DeepSeekMath's form
  dr_grpo  sum over all tokens / (sequences × max_completion_length)        — Dr.GRPO's constant normaliser
  dapo     sum over all tokens / tokens in the whole generation batch       — DAPO's token-level mean (TRL default)
  bnpo     sum over all tokens / tokens in the local batch
All of this is TRL's code; this file maps our YAML onto TRL's trainer (the config is built in r1lab/train/args.py,
what we own of GRPO is r1lab/train/grpo.py) and adds:
  * rewards from the registry (name, pkg.mod:fn, path.py:fn) with weights -> TRL's reward_funcs/reward_weights;
    each is called with the batch's dataset columns (TRL's signature is ours);
  * dynamic sampling (DAPO): `dynamic_sampling: mask` (or true) masks out, after scoring, every group whose weighted
    rewards are all equal — those completions then count in neither the loss nor its token normaliser;
    `dynamic_sampling: resample` first generates fresh prompts to take their place (up to max_resample_tries rounds);
  * DeepSeek-MoE RL: router replay (`router_replay`), truncated importance sampling (`tis_cap`), MTP-drafted
    rollouts (`mtp_rollouts`, with the MTP head refreshed each round) — r1lab/train/grpo_trainer.py;
  * `groups/flat` in the metrics: the share of groups whose rewards are all equal (no gradient). TRL's own
    `frac_reward_zero_std` misses them when a weight like 0.2 makes the group mean round off (see flat_groups);
  * generation through r1lab's rollout engine (TRL's `rollout_func`): the pipeline's `rollout:` or this stage's
    `engine:` (native: our fast latent-KV-cache path for DeepSeekForCausalLM; vllm; `use_vllm: true` = vllm);
  * the reference model (β > 0) loaded with our model class rather than the transformers one;
  * an R1-Zero-style plot (accuracy and mean response length over steps) in plots/.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from r1lab.errors import DataError
from r1lab.loading import load_model, load_tokenizer
from r1lab.params import DataBlock, DataSpec, RewardsBlock
from r1lab.io import read_jsonl
from r1lab.report import plot_r1_zero, samples_table
from r1lab.rollout import require_native, resolve_engine
from r1lab.stages.base import StageContext
from r1lab.train.args import grpo_config, peft_config
from r1lab.train.fit import prepare, quiet, train_and_save
from r1lab.train.grpo import accuracy_name, completions_recorder, reference_loader, reward_funcs, rollout_func
from r1lab.train.grpo_trainer import rollout_budget_callback, trainer_class
from r1lab.train.sampling import chat_prompt_ids
from r1lab.trl_fields import TRLParams


METRICS = ("steps", "resumed_from_step", "prompts", "first_accuracy", "final_accuracy", "first_response_length",
           "final_response_length", "first_reward", "final_reward", "accuracy_reward", "rollouts")   # run() returns

# r1lab's defaults where they differ from trl.GRPOConfig's (a small model, a short run); the rest are TRL's
GRPO_DEFAULTS = {"learning_rate": 1e-6, "lr_scheduler_type": "constant", "max_steps": 100, "num_generations": 8,
                 "per_device_train_batch_size": 32, "max_completion_length": 128, "save_steps": 50, "logging_steps": 1,
                 "loss_type": "dapo", "beta": 0.0, "epsilon": 0.2, "epsilon_high": None, "scale_rewards": "group",
                 "temperature": 1.0, "top_p": 1.0, "use_bias_correction_kl": True}


class Params(TRLParams, RewardsBlock, DataBlock):   # data, rewards, then r1lab's keys; any trl.GRPOConfig field
    model_config = TRLParams.model_config   # TRL's fields are extra keys, checked by TRLParams
    TRL_CONFIG = "GRPOConfig"
    TRL_DEFAULTS = GRPO_DEFAULTS

    accuracy_reward: str | None = Field(None, description="the reward plotted as accuracy (default: the first "
                                        "whose name has 'accuracy' or 'tests', else the first)")
    dynamic_sampling: Literal[False, True, "mask", "resample"] = Field(
        False, description="groups whose rewards are all equal (no gradient): true/mask masks them out; resample "
        "generates fresh prompts to take their place, up to max_resample_tries rounds a step (DAPO)")
    rollout_budget: int | None = Field(None, ge=1, description="stop once this many completions were generated "
                                       "(re-sampling makes a step cost more than its batch); max_steps still bounds")
    max_resample_tries: int = Field(3, ge=1, le=32, description="generation rounds per step with dynamic_sampling: "
                                    "resample, the first included")
    router_replay: bool = Field(False, description="the training forward uses the experts each token was routed to "
                                "during the rollout (R3; native engine, DeepSeek MoE models)")
    log_routing_drift: bool | None = Field(None, description="log the share of tokens the training forward routes "
                                           "differently from the rollout (one more forward a step; default: on with "
                                           "router_replay)")
    tis_cap: float | None = Field(None, gt=0, description="truncated importance sampling: weight each token's loss "
                                  "by min(π_trainer/π_rollout, tis_cap)")
    mtp_rollouts: bool = Field(False, description="sample rollouts with MTP self-speculation (exact in distribution; "
                               "native engine, a model with an MTP head)")
    mtp_refresh_lr: float | None = Field(None, ge=0, description="learning rate of the MTP head's refresh step after "
                                         "each generation round (default: 3e-4 with mtp_rollouts; 0: off)")
    max_prompt_length: int | None = Field(256, ge=1, description="prompts longer than this (tokens) are dropped")
    engine: Literal["native", "vllm", "hf", "auto"] | None = Field(None, description="rollout engine (default: the "
                                                                  "pipeline's `rollout:`)")
    log_rollout_mismatch: bool | None = Field(None, description="log |trainer - rollout| token logprobs each step "
                                              "(default: on with vllm)")
    min_isolation: Literal["rlimits", "partial", "namespaces"] | None = Field(
        None, description="refuse to run unless the code sandbox reaches this isolation here (rewards/README.md)")

    @field_validator("min_isolation")
    @classmethod
    def _sandbox_isolation(cls, v):
        if v is not None:
            from rewards.sandbox import IsolationError, require_isolation

            try:
                require_isolation(v)   # runs one empty jail and looks at what it got
            except IsolationError as e:
                raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _sampling_the_engines_do(self):
        """The rollout engines sample with temperature, top_p and top_k; refuse TRL's other sampling knobs rather than
        ignore them."""
        for key, off in (("min_p", None), ("repetition_penalty", 1.0), ("generation_kwargs", None)):
            if getattr(self, key, off) not in (off, {}):
                raise ValueError(f"{key}: r1lab's rollout engines sample with temperature, top_p and top_k only; "
                                 f"unset {key}")
        return self

    @model_validator(mode="after")
    def _tis_by_its_name(self):
        """TRL's importance-sampling keys drive its own vLLM path, which r1lab's engines replace: point to tis_cap
        rather than ignore them."""
        for key in ("vllm_importance_sampling_correction", "vllm_importance_sampling_mode",
                    "vllm_importance_sampling_clip_max", "vllm_importance_sampling_clip_min"):
            if getattr(self, key, None) is not None:
                raise ValueError(f"{key}: TRL applies it to its own vLLM generation only; r1lab's rollout engines "
                                 f"correct the rollout/trainer mismatch with `tis_cap: C` (token-level truncated "
                                 f"importance sampling, weight min(π_trainer/π_rollout, C)); unset {key}")
        return self

    @model_validator(mode="after")
    def _native_only(self):
        """Router replay and MTP drafts need our engine's recording and drafting."""
        for key in ("router_replay", "mtp_rollouts"):
            if getattr(self, key) and (self.engine in ("vllm", "hf") or getattr(self, "use_vllm", False)):
                raise ValueError(f"{key}: needs the native rollout engine (engine: native), not {self.engine or 'vllm'}")
        return self

    def rl_options(self, seed: int, engine: str):
        from r1lab.train.grpo_trainer import RLOptions

        ds = {False: "off", True: "mask"}.get(self.dynamic_sampling, self.dynamic_sampling)
        mtp_lr = self.mtp_refresh_lr if self.mtp_refresh_lr is not None else (3e-4 if self.mtp_rollouts else 0)
        return RLOptions(dynamic_sampling=ds, max_resample_tries=self.max_resample_tries,
                         log_mismatch=self.log_rollout_mismatch if self.log_rollout_mismatch is not None
                         else engine == "vllm" or self.tis_cap is not None,
                         router_replay=self.router_replay,
                         log_routing_drift=self.log_routing_drift if self.log_routing_drift is not None
                         else self.router_replay,
                         tis_cap=self.tis_cap, mtp_refresh_lr=mtp_lr or None, seed=seed)

    @model_validator(mode="after")
    def _check(self):
        if not self.rewards:
            raise ValueError("rewards: name at least one reward")
        if self.accuracy_reward is not None and self.accuracy_reward not in self.rewards:
            raise ValueError(f"accuracy_reward: {self.accuracy_reward!r} is not one of rewards {list(self.rewards)}")
        return self


def to_prompt(row: dict, system_prompt: str | None = None) -> dict:
    """A data row -> the row with `prompt` as a conversation (TRL renders it with the chat template).
    The other columns stay: TRL hands them to every reward function."""
    prompt = row.get("prompt")
    if prompt is None:
        raise DataError(f"grpo rows need a `prompt` column; got columns {sorted(row)}")
    sys = [{"role": "system", "content": system_prompt}] if system_prompt else []
    msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return {**row, "prompt": sys + msgs}


REWARD_COLUMNS = {"code_tests": "tests", "code_tests_fraction": "tests"}   # built-in rewards and the column they read


def _source_columns(spec: DataSpec) -> set[str] | None:
    """The columns a source will have, when known without running earlier stages (a task, a local .jsonl)."""
    from pathlib import Path

    if spec.task:
        from r1lab.tasks import task_rows

        cols = set(task_rows(spec.task, n=1, split=spec.split, seed=0, difficulty=spec.difficulty)[0])
    elif spec.path and Path(spec.path).is_file() and spec.path.endswith(".jsonl"):
        from r1lab.io import read_jsonl

        cols = {k for r in read_jsonl(spec.path, strict=True) for k, v in r.items() if v is not None}
    else:
        return None
    return {(spec.columns or {}).get(c, c) for c in cols}


def check(p: Params, cfg) -> None:
    """Validation: a reward that reads a column (code_tests: `tests`) needs data that has it."""
    for spec, col in REWARD_COLUMNS.items():
        if spec not in p.rewards:
            continue
        known = [_source_columns(d) for d in p.data]
        if all(k is not None for k in known) and not any(col in k for k in known):
            raise ValueError(f"rewards.{spec}: reads a `{col}` column, and no data source has one "
                             f"({', '.join(d.describe() for d in p.data)}; e.g. task: code has it)")


def build_dataset(ctx: StageContext, p: Params, tok):
    import datasets

    rows = [to_prompt(r, p.system_prompt) for r in ctx.load_mixture(p.data, size=p.mix_size)]
    for spec, col in REWARD_COLUMNS.items():
        if spec in p.rewards and not any(r.get(col) is not None for r in rows):
            raise DataError(f"rewards.{spec}: reads a `{col}` column, and no data row has one "
                            f"(columns: {', '.join(sorted(rows[0])) if rows else 'none'})")
    if p.max_prompt_length:
        # TRL 1.x no longer truncates prompts; a cut prompt would be a different problem, so drop long ones
        kept = [r for r in rows if len(chat_prompt_ids(tok, r["prompt"])) <= p.max_prompt_length]
        if len(kept) < len(rows):
            ctx.print(f"{ctx.name}: dropped {len(rows) - len(kept)} prompts longer than {p.max_prompt_length} tokens",
                      style="yellow", markup=False)
        if not kept:
            raise ValueError(f"stage {ctx.name}: max_prompt_length: every prompt is longer than {p.max_prompt_length} tokens")
        rows = kept
    return datasets.Dataset.from_list(rows)


def build_trainer(ctx: StageContext, p: Params, seed: int, callbacks=()):
    """The configured trainer (used by `run`, the loss test and benchmarks/grpo_bench.py)."""
    import warnings

    tok = load_tokenizer(ctx.tokenizer_path or ctx.model_path, p.chat_template)
    train = build_dataset(ctx, p, tok)
    model = load_model(ctx.model_path, **p.model_kwargs())
    prepare(model, tok)
    funcs, weights, names = reward_funcs(p)
    args = grpo_config(ctx.checkpoint_dir, p, seed, ctx)
    args.reward_weights = weights
    engine = ctx.engine_name("vllm" if getattr(p, "use_vllm", False) else p.engine)
    engine_kwargs = {"gpu_memory_utilization": p.vllm_gpu_memory_utilization} if engine == "vllm" and hasattr(
        p, "vllm_gpu_memory_utilization") else {}
    opts = p.rl_options(seed, resolve_engine(engine))
    asked = {"router_replay": p.router_replay, "log_routing_drift": opts.log_routing_drift, "mtp_rollouts": p.mtp_rollouts}
    try:
        require_native(engine, [k for k, on in asked.items() if on])
    except ValueError as e:
        raise ValueError(f"stage {ctx.name}: {e}") from None
    if p.router_replay or opts.log_routing_drift:
        engine_kwargs["record_routing"] = True
    if p.mtp_rollouts:
        engine_kwargs["use_mtp"] = True
    with reference_loader(load_model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*rollout_func.*experimental")
        trainer = trainer_class(opts)(
            model=model, reward_funcs=funcs, args=args, train_dataset=train, processing_class=tok,
            peft_config=peft_config(p.lora), callbacks=list(callbacks),
            rollout_func=rollout_func(engine, tok, seed, engine_kwargs))
    return quiet(trainer), tok, names


def run(ctx: StageContext) -> dict:
    p: Params = ctx.params
    seed = ctx.seed if p.seed is None else p.seed
    trainer, tok, names = build_trainer(ctx, p, seed, callbacks=[ctx.trainer_callback()])
    completions = ctx.out_dir / "completions.jsonl"
    trainer.add_callback(completions_recorder(trainer, completions, per_step=min(p.num_generations, 16)))
    if p.rollout_budget:
        trainer.add_callback(rollout_budget_callback(trainer, p.rollout_budget))
    _, info = train_and_save(ctx, trainer, tok, lora=bool(p.lora))
    resumed_from = info["resumed_from"]

    acc = accuracy_name(p, names)
    hist = [h for h in trainer.state.log_history if "reward" in h]
    curve = [{"step": h["step"], "accuracy": h.get(f"rewards/{acc}/mean"),
              "length": h.get("completions/mean_length"), "reward": h.get("reward")} for h in hist]
    plot = plot_r1_zero(curve, ctx.plots_dir / "r1_zero.png", title=f"{ctx.name}: {acc}") if curve and ctx.main else None

    def first_last(key):
        vals = [c[key] for c in curve if c.get(key) is not None]
        return (vals[0], vals[-1]) if vals else (None, None)

    a0, a1 = first_last("accuracy")
    l0, l1 = first_last("length")
    r0, r1 = first_last("reward")
    metrics = {
        "steps": int(trainer.state.global_step), "resumed_from_step": resumed_from, "prompts": len(trainer.train_dataset),
        "first_accuracy": a0, "final_accuracy": a1, "first_response_length": l0, "final_response_length": l1,
        "first_reward": r0, "final_reward": r1, "accuracy_reward": acc,
        "rollouts": trainer._rollouts_so_far(),
    }
    ctx.add_report(
        f"GRPO ({p.loss_type}, G={p.num_generations}, β={p.beta}, ε={p.epsilon}/{p.epsilon_high or p.epsilon}, "
        f"scale_rewards={p.scale_rewards}{_extras(p)}) on "
        f"{', '.join(d.describe() for d in p.data)} with rewards "
        f"{', '.join(f'{w:g}×{s}' for s, w in p.rewards.items())}; {metrics['steps']} steps. "
        f"{acc}: {_f(a0)} → {_f(a1)}; mean response length {_f(l0)} → {_f(l1)}."
        + (f"\n\n![R1-Zero-style curves](plots/{plot.name})" if plot else ""))
    rows = read_jsonl(completions)
    if rows:
        last = [r for r in rows if r["step"] == rows[-1]["step"]]
        ctx.add_report(f"### Completions at step {last[0]['step']}\n\nOne group per logged step is in completions.jsonl "
                       f"({len(rows)} rows: step, prompt, completion, reward, rewards, advantage).\n\n"
                       + samples_table(last))
    return metrics


def _extras(p) -> str:
    ds = {True: "mask"}.get(p.dynamic_sampling, p.dynamic_sampling)
    parts = [f"dynamic sampling: {ds}" if ds else "", "router replay" if p.router_replay else "",
             f"TIS cap {p.tis_cap:g}" if p.tis_cap else "", "MTP-drafted rollouts" if p.mtp_rollouts else ""]
    return "".join(f", {x}" for x in parts if x)


def _f(v):
    return "n/a" if v is None else f"{v:.3g}"
