"""Our model vs transformers' DeepseekV3ForCausalLM: same weights, same input, same logits (both directions)."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, DeepseekV3ForCausalLM

from base_model import DeepSeekForCausalLM, get_preset

YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 128,
        "mscale": 1.0, "mscale_all_dim": 1.0, "beta_fast": 32, "beta_slow": 1}


def parity_config(**kw):
    # q-LoRA, group-limited routing (4 groups, keep 2), a shared expert, a dense first layer, YaRN, scaling 2.5
    return get_preset("nano", rope_parameters=YARN, max_position_embeddings=512, routed_scaling_factor=2.5, **kw)


def _randomise(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn_like(b))   # the bias must change routing, not only exist
    return model


def _inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 512, (3, 40), generator=g)
    return ids


def test_ours_to_transformers(tmp_path):
    torch.manual_seed(0)
    ours = _randomise(DeepSeekForCausalLM(parity_config())).eval()
    ours.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "deepseek_v3" and cfg["architectures"] == ["DeepseekV3ForCausalLM"]
    assert cfg["scoring_func"] == "sigmoid" and cfg["topk_method"] == "noaux_tc"
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(theirs).__name__ == "DeepseekV3ForCausalLM"
    ids = _inputs()
    with torch.no_grad():
        a, b = ours(ids).logits, theirs(ids).logits
    assert (a - b).abs().max().item() <= 1e-4
    # the routing bias survived the trip and matters: zeroing it changes the logits
    with torch.no_grad():
        for m in theirs.modules():
            if hasattr(m, "e_score_correction_bias"):
                m.e_score_correction_bias.zero_()
        assert (theirs(ids).logits - a).abs().max().item() > 1e-3


def test_transformers_to_ours(tmp_path):
    torch.manual_seed(0)
    cfg = parity_config(num_nextn_predict_layers=0)
    theirs = _randomise(DeepseekV3ForCausalLM._from_config(cfg.__class__.__bases__[0](**cfg.to_dict()))).eval()
    theirs.save_pretrained(tmp_path)
    ours = DeepSeekForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = _inputs()
    with torch.no_grad():
        assert (ours(ids).logits - theirs(ids).logits).abs().max().item() <= 1e-4


def test_padded_batch_matches_transformers(tmp_path):
    """Left padding: same positions (counted over real tokens) -> same logits on real tokens."""
    torch.manual_seed(0)
    ours = _randomise(DeepSeekForCausalLM(parity_config())).eval()
    ours.save_pretrained(tmp_path)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = _inputs()
    mask = torch.ones_like(ids)
    mask[0, :7] = 0
    mask[2, :3] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask).logits
        b = theirs(ids, attention_mask=mask, position_ids=pos).logits
    real = mask.bool()
    assert (a[real] - b[real]).abs().max().item() <= 1e-4


def test_mtp_round_trip(tmp_path):
    """MTP weights sit at layer index num_hidden_layers with the stock names and come back exactly."""
    from safetensors.torch import load_file
    torch.manual_seed(0)
    ours = _randomise(DeepSeekForCausalLM(parity_config())).eval()
    ours.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    n = ours.config.num_hidden_layers
    for name in ["enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight",
                 "shared_head.head.weight", "embed_tokens.weight", "self_attn.kv_b_proj.weight",
                 "mlp.experts.0.gate_proj.weight", "mlp.gate.e_score_correction_bias"]:
        assert f"model.layers.{n}.{name}" in keys
    back = DeepSeekForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    for (k1, v1), (k2, v2) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    ids = _inputs()
    with torch.no_grad():
        assert torch.equal(ours(ids, labels=ids).mtp_loss, back(ids, labels=ids).mtp_loss)
