"""Experiment trackers (transformers' `report_to` names: tensorboard, wandb, trackio, ...): one tracker run per stage,
grouped by the pipeline.

    report_to: [tensorboard, wandb]    # top of the pipeline YAML: every stage's default
    stages:
      - {name: grpo, kind: grpo, report_to: trackio, ...}   # a TRL stage's own `report_to` wins

TRL stages (sft, grpo, distill) log through transformers' own integrations; r1lab sets what they read:
`run_name` = PIPELINE/STAGE (unless the stage sets `run_name`), trackio's `project` = the pipeline's name (unless the
stage sets `project`), WANDB_RUN_GROUP = the pipeline's name (unless the environment sets it), and tensorboard's event
dir OUTPUT_DIR/STAGE/tb.
Other stages (pretrain, rejection_sampling, eval, plugin kinds) are logged once they finish: every row of their
metrics.jsonl and their final scalar metrics (under final/) go to tensorboard (OUTPUT_DIR/STAGE/tb), wandb and trackio,
one run each with the same name and group. A tracker that cannot be imported or started there is reported in one
yellow line; the stage's own artifacts do not depend on it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from r1lab.io import read_jsonl

TB_DIR = "tb"


def expand(report_to) -> list[str]:
    """The tracker names a `report_to` value means: none -> [], all -> the integrations installed here."""
    names = [] if report_to is None else [report_to] if isinstance(report_to, str) else list(report_to)
    if "none" in names:
        return []
    if "all" in names:
        from transformers.integrations import get_available_reporting_integrations

        return list(get_available_reporting_integrations())
    return list(dict.fromkeys(names))


def is_trl_stage(params) -> bool:
    from r1lab.trl_fields import TRLParams

    return isinstance(params, TRLParams)


def stage_report_to(ctx, params=None):
    """The stage's own `report_to` (a TRL stage that sets it), else the pipeline's."""
    own = (getattr(params, "__pydantic_extra__", None) or {}) if params is not None else {}
    if "report_to" in own:
        return own["report_to"]
    return getattr(ctx.pipeline, "report_to", None)


def group_name(ctx) -> str:
    return getattr(ctx.pipeline, "name", None) or ctx.output_dir.name


def run_name(ctx) -> str:
    return f"{group_name(ctx)}/{ctx.name}"


def tb_dir(ctx) -> Path:
    return ctx.out_dir / TB_DIR


def trl_args(ctx, params) -> dict:
    """The TRL config fields the pipeline sets for a TRL stage's trackers (passed as `forced` to build_trl_config)."""
    import dataclasses

    from r1lab.trl_fields import trl_config_class

    own = params.__pydantic_extra__ or {}
    names = expand(stage_report_to(ctx, params))
    fields = {f.name for f in dataclasses.fields(trl_config_class(params.TRL_CONFIG))}
    out = {"report_to": names or "none", "run_name": own.get("run_name") or run_name(ctx)}
    if "project" in fields:                      # trackio's project (transformers >= 5.x)
        out["project"] = own.get("project") or group_name(ctx)
    if names:
        os.environ.setdefault("WANDB_RUN_GROUP", group_name(ctx))
    return out


def attach(trainer, ctx) -> None:
    """Point transformers' TensorBoardCallback (if report_to names tensorboard) at OUTPUT_DIR/STAGE/tb."""
    handler = getattr(trainer, "callback_handler", None)
    for cb in (handler.callbacks if handler is not None else ()):
        if type(cb).__name__ == "TensorBoardCallback" and getattr(cb, "tb_writer", None) is None:
            cb.logging_dir = str(tb_dir(ctx))


# ----------------------------------------------------------------------------- stages without a TRL trainer

def _scalars(d: dict, prefix: str = "") -> dict:
    """Numeric leaves of a (nested) metrics dict, keys joined with '/'."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            out[f"{prefix}{k}"] = v
    return out


def log_finished_stage(ctx, metrics: dict, console=None) -> list[str]:
    """Send a finished non-TRL stage's metrics.jsonl rows and final metrics to its trackers; returns those written."""
    names = expand(stage_report_to(ctx))
    if not names:
        return []
    rows = [r for r in read_jsonl(ctx.metrics_path) if isinstance(r, dict)]
    series = [(int(r.get("step") or 0), _scalars({k: v for k, v in r.items() if k not in ("step", "time")}))
              for r in rows]
    last = max((s for s, _ in series), default=0)
    final = {f"final/{k}": v for k, v in _scalars(metrics or {}).items()}
    done = []
    for name in names:
        writer = _WRITERS.get(name)
        if writer is None:
            _warn(console, f"{ctx.name}: report_to {name}: r1lab logs only {', '.join(_WRITERS)} for a "
                           f"{ctx.kind} stage; skipped")
            continue
        try:
            writer(ctx, series, final, last)
            done.append(name)
        except Exception as e:  # noqa: BLE001  (a tracker must not fail a finished stage)
            _warn(console, f"{ctx.name}: report_to {name}: not logged ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    return done


def _warn(console, msg: str) -> None:
    if console is not None:
        console.print(msg, style="yellow", markup=False, highlight=False)


def _tensorboard(ctx, series, final, last):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError("tensorboard is not installed (pip install tensorboard)") from None
    d = tb_dir(ctx)
    if d.exists():
        shutil.rmtree(d)             # ours; a stage killed after logging logs again from scratch
    w = SummaryWriter(log_dir=str(d))
    try:
        for step, vals in series:
            for k, v in vals.items():
                w.add_scalar(k, v, step)
        for k, v in final.items():
            w.add_scalar(k, v, last)
    finally:
        w.close()


def _wandb(ctx, series, final, last):
    import wandb

    run = wandb.init(project=os.getenv("WANDB_PROJECT", "huggingface"),
                     group=os.getenv("WANDB_RUN_GROUP", group_name(ctx)), name=run_name(ctx), reinit=True,
                     config={"stage": ctx.name, "kind": ctx.kind})
    try:
        for step, vals in series:
            run.log(vals, step=step)
        run.summary.update(final)
    finally:
        run.finish()


def _trackio(ctx, series, final, last):
    import trackio

    trackio.init(project=group_name(ctx), name=run_name(ctx), resume="allow",
                 config={"stage": ctx.name, "kind": ctx.kind})
    try:
        for step, vals in series:
            trackio.log(vals, step=step)
        if final:
            trackio.log(final, step=last)
    finally:
        trackio.finish()


_WRITERS = {"tensorboard": _tensorboard, "wandb": _wandb, "trackio": _trackio}
