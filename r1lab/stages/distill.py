"""`distill` stage: R1's distillation — a smaller student fine-tuned (SFT) on the teacher's reasoning traces,
optionally with token-level knowledge distillation on the teacher's logits.

The teacher is the stage's `from:` model. Traces come from `traces:` (e.g. `stage:rs`, an earlier rejection
sampling stage's data) and/or are generated here: with `generate:` the teacher samples completions for the
`generate.data` prompts, and only those passing the rewards are kept — rejection sampling on the teacher (the same
code as the rejection_sampling stage, r1lab/train/sampling.py; its data/samples.jsonl lands in this stage's data/). The student is a base_model preset
(`student: student`, random init, the teacher's tokenizer) or a path to any HF causal LM that shares the
teacher's tokenizer; it is trained by the sft stage's own code (same trainer, checkpoints, resume, LoRA), and
its model/ is this stage's output. It is trained by the same code as the sft stage (r1lab/train/sft.py).

Token-level KD (`kd_alpha` > 0; Hinton et al. 2015): the frozen teacher reads the same token ids as the student
and, on every completion token of the traces (the prompt is masked as in SFT), the loss is

    kd_alpha · T² · D(teacher_T ‖ student_T)  +  (1 − kd_alpha) · CE(student, trace token)  [+ balance term]

where `_T` is softmax(logits / T), T = `kd_temperature` (T² keeps the soft-target gradients at the CE's scale
as T grows) and D is the forward KL by default. Both terms are sums over the completion tokens divided by the
same count — the Trainer's `num_items_in_batch`, as the sft loss (so gradient accumulation stays exact). D is TRL's
generalized JSD (trl.experimental.gkd.GKDTrainer.generalized_jsd_loss): `kd_divergence` forward = KL(t‖s)
(beta 0), reverse = KL(s‖t) (beta 1), jsd = the β=0.5 generalized JSD. For a DeepSeekForCausalLM student the CE
part is the model's own SFT objective (next-token CE + λ·MTP CE) and the MoE balance term is added unscaled (a
router regulariser, not a data term); `kd_loss` (D, unscaled) and `ce_loss` (next-token CE) are logged per step.
This is off-policy KD on fixed traces (GKD with lmbda=0); it rides on the sft trainer through a compute_loss
override (`KD.trainer_class`) instead of GKDTrainer, which drops the CE term, the model's MTP/balance losses and
our data pipeline.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from r1lab import dist
from r1lab.io import atomic_dir, read_jsonl
from r1lab.loading import load_model, load_tokenizer
from r1lab.params import DataSpec, RewardSpec
from r1lab.stages.base import StageContext
from r1lab.train.sampling import RejectionParams, rejection_sample
from r1lab.train.sft import SFT_DEFAULTS, SFT_METRICS, train_sft
from r1lab.trl_fields import TRLParams

METRICS = SFT_METRICS + ("teacher", "student", "teacher_params", "student_params", "param_ratio", "first_kd_loss",
                         "final_kd_loss", "traces_sampled", "traces_kept")   # run() returns


class GenerateParams(RejectionParams):
    """Teacher sampling: rejection sampling's parameters, with one trace per prompt and math_accuracy by default."""
    rewards: dict[RewardSpec, float] = Field(default_factory=lambda: {"math_accuracy": 1.0})
    max_per_prompt: int | None = Field(1, ge=1)


class Params(TRLParams):   # r1lab's distillation keys; the student's SFT takes any trl.SFTConfig field
    model_config = TRLParams.model_config   # TRL's fields are extra keys, checked by TRLParams
    TRL_CONFIG = "SFTConfig"
    TRL_DEFAULTS = {**SFT_DEFAULTS, "learning_rate": 1e-3}

    student: str = Field("student", description="a base_model preset (random init), `stage:NAME` (an earlier stage's "
                         "model, e.g. a pretrained student), or a path to an HF causal LM sharing the tokenizer")
    student_overrides: dict[str, Any] = Field(default_factory=dict, description="config fields changed on the preset, "
                                              "e.g. {hidden_size: 192} (a preset student only)")
    traces: list[DataSpec] = Field(default_factory=list, description="teacher traces (prompt + completion rows)")
    generate: GenerateParams | None = None
    mix_size: int | None = Field(None, ge=1)
    kd_alpha: float = Field(0.0, ge=0, le=1, description="weight of token-level KD on the teacher's logits (0: SFT on traces)")
    kd_temperature: float = Field(1.0, gt=0, description="softmax temperature T of both models in the KD term")
    kd_divergence: Literal["forward", "reverse", "jsd"] = Field(
        "forward", description="forward KL(teacher‖student), reverse KL(student‖teacher), or generalized JSD (β=0.5)")

    @model_validator(mode="after")
    def _check(self):
        if not self.traces and self.generate is None:
            raise ValueError("give `traces` (e.g. stage:rs) and/or `generate` (teacher sampling)")
        return self


