"""Data sources for stages: synthetic tasks, local JSONL/Parquet/datasets dirs, earlier stages' data artifacts
(r1lab/data/loaders.py), and the benchmark files shipped with the package (r1lab/data/benchmarks/)."""
