"""`eval` stage: evaluate one or several stages' models on benchmarks with DeepSeek-R1's protocol, in one table.

    - name: eval
      kind: eval
      from: grpo                      # the model evaluated by default
      models: [pretrain, cold_start, grpo]     # or "all": every finished stage that saved a model
      benchmarks: [gsm8k, task:arithmetic]     # see `r1lab eval --help` for every benchmark spec
      samples: 4                               # R1: temperature 0.6, top-p 0.95, pass@1 over the samples
      limit: 200

Writes OUTPUT_DIR/STAGE/results.json (everything), data/MODEL.BENCH.jsonl (per-sample records: prompt,
completion, extracted answer, verdict), plots/benchmarks.png and plots/pass_at_k.png, and the eval table
into the stage's report.md. Returns flat metrics `MODEL/BENCH/pass@1` etc. for the run report.
"""
from __future__ import annotations

METRICS = ("*/pass@*", "*/cons@*", "*/greedy", "*/response_tokens")   # MODEL/BENCH/...: run() returns
PRODUCES_MODEL = False   # a `from:` naming this stage is a config error: it saves no model/

from pathlib import Path
from typing import Literal

from pydantic import Field

from r1lab.eval.runner import EvalConfig
from r1lab.params import StageParams
from r1lab.stages.base import StageContext


class Params(StageParams, EvalConfig):
    models: list[str] | Literal["all"] | None = Field(
        None, description="stage names (or model paths) to evaluate; 'all' = every finished stage's model; "
                          "default: this stage's `from:` model (the pipeline's model without one)")
    seed: int | None = Field(None, description="default: the pipeline's seed")
    engine: Literal["auto", "native", "hf", "vllm"] | None = Field(
        None, description="default: the pipeline's `rollout`")


def depends_on(params: Params) -> list[str]:
    """Stages named in `models` are inputs: a change upstream reruns the eval."""
    if isinstance(params.models, list):
        return [m for m in params.models if not _is_path(m)]
    return []


def _is_path(s: str) -> bool:
    return "/" in s or s.startswith(".") or Path(s).exists()


def _label(path: Path) -> str:
    """A model's name in the table: its folder, or for .../STAGE/model the stage's name."""
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def resolve_models(ctx: StageContext, p: Params) -> dict[str, str]:
    finished = ctx.stage_model_paths()
    if p.models is None:
        return {ctx.from_stage or "model": ctx.model_path}
    if p.models == "all":
        if not finished:
            raise ValueError(f"stage {ctx.name}: models: all, but no earlier stage has saved a model")
        return dict(finished)
    out = {}
    for m in p.models:
        if m in finished:
            out[m] = finished[m]
        elif _is_path(m):   # as given (from the working directory, like `model:`), else next to the YAML
            path = Path(m) if Path(m).exists() or Path(m).is_absolute() else Path(ctx.base_dir, m)
            out[_label(path)] = str(path)
        else:
            raise ValueError(f"stage {ctx.name}: params.models: {m!r} is neither a finished stage with a model "
                             f"({', '.join(finished) or 'none yet'}) nor a model path")
    return out


def run(ctx: StageContext) -> dict:
    from r1lab.eval import report
    from r1lab.eval.runner import evaluate

    p: Params = ctx.params
    engine = ctx.engine_name(p.engine)
    fields = {k: v for k, v in p.model_dump().items() if k in EvalConfig.model_fields}
    cfg = EvalConfig(**{**fields, "seed": ctx.seed if p.seed is None else p.seed, "engine": engine})
    models = resolve_models(ctx, p)
    toks = {n: (path if Path(path, "tokenizer_config.json").exists() else ctx.tokenizer_path or path)
            for n, path in models.items()}
    results = evaluate(models, cfg, ctx.out_dir, tokenizer_path=toks, console=ctx.console, report_name=None,
                       samples_path=lambda out, model, bench: Path(out) / "data" / f"{model}.{bench}.jsonl")
    ctx.add_report(report.markdown(results, samples_hint="data/MODEL.BENCH.jsonl", title=None))
    flat = {}
    for model, m in results["models"].items():
        for bench, r in m["benchmarks"].items():
            key = f"{model}/{bench}"
            if r.get("pass@1"):
                flat[f"{key}/pass@1"] = r["pass@1"]["mean"]
                flat[f"{key}/pass@1_stderr"] = r["pass@1"]["stderr"]
            if r.get("cons@k"):
                flat[f"{key}/cons@{cfg.samples}"] = r["cons@k"][str(cfg.samples)]
            if r.get("pass@k"):
                flat[f"{key}/pass@{cfg.samples}"] = r["pass@k"][str(cfg.samples)]
            if "greedy" in r:
                flat[f"{key}/greedy"] = r["greedy"]
            if r.get("response_tokens"):
                flat[f"{key}/response_tokens"] = r["response_tokens"]["mean"]
    return flat
