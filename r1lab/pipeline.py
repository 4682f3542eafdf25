"""The runner: stages in order, artifacts under OUTPUT_DIR/STAGE, fingerprints, skip / resume / rerun.

Fingerprint of a stage = sha256 of (its resolved config, the fingerprints of the stages it reads from, the
starting model and tokenizer when it has no `from:`, the content of local data files it reads, the pipeline
seed, the r1lab version). Fingerprints chain, so a change anywhere reaches every stage downstream of it.

For each stage, in order:
  done.json present with the same fingerprint  -> skip ("done")
  attempt.json with the same fingerprint, no done.json -> run again; the stage resumes from its newest
      complete checkpoint (ctx.resume_checkpoint())
  otherwise -> delete done.json, wipe the stage dir, run from scratch
After `run(ctx)` returns: model/ must hold finite weights, then plots from metrics.jsonl, report.md, then
done.json (atomically, last), which lists size and sha256 of every file under model/, data/ and adapter/ (a
done.json whose files no longer match is not done). A kill at any moment therefore leaves either a done.json
that describes complete artifacts, or no done.json.

Ownership: a run holds an flock on OUTPUT_DIR/.r1lab-lock (one runner per dir), marks OUTPUT_DIR with
.r1lab-run and each stage dir with .r1lab-stage, and wipes only dirs so marked. status / validate only read.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import r1lab
from r1lab import dist, trackers
from r1lab.config import PipelineConfig, TokenizerSpec
from r1lab.errors import StageFailure, TrainingDiverged
from r1lab.io import atomic_dir, atomic_write_json, atomic_write_text, nonfinite_tensors
from r1lab.report import fmt, make_plots, plot_run, run_report, stage_report
from r1lab.stages import get_stage_module
from r1lab.rundir import (RUN_MARKER, STAGE_MARKER, PipelineError, _check_output_dir, _claim_stage_dir,
                          run_lock)
from r1lab.stages.base import StageContext
from r1lab.status import (ATTEMPT, DONE, _read_json, artifact_manifest, artifacts_problem, model_fingerprint,
                          stage_fingerprints, tokenizer_fingerprint)


# ----------------------------------------------------------------------------- materialising tokenizer / preset

def ensure_tokenizer(cfg: PipelineConfig, out: Path, console) -> str | None:
    """The pipeline's tokenizer dir; a TokenizerSpec is trained once into OUTPUT_DIR/_tokenizer."""
    if cfg.tokenizer is None:
        return None
    if not isinstance(cfg.tokenizer, TokenizerSpec):
        return str(cfg.tokenizer)
    d = out / "_tokenizer"
    fp = tokenizer_fingerprint(cfg)
    done = _read_json(d / DONE)
    if done and done.get("fingerprint") == fp:
        return str(d / "tokenizer")
    from base_model.tokenizer import train_tokenizer

    spec = cfg.tokenizer
    seed = cfg.seed if spec.seed is None else spec.seed
    console.print(f"[bold]tokenizer[/]: training a byte-level BPE, vocab {spec.vocab_size}")
    texts = list(_tokenizer_texts(spec.docs, seed))
    if (d / DONE).exists():
        (d / DONE).unlink()
    with atomic_dir(d / "tokenizer") as tmp:
        train_tokenizer(texts, vocab_size=spec.vocab_size, save_dir=str(tmp))
    atomic_write_json(d / DONE, {"fingerprint": fp, "texts": len(texts)})
    return str(d / "tokenizer")


def _tokenizer_texts(docs: int, seed: int):
    from r1lab.tasks.corpus import synthetic_corpus

    yield from synthetic_corpus(seed=seed, limit=docs)
    from r1lab.tasks import TASKS, task_rows

    for t in TASKS:
        for r in task_rows(t, n=200, seed=seed):
            yield r["prompt"] + "\n" + r["solution"]


def ensure_preset_model(cfg: PipelineConfig, out: Path, tokenizer_path: str | None) -> str:
    """A preset's randomly initialised weights (seeded), saved once under OUTPUT_DIR/_init/model."""
    d = out / "_init"
    fp = model_fingerprint(cfg, tokenizer_fingerprint(cfg))
    done = _read_json(d / DONE)
    if done and done.get("fingerprint") == fp:
        return str(d / "model")
    import torch
    from transformers import AutoTokenizer

    from base_model import DeepSeekForCausalLM, get_preset

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    torch.manual_seed(cfg.seed)
    model = DeepSeekForCausalLM(get_preset(cfg.model, vocab_size=len(tok)))
    if (d / DONE).exists():
        (d / DONE).unlink()
    with atomic_dir(d / "model") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    atomic_write_json(d / DONE, {"fingerprint": fp})
    return str(d / "model")


