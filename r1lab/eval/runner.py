"""Run an evaluation: models x benchmarks -> per-sample records -> R1-protocol metrics -> results.json.

For every problem the runner draws ``samples`` completions at temperature 0.6 / top-p 0.95 (R1's protocol)
and, unless turned off, one greedy completion; each is judged by the rewards package. Per-sample records
go to ``OUT/samples/MODEL/BENCH.jsonl`` as they are produced; ``summarize`` computes the metrics from the
per-problem records alone (the fields the JSONL holds), nothing else.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from r1lab import dist
from r1lab.eval import metrics as M
from r1lab.eval.benchmarks import Benchmark, load_benchmark
from r1lab.eval.generation import make_generator
from r1lab.rollout import resolve_engine
from r1lab.eval.prompting import PromptBuilder
from r1lab.eval.scoring import score, vote_equiv


class EvalConfig(BaseModel):
    """Evaluation settings (the `eval` stage's and the CLI's parameters)."""
    model_config = ConfigDict(extra="forbid")
    benchmarks: list[str] = Field(default_factory=lambda: ["gsm8k", "math500"])
    samples: int = Field(4, ge=0, description="sampled completions per problem (R1: 4-64); 0 = greedy only")
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(1024, ge=1)
    greedy: bool = True
    limit: int | None = Field(None, ge=1, description="first N problems of each benchmark")
    seed: int = 0
    batch_size: int = Field(16, ge=1, description="sequences per generate call")
    template: str = "auto"
    system: str | None = None
    think: bool | Literal["auto"] = "auto"
    engine: Literal["auto", "native", "hf", "vllm"] = Field("auto", description="rollout engine (auto: vllm where "
                                                                 "it is usable, else native)")
    problem_key: str = "problem"
    answer_key: str = "answer"
    n_boot: int = Field(1000, ge=0)


# ------------------------------------------------------------------------------------------ generation
def run_benchmark(gen, builder: PromptBuilder, bench: Benchmark, cfg: EvalConfig, samples_path: Path | None = None,
                  progress=None, label: str = "") -> list[dict]:
    """Generate and judge; returns one record per problem: {row fields, prompt, samples: [...], greedy: {...}}."""
    prompts = [builder(r["problem"], bench.instruction) for r in bench.rows]
    per_call = max(1, cfg.batch_size // max(1, cfg.samples))
    task = progress.add_task(label or bench.name, total=len(prompts)) if progress is not None else None
    rank, size = dist.world()     # more than one process: each runs every size-th batch; rank 0 writes
    records, lines = [], []
    try:
        for b0 in range(0, len(prompts), per_call):
            if (b0 // per_call) % size != rank:
                continue
            rows, ps = bench.rows[b0:b0 + per_call], prompts[b0:b0 + per_call]
            ids = [p.ids for p in ps]
            batch_seed = cfg.seed * 1_000_003 + b0
            greedy = gen(ids, n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens, seed=batch_seed) \
                if cfg.greedy else [[] for _ in ps]
            sampled = gen(ids, n=cfg.samples, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                          max_new_tokens=cfg.max_new_tokens, seed=batch_seed + 1) \
                if cfg.samples else [[] for _ in ps]
            flat, owners = [], []
            for i, (p, g, s) in enumerate(zip(ps, greedy, sampled)):
                for j, c in enumerate(list(g) + list(s)):
                    flat.append(c)
                    owners.append((i, "greedy" if j < len(g) else j - len(g)))
            verdicts = score(bench.kind, [ps[i].prefill + c.text for c, (i, _) in zip(flat, owners)],
                             [rows[i] for i, _ in owners])
            recs = [{"row": r, "prompt": p.text, "prefill": p.prefill, "samples": [], "greedy": None}
                    for r, p in zip(rows, ps)]
            for c, (i, which), (pred, ok) in zip(flat, owners, verdicts):
                s = {"completion": c.text, "extracted": pred, "correct": bool(ok), "n_tokens": c.n_tokens,
                     "finish_reason": c.finish_reason}
                if which == "greedy":
                    recs[i]["greedy"] = s
                else:
                    recs[i]["samples"].append(s)
                row = rows[i]
                lines.append((b0, json.dumps({"id": row["id"], "sample": which, "prompt": ps[i].text,
                                              "prefill": ps[i].prefill, **s, "answer": row.get("answer")})))
            records += [(b0, r) for r in recs]
            if task is not None:
                progress.advance(task, len(ps))
    finally:
        if size > 1:              # every rank's batches, in batch order, on every rank
            parts = dist.gather((records, lines))
            records = sorted((r for part in parts for r in part[0]), key=lambda x: x[0])
            lines = sorted((x for part in parts for x in part[1]), key=lambda x: x[0])
        if samples_path and dist.is_main():
            with open(samples_path, "w") as fh:
                fh.write("".join(line + "\n" for _, line in lines))
    return [r for _, r in records]


# --------------------------------------------------------------------------------------------- metrics
def summarize(records: list[dict], bench: Benchmark, cfg: EvalConfig) -> dict:
    """R1-protocol metrics of one benchmark from its per-problem records."""
    out = {"benchmark": bench.name, "kind": bench.kind, "n_problems": len(records), "samples": cfg.samples,
           "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens}
    samples = [r["samples"] for r in records]
    all_s = [s for ss in samples for s in ss]
    if cfg.samples and records:
        verdicts = [[float(s["correct"]) for s in ss] for ss in samples]
        out["pass@1"] = M.pass_at_1_stats(verdicts, n_boot=cfg.n_boot, seed=cfg.seed)
        # per-problem pass@1 by problem id, for paired comparisons between models (report.paired_lines)
        out["per_problem"] = {str(r["row"].get("id", i)): float(np.mean(v)) for i, (r, v) in enumerate(zip(records, verdicts))}
        ks = M.ks_for(cfg.samples)
        out["pass@k"] = {str(k): M.mean_pass_at_k(verdicts, k) for k in ks}
        if bench.kind in ("math", "countdown"):
            eq = vote_equiv(bench.kind)
            votes = [M.problem_votes([s["extracted"] for s in ss], [s["correct"] for s in ss], eq)
                     for ss in samples]
            out["cons@k"] = {str(k): M.mean_cons_at_k(votes, k, seed=cfg.seed) for k in ks}
        out["no_answer"] = float(np.mean([s["extracted"] is None for s in all_s]))
        out["truncated"] = float(np.mean([s["finish_reason"] == "length" for s in all_s]))
        out["response_tokens"] = _lengths(all_s)
    if cfg.greedy and records:
        g = [r["greedy"] for r in records]
        out["greedy"] = float(np.mean([x["correct"] for x in g]))
        out["greedy_response_tokens"] = float(np.mean([x["n_tokens"] for x in g]))
    out["breakdown"] = {col: _breakdown(records, col, cfg) for col in bench.breakdown
                        if any(col in r["row"] for r in records)}
    return out


def _lengths(ss: list[dict]) -> dict:
    right = [s["n_tokens"] for s in ss if s["correct"]]
    wrong = [s["n_tokens"] for s in ss if not s["correct"]]
    mean = lambda xs: float(np.mean(xs)) if xs else None
    return {"mean": mean([s["n_tokens"] for s in ss]), "correct": mean(right), "wrong": mean(wrong)}


def _breakdown(records, col, cfg) -> dict:
    groups: dict[str, list] = {}
    for r in records:
        groups.setdefault(str(r["row"].get(col)), []).append(r)
    out = {}
    for key in sorted(groups, key=lambda k: (len(k), k)):
        rs = groups[key]
        d = {"n": len(rs)}
        if cfg.samples:
            d["pass@1"] = M.pass_at_1([[float(s["correct"]) for s in r["samples"]] for r in rs])
        if cfg.greedy:
            d["greedy"] = float(np.mean([r["greedy"]["correct"] for r in rs]))
        out[key] = d
    return out


# --------------------------------------------------------------------------------------------- models
def load_model(path: str, tokenizer_path: str | None = None, device: str | None = None):
    """(model, tokenizer) for evaluation, through r1lab.loading: in eval mode, bf16 on a GPU."""
    import torch

    from r1lab.loading import inference_dtype, load_model as load, load_tokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not Path(path, "config.json").exists():
        raise FileNotFoundError(f"model {path!r}: no config.json there (expected a save_pretrained directory)")
    model = load(path, dtype=inference_dtype(device), device=device).eval()
    return model, load_tokenizer(tokenizer_path or path, default_template=False)


def model_names(paths: list[str]) -> list[str]:
    """Readable unique names: the directory name (its parent's for an OUT/STAGE/model directory)."""
    names = []
    for p in paths:
        if "=" in p and not Path(p).exists():
            names.append(p.split("=", 1)[0])
            continue
        pp = Path(p).resolve()
        n = pp.parent.name if pp.name == "model" else pp.name
        while n in names:
            n += "'"
        names.append(n)
    return names


def nested_samples(out_dir: Path, model: str, bench: str) -> Path:
    """CLI layout: OUT/samples/MODEL/BENCH.jsonl."""
    return Path(out_dir) / "samples" / model / f"{bench}.jsonl"


def evaluate_model(model, tokenizer, cfg: EvalConfig, name: str = "model", out_dir: str | Path | None = None,
                   benchmarks: list[Benchmark] | None = None, progress=None, generator=None,
                   samples_path=nested_samples) -> dict:
    """Evaluate one loaded model on cfg.benchmarks; returns {benchmark: metrics}.
    Per-sample records go to ``samples_path(out_dir, name, benchmark)`` when out_dir is given."""
    benchmarks = benchmarks if benchmarks is not None else load_benchmarks(cfg)
    gen = generator or make_generator(resolve_engine(cfg.engine), model, tokenizer)
    builder = PromptBuilder(tokenizer, cfg.template, cfg.system, cfg.think)
    res = {}
    for bench in benchmarks:
        sp = None
        if out_dir is not None:
            sp = samples_path(Path(out_dir), name, bench.name)
            sp.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        recs = run_benchmark(gen, builder, bench, cfg, sp, progress, f"{name} · {bench.name}")
        dt = time.perf_counter() - t0
        m = summarize(recs, bench, cfg)
        m["time_s"] = dt
        m["problems_per_s"] = len(recs) / dt if dt > 0 else math.inf
        res[bench.name] = m
    return res


def load_benchmarks(cfg: EvalConfig) -> list[Benchmark]:
    from r1lab.eval.benchmarks import distinct_names

    return distinct_names([load_benchmark(b, cfg.limit, cfg.problem_key, cfg.answer_key, cfg.seed)
                           for b in cfg.benchmarks], cfg.benchmarks)


def evaluate(models: list[str] | dict[str, str], cfg: EvalConfig, out_dir: str | Path,
             tokenizer_path: str | dict | None = None, show: bool = True, loaded: dict | None = None,
             samples_path=nested_samples, console=None, report_name: str | None = "report.md") -> dict:
    """Evaluate several model directories (list, or {name: path}); write results.json, report.md and plots.
    tokenizer_path: one directory for all models, or {name: dir}; default each model's own directory."""
    from r1lab.eval import report
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(models, dict):
        named = dict(models)
    else:
        paths = [p.split("=", 1)[1] if "=" in p and not Path(p).exists() else p for p in models]
        named = dict(zip(model_names(list(models)), paths))
    benches = load_benchmarks(cfg)
    engine = resolve_engine(cfg.engine)
    results = {"config": cfg.model_dump(), "models": {}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with report.progress(disable=not show, console=console) as prog:
        for name, path in named.items():
            tok_path = tokenizer_path.get(name) if isinstance(tokenizer_path, dict) else tokenizer_path
            gen = None
            if loaded and name in loaded:
                model, tok = loaded[name]
            elif engine == "vllm":               # vLLM opens the checkpoint itself: no copy in this process
                from r1lab.eval.generation import EngineGenerator
                from r1lab.loading import load_tokenizer
                model, tok = None, load_tokenizer(tok_path or path, default_template=False)
                gen = EngineGenerator("vllm", str(path), tok)
            else:
                model, tok = load_model(path, tok_path)
            res = evaluate_model(model, tok, cfg, name, out_dir, benches, prog, generator=gen,
                                 samples_path=samples_path)
            results["models"][name] = {"path": str(path), "benchmarks": res}
            if dist.is_main():
                _write_json(out_dir / "results.json", results)   # after each model: partial results survive
            model = gen = None                                   # free it before loading the next model
            _free_memory()
    if dist.is_main():
        report.write_all(results, out_dir, show=show, console=console, report_name=report_name)
    return results


def _free_memory():
    import gc

    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_json(path: Path, obj):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)
