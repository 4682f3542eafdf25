"""`grpo` stage: Group Relative Policy Optimization on TRL's GRPOTrainer (R1-Zero's RL and R1's final RL).

For each prompt the policy samples a group of `num_generations` completions; every completion is scored by the
named rewards (weighted sum), and its advantage is its reward relative to the group, A_i = (r_i - mean(r)) / std(r)
(`scale_rewards: none` drops the division, as Dr.GRPO recommends). The loss is PPO's clipped surrogate on the
token ratio ρ = π/π_old, clipped to [1-ε, 1+ε_high] (ε_high > ε is DAPO's clip-higher), plus β·KL to the start model
(k3 estimator exp(ref-logπ) - (ref-logπ) - 1, times ρ unless `kl_ratio_correction: false`),
aggregated per `loss_type`:
  grpo     mean over sequences of (mean over that sequence's tokens)        — DeepSeekMath's form
  dr_grpo  sum over all tokens / (sequences × max_completion_length)        — Dr.GRPO's constant normaliser
  dapo     sum over all tokens / tokens in the whole generation batch       — DAPO's token-level mean (TRL default)
  bnpo     sum over all tokens / tokens in the local batch
All of this is TRL's code; this file only maps our YAML onto GRPOConfig and adds:
  * rewards from the registry (name, pkg.mod:fn, path.py:fn) with weights -> TRL's reward_funcs/reward_weights;
    each is called with the batch's dataset columns (TRL's signature is ours);
  * dynamic sampling (DAPO): TRL has no option for it, so `dynamic_sampling: true` masks out, after scoring,
    every group whose weighted rewards are all equal — those completions then count in neither the loss nor its
    token normaliser. DAPO also re-samples to refill the batch; we do not (the step just
    trains on fewer groups; `dynamic_sampling/kept_groups` logs the share kept);
  * `groups/flat` in the metrics: the share of groups whose rewards are all equal (no gradient). TRL's own
    `frac_reward_zero_std` misses them when a weight like 0.2 makes the group mean round off (see flat_groups);
  * generation through the model's own `generate` (our fast latent-KV-cache path for DeepSeekForCausalLM),
    or TRL's vLLM colocate/server mode with `use_vllm`;
  * the reference model (β > 0) loaded with our model class rather than the transformers one;
  * an R1-Zero-style plot (accuracy and mean response length over steps) in plots/.
"""
from __future__ import annotations

import contextlib
from typing import Literal

from pydantic import Field, field_validator, model_validator

from r1lab.config import DataSpec, RewardSpec
from r1lab.stages.base import DataError, StageContext, StageParams, load_model, load_tokenizer
from r1lab.stages.sft import LoraParams, train_and_save