# ----------------------------------------------------------------------------- run

def _console(console=None):
    if console is not None:
        return console
    from rich.console import Console

    return Console()


def run_pipeline(cfg: PipelineConfig, from_stage: str | None = None, only: str | None = None, console=None) -> list[dict]:
    """Run (or skip / resume) every stage. Returns one dict per stage: name, kind, action
    (skipped | ran | resumed), seconds, metrics.

    Under torchrun / accelerate launch every rank runs this: rank 0 holds the lock and writes everything the run
    keeps; every rank does each stage's work (r1lab/dist.py), and the ranks meet between stages."""
    dist.init()
    main = dist.is_main()
    console = _console(console) if main else _silent_console()
    _quiet_libraries()
    names = [s.name for s in cfg.stage_list]
    for flag, v in (("--from", from_stage), ("--only", only)):
        if v is not None and v not in names:
            raise PipelineError(f"{flag} {v}: no such stage; stages: {', '.join(names)}")
    out = Path(cfg.output_dir)
    if not main:
        _agree(None)                   # rank 0 checked the output dir and took the lock
        return _run_locked(cfg, out, from_stage, only, console, names, main=False)
    try:
        _check_output_dir(out)
        out.mkdir(parents=True, exist_ok=True)
        lock = run_lock(out)
        lock.__enter__()
    except PipelineError as e:
        _agree(str(e))
        raise
    try:
        _agree(None)
        if not (out / RUN_MARKER).exists():
            atomic_write_json(out / RUN_MARKER, {"name": cfg.name, "created": time.time(), "version": r1lab.__version__})
        return _run_locked(cfg, out, from_stage, only, console, names, main=True)
    finally:
        lock.__exit__(None, None, None)


def _agree(error: str | None) -> None:
    """Rank 0's verdict on every rank: None goes on, a message stops every rank with that PipelineError."""
    error = dist.broadcast(error)
    if error is not None:
        raise PipelineError(error)


def _silent_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), quiet=True)


