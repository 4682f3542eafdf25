"""DeepSeek-native RL on TRL's GRPOTrainer (r1lab/train/grpo_trainer.py): DAPO re-sampling, truncated importance
sampling, router replay in the training forward. Each is checked on the trainer the `grpo` stage builds."""
from __future__ import annotations

import torch

from grpo_helpers import nano_deepseek  # noqa: F401
from pipeline_helpers import tiny_tok  # noqa: F401
from r1lab.stages.base import StageContext
from r1lab.stages.grpo import Params, build_trainer
from r1lab.train import rollout_correction as rc

torch.set_num_threads(1)
G = 4


def _trainer(tmp_path, model_dir, **kw):
    kw = {"per_device_train_batch_size": 2 * G, **kw}
    p = Params(data=[{"task": "arithmetic", "n": 12, "difficulty": 1}], rewards={"think_format": 1.0},
               num_generations=G, max_completion_length=6, **kw)
    ctx = StageContext(name="rl", kind="grpo", params=p, out_dir=tmp_path / "rl", output_dir=tmp_path, seed=0,
                       model_spec=str(model_dir))
    trainer, _, _ = build_trainer(ctx, p, seed=0)
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    return trainer


def _reward(flat_ids):
    """Flat (1.0 for the whole group) for prompts whose id is in `flat_ids`; else alternating 0/1 in the group."""
    import rewards

    def rew(completions, id, **kw):
        return [1.0 if i in flat_ids else float(k % 2) for k, i in enumerate(id)]

    return rewards.get_reward(rew)


def test_resample_refills_the_batch_with_informative_groups(tmp_path, nano_deepseek):
    """One of the step's two groups is flat; re-sampling draws a fresh prompt (whose group varies) in its place:
    the batch keeps its size, no group is masked, and the logs say 2 rounds, 3 groups generated for 2 trained."""
    tr = _trainer(tmp_path, nano_deepseek, dynamic_sampling="resample", max_resample_tries=3)
    rows = [dict(r) for r in tr.train_dataset.select(range(2)) for _ in range(G)]
    tr.reward_funcs = [_reward({rows[-1]["id"]})]
    out = tr._generate_and_score_completions(rows)
    m = tr._metrics["train"]
    assert m["groups/flat"][-1] == 0.5                                 # the first round had one flat group
    assert m["dynamic_sampling/tries"][-1] == 2 and m["dynamic_sampling/flat_after"][-1] == 0.0
    assert m["dynamic_sampling/rollouts"][-1] == 1.5                   # 12 completions generated, 8 trained on
    assert out["completion_ids"].shape[0] == 2 * G
    per_group = out["completion_mask"].view(2, G, -1).sum((1, 2))
    assert (per_group > 0).all()                                       # nothing masked: both groups carry signal
    adv = out["advantages"].view(2, G)
    assert (adv.abs() > 0.5).all()                                      # alternating 0/1 rewards: |A| ≈ 0.87 each
    assert out["prompt_ids"].shape[0] == out["prompt_mask"].shape[0] == 2 * G
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())


def test_resample_stops_at_its_bound_and_masks_what_stays_flat(tmp_path, nano_deepseek):
    """Every prompt is flat: re-sampling tries max_resample_tries rounds and no more, then masks the groups."""
    tr = _trainer(tmp_path, nano_deepseek, dynamic_sampling="resample", max_resample_tries=3)
    rows = [dict(r) for r in tr.train_dataset.select(range(2)) for _ in range(G)]
    tr.reward_funcs = [_reward(set(tr.train_dataset["id"]))]
    calls = []
    orig = tr.rollout_func
    tr.rollout_func = lambda prompts, trainer: calls.append(len(prompts)) or orig(prompts, trainer)
    out = tr._generate_and_score_completions(rows)
    m = tr._metrics["train"]
    assert calls == [2 * G, 2 * G, 2 * G]                               # 3 rounds, each the two flat groups' size
    assert m["dynamic_sampling/tries"][-1] == 3 and m["dynamic_sampling/flat_after"][-1] == 1.0
    assert int(out["completion_mask"].sum()) == 0 and m["dynamic_sampling/kept_groups"][-1] == 0.0


