"""The tokenizer: byte-level BPE trained here, on our own corpus, with the `tokenizers` library.

Nothing is downloaded. `train_tokenizer(texts)` learns merges from an iterable of documents and returns a
`transformers.PreTrainedTokenizerFast`; `save_pretrained(dir)` writes tokenizer.json + tokenizer_config.json
so plain `transformers.AutoTokenizer.from_pretrained(dir)` loads it (chat template included).

Choices, and why:
- Byte level (GPT-2 style): every string round-trips, no unknown token.
- Digits are split one per token before BPE (as LLaMA / DeepSeek do): a small model learns column arithmetic
  far more easily when "4821" is always 4 tokens "4","8","2","1" instead of arbitrary merged chunks.
- Special tokens. Role markers, EOS and PAD are *special* (dropped by `decode(skip_special_tokens=True)`).
  The reasoning tags `<think> </think> <answer> </answer>` are added as *non-special* atomic tokens: each is one
  id (a model can emit it in one step) but it survives `skip_special_tokens=True`, because rewards read it.
- Chat template (R1 style): an optional system text, then each user turn `<|user|>…`, each assistant turn
  `<|assistant|>…<|endoftext|>`; `add_generation_prompt=True` ends with the assistant opener `<|assistant|>`.
  The model itself is expected to open `<think>` — R1-Zero learns the format from a reward; the corpus shows it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SYSTEM_TOKEN = "<|system|>"
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

ROLE_TOKENS = {"system": SYSTEM_TOKEN, "user": USER_TOKEN, "assistant": ASSISTANT_TOKEN}
REASONING_TOKENS = [THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE]
# Ids are assigned in this order, so EOS = 0 and PAD = 1 in every tokenizer we train.
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN] + REASONING_TOKENS

# Jinja, rendered by transformers' apply_chat_template. A system message is written once, first. The turn ends
# with the tokenizer's EOS (ours: <|endoftext|>), so r1lab can give this template to any tokenizer that has none.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}" + SYSTEM_TOKEN + "{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}" + USER_TOKEN + "{{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %}" + ASSISTANT_TOKEN + "{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT_TOKEN + "{% endif %}"
)


def format_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The chat template in plain Python (same string as the Jinja one); r1lab's corpus uses it for chat-shaped docs."""
    out = []
    for m in messages:
        if m["role"] not in ROLE_TOKENS:
            raise ValueError(f"unknown chat role: {m['role']!r} (expected one of {sorted(ROLE_TOKENS)})")
        out.append(ROLE_TOKENS[m["role"]] + m["content"] + (EOS_TOKEN if m["role"] == "assistant" else ""))
    if add_generation_prompt:
        out.append(ASSISTANT_TOKEN)
    return "".join(out)


def _build_tokenizer():
    """An untrained byte-level BPE with split digits."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def wrap_tokenizer(tok, model_max_length: int = 4096):
    """Wrap a trained `tokenizers.Tokenizer` as a transformers fast tokenizer with our specials and template."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN],
        model_max_length=model_max_length,
        padding_side="left",  # generation pads on the left; training packs, so no padding there
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, save_dir: str | Path | None = None,
                    min_frequency: int = 2, model_max_length: int = 4096):
    """Train a byte-level BPE on `texts` and return a `PreTrainedTokenizerFast` (saved to `save_dir` if given)."""
    from tokenizers import AddedToken, pre_tokenizers, trainers

    tok = _build_tokenizer()
    special = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS[:5]]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # The reasoning tags: atomic, but not "special" (they must survive skip_special_tokens=True).
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOKENS])
    hf = wrap_tokenizer(tok, model_max_length)
    if save_dir is not None:
        hf.save_pretrained(str(save_dir))
    return hf


def load_tokenizer(path: str | Path):
    """Load a saved tokenizer with plain transformers (what any downstream user would do)."""
    from transformers import AutoTokenizer

    p = Path(path)
    if not (p / "tokenizer.json").exists():
        raise FileNotFoundError(f"{p}: no tokenizer.json (expected a directory written by train_tokenizer/save_pretrained)")
    return AutoTokenizer.from_pretrained(str(p))


def main(argv=None):
    """`python -m base_model.tokenizer --out DIR --corpus PATH [--vocab-size 4096] [--docs 20000]`"""
    import argparse
    import itertools

    from base_model.corpus import SYNTHETIC_HINT, load_corpus

    ap = argparse.ArgumentParser(prog="python -m base_model.tokenizer", description=main.__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--docs", type=int, default=20000, help="number of documents to train on")
    ap.add_argument("--corpus", required=True, help="a path (txt/jsonl/parquet/datasets dir); r1lab's synthetic "
                    "corpus: write one with `python -m r1lab.tasks.corpus --out corpus.jsonl`")
    a = ap.parse_args(argv)
    if a.corpus == "synthetic":
        raise SystemExit(f"--corpus: {SYNTHETIC_HINT}")
    tok = train_tokenizer(itertools.islice(load_corpus(a.corpus), a.docs), vocab_size=a.vocab_size, save_dir=a.out)
    print(f"saved tokenizer ({len(tok)} tokens) to {a.out}")


if __name__ == "__main__":
    main()
