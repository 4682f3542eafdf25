"""Fast generation: the latent-cache absorbed decode and MTP self-speculation give exactly the greedy tokens of
full recomputation without a cache, on a batch of left-padded prompts of different lengths."""
import pytest
import torch

from base_model import DeepSeekForCausalLM, get_preset
from base_model.generate import generate
from base_model.sampling import sample


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = DeepSeekForCausalLM(get_preset("nano")).eval()
    with torch.no_grad():   # sharpen the random model so greedy steps are far from ties
        m.lm_head.weight.mul_(8)
        for mod in m.modules():
            if hasattr(mod, "e_score_correction_bias"):
                mod.e_score_correction_bias.copy_(0.05 * torch.randn_like(mod.e_score_correction_bias))
    return m


PROMPTS = [[5, 17, 99, 3, 250, 7], [42], [300, 301, 302, 11, 12, 13, 14, 15, 16, 17, 18], [9, 9, 9]]


def greedy_no_cache(model, prompt, n):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_cached_absorbed_decode_equals_recompute(model):
    out = generate(model, PROMPTS, max_new_tokens=24)
    for prompt, res in zip(PROMPTS, out):
        assert res[0].token_ids == greedy_no_cache(model, prompt, 24)
        assert res[0].finish_reason == "length" and len(res[0].logprobs) == 24


def test_absorbed_form_is_used_and_equals_naive(model):
    """Decode through the absorbed path vs the same cache expanded through kv_b_proj (naive): same logits."""
    ids = torch.tensor([PROMPTS[2]])
    cache = model.new_cache(1, 32)
    with torch.no_grad():
        model(ids[:, :-1], past_key_values=cache)
        absorbed = model(ids[:, -1:], past_key_values=cache).logits
        full = model(ids).logits[:, -1:]
    assert (absorbed - full).abs().max() < 1e-4


def test_cache_keyword_of_every_transformers_version(model):
    """transformers >= 5.24 names the cache `cache` (and renames `past_key_values=` to it in every ModelOutput's
    __init__); older versions say `past_key_values`. Both keywords reach our LatentCache, the output carries it
    as `cache`, and the decode step's logits equal full recomputation either way."""
    ids = torch.tensor([PROMPTS[2]])
    with torch.no_grad():
        full = model(ids).logits[:, -1:]
        for kw in ("cache", "past_key_values"):
            cache = model.new_cache(1, 32)
            first = model(ids[:, :-1], **{kw: cache})
            assert first.cache is cache and cache.length == ids.shape[1] - 1
            step = model(ids[:, -1:], **{kw: cache}).logits
            assert (step - full).abs().max() < 1e-4, kw


def test_mtp_speculative_equals_greedy(model):
    plain = generate(model, PROMPTS, max_new_tokens=20)
    spec = generate(model, PROMPTS, max_new_tokens=20, use_mtp=True)
    for p, s in zip(plain, spec):
        assert s[0].token_ids == p[0].token_ids
    stats = spec[0][0].stats
    assert stats["mtp_proposed"] > 0 and 0.0 <= stats["mtp_acceptance"] <= 1.0


def test_mtp_acceptance_bookkeeping(model):
    """Each verify step emits 2 tokens when the draft is accepted, 1 when not, plus the first from prefill."""
    spec = generate(model, PROMPTS[:1], max_new_tokens=16, use_mtp=True)[0][0]
    s = spec.stats
    # every verify step emits 2 tokens when accepted, 1 otherwise; plus the first token from prefill
    steps = s["mtp_proposed"]
    assert 1 + steps + s["mtp_accepted"] >= len(spec.token_ids)


def test_eos_and_stop(model):
    ref = generate(model, [PROMPTS[0]], max_new_tokens=12)[0][0].token_ids
    eos = ref[5]
    out = generate(model, [PROMPTS[0]], max_new_tokens=12, eos_token_id=eos)[0][0]
    assert out.token_ids == ref[: ref.index(eos) + 1] and out.finish_reason == "stop"


def test_sampling_reproducible_and_respects_top_k():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, _ = sample(logits, 1.0, 1.0, 5, g1)
    b, _ = sample(logits, 1.0, 1.0, 5, g2)
    assert torch.equal(a, b)
    top5 = logits.topk(5, -1).indices
    for _ in range(20):
        t, _ = sample(logits, 1.0, 1.0, 5, None)
        assert all(t[i] in top5[i] for i in range(4))
    t, lp = sample(logits, 0.7, 0.01, 0, None)     # tiny top_p -> the argmax
    assert torch.equal(t, logits.argmax(-1))
    assert torch.allclose(lp, torch.log_softmax(logits / 0.7, -1).gather(1, t[:, None])[:, 0])


def test_sampling_frequencies_match_the_filtered_distribution():
    """200k draws per row: token frequencies equal softmax(logits/T) renormalised over the top-k / top-p set
    (within 4 binomial standard errors), and nothing outside the set is ever drawn."""
    torch.manual_seed(1)
    logits = torch.randn(3, 12) * 2
    n, g = 200_000, torch.Generator().manual_seed(0)
    for temp, top_p, top_k in [(1.0, 1.0, 0), (0.7, 1.0, 4), (1.3, 0.8, 0)]:
        p = torch.softmax(logits / temp, -1)
        keep = torch.ones_like(p, dtype=torch.bool)
        if top_k:
            keep &= p >= p.topk(top_k, -1).values[:, -1:]
        if top_p < 1:
            sp, order = p.sort(-1, descending=True)
            keep &= torch.zeros_like(keep).scatter_(1, order, (sp.cumsum(-1) - sp) <= top_p)
        want = torch.where(keep, p, 0.0)
        want = want / want.sum(-1, keepdim=True)
        tok, _ = sample(logits.repeat_interleave(n, 0), temp, top_p, top_k, g)
        freq = torch.zeros(3, 12).index_put_((torch.arange(3).repeat_interleave(n), tok), torch.ones(3 * n),
                                             accumulate=True) / n
        se = (want * (1 - want) / n).sqrt()
        assert (freq[~keep] == 0).all(), (temp, top_p, top_k)
        assert ((freq - want).abs() <= 4 * se + 1e-9).all(), (temp, top_p, top_k, (freq - want).abs().max())


def test_hf_generate_api_matches(model):
    """model.generate (transformers API, left-padded tensor in) equals the list API and transformers' own loop."""
    from transformers import GenerationMixin
    ids = torch.tensor([[0, 0, 5, 17, 99], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    fast = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    slow = GenerationMixin.generate(model, ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                                    pad_token_id=0, use_cache=False)
    assert torch.equal(fast, slow)


def test_hf_generate_falls_back_for_options_it_does_not_implement(model):
    """bad_words_ids / repetition_penalty are not on the fast path: model.generate hands them to transformers'
    loop instead of ignoring them, so the result equals transformers' own and honours the option."""
    from transformers import GenerationMixin
    ids = torch.tensor([[5, 17, 99, 3]])
    plain = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    banned = [[t] for t in plain[0, 4:].tolist()[:2]]
    for opts in ({"bad_words_ids": banned}, {"repetition_penalty": 1.5}):
        ours = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0, **opts)
        ref = GenerationMixin.generate(model, ids, max_new_tokens=8, do_sample=False, pad_token_id=0,
                                       use_cache=False, **opts)
        assert torch.equal(ours, ref)
    out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0, bad_words_ids=banned)
    assert not set(out[0, 4:].tolist()) & {b[0] for b in banned}
