"""What a stage sees: the `StageContext` the pipeline hands to `run(ctx)`, plus the small file helpers
every stage uses through it (its directories, data loading, metrics logging, progress, checkpoints, the
TRL/transformers callback that logs and shows progress).

A stage kind is a module `r1lab/stages/<kind>.py` with

    class Params(StageParams): ...        # its typed YAML parameters (unknown keys are errors)
    def run(ctx: StageContext) -> dict:   # does the work, returns its final metrics (JSON-able)

and, optionally, `def depends_on(params) -> list[str]` naming extra earlier stages whose artifacts it
reads (beyond `from:` and any `DataSpec(stage=...)` inside params, which are found automatically), and
`METRICS`, the keys (fnmatch patterns) `run` returns: a later stage's `gate:` may name only those (or pass@k /
greedy); a kind without METRICS accepts any key there, checked when the gate is read.

Everything a stage writes goes under `ctx.out_dir` (OUTPUT_DIR/STAGE): `ctx.save_model()` -> model/,
`ctx.write_jsonl()` -> data/, checkpoints/ (use `ctx.checkpoint_dir`, `ctx.resume_checkpoint()`,
`ctx.mark_checkpoint_complete()`), `ctx.log()` -> metrics.jsonl, `ctx.add_report()` -> report.md.
The pipeline writes done.json after `run` returns; nothing in the directory is trusted without it.

The parameter blocks a `Params` is built from are in r1lab/params.py; file helpers in r1lab/io.py; model and
tokenizer loading in r1lab/loading.py; what stages share (SFT training, sampling, GRPO's trainer) in r1lab/train/.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from r1lab.io import (COMPLETE_MARKER, OPTIMIZER_STATE_FILES, atomic_dir, atomic_write_json, checkpoint_problem,
                      nonfinite_tensors, read_jsonl, weights_only, write_jsonl)


# ----------------------------------------------------------------------------- the context

@dataclass
class StageContext:
    """Everything a stage needs from the pipeline. Built by `r1lab.pipeline`; tests may build one by hand."""

    name: str
    kind: str
    params: Any                      # the kind's validated Params instance
    out_dir: Path                    # OUTPUT_DIR/STAGE
    output_dir: Path                 # OUTPUT_DIR (the pipeline's root)
    seed: int
    model_spec: str                  # the pipeline's `model:` (preset name or path)
    from_stage: str | None = None    # the `from:` stage, if any
    tokenizer_path: str | None = None
    pipeline: Any = None             # the whole PipelineConfig (read-only)
    resumed: bool = False            # True when the pipeline found this stage's checkpoints from a killed run
    console: Any = None              # rich Console (None -> a default one)
    base_dir: Path = field(default_factory=Path.cwd)   # relative data paths resolve against this
    rollout: str = "auto"            # the pipeline's `rollout:` engine, the default of every stage that samples
    main: bool = True                # rank 0 (or the only process): the one that writes (r1lab/dist.py)
    _model_path_fn: Callable[[], str] | None = None    # lazily materialises a preset's initial weights
    _finished_models: dict[str, str] = field(default_factory=dict)
    _finished_data: dict[str, str] = field(default_factory=dict)
    _report: list[str] = field(default_factory=list)

    # --- where things go
    @property
    def model_dir(self) -> Path:
        """Where the stage's final model goes (use `save_model`)."""
        return self.out_dir / "model"

    @property
    def data_dir(self) -> Path:
        return self.out_dir / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def plots_dir(self) -> Path:
        return self.out_dir / "plots"

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    # --- what it starts from
    @property
    def model_preset(self) -> str | None:
        """The pipeline's `model:` when it names a preset and this stage has no `from:` (pretrain uses it)."""
        if self.from_stage is None and not _looks_like_path(self.model_spec):
            return self.model_spec
        return None

    @property
    def model_path(self) -> str:
        """Model directory to start from: the `from:` stage's model/, else the pipeline's model (a path, or a
        preset materialised once with random weights under OUTPUT_DIR/_init/model)."""
        if self.from_stage is not None:
            return str(self.output_dir / self.from_stage / "model")
        if _looks_like_path(self.model_spec):
            return str(Path(self.model_spec))
        if self._model_path_fn is None:
            raise RuntimeError(f"stage {self.name}: model {self.model_spec!r} is a preset and no materialiser was given")
        return self._model_path_fn()

    def engine_name(self, override: str | None = None) -> str:
        """The rollout engine this stage samples with: its own `engine:` when given, else the pipeline's `rollout:`."""
        return override or self.rollout

    def stage_model_paths(self) -> dict[str, str]:
        """name -> model dir of every finished earlier stage that saved a model (for eval across stages)."""
        return dict(self._finished_models)

    def stage_data_paths(self) -> dict[str, str]:
        """name -> data dir of every finished earlier stage that wrote data/*.jsonl."""
        return dict(self._finished_data)

    # --- data
    def load_data(self, spec) -> "datasets.Dataset":  # noqa: F821
        """Load one data source: a `DataSpec`, a dict like it, or a string ('task:NAME', 'stage:NAME', a path)."""
        from r1lab.data.loaders import load_spec

        return load_spec(spec, output_dir=self.output_dir, seed=self.seed, base_dir=self.base_dir)

    def load_mixture(self, specs, size: int | None = None) -> "datasets.Dataset":  # noqa: F821
        """Load several sources and mix them by their `weight`s (see r1lab.data.loaders.mix)."""
        from r1lab.data.loaders import load_mixture

        return load_mixture(specs, output_dir=self.output_dir, seed=self.seed, size=size, base_dir=self.base_dir)

    def write_jsonl(self, name: str, rows: Iterable[dict]) -> Path:
        """Atomically write data/NAME(.jsonl) — the stage's data artifact."""
        if not self.main:
            return self.data_dir / (name if name.endswith(".jsonl") else name + ".jsonl")
        if not name.endswith(".jsonl"):
            name += ".jsonl"
        return write_jsonl(self.data_dir / name, rows)

    # --- metrics, progress, report
    def log(self, metrics: dict, step: int) -> None:
        """Append one JSON line {"step": step, **metrics} to metrics.jsonl (flushed, so a kill loses at most it)."""
        if not self.main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        row = {"step": int(step), "time": round(time.time(), 3)}
        for k, v in metrics.items():
            row[k] = _jsonable(v)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def truncate_metrics(self, step: int) -> None:
        """On resume from a checkpoint at `step`, drop the lines logged after it (they will be logged again)."""
        if not self.main:
            return
        rows = [r for r in read_jsonl(self.metrics_path) if r.get("step", 0) <= step]
        write_jsonl(self.metrics_path, rows)

    def add_report(self, markdown: str) -> None:
        """Add a paragraph to the stage's report.md (the pipeline adds params, final metrics and plots)."""
        self._report.append(markdown)

    @contextmanager
    def progress(self, total: int | None, description: str | None = None, completed: int = 0):
        """Rich progress bar for this stage; yields `update(advance=1, completed=None, **fields)` (rank 0 shows it)."""
        if not self.main:
            yield lambda *a, **k: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cols = [TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
        with Progress(*cols, console=self.console, transient=False) as prog:
            task = prog.add_task(description or self.name, total=total, completed=completed, info="")

            def update(advance: int = 0, completed: int | None = None, **fields):
                info = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
                if completed is not None:
                    prog.update(task, completed=completed, info=info or prog.tasks[task].fields["info"])
                else:
                    prog.update(task, advance=advance, info=info or prog.tasks[task].fields["info"])

            yield update

    def print(self, *args, **kwargs) -> None:
        if not self.main:
            return
        from rich.console import Console

        (self.console or Console()).print(*args, **kwargs)

    # --- model and checkpoints
    def save_model(self, model, tokenizer=None, state_dict=None) -> Path:
        """save_pretrained (safetensors) + tokenizer into model/, atomically (rank 0). `state_dict`: the full weights
        gathered from a sharded model (FSDP, ZeRO-3), saved into `model`'s architecture."""
        if not self.main:
            return self.model_dir
        with atomic_dir(self.model_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        return self.model_dir

    def resume_checkpoint(self, verify: bool = True) -> str | None:
        """The newest complete `checkpoints/checkpoint-N` (with its `.complete` marker) whose files check out
        (`checkpoint_problem`), or None: a damaged newest checkpoint falls back to the previous good one.

        Read-only (`r1lab status` calls it): incomplete ones (a kill during the save) are skipped here and
        deleted only by a running stage, with `discard_incomplete_checkpoints()`."""
        best, best_step = None, -1
        if not self.checkpoint_dir.is_dir():
            return None
        for d in self.checkpoint_dir.iterdir():
            m = re.fullmatch(r"checkpoint-(\d+)", d.name)
            if not (m and d.is_dir()) or not (d / COMPLETE_MARKER).exists() or weights_only(d):
                continue
            if int(m.group(1)) > best_step and (not verify or checkpoint_problem(d) is None):
                best, best_step = str(d), int(m.group(1))
        return best

    def discard_incomplete_checkpoints(self) -> list[Path]:
        """Delete `checkpoint-N` dirs without the `.complete` marker (a kill during the save). Only a running stage
        calls this (the pipeline holds the output dir's run lock then), never a read command."""
        if not self.main:
            return []
        gone = []
        if self.checkpoint_dir.is_dir():
            for d in self.checkpoint_dir.iterdir():
                if re.fullmatch(r"checkpoint-\d+", d.name) and d.is_dir() and not (d / COMPLETE_MARKER).exists():
                    shutil.rmtree(d, ignore_errors=True)
                    gone.append(d)
        return gone

    def set_aside_bad_checkpoints(self) -> list[Path]:
        """Run path only: rename complete-but-corrupt checkpoints (truncated or damaged files) to .corrupt-NAME, so
        the newest good one is resumed from and no later save lands in a dir that still says `.complete`."""
        if not self.main:
            return []
        moved = []
        for _, d in self.checkpoints():
            if (d.name.startswith("checkpoint-") and not (d / COMPLETE_MARKER).exists()):
                continue
            why = checkpoint_problem(d)
            if why:
                self.print(f"{self.name}: checkpoint {d.name} is damaged ({why}); set aside, using an older one",
                           style="yellow", markup=False)
                dest = d.with_name(f".corrupt-{d.name}")
                if dest.exists():
                    shutil.rmtree(dest, ignore_errors=True)
                os.replace(d, dest)
                moved.append(dest)
        return moved

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, dir) of every checkpoint dir, newest first: TRL's checkpoint-N and base_model.pretrain's step_N."""
        if not self.checkpoint_dir.is_dir():
            return []
        out = []
        for d in self.checkpoint_dir.iterdir():
            m = re.fullmatch(r"(?:checkpoint-|step_)(\d+)", d.name)
            if m and d.is_dir():
                out.append((int(m.group(1)), d))
        return sorted(out, reverse=True)

    def apply_retention(self, keep: str) -> int:
        """Once the stage is done its checkpoints can no longer be resumed from, only looked at: `keep` = "all"
        leaves them, "weights" (the default) deletes their optimizer state (optimizer.pt, scheduler.pt; pretrain's
        state.pt), "none" deletes the checkpoints dir. Only dirs r1lab names (checkpoint-N, step_N) in this
        r1lab-made stage dir are touched. Returns the bytes freed."""
        if not self.main:
            return 0
        if keep == "all" or not self.checkpoint_dir.is_dir():
            return 0
        freed = 0
        if keep == "none":
            for _, d in self.checkpoints():
                freed += sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
                shutil.rmtree(d, ignore_errors=True)
            return freed
        for _, d in self.checkpoints():
            for name in OPTIMIZER_STATE_FILES:
                f = d / name
                if f.is_file():
                    freed += f.stat().st_size
                    f.unlink()
            if (d / COMPLETE_MARKER).exists():      # still checkable, but never a resume point again
                sizes = {str(f.relative_to(d)): f.stat().st_size for f in sorted(d.rglob("*"))
                         if f.is_file() and not f.name.startswith(".")}
                atomic_write_json(d / COMPLETE_MARKER, {"sizes": sizes, "weights_only": True})
        return freed

    def drop_nonfinite_checkpoints(self) -> list[Path]:
        """After a divergence: delete the newest checkpoints whose weights hold NaN/inf (ours, in our stage dir),
        so the newest left is the last finite one and a rerun resumes there. Returns what it deleted."""
        if not self.main:
            return []
        dropped = []
        for _, d in self.checkpoints():
            try:
                bad = nonfinite_tensors(d)
            except Exception:  # noqa: BLE001  (unreadable: leave it to the resume-time checks)
                break
            if not bad:
                break
            shutil.rmtree(d, ignore_errors=True)
            dropped.append(d)
        return dropped

    @staticmethod
    def mark_checkpoint_complete(checkpoint: str | Path) -> None:
        """The commit point of a checkpoint: `.complete` lists every file's size (checked before a resume)."""
        from r1lab import dist

        if not dist.is_main():
            return
        d = Path(checkpoint)
        sizes = {str(f.relative_to(d)): f.stat().st_size for f in sorted(d.rglob("*"))
                 if f.is_file() and f.name != COMPLETE_MARKER and not f.name.startswith(".")}
        atomic_write_json(d / COMPLETE_MARKER, {"sizes": sizes})

    def trainer_callback(self, total_steps: int | None = None):
        """A transformers TrainerCallback: logs to metrics.jsonl, shows rich progress, marks checkpoints complete,
        and calls `model.update_expert_bias()` after each step for models that have it (DeepSeek MoE balancing)."""
        from r1lab.stages._callback import make_callback

        return make_callback(self, total_steps)



def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or spec.startswith(".") or Path(spec).exists()


def _jsonable(v):
    try:
        import torch

        if isinstance(v, torch.Tensor):
            return v.item() if v.numel() == 1 else v.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float) and v != v:
        return None
    return v


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


