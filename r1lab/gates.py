"""Stage gates: a stage starts only if an earlier stage's metric passes a threshold.

    - name: grpo_zero
      kind: grpo
      from: cold_start
      gate: {stage: cold_start, metric: pass@8, min: 0.3}

The value is the earlier stage's recorded metric (its done.json `metrics`) when it has that key; otherwise, for
`pass@k` / `greedy`, its model is evaluated on held-out problems with the eval machinery (r1lab.eval.runner.evaluate,
what the eval stage runs) and the result is kept in OUTPUT_DIR/STAGE/gate.json, keyed on the earlier stage's
fingerprint and the evaluation settings, so a rerun or a resume reads it instead of evaluating again. A gate that
does not pass stops the run before the stage, in one line (GateNotPassed); the stage is not marked done.

A gate is not part of the stage's fingerprint: adding or changing one does not rerun a done stage, it is checked
whenever the stage is about to run.
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from r1lab import dist
from r1lab.errors import StageFailure
from r1lab.io import atomic_write_json

GATE_FILE = "gate.json"
DEFAULT_BENCHMARK = "task:arithmetic@1-3"
_PASS = re.compile(r"pass@([1-9][0-9]*)")


class GateNotPassed(StageFailure):
    """The gate's metric is outside its bounds: the run stops before the gated stage."""


class Gate(BaseModel):
    """`gate:` on a stage. Unset defaults are filled at validation (`fill_defaults`), so the resolved config shows them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    stage: str = Field(description="an earlier stage")
    metric: str = Field(description="pass@k or greedy (evaluated if the stage did not record it), or a key of "
                                    "the stage's own metrics (e.g. train_loss)")
    min: float | None = Field(None, description="the stage runs only if metric >= min")
    max: float | None = Field(None, description="the stage runs only if metric <= max")
    benchmark: str | None = Field(None, description="held-out problems for pass@k / greedy (default: the eval "
                                                    f"stage's first benchmark, else {DEFAULT_BENCHMARK})")
    limit: int = Field(50, ge=1, description="held-out problems evaluated")
    samples: int | None = Field(None, ge=1, description="completions per problem (default: k for pass@k, else 1)")
    max_new_tokens: int = Field(160, ge=1)
    temperature: float | None = Field(None, ge=0, description="default: the eval stage's, else 0.6")

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("min: a gate needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"max: {self.max} is below min {self.min}; no value could pass")
        return self

    def bounds(self) -> str:
        parts = ([f"≥ {fmt(self.min)}"] if self.min is not None else []) + \
                ([f"≤ {fmt(self.max)}"] if self.max is not None else [])
        return " and ".join(parts)

    def describe(self, evaluates: bool = True) -> str:
        """`cold_start pass@8 ≥ 0.3 (task:arithmetic@1-3, 50 problems, 8 samples)` (validate / status)."""
        where = f" ({self.benchmark}, {self.limit} problems, {self.samples} samples)" if evaluates else ""
        return f"{self.stage} {self.metric} {self.bounds()}{where}"


def fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def eval_metric(metric: str) -> tuple[str, int] | None:
    """('pass', k) for pass@k, ('greedy', 1) for greedy, None for any other key."""
    if metric == "greedy":
        return ("greedy", 1)
    m = _PASS.fullmatch(metric)
    return ("pass", int(m.group(1))) if m else None


# ----------------------------------------------------------------------------- validation (config.py calls these)

def check(gate: Gate, earlier: dict[str, tuple[str, bool, tuple | None]]) -> None:
    """`earlier`: name -> (kind, saves a model, metric key patterns the kind declares or None) of the stages before
    the gated one. Raises ValueError("KEY: message") naming the gate's key."""
    if gate.stage not in earlier:
        where = f"earlier stages: {', '.join(earlier)}" if earlier else "it is the first stage"
        raise ValueError(f"stage: {gate.stage!r} names no earlier stage ({where})")
    kind, has_model, patterns = earlier[gate.stage]
    form = eval_metric(gate.metric)
    declared = patterns is None or any(fnmatch.fnmatchcase(gate.metric, p) for p in patterns)
    if form is None and not declared:
        raise ValueError(f"metric: {gate.metric!r} is neither pass@k, greedy nor a metric a {kind} stage reports "
                         f"({', '.join(patterns)})")
    if form is not None and not has_model and not declared:
        raise ValueError(f"metric: {gate.stage!r} is a {kind} stage, which saves no model to evaluate for "
                         f"{gate.metric}; gate on one of its metrics ({', '.join(patterns or ()) or 'none declared'})")
    if form is not None and gate.samples is not None:
        k = form[1]
        if form[0] == "greedy" and gate.samples != 1:
            raise ValueError(f"samples: greedy is one greedy completion per problem; samples must be 1 (got {gate.samples})")
        if form[0] == "pass" and not (k == gate.samples or (k < gate.samples and k & (k - 1) == 0)):
            raise ValueError(f"samples: {gate.metric} needs samples = {k} (or k a power of two below samples); "
                             f"got {gate.samples}")


