"""The runner: artifacts as DESIGN Seam 4, rerun is a no-op, a changed stage reruns with everything after it,
--from / --only, status, stage data artifacts feeding a later stage, a plugin stage kind."""
from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch
import yaml

from pipeline_helpers import tiny_model, tiny_tok  # noqa: F401  (fixtures)
from r1lab.cli import main
from r1lab.config import load_pipeline
from r1lab.pipeline import PipelineError, run_pipeline
from r1lab.status import status
from r1lab.stages import STAGE_KINDS, register_stage_kind
from r1lab.params import StageParams

torch.set_num_threads(1)


def _writer_kind():
    """A plugin stage kind that writes a data artifact (like rejection sampling would)."""
    mod = types.ModuleType("r1lab_test_writer")

    class Params(StageParams):
        rows: int = 8

    def run(ctx):
        rows = [{"id": f"w{i}", "prompt": f"Say {i}", "completion": f"<think>\n</think>\n<answer>{i}</answer>"}
                for i in range(ctx.params.rows)]
        path = ctx.write_jsonl("kept", rows)
        for i in range(3):
            ctx.log({"kept": i * 2.0}, step=i)
        ctx.add_report(f"wrote {len(rows)} rows")
        return {"kept": len(rows), "path": str(path)}

    mod.Params, mod.run = Params, run
    return mod


@pytest.fixture
def pipe(tmp_path, tiny_model):
    register_stage_kind("writer", _writer_kind())
    cfg = {"name": "t", "seed": 0, "output_dir": str(tmp_path / "out"), "model": str(tiny_model), "stages": [
        {"name": "a", "kind": "sft", "learning_rate": 1e-3, "max_steps": 3, "per_device_train_batch_size": 4, "save_steps": 2,
         "data": [{"task": "arithmetic", "n": 24, "difficulty": 1, "weight": 3}, {"task": "chat", "n": 8}]},
        {"name": "w", "kind": "writer", "rows": 6},
        {"name": "b", "kind": "sft", "from": "a", "learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 4,
         "data": ["stage:w", {"task": "linear", "n": 8}]},
    ]}
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(cfg))
    yield p
    STAGE_KINDS.pop("writer", None)


def _mtime(p: Path) -> float:
    return p.stat().st_mtime_ns


def test_artifacts_rerun_noop_and_downstream_rerun(pipe, capsys):
    out = pipe.parent / "out"
    res = run_pipeline(load_pipeline(pipe))
    assert [r["action"] for r in res] == ["ran", "ran", "ran"]
    for s in ("a", "b"):
        d = out / s
        assert (d / "model" / "config.json").exists() and (d / "model" / "model.safetensors").exists()
        assert (d / "model" / "tokenizer_config.json").exists()
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert rows and all("step" in r for r in rows) and any("loss" in r for r in rows)
        assert (d / "plots" / "loss.png").exists()
        assert (d / "checkpoints").is_dir()
        done = json.loads((d / "done.json").read_text())
        assert len(done["fingerprint"]) == 64 and done["metrics"]["steps"] > 0
        assert "## Final metrics" in (d / "report.md").read_text()
    assert (out / "w" / "data" / "kept.jsonl").exists() and (out / "w" / "plots" / "kept.png").exists()
    assert json.loads((out / "b" / "done.json").read_text())["metrics"]["rows"] == 14   # 6 from stage w + 8 linear
    report = (out / "report.md").read_text()
    assert all(f"[{s}]({s}/report.md)" in report for s in "awb") and "a/plots/loss.png" in report
    # mixture weights: 3:1 over 32 rows -> 24 arithmetic + 8 chat
    assert json.loads((out / "a" / "done.json").read_text())["metrics"]["rows"] == 32

    # rerun: a no-op that says so, nothing rewritten
    stamps = {s: _mtime(out / s / "done.json") for s in "awb"}
    capsys.readouterr()
    assert main(["run", str(pipe)]) == 0
    said = capsys.readouterr().out
    assert "Every stage is done" in said and said.count("done, skipped") == 3
    assert {s: _mtime(out / s / "done.json") for s in "awb"} == stamps
    assert [s.state for s in status(load_pipeline(pipe))] == ["done", "done", "done"]

    # edit b's learning_rate: only b reruns
    cfg_b = load_pipeline(pipe, ["stages.b.learning_rate=5e-4"])
    st = {s.name: s for s in status(cfg_b)}
    assert st["a"].state == "done" and st["b"].state == "stale" and "learning_rate" in st["b"].reason
    res = run_pipeline(cfg_b)
    assert [r["action"] for r in res] == ["skipped", "skipped", "ran"]
    stamps = {s: _mtime(out / s / "done.json") for s in "awb"}

    # edit a's learning_rate: a reruns, b (downstream) reruns, w (independent of a) does not
    cfg_a = load_pipeline(pipe, ["stages.a.learning_rate=5e-4", "stages.b.learning_rate=5e-4"])
    assert [s.state for s in status(cfg_a)] == ["stale", "done", "stale"]
    assert "input changed (a)" in status(cfg_a)[2].reason
    res = run_pipeline(cfg_a)
    assert [r["action"] for r in res] == ["ran", "skipped", "ran"]
    assert _mtime(out / "w" / "done.json") == stamps["w"]


def test_from_and_only(pipe):
    cfg = load_pipeline(pipe)
    with pytest.raises(PipelineError, match="--only b: it needs stage 'a'"):
        run_pipeline(cfg, only="b")
    run_pipeline(cfg)
    res = run_pipeline(cfg, from_stage="w")
    assert [r["action"] for r in res] == ["skipped", "ran", "ran"]
    res = run_pipeline(cfg, only="a")
    assert [(r["name"], r["action"]) for r in res] == [("a", "ran")]
    with pytest.raises(PipelineError, match="no such stage"):
        run_pipeline(cfg, from_stage="zzz")


def test_cli_help_validate_status(pipe, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    h = capsys.readouterr().out
    for word in ("run", "validate", "status", "rewards", "eval", "--set"):
        assert word in h
    assert main(["validate", str(pipe)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["status", str(pipe), "--set", "stages.a.learning_rate=0.1"]) == 0
    assert "pending" in capsys.readouterr().out
    assert main(["tasks"]) == 0 and "countdown" in capsys.readouterr().out
