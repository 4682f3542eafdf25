"""Data parallel: `torchrun --nproc_per_node 2` (DDP over gloo) with the same global batch as one process gives the
same loss trajectory and weights, within float-summation-order tolerance."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from r1lab.tasks.corpus import synthetic_corpus, write_corpus
from base_model.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def _args(out, tok, micro):
    return ["-m", "base_model.pretrain", "--preset", "nano", "--out", str(out), "--tokenizer", str(tok),
            "--corpus", str(tok.parent / "corpus.jsonl"), "--max-steps", "8", "--batch-size", "8",
            "--micro-batch-size", str(micro), "--ckpt-every", "8",
            "--num-threads", "1", "--no-progress", "--sample-prompts", "[]"]


def test_ddp_two_processes_match_one(tmp_path):
    tok = tmp_path / "tok"
    train_tokenizer(synthetic_corpus(seed=0, limit=500), vocab_size=512, save_dir=tok)
    write_corpus(tmp_path / "corpus.jsonl", 2000, seed=0)   # r1lab's synthetic corpus, as a file for the CLI
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    # one process: 2 micro-batches of 4 rows; two processes: 2 ranks x 2 micro-batches of 2 rows
    subprocess.run([sys.executable, *_args(one, tok, 4)], cwd=ROOT, env=env, check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        *_args(two, tok, 2)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    l1 = [json.loads(l) for l in open(one / "metrics.jsonl")]
    l2 = [json.loads(l) for l in open(two / "metrics.jsonl")]
    assert len(l1) == len(l2) == 8
    for a, b in zip(l1, l2):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * a["loss"], (a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-3 * a["grad_norm"]
    assert l1[-1]["loss"] < l1[0]["loss"]
    w1 = load_file(str(one / "model" / "model.safetensors"))
    w2 = load_file(str(two / "model" / "model.safetensors"))
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4
    for k in w1:   # the MoE bias (load all-reduced over ranks) is identical
        if k.endswith("e_score_correction_bias"):
            assert torch.equal(w1[k], w2[k])
