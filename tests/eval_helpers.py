"""Test helpers for the eval tests: a small byte-level BPE tokenizer trained with `tokenizers` (with a chat
template) and a tiny randomly initialised LlamaForCausalLM, both saved to a directory like any HF model."""
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=False)
def one_thread():
    """2 shared cores: a second torch thread only spins (16 ms per tiny matmul under load). Restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# A template that pre-opens <think> in the assistant turn, as DeepSeek-R1's own template does.
THINK_TEMPLATE = CHAT_TEMPLATE.replace("<|assistant|>{% endif %}", "<|assistant|><think>\n{% endif %}")

SPECIALS = ["<|pad|>", "<|eos|>", "<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
            "<think>", "</think>", "<answer>", "</answer>"]


def train_tokenizer(save_dir=None, chat_template=CHAT_TEMPLATE, vocab_size=400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    texts = ["Please reason step by step, and put your final answer within \\boxed{}.",
             "Janet has 16 eggs and eats 3. How many are left? 13", "The answer is \\boxed{42}.",
             "x = 1/2 + 0.5 - 7 * 3 ^ 2 ( ) [ ] { } $ # ,"] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|eos|>",
                                   bos_token="<|bos|>")
    fast.chat_template = chat_template
    if save_dir is not None:
        fast.save_pretrained(save_dir)
    return fast


def tiny_llama(save_dir, tokenizer, seed=0):
    """A randomly initialised Llama (not our model): the eval must work on any HF causal LM."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      bos_token_id=tokenizer.bos_token_id)
    model = LlamaForCausalLM(cfg).eval()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    return model