def _run_locked(cfg: PipelineConfig, out: Path, from_stage, only, console, names, main: bool = True) -> list[dict]:
    """The stages in order. Rank 0 decides what each stage does (skip / resume / run) and prepares its dir; every
    rank runs it; rank 0 writes its report and done.json. One process: rank 0 alone, no waiting."""
    import yaml

    fps = stage_fingerprints(cfg)
    needed = set()
    if only:
        todo = [only]
        while todo:
            for d in cfg.stage(todo.pop()).depends_on():
                if d not in needed:
                    needed.add(d)
                    todo.append(d)
    start_idx = names.index(from_stage) if from_stage else None
    if main:
        atomic_write_text(out / "pipeline.resolved.yaml", yaml.safe_dump(cfg.resolved(), sort_keys=False))
    tokenizer_path = dist.broadcast(ensure_tokenizer(cfg, out, console) if main else None)
    init_model: dict[str, str] = {}

    def model_path_fn():                       # every rank asks at the same point of the same stage code
        if "path" not in init_model:
            init_model["path"] = dist.broadcast(ensure_preset_model(cfg, out, tokenizer_path) if main else None)
        return init_model["path"]

    finished_models: dict[str, str] = {}
    finished_data: dict[str, str] = {}
    results: list[dict] = []

    def register(name: str):
        d = out / name
        if (d / "model" / "config.json").exists():
            finished_models[name] = str(d / "model")
        if any((d / "data").glob("*.jsonl")):
            finished_data[name] = str(d / "data")

    for i, s in enumerate(cfg.stage_list):
        d = out / s.name
        plan = None
        if main:
            try:
                plan = _plan_stage(s, d, fps[s.name], i, start_idx, only, needed, console)
            except PipelineError as e:
                plan = {"error": str(e)}
        plan = dist.broadcast(plan)
        if "error" in plan:
            raise PipelineError(plan["error"])
        if plan["action"] in ("skip", "pass"):
            register(s.name)
            if plan["action"] == "skip":
                results.append(plan["result"])
            continue
        resume = plan["resume"]
        gate_metrics, gate_text = _check_gate(cfg, s, out, d, fps, tokenizer_path, console, main) if s.gate else ({}, None)
        console.rule(f"[bold]{s.name}[/] ({s.kind}) — {plan['why']}")
        ctx = StageContext(
            name=s.name, kind=s.kind, params=s.params, out_dir=d, output_dir=out, seed=cfg.seed,
            model_spec=cfg.model, from_stage=s.from_, tokenizer_path=_tokenizer_for(s, out, tokenizer_path),
            pipeline=cfg, resumed=resume, console=console, base_dir=Path(cfg.base_dir or "."), rollout=cfg.rollout,
            main=main, _model_path_fn=model_path_fn, _finished_models=dict(finished_models),
            _finished_data=dict(finished_data),
        )
        if gate_text:
            ctx.add_report(f"**Gate** passed: {gate_text}.")
        mod = get_stage_module(s.kind)
        t0 = time.time()
        try:
            metrics = {**(mod.run(ctx) or {}), **gate_metrics}
            dist.barrier()                       # every rank's part is written before rank 0 checks the model
            if main:
                _check_model_dir(s.name, d / "model")
        except TrainingDiverged as e:
            ctx.drop_nonfinite_checkpoints()
            left = ctx.checkpoints()
            where = (f"the last finite checkpoint, {left[0][1].name}, is the resume point" if left
                     else "no finite checkpoint was saved; a rerun starts the stage over")
            raise PipelineError(f"stage {s.name} failed: {e} ({where}; lower lr or check the data before rerunning)") from None
        except StageFailure as e:
            raise PipelineError(f"stage {s.name} failed: {e}") from None
        except Exception as e:
            console.print(f"✗ {s.name} failed: {type(e).__name__}: {e}\n  (rerun to resume from its last checkpoint)",
                          style="red", markup=False, highlight=False)
            raise
        secs = time.time() - t0
        if main:
            _finish_stage(cfg, s, ctx, d, fps, metrics, secs, resume, console)
        dist.barrier()                           # the next stage starts from what rank 0 has written
        register(s.name)
        results.append({"name": s.name, "kind": s.kind, "action": "resumed" if resume else "ran",
                        "seconds": secs, "metrics": metrics})

    if not only and main:
        try:
            plot_run(cfg, out)
        except Exception as e:  # noqa: BLE001  (a figure must not fail a finished run)
            console.print(f"! plots/run.png: not drawn ({type(e).__name__}: {e})", style="yellow", markup=False)
        atomic_write_text(out / "report.md", run_report(cfg, out, results))
        if all(r["action"] == "skipped" for r in results):
            console.print(f"[bold green]Every stage is done[/] ({len(results)} stages); nothing to run.")
    return results


def _check_gate(cfg, s, out: Path, d: Path, fps: dict, tokenizer_path, console, main: bool) -> tuple[dict, str]:
    """The stage's `gate:` (r1lab/gates.py): rank 0 reads, every rank evaluates when needed. A gate that does not
    pass stops the run here, before the stage, in one line; the stage is not marked done."""
    from r1lab import gates

    g = s.gate
    src_done = dist.broadcast(_read_json(out / g.stage / DONE) if main else None)
    try:
        rec = gates.resolve(g, name=s.name, stage_dir=d, source_done=src_done, source_fp=fps[g.stage],
                            source_model=out / g.stage / "model", tokenizer_path=tokenizer_path, seed=cfg.seed,
                            engine=cfg.rollout, console=console, main=main)
    except gates.GateNotPassed as e:
        raise PipelineError(f"stage {s.name}: {e}") from None
    text = gates.line(g, rec)
    if not rec["passed"]:
        raise PipelineError(f"stage {s.name}: gate not passed: {text}")
    console.print(f"{s.name}: gate passed: {text}", markup=False, highlight=False)
    return {f"gate/{g.stage}/{g.metric}": rec["value"]}, text


