"""`pretrain` stage: a thin adapter over base_model.pretrain.pretrain (the one pretraining loop).

`corpus: synthetic` (the default) is r1lab's synthetic corpus (r1lab/tasks/corpus.py: worked problems drawn from the
tasks' train splits, code, prose), passed to pretrain() as a document-stream factory seeded with the pipeline
seed; any other `corpus` is a path base_model reads itself.

Params are PretrainConfig's fields minus those the pipeline owns (`out` = the stage dir, `seed` = the
pipeline seed, `resume` = whether the pipeline found an interrupted attempt). `preset` defaults to the
pipeline's `model:` preset and `tokenizer` to the pipeline's tokenizer (without one, pretraining trains its
own on the corpus and saves it with the model, where later stages find it). Only the keys written in the
YAML are passed, so PretrainConfig.for_preset's per-preset run defaults apply to the rest.
pretrain() writes model/, checkpoints/ (atomic, bitwise-exact resume), metrics.jsonl and plots/ itself.
"""
from __future__ import annotations

from pydantic import create_model

from r1lab.io import drop_torn_lines, read_jsonl
from r1lab.params import StageParams
from r1lab.stages.base import StageContext

METRICS = ("steps", "final_loss", "first_loss", "main_loss", "mtp_loss", "load_max_over_mean", "params")   # run() returns

PIPELINE_OWNED = ("out", "seed", "resume")


def _make_params():
    from base_model.pretrain_config import PretrainConfig

    fields = {}
    for k, f in PretrainConfig.model_fields.items():
        if k in PIPELINE_OWNED:
            continue
        if k in ("preset", "tokenizer"):
            fields[k] = (str | None, None)
        else:
            fields[k] = (f.annotation, f)
    return create_model("Params", __base__=StageParams, __doc__=PretrainConfig.__doc__, **fields)


Params = _make_params()


def _divergence_guard(stage: str):
    """pretrain()'s log-step callback: a non-finite loss or grad_norm stops the loop before that step's
    checkpoint is written (pretrain logs at every checkpoint step and at the last step)."""
    import math

    from r1lab.errors import TrainingDiverged

    def check(m: dict, step: int) -> None:
        for k in ("loss", "main_loss", "grad_norm"):
            v = m.get(k)
            if isinstance(v, (int, float)) and not math.isfinite(v):
                raise TrainingDiverged(stage, step, f"{k} is {v}")

    return check


def run(ctx: StageContext) -> dict:
    import json

    from base_model.pretrain import PretrainConfig, pretrain

    p = ctx.params
    given = p.model_dump(exclude_unset=True)
    preset = given.pop("preset", None) or ctx.model_preset
    if preset is None:
        raise ValueError(f"stage {ctx.name}: pretrain needs a model preset (the pipeline's `model:` is "
                         f"{ctx.model_spec!r}); set `preset:` on the stage")
    tok = given.pop("tokenizer", None) or ctx.tokenizer_path
    if ctx.resumed:   # base_model.pretrain resumes from the newest step_N and parses metrics.jsonl strictly
        ctx.set_aside_bad_checkpoints()
        drop_torn_lines(ctx.metrics_path)
    cfg = PretrainConfig.for_preset(preset, **given, out=str(ctx.out_dir), seed=ctx.seed,
                                    resume=ctx.resumed, **({"tokenizer": tok} if tok else {}))
    docs = None
    if cfg.corpus == "synthetic":
        from r1lab.tasks.corpus import synthetic_factory
        docs = synthetic_factory(seed=cfg.seed, r1_share=cfg.r1_share, max_level=cfg.max_level)
    model_dir = pretrain(cfg, callback=_divergence_guard(ctx.name), docs=docs)
    rows = read_jsonl(ctx.metrics_path)
    last = rows[-1] if rows else {}
    n_params = None
    try:
        cfg_json = json.loads((model_dir / "config.json").read_text())
        n_params = cfg_json.get("num_parameters")
    except Exception:  # noqa: BLE001
        pass
    ctx.add_report(f"Pretrained preset `{preset}` for {cfg.max_steps} steps of {cfg.batch_size}×{cfg.seq_len} tokens "
                   f"on corpus `{cfg.corpus}`. Samples: samples.md.")
    out = {"steps": last.get("step"), "final_loss": last.get("loss"), "first_loss": rows[0].get("loss") if rows else None,
           "main_loss": last.get("main_loss"), "mtp_loss": last.get("mtp_loss"),
           "load_max_over_mean": last.get("load_max_over_mean")}
    if n_params:
        out["params"] = n_params
    return out
