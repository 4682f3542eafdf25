"""The tokenizer: trained here, loads with plain transformers, keeps the R1 tags atomic, renders the chat template."""
import pytest

from r1lab.tasks.corpus import synthetic_corpus
from base_model.tokenizer import (ASSISTANT_TOKEN, EOS_TOKEN, PAD_TOKEN, REASONING_TOKENS, SPECIAL_TOKENS,
                                  USER_TOKEN, format_chat, train_tokenizer)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_tokenizer(synthetic_corpus(seed=0, limit=400), vocab_size=600, save_dir=d)
    return d


@pytest.fixture(scope="module")
def tok(tok_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(tok_dir))  # plain transformers, no base_model import needed


def test_loads_with_autotokenizer_and_has_specials(tok):
    assert 300 < len(tok) <= 600 + len(REASONING_TOKENS)
    assert tok.eos_token == EOS_TOKEN and tok.eos_token_id == 0
    assert tok.pad_token == PAD_TOKEN and tok.pad_token_id == 1
    for t in SPECIAL_TOKENS:
        ids = tok(t, add_special_tokens=False).input_ids
        assert len(ids) == 1, (t, ids)                       # every special / tag is one atomic id
        assert tok.convert_ids_to_tokens(ids) == [t]


def test_byte_level_round_trip(tok):
    texts = ["What is 345 + 789?", "def f(x):\n    return x  # tabs\tand  spaces", "unicode: é ñ 中文 🙂",
             "<think>\n1 + 2 = 3\n</think>\n<answer>3</answer>"]
    for t in texts:
        ids = tok(t, add_special_tokens=False).input_ids
        assert tok.decode(ids) == t
    assert tok.unk_token_id is None or tok.unk_token_id not in tok("🙂 ∑", add_special_tokens=False).input_ids


def test_digits_are_single_tokens(tok):
    ids = tok("123456 + 7890", add_special_tokens=False).input_ids
    pieces = [tok.decode([i]) for i in ids]
    assert [p for p in pieces if p.strip().isdigit()] == list("1234567890")


def test_reasoning_tags_survive_skip_special_tokens(tok):
    s = f"{USER_TOKEN}hi{ASSISTANT_TOKEN}<think>a</think><answer>7</answer>{EOS_TOKEN}"
    ids = tok(s, add_special_tokens=False).input_ids
    assert tok.decode(ids, skip_special_tokens=True) == "hi<think>a</think><answer>7</answer>"
    assert tok.decode(ids) == s


def test_chat_template(tok):
    msgs = [{"role": "system", "content": "Think first."}, {"role": "user", "content": "What is 2 + 2?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|system|>Think first.<|user|>What is 2 + 2?<|assistant|>" == format_chat(msgs, True)
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids[-1] == tok.convert_tokens_to_ids(ASSISTANT_TOKEN)
    conv = msgs + [{"role": "assistant", "content": "<think>2+2=4</think><answer>4</answer>"}, {"role": "user", "content": "And 3?"}]
    assert tok.apply_chat_template(conv, tokenize=False) == format_chat(conv)
    assert tok.apply_chat_template(conv, tokenize=False).count(EOS_TOKEN) == 1
    with pytest.raises(Exception):
        tok.apply_chat_template([{"role": "robot", "content": "x"}], tokenize=False)


def test_left_padding_for_generation(tok):
    b = tok(["1 + 1", "12345 + 67890"], padding=True, add_special_tokens=False)
    assert b.input_ids[0][0] == tok.pad_token_id and b.attention_mask[0][0] == 0
