"""The pipeline's `eval` stage: one YAML stage evaluates several models into one table and the artifact layout."""
import json

import pytest
import yaml

from eval_helpers import one_thread, tiny_llama, train_tokenizer  # noqa: F401 (fixture)
from r1lab.config import validate
from r1lab.pipeline import run_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eval_stage_in_a_pipeline(tmp_path):
    tok = train_tokenizer()
    a, b = tmp_path / "llama_a", tmp_path / "llama_b"
    tiny_llama(a, tok, seed=0)
    tiny_llama(b, tok, seed=1)
    raw = {"name": "evaltest", "seed": 3, "output_dir": str(tmp_path / "out"), "model": str(a),
           "stages": [{"name": "eval", "kind": "eval", "models": [str(a), str(b)],
                       "benchmarks": ["gsm8k", "task:arithmetic"], "samples": 2, "limit": 3,
                       "max_new_tokens": 4, "engine": "hf"}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    cfg = validate(raw, file=str(tmp_path / "p.yaml"), base_dir=tmp_path)
    run_pipeline(cfg)
    d = tmp_path / "out" / "eval"
    res = json.loads((d / "results.json").read_text())
    assert list(res["models"]) == ["llama_a", "llama_b"] and res["config"]["seed"] == 3
    assert set(res["models"]["llama_b"]["benchmarks"]) == {"gsm8k", "arithmetic"}
    assert res["models"]["llama_b"]["benchmarks"]["arithmetic"]["kind"] == "math"
    for m in ("llama_a", "llama_b"):
        for bench in ("gsm8k", "arithmetic"):
            assert len((d / "data" / f"{m}.{bench}.jsonl").read_text().splitlines()) == 3 * 3
    done = json.loads((d / "done.json").read_text())
    flat = done.get("metrics") or done
    assert "llama_a/gsm8k/pass@1" in json.dumps(flat)
    report = (d / "report.md").read_text()
    assert "| llama_a | gsm8k |" in report and "| llama_b | arithmetic |" in report
    assert (d / "plots" / "benchmarks.png").exists() and (d / "plots" / "pass_at_k.png").exists()


def test_eval_stage_params_and_model_resolution(tmp_path, monkeypatch):
    from r1lab.stages.base import StageContext
    from r1lab.stages.eval import Params, depends_on, resolve_models
    p = Params(models=["sft", "grpo"], benchmarks=["gsm8k"])
    assert depends_on(p) == ["sft", "grpo"]
    with pytest.raises(Exception, match="samplez"):
        Params(samplez=3)
    ctx = StageContext(name="eval", kind="eval", params=p, out_dir=tmp_path / "eval", output_dir=tmp_path, seed=0,
                       model_spec="tiny", from_stage="grpo",
                       _finished_models={"sft": "/o/sft/model", "grpo": "/o/grpo/model"})
    assert resolve_models(ctx, p) == {"sft": "/o/sft/model", "grpo": "/o/grpo/model"}
    assert resolve_models(ctx, Params(models="all")) == {"sft": "/o/sft/model", "grpo": "/o/grpo/model"}
    assert resolve_models(ctx, Params()) == {"grpo": str(tmp_path / "grpo" / "model")}
    with pytest.raises(ValueError, match="neither a finished stage"):
        resolve_models(ctx, Params(models=["rl"]))
    # a path resolves from the working directory when it exists there (as `model:` does), else next to the YAML;
    # .../STAGE/model is labelled STAGE
    (tmp_path / "runs" / "r1" / "final" / "model").mkdir(parents=True)
    yaml_dir = tmp_path / "pipelines"
    ctx.base_dir = yaml_dir
    monkeypatch.chdir(tmp_path)
    assert resolve_models(ctx, Params(models=["runs/r1/final/model"])) == {"final": "runs/r1/final/model"}
    assert resolve_models(ctx, Params(models=["./other"])) == {"other": str(yaml_dir / "other")}