_BETA = {"forward": 0.0, "reverse": 1.0, "jsd": 0.5}   # TRL's generalized-JSD beta for each divergence


def kd_loss(student_logits, teacher_logits, labels, temperature: float = 1.0, divergence: str = "forward",
            num_items_in_batch=None):
    """D(teacher_T ‖ student_T) of next-token distributions, summed over the positions whose next label is not
    -100 and divided by `num_items_in_batch` (or, without it, by their count) — the normalisation of the CE.

    Logits are (batch, seq, vocab) at the input positions; like the CE, position i predicts labels[:, i + 1].
    Computed in fp32 at least (fp64 stays fp64) by TRL's generalized JSD; not multiplied by T² (the caller does)."""
    import warnings

    with warnings.catch_warnings():   # trl.experimental warns once on import
        warnings.simplefilter("ignore")
        from trl.experimental.gkd import GKDTrainer

    import torch

    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    return GKDTrainer.generalized_jsd_loss(student_logits[:, :-1].to(dtype), teacher_logits[:, :-1].to(dtype),
                                           labels=labels[:, 1:], beta=_BETA[divergence], temperature=temperature,
                                           num_items_in_batch=num_items_in_batch)


@dataclasses.dataclass
class KD:
    """Token-level distillation for the SFT trainer: `train_sft(..., wrap=KD(...).trainer_class)`.

    `trainer_class(base)` subclasses the sft trainer class (TRL's SFTTrainer, or its ModelLossSFTTrainer for our
    model) with a compute_loss that runs the student once with labels (its own CE, and for our model MTP + balance),
    runs the frozen teacher on the same ids without grad, and mixes: α·T²·D + (1−α)·hard + balance."""
    teacher: object                  # a causal LM (nn.Module) sharing the student's tokenizer
    alpha: float
    temperature: float = 1.0
    divergence: str = "forward"

    def trainer_class(self, base):
        import torch

        kd = self

        class KDTrainer(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.kd_teacher = kd.teacher.to(self.args.device).eval().requires_grad_(False)

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                labels = inputs["labels"]
                out = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), labels=labels,
                            num_items_in_batch=num_items_in_batch)
                with torch.no_grad():
                    self.kd_teacher.eval()
                    t_logits = self.kd_teacher(input_ids=inputs["input_ids"],
                                               attention_mask=inputs.get("attention_mask")).logits
                div = kd_loss(out.logits, t_logits, labels, kd.temperature, kd.divergence, num_items_in_batch)
                ours = hasattr(out, "main_loss")   # our model's output: loss = CE + λ·MTP + balance, each reported
                # the MoE balance term is a router regulariser, not a data term: keep it out of the (1 - α) mix
                balance = out.aux_loss if ours else None
                hard = out.loss - balance if balance is not None else out.loss
                loss = kd.alpha * kd.temperature ** 2 * div + (1 - kd.alpha) * hard
                if balance is not None:
                    loss = loss + balance
                if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                    loss = loss * self.accelerator.num_processes   # as the sft trainer: DDP averages gradients
                # logged per completion token of this micro-batch (the loss terms are shares of num_items_in_batch)
                n_local = (labels[:, 1:] != -100).sum().clamp(min=1)
                share = float(num_items_in_batch / n_local) if num_items_in_batch is not None else 1.0
                mode = "train" if model.training else "eval"
                self._metrics[mode]["kd_loss"].append(float(div.detach()) * share)
                self._metrics[mode]["ce_loss"].append(float((out.main_loss if ours else out.loss).detach()) * share)
                for k in ("mtp_loss", "aux_loss") if ours else ():
                    v = getattr(out, k, None)
                    if v is not None:
                        self._metrics[mode][k].append(float(v.detach()))
                return (loss, out) if return_outputs else loss

        KDTrainer.__name__ = KDTrainer.__qualname__ = f"KD{base.__name__}"
        return KDTrainer


def check_vocab(teacher: str, student: str) -> None:
    """Token-level KD compares full next-token distributions: both vocabularies must be the same size."""
    from transformers import AutoConfig

    vt = AutoConfig.from_pretrained(teacher).get_text_config().vocab_size
    vs = AutoConfig.from_pretrained(student).get_text_config().vocab_size
    if vt != vs:
        raise ValueError(f"distill: kd_alpha > 0 needs teacher and student with one vocabulary; teacher {teacher} "
                         f"has vocab_size {vt}, student {student} has vocab_size {vs}")


def depends_on(p: Params) -> list[str]:
    """`student: stage:NAME` makes NAME an input of this stage (ordering, fingerprints)."""
    return [p.student.split(":", 1)[1]] if p.student.startswith("stage:") else []


