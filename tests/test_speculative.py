"""MTP speculative sampling is exact in distribution: on a model small enough to enumerate (vocabulary 16), the
empirical distribution of tokens 2 and 3 (and of tokens 1-2 jointly) of many sampled completions matches the one
computed from plain forwards, for speculative and plain sampling alike, with a random (different) MTP head so that
drafts are both accepted and rejected. Greedy MTP equals plain greedy. Recorded routes replay to the rollout's
logprobs. The native engine reports stats and routes."""
import math

import pytest
import torch

from base_model import DeepSeekForCausalLM, get_preset, routing
from base_model.generate import generate
from base_model.sampling import process
from base_model.speculative import verify
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.native import NativeEngine

V = 16
N = 10_000                      # completions per frequency check
PROMPT = [3, 7, 1, 12]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = DeepSeekForCausalLM(get_preset("nano", vocab_size=V)).eval()    # MTP layer randomly initialised
    with torch.no_grad():   # peaky but not one-hot distributions; a routing bias that matters
        m.lm_head.weight.mul_(10)
        for mod in m.modules():
            if hasattr(mod, "e_score_correction_bias"):
                mod.e_score_correction_bias.copy_(0.05 * torch.randn_like(mod.e_score_correction_bias))
    return m


@torch.no_grad()
def exact(model, temperature, top_p, top_k):
    """By enumeration with plain forwards (no cache): P(t1), P(t1, t2) [V, V], P(t3), each step's distribution
    processed (temperature, top-k, top-p) as the sampler does."""
    def dist(rows):
        return process(model(torch.tensor(rows)).logits[:, -1], temperature, top_p, top_k)[1]
    p1 = dist([PROMPT])[0]
    p2 = dist([PROMPT + [a] for a in range(V)])                                    # P(t2 | t1)
    p3 = dist([PROMPT + [a, b] for a in range(V) for b in range(V)]).view(V, V, V)  # P(t3 | t1, t2)
    j12 = p1[:, None] * p2
    return p1, j12, (j12[..., None] * p3).sum((0, 1))


@torch.no_grad()
def draft_marginal(model, temperature, top_p, top_k):
    """P(t2) if every MTP draft were kept: Σ_t1 P(t1) q(t2 | t1). The test must be able to tell this apart."""
    p1 = process(model(torch.tensor([PROMPT])).logits[0, -1], temperature, top_p, top_k)[1]
    ids = torch.tensor([PROMPT + [a] for a in range(V)])
    out = model.model(ids)
    cos, sin, _ = out.rope_and_mask
    n = ids.shape[1] - 1
    _, normed = model.model.mtp_layers[0].predict(out.last_hidden_state[:, :n], model.model.embed_tokens(ids[:, 1:]),
                                                  cos[:, :n], sin[:, :n])
    q = process(model.lm_head(normed[:, -1]), temperature, top_p, top_k)[1]
    return (p1[:, None] * q).sum(0)


def tv_bound(p, n, fail=1e-6):
    """A bound on the total variation distance between p and the empirical distribution of n draws from it:
    E[TV] <= 1/2 Σ sqrt(p_i (1 - p_i) / n) (Jensen), and one draw moves TV by at most 1/n, so (McDiarmid) TV exceeds
    its mean by t with probability <= exp(-2 n t²) = `fail`."""
    return float(0.5 * (p * (1 - p) / n).sqrt().sum() + math.sqrt(math.log(1 / fail) / (2 * n)))


def chi2_ok(counts, p, n):
    """Pearson's χ² over the bins expecting >= 5 draws (the rest pooled) below its 1e-6 upper quantile
    (Wilson-Hilferty: k (1 - 2/(9k) + z sqrt(2/(9k)))³, z = 4.75)."""
    exp = p * n
    big = exp >= 5
    obs_b, exp_b = torch.cat([counts[big], counts[~big].sum()[None]]), torch.cat([exp[big], exp[~big].sum()[None]])
    keep = exp_b > 0
    stat = float(((obs_b - exp_b)[keep] ** 2 / exp_b[keep]).sum())
    k = int(keep.sum()) - 1
    return stat < k * (1 - 2 / (9 * k) + 4.75 * math.sqrt(2 / (9 * k))) ** 3, stat, k


