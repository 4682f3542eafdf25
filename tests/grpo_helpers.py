"""A nano DeepSeekForCausalLM checkpoint (random weights) with the tests' BPE tokenizer, built once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

_CACHE: dict[str, Path] = {}


def make_nano_deepseek(save_dir: Path, tok_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer

    from base_model import DeepSeekForCausalLM, get_preset

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    cfg = get_preset("nano", vocab_size=len(tok))
    cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id = tok.eos_token_id, tok.pad_token_id, None
    model = DeepSeekForCausalLM(cfg)
    model.save_pretrained(save_dir)
    tok.save_pretrained(save_dir)
    return save_dir


@pytest.fixture(scope="session")
def nano_deepseek(tmp_path_factory, tiny_tok) -> Path:
    if "nano" not in _CACHE:
        _CACHE["nano"] = make_nano_deepseek(tmp_path_factory.mktemp("nano"), tiny_tok)
    return _CACHE["nano"]
