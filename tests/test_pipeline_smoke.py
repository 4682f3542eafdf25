"""pipelines/r1_smoke.yaml end to end: pretrain -> cold-start SFT on the nano DeepSeek model, artifacts as DESIGN
Seam 4, a rerun that is a no-op saying every stage is done, and an lr edit that reruns that stage only."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("base_model.pretrain")

from r1lab.cli import main  # noqa: E402
from r1lab.config import load_pipeline  # noqa: E402
from r1lab.status import status  # noqa: E402

SMOKE = Path(__file__).resolve().parents[1] / "pipelines" / "r1_smoke.yaml"


def test_r1_smoke_runs_reruns_as_noop_and_reruns_after_an_edit(tmp_path, capsys):
    out = tmp_path / "smoke"
    t0 = time.time()
    assert main(["run", str(SMOKE), "--output-dir", str(out)]) == 0
    first = time.time() - t0
    for stage in ("pretrain", "cold_start"):
        d = out / stage
        assert (d / "model" / "config.json").exists() and (d / "model" / "model.safetensors").exists()
        assert json.loads((d / "model" / "config.json").read_text())["model_type"] == "deepseek_v3"
        assert (d / "metrics.jsonl").exists() and (d / "report.md").exists() and (d / "done.json").exists()
        assert (d / "checkpoints").is_dir() and list((d / "plots").glob("*.png"))
    sft = json.loads((out / "cold_start" / "done.json").read_text())["metrics"]
    assert sft["steps"] == 8 and sft["final_loss"] < sft["first_loss"]
    assert (out / "report.md").exists()

    capsys.readouterr()
    assert main(["run", str(SMOKE), "--output-dir", str(out)]) == 0
    said = capsys.readouterr().out
    assert "Every stage is done" in said and said.count("done, skipped") == 2

    stamp = (out / "pretrain" / "done.json").stat().st_mtime_ns
    assert main(["run", str(SMOKE), "--output-dir", str(out), "--set", "stages.cold_start.learning_rate=5e-4"]) == 0
    said = capsys.readouterr().out
    assert "pretrain (pretrain): done, skipped" in said and "cold_start" in said
    assert (out / "pretrain" / "done.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "cold_start" / "done.json").read_text())["config"]["params"]["learning_rate"] == 5e-4
    cfg = load_pipeline(SMOKE, ["stages.cold_start.learning_rate=5e-4"])
    cfg.output_dir = str(out)
    assert [s.state for s in status(cfg)] == ["done", "done"]
    print(f"r1_smoke first run: {first:.1f} s")
