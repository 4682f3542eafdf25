"""distill stage: teacher traces generated and filtered by the teacher (rejection sampling code) plus an earlier
stage's traces train a student built from a base_model preset with the teacher's tokenizer, through the sft code."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from grpo_helpers import nano_deepseek  # noqa: F401
from pipeline_helpers import tiny_tok  # noqa: F401
from r1lab.config import load_pipeline
from r1lab.pipeline import run_pipeline
from r1lab.stages.distill import Params

torch.set_num_threads(1)


def test_distill_student_from_teacher_traces(tmp_path, nano_deepseek):
    (tmp_path / "r.py").write_text("def short(completions, **kw):\n    return [float(len(c) < 40) for c in completions]\n")
    stages = [{"name": "distill", "kind": "distill", "student": "nano", "max_steps": 3, "batch_size": 4,
               "max_length": 64, "save_steps": 3, "lr": 1e-2,
               "traces": [{"task": "arithmetic", "n": 6, "difficulty": 1}],
               "generate": {"data": [{"task": "countdown", "n": 3}], "n": 3, "max_new_tokens": 6,
                            "rewards": [f"{tmp_path}/r.py:short"], "max_per_prompt": 2,
                            "require_format": False, "drop_truncated": False}}]
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"name": "p", "seed": 0, "output_dir": str(tmp_path / "out"),
                                   "model": str(nano_deepseek), "stages": stages}))
    res = run_pipeline(load_pipeline(cfg))[0]
    m = res["metrics"]
    d = tmp_path / "out" / "distill"
    gen = [json.loads(line) for line in (d / "data" / "samples.jsonl").read_text().splitlines()]
    assert 0 < len(gen) <= 6 and all(r["rewards"] == {"short": 1.0} and len(r["completion"]) < 40 for r in gen)
    assert m["rows"] == 6 + len(gen) and m["steps"] == 3 and m["traces_kept"] == len(gen)
    cfg_student = json.loads((d / "model" / "config.json").read_text())
    teacher_tok = json.loads((nano_deepseek / "tokenizer.json").read_text())
    assert cfg_student["vocab_size"] == json.loads((nano_deepseek / "config.json").read_text())["vocab_size"]
    assert json.loads((d / "model" / "tokenizer.json").read_text())["model"] == teacher_tok["model"]
    assert m["student_params"] == m["teacher_params"]     # nano student of a nano teacher here
    start = {k: v.clone() for k, v in _weights(d / "_student_init").items()}
    after = _weights(d / "model")
    assert any(not torch.equal(start[k], after[k]) for k in start)   # the student was trained


def _weights(path):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_kd_alpha_is_rejected_until_implemented():
    with pytest.raises(ValueError, match="kd_alpha"):
        Params(traces=["task:arithmetic"], kd_alpha=0.5)
