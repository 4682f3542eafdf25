"""The pipeline's `rollout: vllm` reaches every stage that samples: rejection sampling and eval through vLLM keep the
same samples and score the same as through the native engine with the same greedy settings, and a GRPO stage trains
with vLLM rollouts (weights synced after each step) and logs the vLLM-vs-trainer logprob gap.

Runs in the vLLM venv (`bash .ci/vllm-env`, then `.venv-vllm/bin/python -m pytest -q tests/test_vllm_stages.py`);
skipped elsewhere. The model is trained for a few seconds first (tests/test_vllm.py's train_small): greedy ties on a
random model would hide real differences."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from pipeline_helpers import tiny_tok  # noqa: F401
from r1lab.rollout.vllm import vllm_importable

pytestmark = pytest.mark.skipif(not vllm_importable(), reason="vllm not importable here (run in .venv-vllm)")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_tok):
    from test_vllm import GEOM_576, train_small

    return train_small(tmp_path_factory.mktemp("trained"), tiny_tok, GEOM_576, steps=150)[0]   # (dir, loss)


def _run(tmp_path, model, rollout: str, stages: list) -> dict:
    from r1lab.config import load_pipeline
    from r1lab.pipeline import run_pipeline

    path = tmp_path / f"{rollout}.yaml"
    path.write_text(yaml.safe_dump({"name": rollout, "seed": 0, "output_dir": str(tmp_path / rollout),
                                    "rollout": rollout, "model": str(model), "stages": stages}))
    return {r["name"]: r for r in run_pipeline(load_pipeline(path))}


def test_rejection_sampling_and_eval_through_vllm_match_native(tmp_path, trained):
    data = [{"task": "arithmetic", "n": 12, "difficulty": [1, 2]}]
    stages = [
        {"name": "rs", "kind": "rejection_sampling", "n": 1, "temperature": 0.0, "max_new_tokens": 32,
         "rewards": ["think_format"], "threshold": 0.0, "require_format": False, "no_language_mixing": False,
         "drop_truncated": False, "dedup": False, "data": data},
        {"name": "eval", "kind": "eval", "benchmarks": ["task:arithmetic"], "limit": 12, "samples": 0,
         "max_new_tokens": 32},
    ]
    nat, vl = _run(tmp_path, trained, "native", stages), _run(tmp_path, trained, "vllm", stages)

    def kept(run):
        rows = (tmp_path / run / "rs" / "data" / "samples.jsonl").read_text().splitlines()
        return sorted((r["id"], r["completion"]) for r in map(json.loads, rows))

    a, b = kept("native"), kept("vllm")
    assert len(a) == 12 and a == b
    ea, eb = nat["eval"]["metrics"], vl["eval"]["metrics"]
    assert {k: v for k, v in ea.items() if "greedy" in k} == {k: v for k, v in eb.items() if "greedy" in k}


def test_grpo_with_vllm_rollouts_syncs_weights_and_logs_the_gap(tmp_path, trained):
    stages = [{"name": "grpo", "kind": "grpo", "max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 4,
               "learning_rate": 1e-3, "max_completion_length": 16, "save_steps": 10, "rewards": ["think_format"],
               "data": [{"task": "arithmetic", "n": 4, "difficulty": 1}]}]
    res = _run(tmp_path, trained, "vllm", stages)
    assert res["grpo"]["metrics"]["steps"] == 2
    rows = [json.loads(x) for x in (tmp_path / "vllm" / "grpo" / "metrics.jsonl").read_text().splitlines()]
    gaps = [r["rollout/logprob_diff_max"] for r in rows if "rollout/logprob_diff_max" in r]
    assert len(gaps) == 2 and all(g < 0.05 for g in gaps), gaps     # fp32 on both sides: rounding-size gaps