def check(freq_counts, p, n, what):
    emp = freq_counts / n
    tv, bound = float(0.5 * (emp - p).abs().sum()), tv_bound(p, n)
    ok, stat, k = chi2_ok(freq_counts, p, n)
    assert tv < bound, (what, tv, bound)
    assert ok, (what, stat, k)
    assert (freq_counts[p == 0] == 0).all(), what            # nothing outside top-k / top-p is ever emitted


@pytest.mark.parametrize("temperature,top_p,top_k", [(1.0, 1.0, 0), (1.0, 0.85, 5)])
def test_speculative_sampling_matches_the_exact_distribution(model, temperature, top_p, top_k):
    p1, j12, p3 = exact(model, temperature, top_p, top_k)
    p2 = j12.sum(0)
    # the check has power: keeping every draft would give a token-2 distribution far outside the bound
    assert 0.5 * float((draft_marginal(model, temperature, top_p, top_k) - p2).abs().sum()) > 3 * tv_bound(p2, N)
    for use_mtp in (True, False):                                    # speculative, and plain sampling as control
        res = generate(model, [PROMPT], max_new_tokens=3, temperature=temperature, top_p=top_p, top_k=top_k,
                       num_samples=N, seed=11, use_mtp=use_mtp)[0]
        toks = torch.tensor([r.token_ids for r in res])
        assert toks.shape == (N, 3)
        count = lambda t, k: torch.bincount(t, minlength=k).double()    # noqa: E731
        check(count(toks[:, 1], V), p2.double(), N, ("t2", use_mtp))
        check(count(toks[:, 2], V), p3.double(), N, ("t3", use_mtp))
        check(count(toks[:, 0] * V + toks[:, 1], V * V), j12.flatten().double(), N, ("t1,t2", use_mtp))
        # logprobs: log softmax(logits / T) of the token, before truncation, from plain forwards
        with torch.no_grad():
            logits = model(torch.tensor([PROMPT + r.token_ids for r in res[:20]])).logits[:, len(PROMPT) - 1:-1]
        want = torch.log_softmax(logits / temperature, -1).gather(-1, toks[:20, :, None])[..., 0]
        torch.testing.assert_close(torch.tensor([r.logprobs for r in res[:20]]), want, atol=1e-4, rtol=0)
        if use_mtp:
            s = res[0].stats
            assert 200 < s["mtp_accepted"] < s["mtp_proposed"] - 200                 # many accepted, many rejected
            assert s["mtp_acceptance"] == s["mtp_accepted"] / s["mtp_proposed"]


def test_verify_rule_exact_on_one_step():
    """The accept/resample rule alone, on explicit p and q with disjoint parts of their supports: the emitted token
    is distributed as p (200k rows), and acceptance happens with probability Σ min(p, q)."""
    p = torch.tensor([0.5, 0.3, 0.2, 0.0, 0.0])
    q = torch.tensor([0.1, 0.1, 0.3, 0.5, 0.0])
    n, g = 200_000, torch.Generator().manual_seed(0)
    d = torch.multinomial(q, n, replacement=True, generator=g)
    ok, rep = verify(p.expand(n, -1), q.expand(n, -1), d, g, greedy=False)
    out = torch.where(ok, d, rep)
    freq = torch.bincount(out, minlength=5).double() / n
    assert float(0.5 * (freq - p.double()).abs().sum()) < tv_bound(p.double(), n)
    assert abs(float(ok.double().mean()) - float(torch.minimum(p, q).sum())) < 5 * math.sqrt(0.25 / n)


PROMPTS = [[5, 9, 2], [4], [1, 2, 3, 4, 5, 6, 7, 8, 9], [11, 11]]


