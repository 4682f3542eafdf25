"""What one pretraining run is: PretrainConfig (YAML keys and `--flag-names` are its fields), the run-size defaults
per model preset, and the layering defaults < run preset < YAML (--config) < CLI flags (`load_config`).

No torch here: the r1lab `pretrain` stage builds its params from PretrainConfig without loading the training loop.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Run-size defaults per model preset (any field can still be set by YAML or CLI).
RUN_PRESETS: dict[str, dict] = {
    "nano": dict(seq_len=64, batch_size=8, micro_batch_size=8, max_steps=20, warmup_steps=4, lr=3e-3,
                 vocab_size=512, tokenizer_docs=2000, log_every=1, ckpt_every=10),
    "tiny": dict(seq_len=256, batch_size=8, micro_batch_size=8, max_steps=1000, warmup_steps=40, lr=2e-3,
                 vocab_size=4096, tokenizer_docs=20000, log_every=10, ckpt_every=100),
    "student": dict(seq_len=256, batch_size=8, micro_batch_size=8, max_steps=500, warmup_steps=30, lr=3e-3,
                    vocab_size=4096, tokenizer_docs=20000, log_every=10, ckpt_every=100),
    "small": dict(seq_len=1024, batch_size=64, micro_batch_size=16, max_steps=20000, warmup_steps=1000, lr=1e-3,
                  vocab_size=32768, tokenizer_docs=200000, log_every=20, ckpt_every=1000),
}
RUN_PRESETS["tiny-576"] = RUN_PRESETS["tiny"]

DEFAULT_SAMPLE_PROMPTS = ["What is 23 + 45?", "What is 507 + 386?", "Compute 91 - 37.", "What is 46 * 7?",
                          "Solve for x: x + 12 = 30", "Solve for x: 3x + 4 = 19",
                          "Mia has 12 apples. Sam gives Mia 5 more. How many apples does Mia have now?"]


class PretrainConfig(BaseModel):
    """Everything one pretraining run needs. YAML keys and `--flag-names` are these field names."""
    model_config = ConfigDict(extra="forbid")

    preset: str = "tiny"                       # model preset (base_model.config.PRESETS)
    model_overrides: dict = Field(default_factory=dict)   # DeepSeekConfig fields to override
    out: str = "runs/pretrain"
    seed: int = 0
    # data
    corpus: str = "synthetic"                  # a path: .txt / .jsonl / .parquet / datasets dir; "synthetic" = r1lab's
    corpus_field: str = "text"                 #   corpus (r1lab/tasks/corpus.py), which the r1lab pretrain stage passes
    r1_share: float = 0.75                     # synthetic: share of worked problems in the <think>/<answer> shape
    max_level: int = 5                         # synthetic: hardest difficulty level
    tokenizer: str | None = None               # a tokenizer dir to use; default: train one on the corpus
    vocab_size: int = 4096
    tokenizer_docs: int = 20000
    seq_len: int = 256
    # optimisation
    batch_size: int = 8                        # GLOBAL rows per optimizer step (all ranks, all micro-batches)
    micro_batch_size: int = 8                  # rows per forward/backward on one rank
    max_steps: int = 1000
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    schedule: Literal["cosine", "wsd"] = "cosine"
    warmup_steps: int = 40
    wsd_decay_frac: float = 0.2                # WSD: last fraction of steps decays linearly to min_lr
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    fp8: bool = False
    bf16: bool | None = None                   # default: on when training on a GPU
    device: str = "auto"
    num_threads: int | None = None             # torch CPU threads (default: base_model/threads.py's policy)
    # bookkeeping
    log_every: int = 10
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    resume: bool = False
    progress: bool = True
    sample_prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_SAMPLE_PROMPTS))
    sample_max_new_tokens: int = 96
    sleep_per_step: float = 0.0                # test hook: slow a run down so a test can kill it mid-run

    @classmethod
    def for_preset(cls, preset: str, **overrides) -> "PretrainConfig":
        return cls(**{**RUN_PRESETS.get(preset, {}), "preset": preset, **overrides})


def to_yaml(d: dict) -> str:
    import yaml
    return yaml.safe_dump(d, sort_keys=False)


def load_config(argv=None, description: str | None = None) -> PretrainConfig:
    """Defaults < run preset < YAML (--config) < CLI flags. Every PretrainConfig field is a --flag."""
    import yaml

    ap = argparse.ArgumentParser(prog="python -m base_model.pretrain", description=description)
    ap.add_argument("--config", help="YAML file with PretrainConfig fields")
    for name, f in PretrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        ann = f.annotation
        if ann is bool:
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif ann in (int, float, str):
            ap.add_argument(flag, type=ann, default=None)
        else:  # optional scalars, lists, dicts: given as YAML text, e.g. --model-overrides '{num_hidden_layers: 2}'
            ap.add_argument(flag, type=yaml.safe_load, default=None, metavar="YAML")
    a = vars(ap.parse_args(argv))
    from_yaml: dict = {}
    if a.get("config"):
        path = Path(a["config"])
        if not path.exists():
            raise SystemExit(f"--config {path}: no such file")
        from_yaml = yaml.safe_load(path.read_text()) or {}
        if not isinstance(from_yaml, dict):
            raise SystemExit(f"{path}: expected a mapping of PretrainConfig fields at the top level")
    cli = {k: v for k, v in a.items() if v is not None and k != "config"}
    preset = cli.get("preset", from_yaml.get("preset", "tiny"))
    merged = {**RUN_PRESETS.get(preset, {}), **from_yaml, **cli, "preset": preset}
    try:
        return PretrainConfig(**merged)
    except ValidationError as e:
        err = e.errors()[0]
        src = "the YAML config" if err["loc"] and err["loc"][0] in from_yaml else "the command line"
        raise SystemExit(f"pretrain config ({src}): key {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
