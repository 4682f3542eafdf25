"""`r1lab` command line: run / validate / status a pipeline YAML, list rewards, tasks and stage kinds, eval.

    r1lab run pipelines/r1_smoke.yaml                       # run; finished stages are skipped
    r1lab run P.yaml --set stages.sft.lr=1e-5 --from sft     # override a key, rerun from a stage on
    r1lab validate P.yaml                                    # check the YAML, do nothing
    r1lab status P.yaml                                      # what is done, what would run and why
    r1lab rewards list | r1lab tasks | r1lab stages
    r1lab env                                                # versions, threads, GPU, lock match (bug reports)
    r1lab eval --model PATH --benchmarks gsm8k,math500 ...   # (r1lab/eval)
"""
from __future__ import annotations

import argparse
import os
import sys

EPILOG = """examples:
  r1lab run pipelines/r1_smoke.yaml
  r1lab run pipelines/r1_tiny.yaml --set stages.cold_start.lr=3e-4 --set seed=1
  r1lab run pipelines/r1_tiny.yaml --from grpo_zero   # rerun grpo_zero and all after it
  r1lab run pipelines/r1_tiny.yaml --only eval        # run one stage (its inputs must be done)
  r1lab status pipelines/r1_tiny.yaml
A rerun skips stages whose done.json fingerprint matches, resumes an interrupted stage from its last
checkpoint, and reruns every stage downstream of a change. Artifacts: OUTPUT_DIR/STAGE/{model,data,
checkpoints,plots,metrics.jsonl,report.md,done.json}; OUTPUT_DIR/report.md gathers them."""


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline YAML file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. stages.sft.lr=1e-5 or seed=3 (repeatable; value parsed as YAML)")


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", default=None, metavar="auto|torch|N",
                   help="torch CPU threads (env R1LAB_THREADS). auto (default): the cores other processes leave "
                        "free, re-read while running, with passive OpenMP waits; torch: torch's own (a thread per "
                        "core, spinning: fastest on an idle box, several times slower on a busy one); N: exactly N")


def _load(args):
    from r1lab.config import load_pipeline

    return load_pipeline(args.pipeline, args.sets)


def cmd_validate(args) -> int:
    cfg = _load(args)
    print(f"{args.pipeline}: ok — {cfg.name}: {len(cfg.stage_list)} stages "
          f"({' -> '.join(f'{s.name}:{s.kind}' for s in cfg.stage_list)}), output_dir {cfg.output_dir}")
    from r1lab.gates import eval_metric

    for s in cfg.stage_list:       # shown, not run: a gate is checked when the run reaches its stage
        if s.gate:
            print(f"  gate before {s.name}: {s.gate.describe(eval_metric(s.gate.metric) is not None)}")
    return 0


def cmd_status(args) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from r1lab.status import status

    cfg = _load(args)
    table = Table(title=f"{cfg.name} — {cfg.output_dir}")
    for c in ("stage", "kind", "state", "why", "metrics"):
        table.add_column(c)
    colors = {"done": "green", "stale": "yellow", "resumable": "cyan", "pending": "white", "gated": "red"}
    for st in status(cfg):
        m = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(st.metrics.items())[:4]
                      if not isinstance(v, (dict, list)))
        table.add_row(Text(st.name), Text(st.kind), Text(st.state, style=colors.get(st.state, "red")), Text(st.reason),
                      Text(m))
    Console().print(table)
    return 0


def cmd_run(args) -> int:
    """One process, or every rank under torchrun / accelerate launch (rank 0 writes; see r1lab/dist.py)."""
    from r1lab import dist
    from r1lab.pipeline import run_pipeline

    cfg = _load(args)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    try:
        run_pipeline(cfg, from_stage=args.from_stage, only=args.only)
    finally:
        dist.finish()
    return 0


def cmd_rewards_list(args) -> int:
    from r1lab.params import rewards_package

    try:
        reg = rewards_package().list_rewards()
    except ValueError as e:
        print(f"r1lab rewards: {e}", file=sys.stderr)
        return 2
    for name, fn in sorted(reg.items()):
        doc = (getattr(fn, "__doc__", None) or "").strip().splitlines()
        print(f"{name:24s} {doc[0] if doc else ''}")
    return 0


def cmd_tasks(args) -> int:
    import importlib

    from r1lab.tasks import TASKS

    for name, mod in TASKS.items():
        doc = (importlib.import_module(mod).__doc__ or "").strip().splitlines()
        print(f"{name:16s} {doc[0] if doc else ''}")
    return 0


def cmd_stages(args) -> int:
    import importlib

    from r1lab.stages import STAGE_KINDS

    for kind, mod in STAGE_KINDS.items():
        try:
            m = importlib.import_module(mod)
            doc = (m.__doc__ or "").strip().splitlines()
            print(f"{kind:20s} {doc[0] if doc else ''}")
        except ImportError:
            print(f"{kind:20s} (not available)")
    return 0


def cmd_env(args) -> int:
    from pathlib import Path

    from r1lab.env import report

    text, matches = report(Path(args.lock) if args.lock else None)
    print(text)
    return 1 if args.check_lock and not matches else 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="r1lab", description="DeepSeek-R1-style post-training as stages in one YAML.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from r1lab import __version__

    ap.add_argument("--version", action="version", version=f"r1lab {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run a pipeline (skips done stages, resumes interrupted ones)",
                       description="Run a pipeline YAML. Finished stages are skipped, an interrupted stage resumes "
                                   "from its last checkpoint, stages downstream of a change rerun.")
    _add_pipeline_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--from", dest="from_stage", metavar="STAGE", help="rerun STAGE and every stage after it")
    g.add_argument("--only", metavar="STAGE", help="run just STAGE (the stages it reads from must be done)")
    p.add_argument("--output-dir", help="override output_dir")
    _add_threads_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="validate a pipeline YAML without running anything")
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("status", help="show which stages are done and which would run, and why")
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("rewards", help="reward functions (registry)")
    rs = p.add_subparsers(dest="rewards_command", metavar="SUBCOMMAND")
    rl = rs.add_parser("list", help="list the registered rewards")
    rl.set_defaults(func=cmd_rewards_list)
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])

    p = sub.add_parser("tasks", help="list the synthetic tasks")
    p.set_defaults(func=cmd_tasks)
    p = sub.add_parser("stages", help="list the stage kinds")
    p.set_defaults(func=cmd_stages)
    p = sub.add_parser("env", help="versions, threads, CPU, GPU and lock status, for a bug report",
                       description="Print what a bug report needs: library versions, threads and CPU flags, the "
                                   "GPU, and whether the installed set matches requirements.lock.")
    p.add_argument("--lock", default=None, help="lock file to compare with (default: the checkout's requirements.lock)")
    p.add_argument("--check-lock", action="store_true", help="exit 1 when the installed set differs from the lock")
    p.set_defaults(func=cmd_env)

    from r1lab.eval.cli import add_eval_command

    add_eval_command(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from base_model import threads

    argv = sys.argv[1:] if argv is None else argv
    try:   # before anything loads torch: OpenMP reads its wait policy once (base_model/threads.py)
        threads.prepare(threads.value_from_argv(argv))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from r1lab.config import ConfigError
    from r1lab.pipeline import PipelineError

    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    if args.command in ("run", "eval"):
        line = threads.configure(getattr(args, "threads", None))
        if os.environ.get("RANK", "0") == "0":     # one banner, not one per rank
            print(line)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