def _plan_stage(s, d: Path, fp: str, i: int, start_idx, only, needed, console) -> dict:
    """Rank 0: what this stage does now, with its dir prepared for it (wiped, or kept to resume; attempt.json)."""
    done = _read_json(d / DONE)
    is_done = bool(done and done.get("fingerprint") == fp)
    if is_done and (why := artifacts_problem(d, done)):
        console.print(f"! {s.name}: its artifacts are damaged ({why}); redoing the stage", style="yellow",
                      markup=False, highlight=False)
        (d / DONE).unlink()
        is_done, done = False, None
    force = (start_idx is not None and i >= start_idx) or only == s.name
    if only and s.name != only:
        if not is_done and s.name in needed:
            raise PipelineError(f"--only {only}: it needs stage {s.name!r}, which is not done; run without --only first")
        return {"action": "pass"}
    if is_done and not force:
        console.print(f"[green]✓[/] {s.name} ({s.kind}): done, skipped")
        return {"action": "skip", "result": {"name": s.name, "kind": s.kind, "action": "skipped",
                                             "seconds": done.get("seconds", 0.0), "metrics": done.get("metrics", {})}}
    att = _read_json(d / ATTEMPT)
    resume = not force and bool(att and att.get("fingerprint") == fp) and not is_done
    _claim_stage_dir(s.name, d)
    if not resume:
        if (d / DONE).exists():
            (d / DONE).unlink()          # first, so a kill while wiping never leaves a trusted done.json
        if d.exists():
            shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    if not (d / STAGE_MARKER).exists():
        atomic_write_text(d / STAGE_MARKER, "written by r1lab: this dir is wiped when the stage reruns\n")
    atomic_write_json(d / ATTEMPT, {"fingerprint": fp, "started": time.time(),
                                    "attempts": (att or {}).get("attempts", 0) + 1 if resume else 1})
    why = "resuming an interrupted run" if resume else ("forced" if force else
          ("config or inputs changed" if done else "first run"))
    return {"action": "run", "resume": resume, "why": why}


def _finish_stage(cfg, s, ctx, d: Path, fps: dict, metrics: dict, secs: float, resume: bool, console) -> None:
    """Rank 0, after a stage ran: trackers, plots, report.md, then done.json (last), then checkpoint retention."""
    if not trackers.is_trl_stage(s.params):     # TRL stages log through transformers' integrations
        trackers.log_finished_stage(ctx, metrics, console)
    plots = make_plots(ctx.metrics_path, ctx.plots_dir)
    atomic_write_text(d / "report.md", stage_report(s, ctx, metrics, plots, secs))
    atomic_write_json(d / DONE, {
        "fingerprint": fps[s.name], "name": s.name, "kind": s.kind, "config": s.resolved(),
        "inputs": {dep: fps[dep] for dep in s.depends_on()}, "version": r1lab.__version__,
        "metrics": metrics, "seconds": round(secs, 2), "finished": time.time(), "resumed": resume,
        "artifacts": artifact_manifest(d),
    })
    freed = ctx.apply_retention(cfg.keep_checkpoints)
    if freed:
        console.print(f"  {s.name}: keep_checkpoints {cfg.keep_checkpoints}: freed {freed / 2**20:.1f} MiB of "
                      f"checkpoints", style="dim", markup=False, highlight=False)
    console.print(f"✓ {s.name} finished in {secs:.1f} s: " +   # metric values are data: no markup
                  ", ".join(f"{k}={fmt(v)}" for k, v in list(metrics.items())[:6] if not isinstance(v, (dict, list))),
                  style="green", markup=False, highlight=False)


def _check_model_dir(stage: str, model_dir: Path) -> None:
    """A stage that wrote model/ is done only if model/ holds weights and they are finite."""
    if not model_dir.exists():
        return
    weights = sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin"))
    if not weights:
        raise StageFailure(f"{model_dir} holds no weights (*.safetensors / *.bin); not marking the stage done")
    if any(w.suffix == ".safetensors" for w in weights):
        try:
            bad = nonfinite_tensors(model_dir)
        except Exception as e:  # noqa: BLE001
            raise StageFailure(f"{model_dir}: weights unreadable ({type(e).__name__}: {e})") from None
        if bad:
            raise TrainingDiverged(stage, -1, f"the saved model has non-finite weights ({', '.join(bad)})")


def _quiet_libraries() -> None:
    """Our rich progress replaces the libraries' own bars and log prints."""
    try:
        import datasets

        datasets.disable_progress_bars()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def _tokenizer_for(s, out: Path, pipeline_tok: str | None) -> str | None:
    """The from-stage's saved tokenizer (it may carry a chat template set there), else the pipeline's."""
    if s.from_:
        m = out / s.from_ / "model"
        if (m / "tokenizer_config.json").exists():
            return str(m)
    return pipeline_tok
