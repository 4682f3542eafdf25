"""Trackers and what a run shows: a pipeline-level `report_to` (validated, a TRL stage's own wins), one tensorboard
event dir per stage, every metric plotted, GRPO's completions table, the cross-stage figure, the eval table at 80
columns and benchmarks whose files share a stem."""
from __future__ import annotations

import io
import json

import pytest
import torch
import yaml

from grpo_helpers import nano_deepseek  # noqa: F401  (fixtures)
from pipeline_helpers import tiny_model, tiny_tok  # noqa: F401
from r1lab.config import ConfigError, load_pipeline, validate

torch.set_num_threads(1)


def _cfg(tiny_tok, tmp_path, **top):
    stages = [{"name": "a", "kind": "sft", "max_steps": 1, "data": [{"task": "arithmetic", "n": 4}]},
              {"name": "b", "kind": "sft", "from": "a", "max_steps": 1, "report_to": "none", "run_name": "mine",
               "data": [{"task": "arithmetic", "n": 4}]},
              {"name": "e", "kind": "eval", "from": "b", "benchmarks": ["task:arithmetic"]}]
    return {"name": "trk", "model": "nano", "tokenizer": str(tiny_tok), "output_dir": str(tmp_path / "o"),
            "stages": stages, **top}


def test_pipeline_report_to_typo_fails_validate_in_one_line(tiny_tok, tmp_path):
    with pytest.raises(ConfigError) as e:
        validate(_cfg(tiny_tok, tmp_path, report_to="tensorbord"), file="p.yaml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("p.yaml: report_to: unknown tracker 'tensorbord'") and "tensorboard" in msg
    with pytest.raises(ConfigError, match=r"report_to: unknown tracker 'wandbb'"):
        validate(_cfg(tiny_tok, tmp_path, report_to=["tensorboard", "wandbb"]), file="p.yaml")


def test_pipeline_report_to_is_the_default_and_a_stage_s_own_wins(tiny_tok, tmp_path, monkeypatch):
    from r1lab.stages.base import StageContext
    from r1lab.trackers import trl_args
    from r1lab.train.args import sft_config

    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    cfg = validate(_cfg(tiny_tok, tmp_path, report_to=["tensorboard"]), file="p.yaml")
    ctx = {s.name: StageContext(name=s.name, kind=s.kind, params=s.params, out_dir=tmp_path / "o" / s.name,
                                output_dir=tmp_path / "o", seed=0, model_spec="nano", pipeline=cfg)
           for s in cfg.stage_list}
    a, b = trl_args(ctx["a"], ctx["a"].params), trl_args(ctx["b"], ctx["b"].params)
    assert a["report_to"] == ["tensorboard"] and a["run_name"] == "trk/a" and a.get("project", "trk") == "trk"
    assert b["report_to"] == "none" and b["run_name"] == "mine"
    import os
    assert os.environ["WANDB_RUN_GROUP"] == "trk"           # the stages of one run form one group
    args = sft_config(tmp_path / "ck", ctx["a"].params, 0, ctx["a"])
    assert args.report_to == ["tensorboard"] and args.run_name == "trk/a"
    # the pipeline's trackers do not change any stage's fingerprint (logging is not an input)
    from r1lab.status import stage_fingerprints
    assert stage_fingerprints(cfg) == stage_fingerprints(validate(_cfg(tiny_tok, tmp_path), file="p.yaml"))


GRPO_KEYS = ["loss", "grad_norm", "learning_rate", "num_tokens", "completions/mean_length", "completions/min_length",
             "completions/max_length", "completions/clipped_ratio", "rewards/math_accuracy/mean",
             "rewards/math_accuracy/std", "rewards/think_format/mean", "rewards/think_format/std", "reward",
             "reward_std", "frac_reward_zero_std", "kl", "entropy", "clip_ratio/low_mean", "clip_ratio/low_min",
             "clip_ratio/high_mean", "clip_ratio/high_max", "clip_ratio/region_mean", "groups/flat", "step_time"]


def test_make_plots_drops_no_metric_and_plots_grpo_s_own_first(tmp_path):
    from r1lab.report import make_plots

    keys = GRPO_KEYS + [f"extra/m{i:02d}" for i in range(30)]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for step in range(1, 6):
            f.write(json.dumps({"step": step, "time": 0.0, "epoch": 0.1, **{k: step * (i + 1.0) for i, k in enumerate(keys)}}) + "\n")
    made = make_plots(tmp_path / "metrics.jsonl", tmp_path / "plots")
    index = json.loads((tmp_path / "plots" / "index.json").read_text())
    assert set(index) == set(keys)                                     # every metric is in some figure
    assert all((tmp_path / "plots" / f).exists() for f in index.values()) and len(made) == len(set(index.values()))
    own = {k for k, f in index.items() if not f.startswith("more_")}
    assert len(own) == 16
    for k in ("loss", "reward", "rewards/math_accuracy/mean", "reward_std", "kl", "entropy", "clip_ratio/low_mean",
              "clip_ratio/high_mean", "clip_ratio/region_mean", "groups/flat", "completions/mean_length"):
        assert k in own, k
    assert {f for f in index.values() if f.startswith("more_")} == {"more_1.png", "more_2.png"}   # 38 others, 20 a page


def _results(models=("pretrain", "a_rather_long_stage_name", "grpo"),
             benches=("gsm8k", "math500", "task:arithmetic@2-4", "a-test")):
    r = {"n_problems": 500, "samples": 16, "pass@1": {"mean": 0.123, "stderr": 0.012, "ci": [0.1, 0.15]},
         "cons@k": {"16": 0.5}, "pass@k": {"16": 1.0}, "greedy": 0.333, "response_tokens": {"mean": 1234.0},
         "no_answer": 0.05, "truncated": 1.0}
    return {"config": {"temperature": 0.6, "top_p": 0.95},
            "models": {m: {"benchmarks": {b: dict(r) for b in benches}} for m in models}}


def test_eval_table_fits_80_columns():
    from rich.console import Console

    from r1lab.eval.report import write_all

    for width in (80, 100):
        buf = io.StringIO()
        console = Console(width=width, file=buf, color_system=None)
        from r1lab.eval.report import table
        console.print(table(_results(), console.width))
        lines = buf.getvalue().splitlines()
        assert max(len(x) for x in lines) <= width, buf.getvalue()
        text = buf.getvalue()
        assert "12.3±1.2" in text and "pass@1" in text and "grpo" in text and "gsm8k" in text
    assert write_all  # the CLI path: write_all passes console.width (a log file keeps the wide table)


def test_benchmarks_sharing_a_file_stem_stay_distinct(tmp_path):
    from r1lab.eval.runner import EvalConfig, load_benchmarks

    for sub, n in (("a", 2), ("b", 3)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "test.jsonl").write_text("".join(
            json.dumps({"problem": f"{sub}{i}: 1+{i}?", "answer": str(1 + i)}) + "\n" for i in range(n)))
    specs = [str(tmp_path / "a" / "test.jsonl"), str(tmp_path / "b" / "test.jsonl"), "task:arithmetic",
             "task:arithmetic"]
    benches = load_benchmarks(EvalConfig(benchmarks=specs, limit=4))
    assert [b.name for b in benches] == ["a-test", "b-test", "arithmetic", "arithmetic-2"]
    assert [len(b) for b in benches[:2]] == [2, 3]


def test_a_pipeline_logs_every_stage_to_tensorboard_and_draws_the_run(tmp_path, tiny_tok):
    import importlib.util

    from r1lab.pipeline import run_pipeline

    has_tb = importlib.util.find_spec("tensorboard") is not None    # in the dev extra; the rest runs without it

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "test.jsonl").write_text("".join(
            json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(2 if sub == "a" else 3)))
    data = [{"task": "arithmetic", "n": 8, "difficulty": 1}]
    stages = [
        {"name": "pt", "kind": "pretrain", "max_steps": 3, "ckpt_every": 3, "log_every": 1, "batch_size": 2,
         "micro_batch_size": 2, "seq_len": 32, "sample_prompts": [], "progress": False},
        {"name": "sft", "kind": "sft", "from": "pt", "max_steps": 2, "per_device_train_batch_size": 4, "data": data},
        {"name": "grpo", "kind": "grpo", "from": "sft", "max_steps": 2, "num_generations": 2,
         "per_device_train_batch_size": 4, "max_completion_length": 8, "beta": 0.01, "save_steps": 10,
         "rewards": {"math_accuracy": 1.0, "think_format": 0.2}, "data": data},
        {"name": "rs", "kind": "rejection_sampling", "from": "grpo", "n": 2, "max_new_tokens": 8, "threshold": 0.0,
         "rewards": ["think_format"], "require_format": False, "dedup": False, "no_language_mixing": False,
         "data": data},
        {"name": "eval", "kind": "eval", "models": ["sft", "grpo"], "samples": 1, "max_new_tokens": 4, "limit": 3,
         "benchmarks": [str(tmp_path / "a" / "test.jsonl"), str(tmp_path / "b" / "test.jsonl")]},
    ]
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"name": "trk", "seed": 0, "output_dir": str(tmp_path / "out"), "model": "nano",
                                 "tokenizer": str(tiny_tok), "rollout": "native",
                                 "report_to": "tensorboard" if has_tb else "none",
                                 "stages": stages}))
    run_pipeline(load_pipeline(p))
    out = tmp_path / "out"
    tags = {}
    for s in stages if has_tb else ():
        tb = out / s["name"] / "tb"
        events = list(tb.rglob("events.out.tfevents.*"))
        assert events and all(e.parent == tb for e in events), (s["name"], events)   # one event dir per stage
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(str(tb))
        acc.Reload()
        tags[s["name"]] = set(acc.Tags()["scalars"])
    if has_tb:
        assert set(tags) == {s["name"] for s in stages}
        assert any("loss" in t for t in tags["pt"]) and any("loss" in t for t in tags["sft"])
        assert any(t.endswith("reward") for t in tags["grpo"]) and any(t.endswith("kl") for t in tags["grpo"])
        assert "final/kept" in tags["rs"] and any(t.startswith("final/grpo/a-test/") for t in tags["eval"])

    else:
        assert not list(out.glob("*/tb"))                           # report_to: none writes no events

    # GRPO: completions.jsonl, one group per step, and a table in its report
    comp = [json.loads(x) for x in (out / "grpo" / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in comp] == [1, 1, 2, 2]
    assert set(comp[0]) == {"step", "prompt", "completion", "reward", "rewards", "advantage"}
    assert set(comp[0]["rewards"]) == {"math_accuracy", "think_format"} and "+" in comp[0]["prompt"] and comp[0]["completion"]
    report = (out / "grpo" / "report.md").read_text()
    assert "| prompt | completion | reward | rewards |" in report
    assert "| prompt | completion | reward | rewards |" in (out / "rs" / "report.md").read_text()
    index = json.loads((out / "grpo" / "plots" / "index.json").read_text())
    for k in ("kl", "entropy", "clip_ratio/region_mean", "reward_std", "groups/flat"):
        assert k in index, k

    # eval: the two test.jsonl files stay two benchmarks
    res = json.loads((out / "eval" / "results.json").read_text())
    assert {b: r["n_problems"] for b, r in res["models"]["grpo"]["benchmarks"].items()} == {"a-test": 2, "b-test": 3}

    # the figure across stages, referenced from the run's report
    assert (out / "plots" / "run.png").stat().st_size > 10_000
    assert "![run](plots/run.png)" in (out / "report.md").read_text()


def test_sft_eval_fraction_holds_out_rows_and_logs_eval_loss(tmp_path, tiny_model):
    from r1lab.pipeline import run_pipeline

    stage = {"name": "sft", "kind": "sft", "max_steps": 2, "per_device_train_batch_size": 4, "save_steps": 1,
             "eval_fraction": 0.25, "data": [{"task": "arithmetic", "n": 16, "difficulty": 1}]}
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"name": "ev", "output_dir": str(tmp_path / "out"), "model": str(tiny_model),
                                 "stages": [stage]}))
    res = run_pipeline(load_pipeline(p))[0]["metrics"]
    assert res["rows"] == 12 and res["eval_rows"] == 4 and res["final_eval_loss"] > 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval_loss" in r] == [1, 2]
    with pytest.raises(ConfigError, match="eval_fraction"):
        bad = dict(stage, eval_fraction=1.5)
        validate({"name": "ev", "model": str(tiny_model), "stages": [bad]}, file="p.yaml")
