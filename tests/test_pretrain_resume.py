"""Exact resume: a run killed with SIGKILL mid-run and resumed ends with bitwise the same weights as an
uninterrupted run (CPU, same thread count)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from r1lab.tasks.corpus import synthetic_corpus, write_corpus
from base_model.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def _cmd(out, tok, *extra):
    return [sys.executable, "-m", "base_model.pretrain", "--preset", "nano", "--out", str(out), "--tokenizer", str(tok),
            "--corpus", str(tok.parent / "corpus.jsonl"), "--max-steps", "12", "--ckpt-every", "3", "--num-threads", "1",
            "--no-progress",
            "--sample-prompts", "[]", *extra]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_kill9_and_resume_is_bitwise_identical(tmp_path):
    tok = tmp_path / "tok"
    train_tokenizer(synthetic_corpus(seed=0, limit=500), vocab_size=512, save_dir=tok)
    write_corpus(tmp_path / "corpus.jsonl", 2000, seed=0)   # r1lab's synthetic corpus, as a file for the CLI
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(_cmd(a, tok), cwd=ROOT, env=_env(), check=True, capture_output=True)

    p = subprocess.Popen(_cmd(b, tok, "--sleep-per-step", "0.4"), cwd=ROOT, env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (b / "checkpoints" / "step_0000006").exists():
        assert p.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.5)                                     # past step 6, before the end: really mid-run
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL
    assert not (b / "model").exists()                   # it did not finish
    steps_done = max(int(d.name.split("_")[1]) for d in (b / "checkpoints").glob("step_*"))
    assert 6 <= steps_done < 12

    r = subprocess.run(_cmd(b, tok, "--resume"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed from" in r.stderr
    wa = load_file(str(a / "checkpoints" / "step_0000012" / "model.safetensors"))
    wb = load_file(str(b / "checkpoints" / "step_0000012" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)                  # bitwise, weights and MoE biases
    sa = torch.load(a / "checkpoints" / "step_0000012" / "state.pt", weights_only=False)
    sb = torch.load(b / "checkpoints" / "step_0000012" / "state.pt", weights_only=False)
    assert sa["packer"] == sb["packer"]                                 # same data position
    for k, st in sa["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg"], sb["optimizer"]["state"][k]["exp_avg"])
    # the metrics log continues where it stopped, without duplicates
    steps = [int(l.split('"step": ')[1].split(",")[0]) for l in open(b / "metrics.jsonl")]
    assert steps == list(range(1, 13))
