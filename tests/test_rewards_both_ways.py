"""A reward written for TRL works unchanged in every r1lab stage that scores: conversational completions,
`completion_ids`, `trainer_state`, `log_metric`, `log_extra`, an `async def` reward and a numpy return, in GRPO (TRL
calls it) and in rejection sampling (r1lab calls it the same way)."""
from __future__ import annotations

import json
import textwrap

import torch
import yaml

from grpo_helpers import nano_deepseek  # noqa: F401
from pipeline_helpers import tiny_tok  # noqa: F401
from r1lab.config import load_pipeline
from r1lab.pipeline import run_pipeline

torch.set_num_threads(1)

TRL_REWARDS = textwrap.dedent('''
    import json, os
    import numpy as np

    def length_parity(completions, completion_ids, trainer_state, log_metric, log_extra, **kwargs):
        """TRL style: conversational completions; logs a metric and an extra column; records how it was called."""
        texts = [c[0]["content"] for c in completions]
        assert len(completion_ids) == len(texts) and all(isinstance(i, list) for i in completion_ids)
        out = [1.0 if len(t) % 2 == 0 else 0.0 for t in texts]
        log_metric("length_parity/even", sum(out) / len(out))
        log_extra("parity_seen", [len(t) % 2 for t in texts])
        with open(os.environ["TRL_REWARD_LOG"], "a") as f:
            f.write(json.dumps({"step": trainer_state.global_step, "roles": sorted({c[0]["role"] for c in completions}),
                                "n": len(texts)}) + "\\n")
        return out

    async def always_half(completions, **kwargs):
        """async, and returns a numpy array."""
        return np.full(len(completions), 0.5, dtype=np.float32)
''')


def test_trl_rewards_work_in_grpo_and_rejection_sampling(tmp_path, nano_deepseek, monkeypatch):
    (tmp_path / "trl_rewards.py").write_text(TRL_REWARDS)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("TRL_REWARD_LOG", str(log))
    specs = {f"{tmp_path}/trl_rewards.py:length_parity": 1.0, f"{tmp_path}/trl_rewards.py:always_half": 1.0}
    data = [{"task": "arithmetic", "n": 4, "difficulty": 1}]
    stages = [
        {"name": "grpo", "kind": "grpo", "max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 4,
         "max_completion_length": 8, "save_steps": 10, "rewards": specs, "data": data},
        {"name": "rs", "kind": "rejection_sampling", "from": "grpo", "n": 2, "max_new_tokens": 8, "threshold": 0.5,
         "rewards": specs, "require_format": False, "no_language_mixing": False, "drop_truncated": False,
         "dedup": False, "data": data},
    ]
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"name": "p", "seed": 0, "output_dir": str(tmp_path / "out"), "rollout": "native",
                                   "model": str(nano_deepseek), "stages": stages}))
    res = {r["name"]: r for r in run_pipeline(load_pipeline(cfg))}

    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(c["step"], c["n"]) for c in calls] == [(0, 4), (1, 4), (0, 8)]   # GRPO's two steps, then one RS batch
    assert all(c["roles"] == ["assistant"] for c in calls)
    grpo_metrics = [json.loads(x) for x in (tmp_path / "out" / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert any("length_parity/even" in m for m in grpo_metrics)
    assert any(m.get("rewards/always_half/mean") == 0.5 for m in grpo_metrics)
    rs_metrics = [json.loads(x) for x in (tmp_path / "out" / "rs" / "metrics.jsonl").read_text().splitlines()]
    assert any("length_parity/even" in m for m in rs_metrics)
    kept = [json.loads(x) for x in (tmp_path / "out" / "rs" / "data" / "samples.jsonl").read_text().splitlines()]
    assert kept and all(r["rewards"]["always_half"] == 0.5 for r in kept)
    assert all(r["rewards"]["length_parity"] == 1.0 and r["parity_seen"] == 0 for r in kept)
    assert res["rs"]["metrics"]["kept"] == len(kept)
