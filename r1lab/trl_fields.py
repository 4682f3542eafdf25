"""TRL's names are the YAML's names: a stage on a TRL trainer takes every field of that trainer's config by its TRL name.

    - name: cold_start
      kind: sft
      learning_rate: 1.0e-3            # trl.SFTConfig's fields, checked against TRL's dataclass
      per_device_train_batch_size: 8
      data: [...]                      # r1lab's own keys, where TRL has no equivalent

`TRLParams` is the base of such a stage's Params: its declared fields are r1lab's own keys; any other key must be a field
of `TRL_CONFIG` (trl.SFTConfig, trl.GRPOConfig), or of trl.ModelConfig for how the model loads (dtype,
attn_implementation, trust_remote_code, model_revision). A new TRL field works without a change here. Values are
coerced to the dataclass's types, then the whole config is built once at validation (TRL's own checks run then), so a
bad value fails `r1lab validate` in one line. r1lab's defaults where they differ from TRL's are `TRL_DEFAULTS`; after
validation every TRL field the stage sets (given or defaulted) is an attribute: `p.learning_rate`. r1lab's old names
fail in one line that gives TRL's name.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from typing import ClassVar

from pydantic import ConfigDict, Field, model_validator

from r1lab.params import LoraParams, StageParams, check_number

RENAMED = {"lr": "learning_rate", "lr_scheduler": "lr_scheduler_type", "epochs": "num_train_epochs",
           "batch_size": "per_device_train_batch_size", "grad_accum": "gradient_accumulation_steps",
           "completion_only": "completion_only_loss", "kl_ratio_correction": "use_bias_correction_kl",
           "prompts_per_step": "per_device_train_batch_size, which counts completions (prompts × num_generations)"}
# TRL fields whose dataclass type allows what makes no sense (TRL checks them late or not at all)
POSITIVE = {"learning_rate", "max_grad_norm", "temperature", "per_device_train_batch_size", "num_generations",
            "gradient_accumulation_steps", "max_completion_length", "max_length", "save_steps", "logging_steps",
            "num_train_epochs", "epsilon", "steps_per_generation", "num_iterations"}
MODEL_FIELDS = ("dtype", "torch_dtype", "attn_implementation", "trust_remote_code", "model_revision")
# trl.ModelConfig's LoRA fields -> r1lab's `lora:` block (open-r1 recipes write these)
PEFT_FIELDS = {"use_peft": None, "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout",
               "lora_target_modules": "target_modules"}
PIPELINE_OWNED = {"output_dir": "the pipeline puts every stage under OUTPUT_DIR/STAGE",
                  "resume_from_checkpoint": "the pipeline resumes a killed stage itself",
                  "reward_funcs": "use `rewards:` (spec -> weight)", "reward_weights": "use `rewards:` (spec -> weight)"}


def trl_config_class(name: str):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import trl

    return getattr(trl, name)


@functools.lru_cache(maxsize=None)
def trl_field_types(name: str) -> dict:
    """{field: type} of a TRL config dataclass (read once per class; callers must not modify it)."""
    cls = trl_config_class(name)
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, typing.Any) for f in dataclasses.fields(cls) if f.init}


class TRLParams(StageParams):
    """Base of the Params of a stage on a TRL trainer (see the module doc)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), allow_inf_nan=False)
    TRL_CONFIG: ClassVar[str] = "SFTConfig"
    TRL_DEFAULTS: ClassVar[dict] = {}

    lora: LoraParams | None = None
    seed: int | None = Field(None, description="default: the pipeline's seed")

    @model_validator(mode="after")
    def _trl_fields(self):
        from pydantic import TypeAdapter, ValidationError

        given = dict(self.__pydantic_extra__ or {})
        peft = {k: given.pop(k) for k in list(given) if k in PEFT_FIELDS}
        if peft.pop("use_peft", bool(peft)) and self.lora is None:
            self.lora = LoraParams(**{PEFT_FIELDS[k]: v for k, v in peft.items() if v is not None})
        for key in given:
            if key in RENAMED:
                raise ValueError(f"{key}: r1lab's old name; TRL's is {RENAMED[key]}")
            if key in PIPELINE_OWNED:
                raise ValueError(f"{key}: not a stage key: {PIPELINE_OWNED[key]}")
        types = trl_field_types(self.TRL_CONFIG)
        known = set(types) | set(MODEL_FIELDS) | set(PEFT_FIELDS) | set(type(self).model_fields)
        for key, value in given.items():
            if key not in types and key not in MODEL_FIELDS:
                close = difflib.get_close_matches(key, sorted(known), n=3)
                raise ValueError(f"{key}: unknown key (not r1lab's, not a field of trl.{self.TRL_CONFIG})"
                                 + (f"; did you mean {', '.join(close)}?" if close else ""))
            if key in types:
                try:
                    check_number(value, types[key], key)
                except ValueError as e:
                    raise ValueError(f"{key}: {e}") from None
                try:
                    given[key] = v = TypeAdapter(types[key]).validate_python(value)
                except ValidationError as e:
                    raise ValueError(f"{key}: {e.errors()[0]['msg']} (got {value!r})") from None
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"{key}: Input should be a finite number (got {value!r})")
                if key in POSITIVE and isinstance(v, (int, float)) and v is not None and v <= 0:
                    raise ValueError(f"{key}: Input should be greater than 0 (got {value!r})")
        if "torch_dtype" in given:
            given["dtype"] = given.pop("torch_dtype")
        check_trackers(given.get("report_to"))
        merged = {**self.TRL_DEFAULTS, **given}
        self.__pydantic_extra__ = merged
        build_trl_config(self, "/nonexistent-r1lab-validate", seed=0)   # TRL's own checks, now
        return self

    def trl_fields(self) -> dict:
        """Every TRL config field this stage sets (given or r1lab's default), model-loading keys left out."""
        return {k: v for k, v in (self.__pydantic_extra__ or {}).items() if k not in MODEL_FIELDS}

    def model_kwargs(self) -> dict:
        """from_pretrained kwargs from the stage's model keys (dtype, attn_implementation, ...)."""
        extra = self.__pydantic_extra__ or {}
        out = {k: extra[k] for k in ("dtype", "attn_implementation", "trust_remote_code") if k in extra}
        if "model_revision" in extra:
            out["revision"] = extra["model_revision"]
        return out