class Params(StageParams):
    data: list[DataSpec] = Field(min_length=1, description="prompt sources (rows need `prompt`; other columns go to the rewards)")
    mix_size: int | None = Field(None, ge=1)
    rewards: dict[RewardSpec, float] = Field(description="reward spec -> weight (a list means weight 1 each)")
    accuracy_reward: str | None = Field(None, description="the reward plotted as accuracy (default: the first "
                                        "whose name has 'accuracy' or 'tests', else the first)")
    system_prompt: str | None = None
    chat_template: str | None = None
    num_generations: int = Field(8, ge=2, description="group size G")
    prompts_per_step: int = Field(4, ge=1, description="prompts per optimizer step (batch = prompts × G)")
    num_iterations: int = Field(1, ge=1, description="optimisation passes per generation batch (μ)")
    max_steps: int = Field(100, ge=1)
    lr: float = Field(1e-6, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "constant"
    warmup_steps: float = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    beta: float = Field(0.0, ge=0, description="KL coefficient (TRL default 0; R1 used a small one)")
    kl_ratio_correction: bool = Field(True, description="multiply the per-token KL by the ratio π/π_old (TRL's "
                                      "use_bias_correction_kl, DeepSeek-V3.2's unbiased KL); false = the GRPO paper's k3")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dapo"
    epsilon: float = Field(0.2, gt=0, lt=1)
    epsilon_high: float | None = Field(None, gt=0, description="upper clip (clip-higher); default = epsilon")
    scale_rewards: Literal["group", "batch", "none"] = "group"
    dynamic_sampling: bool = False
    mask_truncated_completions: bool = False
    max_prompt_length: int | None = Field(256, ge=1, description="prompts longer than this (tokens) are dropped")
    max_completion_length: int = Field(128, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    lora: LoraParams | None = None
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    save_steps: int = Field(50, ge=1)
    logging_steps: int = Field(1, ge=1)
    seed: int | None = None
    bf16: bool | None = None
    gradient_checkpointing: bool = False
    log_completions: bool = False
    report_to: list[str] = Field(default_factory=list)
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

    @field_validator("rewards", mode="before")
    @classmethod
    def _weights(cls, v):
        return reward_weights(v)

    @field_validator("report_to", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self):
        if not self.rewards:
            raise ValueError("rewards: name at least one reward")
        if self.accuracy_reward is not None and self.accuracy_reward not in self.rewards:
            raise ValueError(f"accuracy_reward: {self.accuracy_reward!r} is not one of rewards {list(self.rewards)}")
        return self


def reward_weights(v):
    """YAML `rewards:` -> {spec: weight}: a dict as is; a name or a list of names ({name: weight} items) -> weight 1."""
    if isinstance(v, str):
        v = [v]
    if isinstance(v, (list, tuple)):
        out = {}
        for item in v:
            out.update(item if isinstance(item, dict) else {item: 1.0})
        return out
    return v


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
        from r1lab.stages.base import read_jsonl

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

    from r1lab.stages.base import DataError

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


def chat_prompt_ids(tok, messages: list[dict]) -> list[int]:
    """Token ids of a conversation rendered with the chat template, ending with the assistant-turn opener."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


def reward_funcs(p: Params):
    """(callables, weights, names) for TRL; the callables are the registry's checked rewards."""
    import rewards

    funcs = [rewards.get_reward(spec) for spec in p.rewards]
    names = []
    for f, spec in zip(funcs, p.rewards):
        f.__name__ = _short_name(spec)   # TRL logs rewards/<__name__>/mean
        names.append(f.__name__)
    return funcs, [float(w) for w in p.rewards.values()], names


def _short_name(spec: str) -> str:
    if ":" in spec:   # path/to/file.py:fn or pkg.mod:fn -> fn
        return spec.rsplit(":", 1)[1]
    return spec


def accuracy_name(p: Params, names: list[str]) -> str:
    if p.accuracy_reward:
        return _short_name(p.accuracy_reward)
    return next((n for n in names if "accuracy" in n or "tests" in n), names[0])


def make_config(ctx: StageContext, p: Params, seed: int):
    import torch
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    bf16 = p.bf16 if p.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    extra = {}
    if p.use_vllm:
        extra.update(use_vllm=True, vllm_mode=p.vllm_mode, vllm_gpu_memory_utilization=p.vllm_gpu_memory_utilization)
    return GRPOConfig(
        output_dir=str(ctx.checkpoint_dir),
        learning_rate=p.lr, lr_scheduler_type=p.lr_scheduler, warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay, max_grad_norm=p.max_grad_norm, max_steps=p.max_steps,
        per_device_train_batch_size=p.prompts_per_step * p.num_generations, gradient_accumulation_steps=1,
        num_generations=p.num_generations, num_iterations=p.num_iterations,
        max_completion_length=p.max_completion_length, temperature=p.temperature, top_p=p.top_p,
        beta=p.beta, use_bias_correction_kl=p.kl_ratio_correction, loss_type=p.loss_type, epsilon=p.epsilon, epsilon_high=p.epsilon_high,
        scale_rewards=p.scale_rewards, mask_truncated_completions=p.mask_truncated_completions,
        save_strategy="steps", save_steps=p.save_steps, save_total_limit=2,
        logging_steps=p.logging_steps, logging_first_step=True, logging_nan_inf_filter=False,
        report_to=p.report_to or "none",
        seed=seed, data_seed=seed, bf16=bf16, fp16=False, use_cpu=not cuda,
        gradient_checkpointing=p.gradient_checkpointing, dataloader_num_workers=0, disable_tqdm=True,
        log_completions=p.log_completions, **extra,
    )


def trainer_class(dynamic_sampling: bool):
    """TRL's GRPOTrainer, logging the share of flat groups (`groups/flat`: all rewards equal, no gradient) and,
    with dynamic sampling, masking those groups out (see the module doc)."""
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
            return drop_flat_groups(self, out, flat) if dynamic_sampling else out

    return R1GRPOTrainer


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
def _reference_with(loader):
    """While TRL builds its reference model (β > 0), load it with our loader (DeepSeekForCausalLM for our
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


def build_trainer(ctx: StageContext, p: Params, seed: int, callbacks=()):
    """The configured trainer (used by `run`, the loss test and benchmarks/grpo_bench.py)."""
    tok = load_tokenizer(ctx.tokenizer_path or ctx.model_path, p.chat_template)
    train = build_dataset(ctx, p, tok)
    model = load_model(ctx.model_path)
    if model.generation_config is not None and tok.eos_token_id is not None:
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
    funcs, weights, names = reward_funcs(p)
    args = make_config(ctx, p, seed)
    args.reward_weights = weights
    peft_config = None
    if p.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=p.lora.r, lora_alpha=p.lora.alpha, lora_dropout=p.lora.dropout,
                                 target_modules=p.lora.target_modules, task_type="CAUSAL_LM")
    with _reference_with(load_model):
        trainer = trainer_class(p.dynamic_sampling)(
            model=model, reward_funcs=funcs, args=args, train_dataset=train, processing_class=tok,
            peft_config=peft_config, callbacks=list(callbacks))
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer, tok, names


def run(ctx: StageContext) -> dict:
    p: Params = ctx.params
    seed = ctx.seed if p.seed is None else p.seed
    trainer, tok, names = build_trainer(ctx, p, seed, callbacks=[ctx.trainer_callback()])
    _, info = train_and_save(ctx, trainer, tok, lora=bool(p.lora))
    resumed_from = info["resumed_from"]

    acc = accuracy_name(p, names)
    hist = [h for h in trainer.state.log_history if "reward" in h]
    curve = [{"step": h["step"], "accuracy": h.get(f"rewards/{acc}/mean"),
              "length": h.get("completions/mean_length"), "reward": h.get("reward")} for h in hist]
    plot = plot_r1_zero(curve, ctx.plots_dir / "r1_zero.png", title=f"{ctx.name}: {acc}") if curve else None

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
    }
    ctx.add_report(
        f"GRPO ({p.loss_type}, G={p.num_generations}, β={p.beta}, ε={p.epsilon}/{p.epsilon_high or p.epsilon}, "
        f"scale_rewards={p.scale_rewards}{', dynamic sampling' if p.dynamic_sampling else ''}) on "
        f"{', '.join(d.describe() for d in p.data)} with rewards "
        f"{', '.join(f'{w:g}×{s}' for s, w in p.rewards.items())}; {metrics['steps']} steps. "
        f"{acc}: {_f(a0)} → {_f(a1)}; mean response length {_f(l0)} → {_f(l1)}."
        + (f"\n\n![R1-Zero-style curves](plots/{plot.name})" if plot else ""))
    return metrics


def _f(v):
    return "n/a" if v is None else f"{v:.3g}"


def plot_r1_zero(curve: list[dict], path, title: str = ""):
    """Accuracy and mean response length over steps, side by side (as in the DeepSeek-R1-Zero figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [c["step"] for c in curve]
    acc = [c["accuracy"] if c["accuracy"] is not None else float("nan") for c in curve]
    length = [c["length"] if c["length"] is not None else float("nan") for c in curve]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(steps, acc, marker=".", alpha=0.35, label="per step")
    a.plot(steps, _rolling(acc), color="C0", label=f"mean of last {min(10, len(acc))}")
    a.legend(loc="best", fontsize=8)
    a.set_xlabel("step"); a.set_ylabel("accuracy (train batch)"); a.set_title(title or "accuracy")
    b.plot(steps, length, marker=".", color="C1", alpha=0.35)
    b.plot(steps, _rolling(length), color="C1")
    b.set_xlabel("step"); b.set_ylabel("mean response length (tokens)"); b.set_title("response length")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _rolling(xs: list[float], window: int = 10) -> list[float]:
    """Trailing mean over up to `window` points (NaNs skipped): a single GRPO batch is a noisy accuracy estimate."""
    out = []
    for i in range(len(xs)):
        part = [x for x in xs[max(0, i - window + 1): i + 1] if x == x]
        out.append(sum(part) / len(part) if part else float("nan"))
    return out
