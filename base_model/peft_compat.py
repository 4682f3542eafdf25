"""LoRA on the experts with peft under transformers v5.

transformers v5 fuses the experts of its own DeepseekV3 into stacked `gate_up_proj` / `down_proj` parameters, and
peft (>= 0.18) follows it: for every model whose `model_type` is `deepseek_v3` it rewrites a LoRA config's
`gate_proj` / `up_proj` / `down_proj` targets into `target_parameters` on those fused tensors. Our model keeps one
nn.Linear per expert, as the released checkpoints name them, so on it that rewrite leaves nothing to target and
`get_peft_model` fails with "No `target_modules` passed". `patch_peft()` (run on import of base_model.model) skips
the rewrite for models built from our MoE layer only; every other model goes through peft unchanged.
"""
from __future__ import annotations


def patch_peft() -> None:
    try:
        import peft.utils.transformers_weight_conversion as conversion
    except ImportError:   # peft not installed, or a version without the v5 rewrite: nothing to do
        return
    original = getattr(conversion, "convert_peft_config_for_transformers", None)
    if original is None or getattr(original, "_keeps_per_expert_linears", False):
        return

    def convert_peft_config_for_transformers(peft_config, model, conversions):
        from base_model.moe import MoE

        if any(isinstance(m, MoE) for m in model.modules()):
            return None   # our per-expert nn.Linear layout: the names in target_modules are the modules
        return original(peft_config, model, conversions)

    convert_peft_config_for_transformers._keeps_per_expert_linears = True
    conversion.convert_peft_config_for_transformers = convert_peft_config_for_transformers
