"""One generation path: GRPO (TRL's trainer, through its rollout_func), rejection sampling and eval all turn prompts
into completions with the rollout engine the pipeline names, and only with it. A fake engine swapped in for every
engine answers one canned completion; each stage must show that completion and nothing a model wrote."""
from __future__ import annotations

import json

import torch
import yaml

from grpo_helpers import nano_deepseek  # noqa: F401
from pipeline_helpers import tiny_tok  # noqa: F401
from r1lab.config import load_pipeline
from r1lab.pipeline import run_pipeline
from r1lab.rollout import Sample

torch.set_num_threads(1)
CANNED = "<think>1+1=2</think><answer>2</answer>"


class FakeEngine:
    """Every prompt gets n copies of CANNED (+ EOS), with logprob -0.5 per token."""

    def __init__(self, tokenizer, log: list):
        self.tok, self.log = tokenizer, log

    def generate(self, prompts, sampling):
        self.log.append({"prompts": len(prompts), "n": sampling.n, "max_new_tokens": sampling.max_new_tokens})
        ids = self.tok(CANNED, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        return [[Sample(list(ids), [-0.5] * len(ids), CANNED, "stop") for _ in range(sampling.n)] for _ in prompts]

    def sync_weights(self, model):
        self.log.append({"sync": True})


def test_grpo_rejection_sampling_and_eval_all_generate_through_the_rollout_engine(tmp_path, nano_deepseek, monkeypatch):
    import r1lab.rollout as rollout
    from r1lab.loading import load_tokenizer

    made: list[tuple[str, list]] = []

    def fake_get_engine(name, model, tokenizer, **kw):
        log: list = []
        made.append((rollout.resolve_engine(name), log))
        tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        return FakeEngine(tok, log)

    monkeypatch.setattr(rollout, "get_engine", fake_get_engine)
    data = [{"task": "arithmetic", "n": 4, "difficulty": 1}]
    stages = [
        {"name": "grpo", "kind": "grpo", "max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 4,
         "max_completion_length": 24, "rewards": ["math_accuracy"], "save_steps": 10, "data": data},
        {"name": "rs", "kind": "rejection_sampling", "from": "grpo", "n": 3, "max_new_tokens": 24,
         "rewards": ["think_format"], "dedup": False, "no_language_mixing": False, "data": data},
        {"name": "eval", "kind": "eval", "from": "grpo", "benchmarks": ["task:arithmetic"], "limit": 3, "samples": 2,
         "max_new_tokens": 24},
    ]
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"name": "seam", "seed": 0, "output_dir": str(tmp_path / "out"), "rollout": "native",
                                   "model": str(nano_deepseek), "stages": stages}))
    res = {r["name"]: r for r in run_pipeline(load_pipeline(cfg))}

    assert [name for name, _ in made] == ["native", "native", "native"]     # one engine per sampling stage
    grpo_log, rs_log, eval_log = (log for _, log in made)
    gens = [c for c in grpo_log if "n" in c]
    assert len(gens) == 2 and all(c == {"prompts": 2, "n": 2, "max_new_tokens": 24} for c in gens)
    assert {"sync": True} in grpo_log                                        # weights reach it after a step
    assert [c["n"] for c in rs_log] == [3] and eval_log                      # eval: greedy and sampled calls

    # what each stage saw is the canned completion: GRPO's rewards and lengths, RS's kept rows, eval's answers
    n_canned = len(load_tokenizer(str(nano_deepseek))(CANNED, add_special_tokens=False)["input_ids"]) + 1
    metrics = [json.loads(x) for x in (tmp_path / "out" / "grpo" / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in metrics if "completions/mean_length" in m]
    assert logged and all(m["completions/mean_length"] == n_canned for m in logged)
    kept = [json.loads(x) for x in (tmp_path / "out" / "rs" / "data" / "samples.jsonl").read_text().splitlines()]
    assert kept and {r["completion"] for r in kept} == {CANNED}, res["rs"]["metrics"]["rejected"]
    answers = [json.loads(x) for f in sorted((tmp_path / "out" / "eval" / "data").glob("*.jsonl"))
               for x in f.read_text().splitlines()]
    assert len(answers) == 3 * 3 and {a["completion"] for a in answers} == {CANNED}   # 2 samples + greedy each
    assert res["eval"]["action"] != "failed"


def test_rollout_logprobs_are_the_trainers_and_their_gap_is_logged(tmp_path, nano_deepseek):
    """The native engine samples with our latent-KV-cache decode; the trainer scores the same tokens with a full
    forward. `log_rollout_mismatch` logs the gap each step; for the same fp32 weights it is rounding only."""
    stage = {"name": "grpo", "kind": "grpo", "max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 4,
             "max_completion_length": 12, "save_steps": 10, "rewards": ["think_format"], "log_rollout_mismatch": True,
             "data": [{"task": "arithmetic", "n": 4, "difficulty": 1}]}
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"name": "mm", "seed": 0, "output_dir": str(tmp_path / "out"), "rollout": "native",
                                   "model": str(nano_deepseek), "stages": [stage]}))
    run_pipeline(load_pipeline(cfg))
    rows = [json.loads(x) for x in (tmp_path / "out" / "grpo" / "metrics.jsonl").read_text().splitlines()]
    gaps = [r["rollout/logprob_diff_max"] for r in rows if "rollout/logprob_diff_max" in r]
    assert len(gaps) == 2 and all(0 <= g < 1e-3 for g in gaps), gaps
