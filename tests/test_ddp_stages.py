"""`torchrun --nproc_per_node 2 r1lab run`: every stage runs on both ranks (sft and grpo data-parallel through TRL,
rejection sampling and eval sharded by batch), rank 0 alone writes, and the run is the one-process run's: SFT weights
equal within float rounding at the same global batch, the eval's every answer identical."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from pipeline_helpers import tiny_model, tiny_tok  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]


def _pipeline(tmp_path, model, name, per_device):
    data = [{"task": "arithmetic", "n": 16, "difficulty": 1}]
    stages = [
        {"name": "sft", "kind": "sft", "learning_rate": 2e-3, "per_device_train_batch_size": per_device, "max_steps": 4,
         "save_steps": 4, "max_length": 64, "data": data},
        {"name": "grpo", "kind": "grpo", "from": "sft", "learning_rate": 1e-3, "num_generations": 2,
         "per_device_train_batch_size": 4, "max_steps": 1, "max_completion_length": 8, "save_steps": 10,
         "rewards": ["think_format"], "data": data},
        {"name": "rs", "kind": "rejection_sampling", "from": "sft", "n": 2, "max_new_tokens": 8, "batch_prompts": 2,
         "rewards": ["think_format"], "threshold": 0.0, "require_format": False, "no_language_mixing": False,
         "drop_truncated": False, "dedup": False, "data": [{"task": "arithmetic", "n": 6, "difficulty": 1}]},
        {"name": "eval", "kind": "eval", "from": "sft", "benchmarks": ["task:arithmetic"], "limit": 6, "samples": 2,
         "batch_size": 4, "max_new_tokens": 8},
    ]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "seed": 0, "output_dir": str(tmp_path / name), "rollout": "native",
                                    "model": str(model), "stages": stages}))
    return path


def _run(cmd, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "R1LAB_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return r


def test_two_processes_give_one_set_of_artifacts_and_the_one_process_results(tmp_path, tiny_model):
    one = _run([sys.executable, "-m", "r1lab.cli", "run", str(_pipeline(tmp_path, tiny_model, "one", 4))], tmp_path)
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "r1lab.cli", "run", str(_pipeline(tmp_path, tiny_model, "two", 2))], tmp_path)
    assert two.stdout.count("r1lab threads:") <= 1 and two.stdout.count("sft (sft)") == 1   # one banner, one log

    for stage in ("sft", "grpo", "rs", "eval"):
        done = json.loads((tmp_path / "two" / stage / "done.json").read_text())
        assert done["name"] == stage
    assert not list((tmp_path / "two").rglob("*.tmp"))                      # no half-written file left by a race

    a = load_file(tmp_path / "one" / "sft" / "model" / "model.safetensors")
    b = load_file(tmp_path / "two" / "sft" / "model" / "model.safetensors")
    start = load_file(Path(tiny_model) / "model.safetensors")
    assert any(not torch.equal(a[k], start[k]) for k in a)                  # SFT moved the weights
    for k in a:                              # 2 ranks x 2 rows = 1 rank x 4 rows: the same steps, up to rounding
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)

    def answers(run):
        f = next((tmp_path / run / "eval" / "data").glob("*.jsonl"))
        return [(r["id"], r["sample"], r["completion"]) for r in map(json.loads, f.read_text().splitlines())]

    assert answers("one") == answers("two") and len(answers("one")) == 6 * 3
    res = [json.loads((tmp_path / r / "eval" / "results.json").read_text()) for r in ("one", "two")]
    assert res[0]["models"]["sft"]["benchmarks"] == res[1]["models"]["sft"]["benchmarks"] or \
        {k: v for k, v in res[0]["models"]["sft"]["benchmarks"]["arithmetic"].items() if "time" not in k and "per_s" not in k} == \
        {k: v for k, v in res[1]["models"]["sft"]["benchmarks"]["arithmetic"].items() if "time" not in k and "per_s" not in k}
    kept = [sorted(json.loads(x)["id"] for x in (tmp_path / r / "rs" / "data" / "samples.jsonl").read_text().splitlines())
            for r in ("one", "two")]
    assert kept[0] == kept[1] and len(kept[0]) == 6 * 2                    # threshold 0: every sample kept, once