def test_tis_weight_is_its_formula():
    """w_t = min(π_trainer/π_rollout, C); NaN rollout logprobs give 1; the advantages become A_i·w_it."""
    trainer_lp = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.1, -1.0]])
    rollout_lp = torch.tensor([[-2.0, -1.0, float("nan")], [-1.0, -0.1, -4.0]])
    w = rc.tis_weights(trainer_lp, rollout_lp, cap=2.0)
    want = torch.tensor([[2.0, torch.e ** -1.0, 1.0], [torch.e ** -2.0, 1.0, 2.0]])   # e^1 and e^3 capped
    assert torch.allclose(w, want)
    out = {"advantages": torch.tensor([0.5, -2.0])}
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    stats = rc.apply_tis(out, w, mask, cap=2.0)
    assert torch.allclose(out["advantages"], torch.tensor([[0.5], [-2.0]]) * want)
    assert abs(stats["tis/capped"] - 1 / 5) < 1e-6                    # (0,0) capped; (1,2) capped but masked


def test_tis_in_the_loss_weights_each_token(tmp_path, nano_deepseek):
    """Through TRL's loss (dapo): per-token advantages A·w give Σ -min(ρA, clip(ρ)A)·w / Σ m, by hand."""
    tr = _trainer(tmp_path, nano_deepseek, loss_type="dapo", epsilon=0.2, epsilon_high=0.28, tis_cap=2.0)
    model = tr.model
    g = torch.Generator().manual_seed(0)
    B, P, C = 2 * G, 4, 5
    pi = torch.randint(10, model.config.vocab_size, (B, P), generator=g)
    ci = torch.randint(10, model.config.vocab_size, (B, C), generator=g)
    pm, cm = torch.ones(B, P, dtype=torch.long), (torch.arange(C)[None] < torch.tensor([5, 2, 4, 5, 1, 3, 5, 5])[:, None]).long()
    with torch.no_grad():
        logits = model(input_ids=torch.cat([pi, ci], 1), attention_mask=torch.cat([pm, cm], 1)).logits
    logp = torch.log_softmax(logits[:, P - 1:-1].float() / tr.temperature, -1).gather(-1, ci[..., None])[..., 0]
    old = logp - torch.linspace(-0.4, 0.6, logp.numel()).view_as(logp)
    rollout = old + torch.linspace(-1.0, 1.0, logp.numel()).view_as(logp)   # the engine's view differs
    adv = torch.linspace(-1.5, 1.5, B)
    w = rc.tis_weights(old, rollout, 2.0)
    out = {"advantages": adv.clone()}
    rc.apply_tis(out, w, cm, 2.0)
    inputs = {"prompt_ids": pi, "prompt_mask": pm, "completion_ids": ci, "completion_mask": cm,
              "advantages": out["advantages"], "old_per_token_logps": old, "num_items_in_batch": cm.sum()}
    loss = tr.compute_loss(model, inputs)
    ratio, A = torch.exp(logp - old), adv[:, None]
    L = -torch.minimum(ratio * A, ratio.clamp(0.8, 1.28) * A) * w
    want = (L * cm).sum() / cm.sum()
    assert torch.allclose(loss.detach(), want, rtol=1e-4, atol=1e-6)
    unweighted = (-torch.minimum(ratio * A, ratio.clamp(0.8, 1.28) * A) * cm).sum() / cm.sum()
    assert abs(unweighted - want) > 1e-3                               # the weights really change the loss


def test_routes_tensor_lays_out_like_trls_batch():
    """Prompts left-padded to P, completions right-padded to C, -1 where nothing was recorded."""
    pr = [torch.full((2, 1, 2), 7, dtype=torch.int16), torch.full((3, 1, 2), 8, dtype=torch.int16)]
    cr = [torch.full((3, 1, 2), 1, dtype=torch.int16), torch.full((1, 1, 2), 2, dtype=torch.int16)]
    t = rc.routes_tensor(list(zip(pr, cr)), 3, 3, "cpu")
    assert t[:, :, 0, 0].tolist() == [[-1, 7, 7, 1, 1, 1], [8, 8, 8, 2, -1, -1]]


def test_replay_in_the_training_forward_uses_the_given_experts(tmp_path, nano_deepseek):
    """With `routed_experts` in the batch, TRL's loss forward routes every token to exactly those experts, even
    after the gate's selection bias moved (what a policy update does to routing); without, routing changes."""
    from base_model import routing

    tr = _trainer(tmp_path, nano_deepseek, router_replay=True)
    model = tr.model
    g = torch.Generator().manual_seed(1)
    B, P, C = 4, 3, 4
    pi = torch.randint(10, model.config.vocab_size, (B, P), generator=g)
    ci = torch.randint(10, model.config.vocab_size, (B, C), generator=g)
    ids, att = torch.cat([pi, ci], 1), torch.ones(B, P + C, dtype=torch.long)
    with torch.no_grad(), routing.record(model) as rec:
        model(input_ids=ids, attention_mask=att)
        recorded = rec.pop()
    with torch.no_grad():
        for moe in model.moe_layers():
            moe.gate.e_score_correction_bias.add_(torch.randn(moe.gate.e_score_correction_bias.shape, generator=g) * 3)
    inputs = {"prompt_ids": pi, "prompt_mask": att[:, :P], "completion_ids": ci, "completion_mask": att[:, P:],
              "advantages": torch.ones(B), "num_items_in_batch": torch.tensor(B * C), "routed_experts": recorded}
    with routing.record(model) as rec:
        tr.compute_loss(model, inputs)
        used = rec.pop()
    assert torch.equal(used, recorded)
    inputs.pop("routed_experts")
    with routing.record(model) as rec:
        tr.compute_loss(model, inputs)
        free = rec.pop()
    assert routing.routing_drift(recorded, free, torch.ones(B, P + C))["tokens"] > 0.3


