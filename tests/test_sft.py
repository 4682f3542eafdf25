"""SFT stage: kill -9 mid-run then rerun resumes (step count continues) and ends with the same weights as an
uninterrupted run; a kill inside a checkpoint save leaves no checkpoint that is trusted; LoRA changes only what
the adapter adds and the merged model reloads as a stock checkpoint; rows become prompt/completion chats."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from pipeline_helpers import tiny_model, tiny_tok  # noqa: F401  (fixtures)
from r1lab.config import load_pipeline
from r1lab.pipeline import run_pipeline
from r1lab.train.sft import to_prompt_completion

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import r1lab.stages._callback as C
    from r1lab.config import load_pipeline
    from r1lab.pipeline import run_pipeline
    path, where, at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Killer(C._StageCallback):
        def on_step_end(self, args, state, control, **kw):
            r = super().on_step_end(args, state, control, **kw)
            if where == "step" and state.global_step == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return r
        def on_save(self, args, state, control, **kw):
            if where == "save" and state.global_step == at:   # checkpoint written, marker not yet
                os.kill(os.getpid(), signal.SIGKILL)
            return super().on_save(args, state, control, **kw)

    C.make_callback = lambda ctx, total=None: Killer(ctx, total)
    run_pipeline(load_pipeline(path))
""")


def _yaml(tmp_path, tiny_model, name, **sft):
    stage = {"name": "sft", "kind": "sft", "learning_rate": 2e-3, "max_steps": 10, "per_device_train_batch_size": 4, "save_steps": 3,
             "logging_steps": 1, "data": [{"task": "arithmetic", "n": 40, "difficulty": [1, 2]}], **sft}
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "seed": 0, "output_dir": str(tmp_path / name),
                                 "model": str(tiny_model), "stages": [stage]}))
    return p


def _kill_child(path: Path, where: str, at: int):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), where, str(at)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]


@pytest.mark.parametrize("where,at,expect_resume", [("step", 7, 6), ("save", 9, 6)])
def test_kill9_then_rerun_resumes_and_matches_uninterrupted(tmp_path, tiny_model, where, at, expect_resume):
    ref = run_pipeline(load_pipeline(_yaml(tmp_path, tiny_model, "ref")))[0]
    assert ref["action"] == "ran" and ref["metrics"]["steps"] == 10

    path = _yaml(tmp_path, tiny_model, "killed")
    _kill_child(path, where, at)
    d = tmp_path / "killed" / "sft"
    assert not (d / "done.json").exists() and (d / "attempt.json").exists()
    if where == "save":   # the checkpoint being saved is there but unmarked: it must not be trusted
        assert (d / "checkpoints" / f"checkpoint-{at}").is_dir()
        assert not (d / "checkpoints" / f"checkpoint-{at}" / ".complete").exists()

    res = run_pipeline(load_pipeline(path))[0]
    assert res["action"] == "resumed"
    assert res["metrics"]["resumed_from_step"] == expect_resume        # continues, does not restart at 0
    assert res["metrics"]["steps"] == 10
    state = json.loads((d / "checkpoints" / "checkpoint-9" / "trainer_state.json").read_text())
    assert state["global_step"] == 9
    steps = [json.loads(x)["step"] for x in (d / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps == sorted(set(steps)) and steps[-1] == 10              # no duplicated / lost log lines

    a = load_file(tmp_path / "ref" / "sft" / "model" / "model.safetensors")
    b = load_file(d / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:   # same thread count, same data order, restored optimizer/scheduler/RNG: bitwise equal on CPU
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


def test_lora_changes_only_adapter_weights_and_merged_model_reloads(tmp_path, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path = _yaml(tmp_path, tiny_model, "lora", max_steps=4, lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    res = run_pipeline(load_pipeline(path))[0]
    m = res["metrics"]
    assert 0 < m["trainable_params"] < m["total_params"] / 5
    d = tmp_path / "lora" / "sft"
    base = load_file(Path(tiny_model) / "model.safetensors")
    merged = load_file(d / "model" / "model.safetensors")
    adapter = load_file(d / "adapter" / "adapter_model.safetensors")
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    # every change is exactly the adapter's scaled low-rank update
    for k in changed:
        stem = k.removesuffix(".weight")
        A = next(v for n, v in adapter.items() if stem in n and "lora_A" in n)
        B = next(v for n, v in adapter.items() if stem in n and "lora_B" in n)
        torch.testing.assert_close(merged[k], base[k] + (8 / 4) * B @ A, atol=1e-6, rtol=1e-5)
    # the merged model is a stock checkpoint: plain transformers loads it, and it equals base + adapter
    stock = AutoModelForCausalLM.from_pretrained(d / "model", dtype=torch.float32)
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), d / "adapter")
    x = torch.randint(0, stock.config.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(stock(x).logits, peft(x).logits, atol=1e-5, rtol=1e-4)


def test_rows_become_conversations():
    r = to_prompt_completion({"prompt": "Compute 1 + 1.", "solution": "<think>\n1+1=2\n</think>\n<answer>2</answer>"}, "sys")
    assert r["prompt"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "Compute 1 + 1."}]
    assert r["completion"][0]["content"].endswith("<answer>2</answer>")
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert to_prompt_completion({"messages": msgs}) == {"prompt": msgs[:1], "completion": msgs[1:]}
    with pytest.raises(ValueError, match="sft rows need"):
        to_prompt_completion({"question": "x"})


def test_a_models_own_end_tokens_survive_the_stage(tmp_path, tiny_model):
    """A generation config ending at [eos, 0] keeps both; the tokenizer's EOS joins a list that lacks it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from r1lab.train.fit import prepare

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.generation_config = GenerationConfig(eos_token_id=[tok.eos_token_id, 0], pad_token_id=7)
    prepare(model, tok)
    model.save_pretrained(tmp_path / "m")
    saved = GenerationConfig.from_pretrained(tmp_path / "m")
    assert saved.eos_token_id == [tok.eos_token_id, 0] and saved.pad_token_id == 7
    model.generation_config = GenerationConfig(eos_token_id=5)
    prepare(model, tok)
    assert model.generation_config.eos_token_id == [5, tok.eos_token_id]
