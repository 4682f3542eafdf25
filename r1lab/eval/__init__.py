"""Evaluation on math (and code) benchmarks with DeepSeek-R1's protocol: benchmarks.py (data), prompting.py
(R1's instruction through the chat template), generation.py (engines), scoring.py (verdicts via rewards),
metrics.py (pass@1 ± se, cons@k, pass@k), runner.py (models x benchmarks), report.py (table, report.md, plots),
cli.py (`r1lab eval`)."""
from r1lab.eval.benchmarks import Benchmark, list_benchmarks, load_benchmark
from r1lab.eval.runner import EvalConfig, evaluate, evaluate_model, load_model

__all__ = ["Benchmark", "EvalConfig", "evaluate", "evaluate_model", "list_benchmarks", "load_benchmark", "load_model"]
