"""A from-scratch DeepSeek-V3-style language model (MLA + DeepSeekMoE + MTP) and its pretraining.

One idea per file: config.py rope.py mla.py moe.py mtp.py model.py generate.py (the model);
fp8.py overlap.py tokenizer.py corpus.py pretrain.py (pretraining it).
Checkpoints written by `save_pretrained` are stock `deepseek_v3` checkpoints.
"""
from base_model.config import DeepSeekConfig, get_preset, PRESETS
from base_model.model import DeepSeekForCausalLM, DeepSeekModel

__all__ = ["DeepSeekConfig", "DeepSeekForCausalLM", "DeepSeekModel", "get_preset", "PRESETS"]
