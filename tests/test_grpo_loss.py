"""Issue item 2: the loss the `grpo` stage optimises agrees with the equations written out by hand.

The trainer is the one the stage builds (r1lab.stages.grpo.build_trainer on a nano DeepSeek checkpoint); the loss
is TRL's own `compute_loss` on a hand-made batch: prompts and completions of different lengths (padding masked),
old log-probs = the model's log-probs shifted by known amounts (so the ratios π/π_old cross both clip bounds),
advantages from known rewards, and for grpo a reference model and β > 0. The reference values below use only
torch on the model's raw logits:

  A_i      = (r_i - mean_g r) / (std_g r + 1e-4)            (group-normalised; std unbiased, as TRL's nanstd)
  ρ_it     = exp(logπ_it - logπ_old_it)
  L_it     = -min(ρ_it A_i, clip(ρ_it, 1-ε, 1+ε_high) A_i) + β ρ_it (exp(ref-logπ) - (ref-logπ) - 1)
           (the ρ on the KL is TRL's default use_bias_correction_kl; use_bias_correction_kl: false drops it)
  grpo     = mean_i [ Σ_t m_it L_it / Σ_t m_it ]              (sequence-level mean, DeepSeekMath)
  dr_grpo  = Σ_it m_it L_it / (B · max_completion_length)     (Dr.GRPO constant normaliser)
  dapo     = Σ_it m_it L_it / Σ_it m_it                       (token-level, DAPO; with ε_high > ε: clip-higher)
"""
from __future__ import annotations

import pytest
import torch

from grpo_helpers import nano_deepseek  # noqa: F401
from pipeline_helpers import tiny_tok  # noqa: F401
from r1lab.stages.base import StageContext
from r1lab.stages.grpo import Params, build_trainer

torch.set_num_threads(1)
G, MAXLEN, TEMP = 4, 6, 0.7
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5])   # two groups of G=4


def _trainer(tmp_path, model_dir, g=G, **kw):
    p = Params(data=[{"task": "arithmetic", "n": 4, "difficulty": 1}], rewards={"think_format": 1.0},
               num_generations=g, per_device_train_batch_size=2 * g, max_completion_length=MAXLEN, temperature=TEMP, **kw)
    ctx = StageContext(name="rl", kind="grpo", params=p, out_dir=tmp_path / "rl", output_dir=tmp_path, seed=0,
                       model_spec=str(model_dir))
    trainer, _, _ = build_trainer(ctx, p, seed=0)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def _batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    B, P = len(REWARDS), 5
    prompt_ids = torch.randint(10, vocab, (B, P), generator=g)
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[1, :2] = 0                                      # left padding
    prompt_mask[6, :1] = 0
    completion_ids = torch.randint(10, vocab, (B, MAXLEN), generator=g)
    lengths = torch.tensor([6, 2, 4, 6, 1, 3, 5, 6])
    completion_mask = (torch.arange(MAXLEN)[None] < lengths[:, None]).long()
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def _logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    """log π(token) under softmax(logits / T), from the model class's plain forward (no TRL patch)."""
    ids = torch.cat([prompt_ids, completion_ids], 1)
    am = torch.cat([prompt_mask, completion_mask], 1)
    with torch.no_grad():
        logits = type(model).forward(model, input_ids=ids, attention_mask=am).logits
    logits = logits[:, prompt_ids.size(1) - 1:-1] / TEMP
    return torch.log_softmax(logits.float(), -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def _advantages(r):
    g = r.view(-1, G)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).flatten()


@pytest.mark.parametrize("loss_type,eps,eps_high,beta,kl_corr", [("grpo", 0.2, None, 0.04, True), ("grpo", 0.2, None, 0.04, False),
                                                                  ("dr_grpo", 0.2, None, 0.0, True), ("dapo", 0.2, 0.28, 0.0, True)])
