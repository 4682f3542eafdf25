"""`r1lab eval` (and `python -m r1lab.eval`): evaluate one or more models with DeepSeek-R1's protocol."""
from __future__ import annotations

import argparse
import sys


def _add_args(p: argparse.ArgumentParser) -> None:
    from r1lab.eval.runner import EvalConfig
    d = EvalConfig()
    p.add_argument("--model", required=True,
                   help="model directory (save_pretrained), or several comma-separated; NAME=PATH names one")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's)")
    p.add_argument("--benchmarks", default=",".join(d.benchmarks),
                   help="comma-separated: gsm8k, math500, aime24, aime25, amc23, humaneval, mbpp, task:NAME "
                        "(a synthetic task's test split; task:NAME@2-4 at difficulties 2..4), or a .jsonl/.parquet/"
                        "datasets-dir path (NAME=PATH names it)")
    p.add_argument("--samples", type=int, default=d.samples, help="sampled completions per problem (R1: 4-64)")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark")
    p.add_argument("--out", default="runs/eval", help="output directory (results.json, report.md, plots/, samples/)")
    p.add_argument("--engine", choices=["auto", "native", "hf", "vllm"], default=d.engine,
                   help="rollout engine (auto: vllm where usable, else native; hf: plain model.generate)")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy (temperature 0) completion")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per generate call")
    p.add_argument("--template", default=d.template,
                   help="auto | chat | raw | r1zero | a custom string with {problem}")
    p.add_argument("--system", default=None, help="system prompt for the chat template (R1 uses none)")
    p.add_argument("--think", choices=["auto", "yes"], default="auto",
                   help="yes: start the assistant turn with '<think>\\n' (R1's advice); auto: as the template does")
    p.add_argument("--problem-key", default=d.problem_key, help="problem column of user datasets")
    p.add_argument("--answer-key", default=d.answer_key, help="answer column of user datasets")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", default=None, metavar="auto|torch|N",
                   help="torch CPU threads (env R1LAB_THREADS; default auto: the cores other processes leave free)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")


def config_from_args(a) -> "EvalConfig":
    from r1lab.eval.runner import EvalConfig
    return EvalConfig(benchmarks=[b.strip() for b in a.benchmarks.split(",") if b.strip()], samples=a.samples,
                      temperature=a.temperature, top_p=a.top_p, top_k=a.top_k, max_new_tokens=a.max_new_tokens,
                      greedy=not a.no_greedy, limit=a.limit, seed=a.seed, batch_size=a.batch_size,
                      template=a.template, system=a.system, think=True if a.think == "yes" else "auto",
                      engine=a.engine, problem_key=a.problem_key, answer_key=a.answer_key)


def run_eval(a) -> int:
    """Bad input (a missing model, an unknown benchmark, a wrong column) is one line on stderr and exit code 2."""
    from pydantic import ValidationError

    from r1lab.eval.runner import evaluate
    try:
        cfg = config_from_args(a)
        models = [m.strip() for m in a.model.split(",") if m.strip()]
        evaluate(models, cfg, a.out, tokenizer_path=a.tokenizer, show=not a.quiet)
    except (ValueError, FileNotFoundError, ValidationError) as e:
        msg = str(e).splitlines()
        print(f"r1lab eval: error: {' '.join(l.strip() for l in msg[:3])}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}/results.json, report.md, plots/, samples/")
    return 0


def add_eval_command(subparsers) -> argparse.ArgumentParser:
    """Register `eval` on the r1lab CLI's subparsers (called by r1lab/cli.py)."""
    p = subparsers.add_parser("eval", help="evaluate models on math/code benchmarks (DeepSeek-R1 protocol)",
                              description=__doc__)
    _add_args(p)
    p.set_defaults(func=run_eval)
    return p


def main(argv=None) -> int:
    from base_model import threads

    argv = sys.argv[1:] if argv is None else argv
    threads.prepare(threads.value_from_argv(argv))      # before the parser loads torch (base_model/threads.py)
    p = argparse.ArgumentParser(prog="python -m r1lab.eval", description=__doc__)
    _add_args(p)
    a = p.parse_args(argv)
    print(threads.configure(a.threads))
    return run_eval(a)


if __name__ == "__main__":
    sys.exit(main())