def test_grpo_steps_with_every_switch_on(tmp_path, nano_deepseek):
    """Two real training steps with re-sampling, router replay, TIS and MTP-drafted rollouts: the rollout's routes
    reach the loss (replayed), the MTP head is refreshed (its weights move, the main model's embedding does not
    move from the refresh), and every measurement is logged."""
    tr = _trainer(tmp_path, nano_deepseek, dynamic_sampling="resample", router_replay=True, tis_cap=2.0,
                  mtp_rollouts=True, max_steps=2, logging_steps=1, steps_per_generation=2,
                  per_device_train_batch_size=G)
    tr.reward_funcs = [_reward(set(tr.train_dataset["id"][:6]))]        # half the prompts flat: resampling works
    mtp = [p.detach().clone() for p in tr.model.model.mtp_layers.parameters()]
    tr.train()
    logged = {k for h in tr.state.log_history for k in h}
    for key in ("router/drift_tokens", "rollout/mtp_acceptance", "mtp/refresh_loss", "tis/weight_mean",
                "rollout/logprob_diff_mean", "rollout/tokens_per_s", "dynamic_sampling/tries", "rollout/total",
                "policy/ratio_std", "groups/flat"):
        assert key in logged, (key, sorted(k for k in logged if "mtp" in k or "rollout" in k))
    assert any(not torch.equal(a, b) for a, b in zip(mtp, tr.model.model.mtp_layers.parameters()))
    diffs = [h["rollout/logprob_diff_mean"] for h in tr.state.log_history if "rollout/logprob_diff_mean" in h]
    assert max(diffs) < 1e-3               # fp32 engine, replayed routes: the trainer sees the rollout's policy


def test_router_replay_and_mtp_need_the_native_engine():
    import pytest

    for key in ("router_replay", "mtp_rollouts"):
        with pytest.raises(ValueError, match=f"{key}: needs the native rollout engine"):
            Params(data=[{"task": "arithmetic", "n": 4, "difficulty": 1}], rewards={"think_format": 1.0},
                   engine="vllm", **{key: True})


def test_rollout_budget_stops_after_the_generation_that_reaches_it(tmp_path, nano_deepseek):
    """Budget 3 generations' worth (each generation = 2 optimizer steps here): training stops after step 6, the
    last generation trained on in full, although max_steps allows 20."""
    tr = _trainer(tmp_path, nano_deepseek, rollout_budget=3 * 2 * G, max_steps=20, steps_per_generation=2,
                  per_device_train_batch_size=G, logging_steps=1)
    from r1lab.train.grpo_trainer import rollout_budget_callback

    tr.add_callback(rollout_budget_callback(tr, 3 * 2 * G))
    tr.train()
    assert tr.state.global_step == 6
    assert max(h["rollout/total"] for h in tr.state.log_history if "rollout/total" in h) == 3 * 2 * G


def test_native_only_switches_fail_with_a_pipeline_level_vllm_rollout(tmp_path, nano_deepseek):
    """`rollout: vllm` on the pipeline (the stage's own `engine:` unset) cannot record routes: router replay must
    fail in one line, not run without replay."""
    import pytest

    p = Params(data=[{"task": "arithmetic", "n": 4, "difficulty": 1}], rewards={"think_format": 1.0},
               num_generations=G, per_device_train_batch_size=G, max_completion_length=6, router_replay=True)
    ctx = StageContext(name="rl", kind="grpo", params=p, out_dir=tmp_path / "rl", output_dir=tmp_path, seed=0,
                       model_spec=str(nano_deepseek), rollout="vllm")
    with pytest.raises(ValueError, match="stage rl: router_replay, log_routing_drift needs the native rollout "
                                         "engine, not vllm"):
        build_trainer(ctx, p, seed=0)
