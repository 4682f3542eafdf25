"""Issue item 4: a reward function in the user's own file, named in the pipeline YAML as `path.py:fn`, drives a
GRPO stage on the nano DeepSeek model, and TRL calls it with the dataset's columns for every completion."""
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

USER_REWARD = textwrap.dedent('''
    import json, os

    def fn(completions, **columns):
        """1 when the completion mentions the gold answer; records what it was called with."""
        with open(os.environ["MY_REWARD_LOG"], "a") as f:
            f.write(json.dumps({"n": len(completions), "columns": sorted(columns),
                                "answers": columns.get("answer"), "tasks": columns.get("task")}) + "\\n")
        return [float(a in c) for c, a in zip(completions, columns["answer"])]
''')


def test_user_reward_file_drives_grpo(tmp_path, nano_deepseek, monkeypatch):
    (tmp_path / "my_reward.py").write_text(USER_REWARD)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("MY_REWARD_LOG", str(log))
    stage = {"name": "rl", "kind": "grpo", "max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 4,
             "max_completion_length": 8, "learning_rate": 1e-3, "save_steps": 2,
             "rewards": {f"{tmp_path}/my_reward.py:fn": 1.0, "think_format": 0.5},
             "data": [{"task": "arithmetic", "n": 8, "difficulty": 1}]}
    cfg_path = tmp_path / "p.yaml"
    cfg_path.write_text(yaml.safe_dump({"name": "p", "seed": 0, "output_dir": str(tmp_path / "out"),
                                        "model": str(nano_deepseek), "stages": [stage]}))
    res = run_pipeline(load_pipeline(cfg_path))[0]
    assert res["action"] == "ran" and res["metrics"]["steps"] == 2

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2                                   # one scoring call per step
    for c in calls:
        assert c["n"] == 4                                   # 2 prompts × 2 generations
        assert {"answer", "task", "difficulty", "id", "prompts", "completion_ids"} <= set(c["columns"])
        assert c["tasks"] == ["arithmetic"] * 4
        assert c["answers"][0] == c["answers"][1] and c["answers"][2] == c["answers"][3]   # grouped per prompt
    metrics = [json.loads(line) for line in (tmp_path / "out" / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/fn/mean" in m for m in metrics)      # logged per reward function
    assert any("rewards/think_format/mean" in m for m in metrics)
    assert (tmp_path / "out" / "rl" / "model" / "config.json").exists()
    assert (tmp_path / "out" / "rl" / "plots" / "r1_zero.png").exists()