def _as_list(v) -> list:
    return [] if v is None else [v] if isinstance(v, str) else list(v)


def check_trackers(report_to) -> None:
    """A `report_to` value (a name or a list) names only trackers transformers knows; else ValueError, one line."""
    bad = [t for t in _as_list(report_to) if t not in _trackers()]
    if bad:
        raise ValueError(f"report_to: unknown tracker {bad[0]!r}; expected some of: {', '.join(_trackers())}")


def _trackers() -> list[str]:
    """The names transformers' `report_to` knows (wandb, tensorboard, trackio, ...), plus all / none."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return sorted(INTEGRATION_TO_CALLBACK) + ["all", "none"]


def build_trl_config(p: TRLParams, out_dir, seed: int, **forced):
    """trl.<TRL_CONFIG> from the stage's fields over r1lab's run settings (a CPU run, no tqdm, checkpoints r1lab can
    resume, no tracker unless `report_to` says so). `forced` wins over everything (the pipeline's own settings)."""
    import torch

    cls = trl_config_class(p.TRL_CONFIG)
    cuda = torch.cuda.is_available()
    base = dict(save_strategy="steps", save_total_limit=2, logging_first_step=True, logging_nan_inf_filter=False,
                report_to="none", seed=seed, data_seed=seed, bf16=bool(cuda and torch.cuda.is_bf16_supported()),
                fp16=False, use_cpu=not cuda, dataloader_num_workers=0, disable_tqdm=True)
    try:
        return cls(**{**base, **p.trl_fields(), **forced, "output_dir": str(out_dir)})
    except (ValueError, TypeError) as e:
        raise ValueError(f"trl.{p.TRL_CONFIG}: {str(e).splitlines()[0]}") from None
