"""Issue item 3: rejection sampling keeps exactly the samples that score 1 under the named rewards, writes them
with provenance, and its data trains a blended SFT stage in the same run. Plus the filters on hand-made samples."""
from __future__ import annotations

import json
import textwrap

import torch
import yaml

from grpo_helpers import nano_deepseek  # noqa: F401
from pipeline_helpers import tiny_tok  # noqa: F401
from r1lab.config import load_pipeline
from r1lab.pipeline import run_pipeline
from r1lab.stages.rejection_sampling import Params
from r1lab.train.sampling import select

torch.set_num_threads(1)

REWARD = textwrap.dedent('''
    import json, os

    def parity(completions, **columns):
        """1 for an even number of characters, 0.5 otherwise; logs every (prompt id, text, score)."""
        completions = [c[0]["content"] for c in completions]     # TRL's conversational completions
        out = [1.0 if len(c) % 2 == 0 else 0.5 for c in completions]
        with open(os.environ["RS_LOG"], "a") as f:
            for i, c, s in zip(columns["id"], completions, out):
                f.write(json.dumps({"id": i, "text": c, "score": s}) + "\\n")
        return out
''')


def test_keeps_only_samples_scoring_1_and_feeds_blended_sft(tmp_path, nano_deepseek, monkeypatch):
    (tmp_path / "r.py").write_text(REWARD)
    log = tmp_path / "scores.jsonl"
    monkeypatch.setenv("RS_LOG", str(log))
    stages = [
        {"name": "rs", "kind": "rejection_sampling", "n": 4, "max_new_tokens": 6, "temperature": 1.0,
         "rewards": [f"{tmp_path}/r.py:parity"], "require_format": False, "no_language_mixing": False,
         "drop_truncated": False, "dedup": False, "data": [{"task": "arithmetic", "n": 6, "difficulty": [1, 2]}]},
        {"name": "blend", "kind": "sft", "max_steps": 2, "per_device_train_batch_size": 4, "max_length": 64, "save_steps": 2,
         "data": [{"stage": "rs", "weight": 2}, {"task": "chat", "n": 4}]},
    ]
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"name": "p", "seed": 0, "output_dir": str(tmp_path / "out"),
                                   "model": str(nano_deepseek), "stages": stages}))
    res = run_pipeline(load_pipeline(cfg))
    rs = res[0]["metrics"]

    scored = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(scored) == 6 * 4 == rs["sampled"]
    want = sorted((s["id"], s["text"]) for s in scored if s["score"] == 1.0)
    assert 0 < len(want) < len(scored)                       # both outcomes occur, so the filter is tested
    kept = [json.loads(line) for line in (tmp_path / "out" / "rs" / "data" / "samples.jsonl").read_text().splitlines()]
    assert sorted((r["prompt_id"], r["completion"]) for r in kept) == want
    for r in kept:                                           # provenance
        assert r["reward"] == 1.0 and r["rewards"] == {"parity": 1.0}
        assert r["model"] == str(nano_deepseek) and r["task"] == "arithmetic" and r["prompt"] and "answer" in r
    assert rs["kept"] == len(want) and rs["rejected"] == {"incorrect": len(scored) - len(want)}
    assert sum(t["sampled"] for t in rs["per_task"]) == 24 and {t["difficulty"] for t in rs["per_task"]} == {1, 2}

    blend = res[1]
    assert blend["action"] == "ran" and blend["metrics"]["steps"] == 2
    assert blend["metrics"]["rows"] == len(want) + 4         # rejection-sampled rows + the non-reasoning rows


def _s(text, score=1.0, fmt=1.0, lang=1.0, n=5, finish="stop"):
    return {"text": text, "scores": {"acc": score}, "format": fmt, "language": lang, "n_tokens": n, "finish_reason": finish}


def test_filters():
    p = Params(data=["task:arithmetic"], rewards=["math_accuracy"], max_tokens=10, min_tokens=2, max_per_prompt=2)
    samples = [_s("a"), _s("wrong", score=0.0), _s("no format", fmt=0.0), _s("mixed", lang=0.0),
               _s("cut", finish="length"), _s("long", n=11), _s("short", n=1), _s(" a "), _s("b"), _s("c"),
               {**_s("na"), "scores": {"acc": None}}]
    kept, why = select(samples, p)
    assert [s["text"] for s in kept] == ["a", "b"]
    assert why == {"incorrect": 2, "format": 1, "language_mixing": 1, "truncated": 1, "length": 2, "duplicate": 1,
                   "cap": 1}
    p2 = Params(data=["task:arithmetic"], rewards=["math_accuracy"], require_format=False, no_language_mixing=False,
                drop_truncated=False, dedup=False, threshold=0.5)
    kept2, _ = select([_s("x", score=0.6, fmt=0.0, lang=0.0, finish="length"), _s("x", score=0.4)], p2)
    assert [s["text"] for s in kept2] == ["x"]


def test_mtp_drafted_rejection_sampling_reports_its_acceptance(tmp_path, nano_deepseek):
    """`mtp_rollouts: true` samples with MTP self-speculation (exactness: tests/test_speculative.py) and reports the
    share of drafts accepted; a vllm engine is refused in one line."""
    import pytest

    stage = {"name": "rs", "kind": "rejection_sampling", "n": 2, "max_new_tokens": 8, "temperature": 1.0,
             "rewards": ["think_format"], "threshold": 0.0, "require_format": False, "no_language_mixing": False,
             "drop_truncated": False, "mtp_rollouts": True, "data": [{"task": "arithmetic", "n": 4, "difficulty": 1}]}
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"name": "p", "seed": 0, "output_dir": str(tmp_path / "out"),
                                   "model": str(nano_deepseek), "stages": [stage]}))
    rs = run_pipeline(load_pipeline(cfg))[0]["metrics"]
    assert rs["sampled"] == 8 and 0.0 < rs["mtp_acceptance"] <= 1.0
    cfg.write_text(yaml.safe_dump({"name": "p", "seed": 0, "output_dir": str(tmp_path / "out2"),
                                   "model": str(nano_deepseek), "stages": [{**stage, "engine": "hf"}]}))
    with pytest.raises(Exception, match="mtp_rollouts needs the native rollout engine"):
        run_pipeline(load_pipeline(cfg))