def test_greedy_mtp_equals_plain_greedy(model):
    plain = generate(model, PROMPTS, max_new_tokens=14)
    spec = generate(model, PROMPTS, max_new_tokens=14, use_mtp=True)
    for p, s in zip(plain, spec):
        assert s[0].token_ids == p[0].token_ids
        torch.testing.assert_close(torch.tensor(s[0].logprobs), torch.tensor(p[0].logprobs), atol=1e-5, rtol=0)
    assert spec[0][0].stats["mtp_proposed"] > 0


def test_mtp_sampling_is_seeded(model):
    kw = dict(max_new_tokens=10, temperature=1.0, top_p=0.9, num_samples=3, use_mtp=True)
    a, b = generate(model, PROMPTS, seed=5, **kw), generate(model, PROMPTS, seed=5, **kw)
    c = generate(model, PROMPTS, seed=6, **kw)
    ids = lambda r: [[s.token_ids for s in g] for g in r]    # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)


@pytest.mark.parametrize("use_mtp", [False, True])
def test_recorded_routes_replay_to_the_rollout_logprobs(model, use_mtp):
    """Rows of different prompt lengths in one left-padded batch. Per row, a forward of prompt + completion alone
    that replays the recorded routes reproduces the rollout's logprobs and routes exactly those experts; without
    replay the forward routes (nearly) every token the same way."""
    res = generate(model, PROMPTS, max_new_tokens=10, temperature=1.0, num_samples=2, seed=3, use_mtp=use_mtp,
                   record_routing=True)
    n_moe, k = len(model.moe_layers()), model.config.num_experts_per_tok
    differ = total = 0
    for prompt, group in zip(PROMPTS, res):
        for r in group:
            seq = torch.tensor([prompt + r.token_ids])
            assert r.routes.shape == (seq.shape[1], n_moe, k) and r.routes.dtype == torch.int16
            assert (r.routes[-1] == -1).all() and (r.routes[:-1] >= 0).all()
            with torch.no_grad(), routing.record(model) as rec:
                with routing.replay(model, r.routes[None]):
                    logits = model(seq).logits[0, len(prompt) - 1:-1]
                replayed = rec.pop()[0]
                model(seq)                                           # no replay: the gate chooses
                free = rec.pop()[0]
            lp = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(r.token_ids)[:, None])[:, 0]
            torch.testing.assert_close(lp, torch.tensor(r.logprobs), atol=1e-4, rtol=0)
            assert torch.equal(replayed[:-1], r.routes[:-1])
            same = (free[:-1].long().sort(-1).values == r.routes[:-1].long().sort(-1).values).all(-1).all(-1)
            differ, total = differ + int((~same).sum()), total + same.numel()
    assert differ <= max(1, total // 50), (differ, total)
    if use_mtp:
        s = res[0][0].stats
        assert 0 < s["mtp_accepted"] < s["mtp_proposed"]              # both accepted and rejected slots occurred


class _Tok:
    pad_token_id, eos_token_id = 0, 15

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


def test_native_engine_stats_and_routes(model):
    eng = NativeEngine(model, _Tok(), batch_size=2, use_mtp=True, record_routing=True)
    out = eng.generate(PROMPTS[:3], SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=0))
    s = eng.stats
    assert s["tokens"] == sum(len(x.token_ids) for g in out for x in g) and s["seconds"] > 0
    assert s["mtp_proposed"] > 0 and s["mtp_acceptance"] == s["mtp_accepted"] / s["mtp_proposed"]
    for prompt, g in zip(PROMPTS, out):
        for x in g:
            assert x.routes.shape[0] == len(prompt) + len(x.token_ids)
    plain = NativeEngine(model, _Tok())
    plain.generate(PROMPTS[:1], SamplingParams(max_new_tokens=4, seed=0))
    assert plain.stats["tokens"] > 0 and "mtp_proposed" not in plain.stats
    assert all(x.routes is None for x in plain.generate(PROMPTS[:1], SamplingParams(max_new_tokens=4))[0])
    with pytest.raises(ValueError, match="fast path"):
        NativeEngine(model, _Tok(), plain=True, use_mtp=True)