def test_loss_matches_equations(tmp_path, nano_deepseek, loss_type, eps, eps_high, beta, kl_corr):
    tr = _trainer(tmp_path, nano_deepseek, loss_type=loss_type, epsilon=eps, epsilon_high=eps_high, beta=beta,
                  use_bias_correction_kl=kl_corr)
    model = tr.model
    model.eval()
    pi, pm, ci, cm = _batch(model.config.vocab_size)
    logp = _logps(model, pi, pm, ci, cm)
    # known shifts of the old policy: ratios exp(-shift) from 0.5 to 1.6, across 1-ε and 1+ε(_high)
    shift = torch.linspace(-0.47, 0.69, logp.numel()).view_as(logp)
    old = logp - shift
    adv = _advantages(REWARDS)
    inputs = {"prompt_ids": pi, "prompt_mask": pm, "completion_ids": ci, "completion_mask": cm,
              "advantages": adv, "old_per_token_logps": old, "num_items_in_batch": cm.sum()}
    ref = None
    if beta:
        ref = logp + 0.3 * torch.sin(torch.arange(logp.numel(), dtype=torch.float).view_as(logp))
        inputs["ref_per_token_logps"] = ref

    loss = tr.compute_loss(model, inputs)

    # --- the equations, by hand
    e_hi = eps if eps_high is None else eps_high
    ratio = torch.exp(logp - old)
    A = adv[:, None]
    L = -torch.minimum(ratio * A, ratio.clamp(1 - eps, 1 + e_hi) * A)
    if beta:
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        L = L + beta * (ratio * kl if kl_corr else kl)
    m = cm.float()
    want = {"grpo": ((L * m).sum(1) / m.sum(1)).mean(),
            "dr_grpo": (L * m).sum() / (len(REWARDS) * MAXLEN),
            "dapo": (L * m).sum() / m.sum()}
    assert torch.allclose(loss.detach(), want[loss_type], rtol=1e-4, atol=1e-6), (loss_type, loss.item(), want)
    # the three normalisations really differ on this batch, so agreeing with one is a real check
    others = [v for k, v in want.items() if k != loss_type]
    assert all(abs(v.item() - want[loss_type].item()) > 1e-3 for v in others)
    # clip-higher: dapo's ε_high changes the value vs a symmetric clip
    if loss_type == "dapo":
        L_sym = -torch.minimum(ratio * A, ratio.clamp(1 - eps, 1 + eps) * A)
        assert abs(((L_sym * m).sum() / m.sum()).item() - loss.item()) > 1e-3
    loss.backward()   # the value is the one that is optimised: it carries a gradient to the weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_group_normalised_advantages_and_dynamic_sampling(tmp_path, nano_deepseek):
    """TRL's advantages from a reward we can recompute from the returned ids equal (r-mean)/(std+1e-4); with
    dynamic sampling the group whose rewards are all equal (the second prompt's: constant reward) is masked out
    of the loss and of the token count, the other is kept."""
    import rewards

    tr = _trainer(tmp_path, nano_deepseek, dynamic_sampling=True)
    rows = [dict(r) for r in tr.train_dataset.select(range(2)) for _ in range(G)]
    flat_id = rows[-1]["id"]

    def ids_reward(completions, completion_ids, id, **kw):
        return [1.0 if i == flat_id else float(sum(c) % 7) for c, i in zip(completion_ids, id)]

    tr.reward_funcs = [rewards.get_reward(ids_reward)]
    tr.model.train()
    out = tr._generate_and_score_completions(rows)
    ids = [c[:n] for c, n in zip(out["completion_ids"].tolist(), _true_lengths(tr, out))]
    r = torch.tensor([1.0 if k >= G else float(sum(c) % 7) for k, c in enumerate(ids)])
    assert r[:G].std() > 0                                           # the first group really varies
    assert torch.allclose(out["advantages"], _advantages(r), atol=1e-5)
    kept = out["completion_mask"].view(-1, G, out["completion_mask"].size(1)).sum((1, 2)) > 0
    assert kept.tolist() == [True, False]
    assert out["num_items_in_batch"] == out["completion_mask"].sum() > 0


def test_dynamic_sampling_finds_flat_groups_under_float_rounding(tmp_path, nano_deepseek):
    """G=8 and rewards weighted 1.0 + 0.2 (the R1 YAMLs' accuracy + format): a flat group's weighted rewards are
    1.2 eight times, whose float32 mean is off by an ulp, so its std is ~1e-7, not 0, and TRL's advantages are
    ~1e-3 instead of 0. The flat group is still found (from the rewards, not the advantages), masked out and
    counted in `groups/flat`; the varying group is kept."""
    import rewards

    g = 8
    tr = _trainer(tmp_path, nano_deepseek, g=g, dynamic_sampling=True)
    rows = [dict(r) for r in tr.train_dataset.select(range(2)) for _ in range(g)]
    flat_id = rows[-1]["id"]

    def acc(completions, completion_ids, id, **kw):
        return [1.0 if i == flat_id else float(k % 2) for k, i in enumerate(id)]

    def fmt(completions, **kw):
        return [1.0] * len(completions)

    tr.reward_funcs = [rewards.get_reward(acc), rewards.get_reward(fmt)]
    tr.reward_func_names, tr.reward_processing_classes = ["acc", "fmt"], [None, None]
    tr.reward_weights = torch.tensor([1.0, 0.2])
    tr.model.train()
    out = tr._generate_and_score_completions(rows)
    flat_adv = out["advantages"][g:]
    assert 0 < flat_adv.abs().max() < 1e-2          # the rounding is real: TRL's advantages are not exactly 0
    kept = out["completion_mask"].view(-1, g, out["completion_mask"].size(1)).sum((1, 2)) > 0
    assert kept.tolist() == [True, False]
    assert tr._metrics["train"]["groups/flat"][-1] == 0.5
    assert tr._metrics["train"]["dynamic_sampling/kept_groups"][-1] == 0.5


def _true_lengths(tr, out):
    """Completion lengths TRL scored (up to and including the first EOS), from the padded ids."""
    eos = tr.eos_token_ids
    return [next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids)) for ids in out["completion_ids"].tolist()]


def test_the_trl_hooks_we_rely_on_are_still_there():
    """r1lab/train/grpo.py hooks TRL where it has no public extension point: pin those names and signatures, so a TRL
    upgrade that moves them fails here, in one place, rather than silently dropping dynamic sampling or our loader."""
    import inspect

    import trl.trainer.grpo_trainer as G

    assert list(inspect.signature(G.GRPOTrainer._calculate_rewards).parameters)[:2] == ["self", "inputs"]
    assert list(inspect.signature(G.GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert "rollout_func" in inspect.signature(G.GRPOTrainer.__init__).parameters      # the public one we use
    assert callable(G.create_model_from_path)
