"""Shared fixtures for the pipeline tests: a byte-level BPE tokenizer trained with `tokenizers` and a tiny,
randomly initialised LlamaForCausalLM saved next to it — any HF causal LM must work with the pipeline."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SPECIALS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)
_CACHE: dict[str, Path] = {}


def make_tokenizer(save_dir: Path, vocab_size: int = 400) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from r1lab.tasks import TASKS, task_rows

    texts = [r["prompt"] + "\n" + r["solution"] for t in TASKS for r in task_rows(t, n=150, seed=123)]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, tr)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|end|>", pad_token="<|pad|>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(save_dir)
    return save_dir


def make_tiny_llama(save_dir: Path, tok_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(save_dir)
    tok.save_pretrained(save_dir)
    return save_dir


@pytest.fixture(scope="session")
def tiny_tok(tmp_path_factory) -> Path:
    if "tok" not in _CACHE:
        _CACHE["tok"] = make_tokenizer(tmp_path_factory.mktemp("tok"))
    return _CACHE["tok"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_tok) -> Path:
    if "model" not in _CACHE:
        _CACHE["model"] = make_tiny_llama(tmp_path_factory.mktemp("llama"), tiny_tok)
    return _CACHE["model"]