def _student_path(ctx: StageContext, p: Params, tok) -> str:
    """The student's starting weights: a preset materialised once (teacher's tokenizer, its vocab), or a path."""
    from_stage = p.student.startswith("stage:")
    if from_stage or "/" in p.student or Path(p.student).exists():
        if p.student_overrides:
            raise ValueError(f"distill: student_overrides applies to a base_model preset, not to {p.student!r}")
        if not from_stage:
            return p.student
        name = p.student.split(":", 1)[1]
        finished = ctx.stage_model_paths()
        if name not in finished:
            raise ValueError(f"distill: student {p.student!r}: stage {name!r} has no saved model "
                             f"(finished stages with a model: {', '.join(finished) or 'none'})")
        return finished[name]
    import torch

    from base_model import DeepSeekForCausalLM, get_preset

    init = ctx.out_dir / "_student_init"
    if dist.is_main() and not (init / "config.json").exists():
        torch.manual_seed(ctx.seed if p.seed is None else p.seed)
        cfg = get_preset(p.student, **{"vocab_size": len(tok), **p.student_overrides})
        cfg.eos_token_id, cfg.pad_token_id = tok.eos_token_id, tok.pad_token_id
        with atomic_dir(init) as tmp:
            DeepSeekForCausalLM(cfg).save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
    dist.barrier()                     # rank 0 wrote it; every rank starts from it
    return str(init)


def run(ctx: StageContext) -> dict:
    p: Params = ctx.params
    teacher = ctx.model_path
    tok_path = ctx.tokenizer_path or teacher
    tok = load_tokenizer(tok_path)
    student = _student_path(ctx, p, tok)
    if p.kd_alpha > 0:   # fail before any teacher sampling
        check_vocab(teacher, student)
    traces = list(p.traces)
    gen_metrics = None
    if p.generate is not None:
        samples = ctx.data_dir / "samples.jsonl"
        if not samples.exists():   # a resumed stage reuses its traces
            gen_metrics = rejection_sample(ctx, p.generate, teacher, tok_path)
        traces.append(DataSpec(path=str(samples)))
        if not samples.read_text().strip():
            raise ValueError(f"stage {ctx.name}: the teacher produced no trace passing {list(p.generate.rewards)}; "
                             "raise generate.n or use `traces`")

    kd = KD(load_model(teacher), p.kd_alpha, p.kd_temperature, p.kd_divergence) if p.kd_alpha > 0 else None
    rows = ctx.load_mixture(traces, size=p.mix_size)
    metrics = train_sft(ctx, p, rows, student, tok_path, wrap=kd.trainer_class if kd else None)

    n_student = _n_params(str(ctx.model_dir))   # both counted from their checkpoints
    n_teacher = _n_params(teacher)
    metrics.update({"teacher": teacher, "student": p.student, "teacher_params": n_teacher, "student_params": n_student,
                    "param_ratio": n_student / n_teacher if n_teacher else None})
    if kd is not None:
        kd_logged = [r["kd_loss"] for r in read_jsonl(ctx.metrics_path) if "kd_loss" in r]
        metrics.update({"first_kd_loss": kd_logged[0] if kd_logged else None,
                        "final_kd_loss": kd_logged[-1] if kd_logged else None})
    if gen_metrics:
        metrics.update({"traces_sampled": gen_metrics["sampled"], "traces_kept": gen_metrics["kept"]})
    ctx.add_report(f"Distilled `{teacher}` ({n_teacher:,} params) into `{p.student}` ({n_student:,} params, "
                   f"{metrics['param_ratio']:.2f}×) by SFT on {metrics['rows']} teacher traces"
                   + (f", with token-level KD on the teacher's logits (α={p.kd_alpha}, T={p.kd_temperature}, "
                      f"{p.kd_divergence}; kd_loss {metrics['first_kd_loss']:.4g} → {metrics['final_kd_loss']:.4g})"
                      if kd is not None and metrics["first_kd_loss"] is not None else "") + ".")
    return metrics


def _n_params(model_dir: str) -> int:
    """Parameter count from a checkpoint's safetensors headers (no weights loaded). Multi-Token Prediction
    modules (`model.layers.{i}` with i >= num_hidden_layers, a training-time add-on the served model drops) are
    not counted, so a teacher with MTP is compared with its student on the model that answers."""
    import struct

    cfg = json.loads((Path(model_dir) / "config.json").read_text()) if (Path(model_dir) / "config.json").exists() else {}
    n_layers = cfg.get("num_hidden_layers")
    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for k, v in header.items():
            layer = _layer_index(k)
            if k == "__metadata__" or (n_layers is not None and layer is not None and layer >= n_layers):
                continue
            n = 1
            for d in v["shape"]:
                n *= d
            total += n
    return total


def _layer_index(key: str) -> int | None:
    m = re.match(r"model\.layers\.(\d+)\.", key)
    return int(m.group(1)) if m else None