def fill_defaults(gate: Gate, eval_params=None) -> None:
    """Benchmark, temperature and samples the gate evaluates with when not given (`eval_params`: the pipeline's
    first eval stage's Params, or None)."""
    if eval_metric(gate.metric) is None:      # read from the stage's metrics: nothing to evaluate with
        return
    if gate.benchmark is None:
        benches = getattr(eval_params, "benchmarks", None)
        gate.benchmark = benches[0] if benches else DEFAULT_BENCHMARK
    if gate.temperature is None:
        gate.temperature = float(getattr(eval_params, "temperature", 0.6)) if eval_params is not None else 0.6
    if gate.samples is None:
        form = eval_metric(gate.metric)
        gate.samples = form[1] if form and form[0] == "pass" else 1


# ----------------------------------------------------------------------------- at run time

def _key(gate: Gate, source_fp: str | None, seed: int, engine: str) -> dict:
    return {"source": gate.stage, "source_fingerprint": source_fp, "metric": gate.metric, "benchmark": gate.benchmark,
            "limit": gate.limit, "samples": gate.samples, "max_new_tokens": gate.max_new_tokens,
            "temperature": gate.temperature, "seed": seed, "engine": engine}


def read_record(stage_dir: Path) -> dict | None:
    try:
        return json.loads((Path(stage_dir) / GATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def verdict(gate: Gate, value) -> tuple[bool, str]:
    """(passed, `cold_start pass@8 = 0.41 ≥ 0.3` or `... = 0.22 < min 0.3`) against the gate's current bounds."""
    head = f"{gate.stage} {gate.metric} = {fmt(value)}"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return False, f"{head}, not a number"
    if gate.min is not None and value < gate.min:
        return False, f"{head} < min {fmt(gate.min)}"
    if gate.max is not None and value > gate.max:
        return False, f"{head} > max {fmt(gate.max)}"
    return True, f"{head} {gate.bounds()}"


def line(gate: Gate, record: dict) -> str:
    """The verdict with where the value came from: `(task:arithmetic@1-3, 50 problems, 8 samples)` or
    `(recorded by cold_start)`."""
    _, text = verdict(gate, record["value"])
    if record.get("from") == "recorded":
        return f"{text} (recorded by {gate.stage})"
    return f"{text} ({record['benchmark']}, {record['problems']} problems, {record['samples']} samples)"


def resolve(gate: Gate, *, name: str, stage_dir: Path, source_done: dict | None, source_fp: str | None,
            source_model: Path, tokenizer_path: str | None, seed: int, engine: str, console=None,
            main: bool = True) -> dict:
    """The gate's record (metric, value, threshold, source, benchmark, problems, samples, passed), written
    atomically to STAGE_DIR/gate.json (rank 0). Every rank calls this; only an evaluation needs every rank."""
    if source_done is None or (source_fp is not None and source_done.get("fingerprint") != source_fp):
        raise GateNotPassed(f"gate: stage {gate.stage!r} is not done, so its {gate.metric} cannot be read; "
                            "run the stages before this one first")
    recorded = (source_done.get("metrics") or {})
    key = _key(gate, source_fp, seed, engine)
    if gate.metric in recorded:
        record = {**key, "from": "recorded", "value": recorded[gate.metric], "benchmark": None, "problems": None,
                  "samples": None}
    else:
        if eval_metric(gate.metric) is None:
            known = ", ".join(k for k, v in recorded.items() if isinstance(v, (int, float))) or "none"
            raise GateNotPassed(f"gate: stage {gate.stage!r} recorded no metric {gate.metric!r} (it recorded: {known})")
        cached = read_record(stage_dir) if main else None
        cached = dist.broadcast(cached if cached and cached.get("key") == key else None)
        if cached is None:
            record = {**key, "from": "evaluated", **_evaluate(gate, stage_dir, source_model, tokenizer_path, seed,
                                                                engine, console)}
        else:
            record = {**cached, "from": "cached"}
    passed, _ = verdict(gate, record["value"])
    record.update({"key": key, "min": gate.min, "max": gate.max, "passed": passed, "stage": name})
    if main:
        atomic_write_json(Path(stage_dir) / GATE_FILE, record)
    return record


def _evaluate(gate: Gate, stage_dir: Path, model: Path, tokenizer_path: str | None, seed: int, engine: str,
              console) -> dict:
    """pass@k / greedy of `model` on the gate's held-out problems, through the eval stage's own runner."""
    from r1lab.eval.runner import EvalConfig, evaluate

    kind, k = eval_metric(gate.metric)
    greedy = kind == "greedy"
    cfg = EvalConfig(benchmarks=[gate.benchmark], samples=0 if greedy else gate.samples, greedy=greedy,
                     temperature=gate.temperature, max_new_tokens=gate.max_new_tokens, limit=gate.limit, seed=seed,
                     engine=engine, n_boot=0)
    tok = str(model) if (Path(model) / "tokenizer_config.json").exists() else (tokenizer_path or str(model))
    out = Path(stage_dir) / "gate"
    results = evaluate({gate.stage: str(model)}, cfg, out, tokenizer_path=tok, show=False, console=console,
                       report_name=None, samples_path=lambda o, m, b: Path(o) / f"{m}.{b}.jsonl")
    (bench, r), = results["models"][gate.stage]["benchmarks"].items()
    value = r["greedy"] if greedy else r["pass@k"][str(k)]
    return {"value": float(value), "benchmark": gate.benchmark, "benchmark_name": bench,
            "problems": r["n_problems"], "samples": gate.samples}
