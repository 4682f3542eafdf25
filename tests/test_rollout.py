"""Rollout engines: batched native generation agrees with unbatched transformers generate, logprobs agree with
a forward pass, seeds reproduce, stop strings and lengths end samples; DeepSeek's fast path agrees with
transformers' own DeepseekV3 on the same stock checkpoint."""
from __future__ import annotations

import pytest
import torch

from pipeline_helpers import tiny_model, tiny_tok  # noqa: F401  (fixtures)
from r1lab.rollout import RolloutEngine, SamplingParams, get_engine
from r1lab.loading import load_model, load_tokenizer

torch.set_num_threads(1)


def _prompts(tok, texts):
    return [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True,
                                    return_dict=True)["input_ids"] for t in texts]


TEXTS = ["Compute 3 + 4.", "Solve for x: 2x + 1 = 7. Give the value", "Repeat exactly: river"]


def test_native_batched_greedy_matches_unbatched_generate_and_logprobs(tiny_model):
    model, tok = load_model(str(tiny_model)), load_tokenizer(str(tiny_model))
    eng = get_engine("native", model, tok)
    assert isinstance(eng, RolloutEngine)
    prompts = _prompts(tok, TEXTS)
    out = eng.generate(prompts, SamplingParams(temperature=0, max_new_tokens=12))
    assert len(out) == 3 and all(len(g) == 1 for g in out)
    for p, (s,) in zip(prompts, out):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), do_sample=False,
                             max_new_tokens=12, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        assert s.token_ids == ref[: len(s.token_ids)]
        assert s.finish_reason == ("stop" if s.token_ids[-1] == tok.eos_token_id else "length")
        if s.finish_reason == "length":
            assert len(s.token_ids) == 12
        with torch.no_grad():
            logits = model(torch.tensor([p + s.token_ids])).logits[0, len(p) - 1:-1]
        lp = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(s.token_ids)[:, None]).squeeze(-1)
        torch.testing.assert_close(torch.tensor(s.logprobs), lp, atol=1e-4, rtol=1e-4)


def test_native_sampling_is_seeded_and_returns_n(tiny_model):
    eng = get_engine("native", str(tiny_model), str(tiny_model), batch_size=2)
    prompts = _prompts(eng.tok, TEXTS)
    sp = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=8, seed=7)
    a, b = eng.generate(prompts, sp), eng.generate(prompts, sp)
    assert [[s.token_ids for s in g] for g in a] == [[s.token_ids for s in g] for g in b]
    assert all(len(g) == 3 for g in a)
    c = eng.generate(prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=8))
    assert [[s.token_ids for s in g] for g in a] != [[s.token_ids for s in g] for g in c]


def test_stop_string_cuts_text(tiny_model):
    eng = get_engine("native", str(tiny_model), str(tiny_model))
    prompts = _prompts(eng.tok, TEXTS[:1])
    full = eng.generate(prompts, SamplingParams(temperature=0, max_new_tokens=16))[0][0]
    if len(full.text) < 4:
        pytest.skip("greedy output too short to pick a stop string")
    stop = full.text[2:4]
    s = eng.generate(prompts, SamplingParams(temperature=0, max_new_tokens=16, stop=[stop]))[0][0]
    assert s.finish_reason == "stop" and stop not in s.text and full.text.startswith(s.text)
    assert len(s.token_ids) <= len(full.token_ids)


def test_deepseek_fast_path_matches_transformers_deepseek_v3(tmp_path, tiny_tok):
    base_model = pytest.importorskip("base_model")
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(str(tiny_tok))
    torch.manual_seed(0)
    ours = base_model.DeepSeekForCausalLM(base_model.get_preset("nano", vocab_size=len(tok)))
    ours.save_pretrained(tmp_path)
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert type(ref).__name__ == "DeepseekV3ForCausalLM"
    fast, slow = get_engine("native", ours, tok), get_engine("native", ref, tok)
    assert fast._fast_path() is not None and slow._fast_path() is None
    prompts = _prompts(tok, TEXTS)
    sp = SamplingParams(temperature=0, max_new_tokens=10)
    a, b = fast.generate(prompts, sp), slow.generate(prompts, sp)
    for ga, gb in zip(a, b):
        assert ga[0].token_ids == gb[0].token_ids
        assert ga[0].text == gb[0].text and ga[0].finish_reason == gb[0].finish_reason
        torch.testing.assert_close(torch.tensor(ga[0].logprobs), torch.tensor(gb[0].logprobs), atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
def test_vllm_engine_matches_native_greedy(tiny_model):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("vllm")
    vl = get_engine("vllm", str(tiny_model), str(tiny_model), gpu_memory_utilization=0.2)
    nat = get_engine("native", load_model(str(tiny_model)).cuda(), str(tiny_model))
    prompts = _prompts(nat.tok, TEXTS)
    sp = SamplingParams(temperature=0, max_new_tokens=8)
    assert [g[0].token_ids for g in vl.generate(prompts, sp)] == [g[0].token_ids for g in nat.generate(prompts, sp)]
