"""vLLM rollouts (r1lab.rollout.vllm.VLLMEngine) agree with our model on a trained checkpoint.

Runs where `import vllm` works, i.e. in the vLLM venv (`bash .ci/vllm-env`, then
`.venv-vllm/bin/python -m pytest -q tests/test_vllm.py`); skipped elsewhere.
  * MLA path (head 576 = kv_lora_rank 512 + qk_rope_head_dim 64, vLLM's CPU MLA kernel), in this process:
    greedy tokens over 64 new tokens on 64 prompts, prompt logprobs, and the same after sync_weights;
  * non-MLA path (any other head; VLLM_MLA_DISABLE=1) through the pipe worker (a child of this interpreter).
The model is trained for a few seconds first: a random model's next-token distributions are nearly flat, so
greedy ties (and rope errors) would hide in noise.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

from r1lab.rollout.vllm import vllm_importable

pytestmark = pytest.mark.skipif(not vllm_importable(), reason="vllm not importable here (run in .venv-vllm)")

N_PROMPTS, NEW = 64, 64
GEOM_576 = dict(kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=32, v_head_dim=32)
GEOM_80 = dict(kv_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32)


def _texts():
    from r1lab.tasks import TASKS, task_rows

    return [r["prompt"] + "\n" + r["solution"] for t in TASKS for r in task_rows(t, n=150, seed=7)]


def train_small(save_dir, tok_dir, geometry: dict, steps: int = 150, seed: int = 0):
    """A 2-layer MoE DeepSeek model with the given MLA geometry, trained `steps` AdamW steps on task text."""
    from base_model import DeepSeekForCausalLM, get_preset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = get_preset("nano", vocab_size=len(tok), hidden_size=128, intermediate_size=256, moe_intermediate_size=64,
                     num_attention_heads=4, num_key_value_heads=4, q_lora_rank=64, max_position_embeddings=512,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **geometry)
    torch.manual_seed(seed)
    model = DeepSeekForCausalLM(cfg)
    ids = [t for s in _texts() for t in tok(s).input_ids + [tok.eos_token_id]]
    seq = 64
    data = torch.tensor(ids[: len(ids) // seq * seq]).view(-1, seq)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(0, len(data), (16,), generator=g)]
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_expert_bias()
    model.eval()
    model.save_pretrained(save_dir)
    tok.save_pretrained(save_dir)
    return save_dir, float(loss)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    from pipeline_helpers import make_tokenizer

    return make_tokenizer(tmp_path_factory.mktemp("vtok"))


@pytest.fixture(scope="module")
def trained_576(tmp_path_factory, tok_dir):
    path, loss = train_small(tmp_path_factory.mktemp("m576"), tok_dir, GEOM_576)
    assert loss < 2.5, loss
    return path


@pytest.fixture(scope="module")
def prompts(tok_dir):
    from transformers import AutoTokenizer

    from r1lab.tasks import TASKS, task_rows

    tok = AutoTokenizer.from_pretrained(tok_dir)
    rows = [r for t in TASKS for r in task_rows(t, n=40, seed=99)]
    rows = rows[:: max(1, len(rows) // N_PROMPTS)][:N_PROMPTS]
    return [tok(r["prompt"] + "\n").input_ids for r in rows]


def _ours(path):
    from base_model import DeepSeekForCausalLM

    return DeepSeekForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def native_greedy(model, prompts, n):
    from base_model.generate import generate

    return [g[0] for g in generate(model, prompts, max_new_tokens=n, eos_token_id=None)]


def compare_greedy(model, engine, prompts, n=NEW):
    """(identical prompts, [(prompt index, first divergent step, our top-2 logit margin there)])."""
    from r1lab.rollout.base import SamplingParams

    ours = native_greedy(model, prompts, n)
    theirs = engine.generate(prompts, SamplingParams(temperature=0, max_new_tokens=n), ignore_eos=True)
    same, diverged = 0, []
    for i, (p, a, b) in enumerate(zip(prompts, ours, theirs)):
        b = b[0]
        if a.token_ids == b.token_ids:
            same += 1
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-3
            continue
        k = next(j for j, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y)
        with torch.no_grad():
            logits = model(torch.tensor([p + a.token_ids[:k]])).logits[0, -1].float()
        top = logits.topk(2).values
        diverged.append((i, k, float(top[0] - top[1])))
    return same, diverged


def prompt_logprob_gap(model, engine, prompts):
    got = engine.prompt_logprobs(prompts)
    worst = 0.0
    for p, lp in zip(prompts, got):
        with torch.no_grad():
            ref = torch.log_softmax(model(torch.tensor([p])).logits[0].float(), -1)
        worst = max(worst, max(abs(lp[i] - float(ref[i - 1, p[i]])) for i in range(1, len(p))))
    return worst


def _report(name, same, diverged, gap):
    print(f"\n[{name}] greedy: {same}/{len(diverged) + same} prompts identical over {NEW} tokens; "
          f"divergences (prompt, step, our top-2 margin): {diverged}; prompt-logprob max |diff| {gap:.2e}")


def _assert_agree(same, diverged, gap):
    assert same >= 0.95 * (same + len(diverged)), diverged
    for _, _, margin in diverged:        # every divergence must be a near-tie in our own logits
        assert margin < 1e-3, diverged
    assert gap < 1e-3


@pytest.fixture(scope="module")
def engine_576(trained_576):
    from r1lab.rollout.vllm import VLLMEngine

    eng = VLLMEngine(str(trained_576), kv_cache_memory_bytes=1 << 28)
    yield eng
    eng.close()


def test_mla_576_greedy_and_prompt_logprobs_match_ours(trained_576, engine_576, prompts):
    assert engine_576.info["mla"] is True          # served by vLLM's CPU MLA kernel (head 576)
    model = _ours(trained_576)
    same, diverged = compare_greedy(model, engine_576, prompts)
    gap = prompt_logprob_gap(model, engine_576, prompts)
    _report("MLA 576", same, diverged, gap)
    _assert_agree(same, diverged, gap)


def test_mla_576_after_sync_weights_matches_ours_on_the_new_weights(trained_576, engine_576, prompts):
    model = _ours(trained_576)
    with torch.no_grad():          # a different model: every tensor moves, routing bias included
        g = torch.Generator().manual_seed(3)
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.05 * t.std() * torch.randn(t.shape, generator=g))
    engine_576.sync_weights(model)
    print(f"\nsync_weights: {engine_576.last_sync_s:.3f} s ({engine_576.reload_s:.3f} s inside vLLM)")
    same, diverged = compare_greedy(model, engine_576, prompts[:16])
    gap = prompt_logprob_gap(model, engine_576, prompts[:16])
    _report("MLA 576 after sync", same, diverged, gap)
    _assert_agree(same, diverged, gap)


def test_sampling_returns_n_samples_with_protocol_logprobs(trained_576, engine_576, prompts):
    """temperature 0.7, no top-k/p: each sample's logprobs are log softmax(logits / 0.7) of its tokens."""
    from r1lab.rollout.base import SamplingParams

    model = _ours(trained_576)
    engine_576.sync_weights(model)
    sp = SamplingParams(n=3, temperature=0.7, max_new_tokens=24, seed=5)
    groups = engine_576.generate(prompts[:4], sp)
    assert [len(g) for g in groups] == [3] * 4
    for p, group in zip(prompts[:4], groups):
        for s in group:
            assert s.finish_reason in ("stop", "length") and len(s.logprobs) == len(s.token_ids) > 0
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([p + s.token_ids])).logits[0].float() / 0.7, -1)
            ref = [float(lp[len(p) - 1 + j, t]) for j, t in enumerate(s.token_ids)]
            assert max(abs(a - b) for a, b in zip(ref, s.logprobs)) < 1e-3
    again = engine_576.generate(prompts[:4], sp)
    assert [[s.token_ids for s in g] for g in again] == [[s.token_ids for s in g] for g in groups]


def test_non_mla_path_through_the_pipe_worker(tmp_path_factory, tok_dir, prompts):
    """Head 80 (≠ 576): vLLM's non-MLA path, in a worker process speaking the pipe protocol."""
    from r1lab.rollout.vllm import VLLMEngine

    path, _ = train_small(tmp_path_factory.mktemp("m80"), tok_dir, GEOM_80)
    model = _ours(path)
    with VLLMEngine(str(path), python=sys.executable, kv_cache_memory_bytes=1 << 28) as eng:
        assert eng.info["mla"] is False
        same, diverged = compare_greedy(model, eng, prompts)
        gap = prompt_logprob_gap(model, eng, prompts)
        _report("non-MLA (worker)", same, diverged, gap)
        _assert_agree(same, diverged, gap)
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.mul_(1.03)
        eng.sync_weights(model)
        same, diverged = compare_greedy(model, eng, prompts[:16])
        _assert_agree(same, diverged, prompt_logprob_gap(model, eng, prompts[:16]))
