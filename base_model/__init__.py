"""A from-scratch DeepSeek-V3-style language model (MLA + DeepSeekMoE + MTP) and its pretraining.

One idea per file: config.py rope.py mla.py moe.py mtp.py masks.py model.py generate.py (the model);
fp8.py overlap.py tokenizer.py corpus.py pretrain.py pretrain_config.py checkpoint.py pretrain_outputs.py
(pretraining it); threads.py (CPU threads on a shared box). Nothing here imports r1lab: r1lab builds on this.
Checkpoints written by `save_pretrained` are stock `deepseek_v3` checkpoints.

The names below load on first use, so `base_model.threads` can set OpenMP's wait policy before torch loads.
"""
import importlib

_LAZY = {"DeepSeekConfig": "base_model.config", "get_preset": "base_model.config", "PRESETS": "base_model.config",
         "DeepSeekForCausalLM": "base_model.model", "DeepSeekModel": "base_model.model"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'base_model' has no attribute {name!r}")
