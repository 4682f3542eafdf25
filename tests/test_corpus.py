"""The corpus: correct worked solutions, deterministic and graded; user corpora stream; packing is exact and resumable."""
import itertools
import json
import random
import re

import pytest

from base_model.corpus import (TokenPacker, add_steps, corpus_factory, doc_attention_mask, equation_problem,
                               load_corpus, mul_steps, sub_steps, synthetic_corpus, synthetic_document)
from base_model.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(synthetic_corpus(seed=1, limit=300), vocab_size=500)


def test_deterministic_and_restartable():
    a = list(synthetic_corpus(seed=3, limit=50))
    assert a == list(synthetic_corpus(seed=3, limit=50))
    assert a != list(synthetic_corpus(seed=4, limit=50))
    assert a[20:50] == list(synthetic_corpus(seed=3, start=20, limit=30))   # O(1) restart at any index


def test_step_functions_compute_the_right_result():
    rng = random.Random(0)
    for _ in range(300):
        a, b = rng.randint(0, 10 ** 6), rng.randint(0, 10 ** 6)
        sa = add_steps(a, b)
        assert sa[-1] == f"so {a} + {b} = {a + b}"
        written = [int(m) for m in re.findall(r"write (?:the last carry )?(\d+)", "\n".join(sa))]
        assert int("".join(map(str, written[::-1]))) == a + b               # the digits written are the answer
        ss = sub_steps(a, b)
        assert ss[-1] == f"so {a} - {b} = {a - b}"
        big, small = max(a, b), min(a, b)
        written = [int(m) for m in re.findall(r"write (\d+)", "\n".join(ss))]
        assert int("".join(map(str, written[::-1]))) == big - small
        m = rng.randint(0, 999)
        assert mul_steps(a, m)[-1] == f"so {a} * {m} = {a * m}"


def _check_math_doc(text):
    """Recompute the answer of a worked problem from its question; return True if the doc states it."""
    ans = re.search(r"<answer>(-?\d+)</answer>", text) or re.search(r"The answer is (-?\d+)\.", text)
    assert ans, text
    ans = int(ans.group(1))
    m_eq = re.search(r"([xyzn]) = (-?\d+), (.+?) = (-?\d+) and (.+?) = (-?\d+)", text)
    if m_eq:                                            # equation: the check line agrees and substitutes the answer
        assert int(m_eq.group(2)) == ans and m_eq.group(4) == m_eq.group(6)
        return True
    final = re.search(r"so (\d+) ([-+*]) (\d+) = (-?\d+)", text)
    if final:
        x, op, y, v = int(final.group(1)), final.group(2), int(final.group(3)), int(final.group(4))
        assert v == ans == {"+": x + y, "-": x - y, "*": x * y}[op], text
        return True
    last = re.findall(r"(\d+) ([-+*/]) (\d+) = (-?\d+)", text)       # word problem: last step is the answer
    assert last and int(last[-1][3]) == ans, text
    return True


def test_worked_math_documents_are_correct_and_mixed_format():
    kinds, r1, chat, checked = {}, 0, 0, 0
    for i in range(600):
        d = synthetic_document(7, i, r1_share=0.5)
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
        t = d["text"]
        if d["kind"] in ("arithmetic", "equation", "word_problem"):
            checked += _check_math_doc(t)
            if "<think>" in t:
                r1 += 1
                assert re.search(r"<think>\n.+\n</think>\n<answer>-?\d+</answer>", t, re.S), t
                chat += t.startswith("<|user|>") and t.endswith("<|endoftext|>")
        if d["kind"] == "word_problem":
            steps = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", t)
            for x, op, y, v in steps:
                assert {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y),
                        "/": int(x) // int(y)}[op] == int(v)
    n_math = kinds["arithmetic"] + kinds["equation"] + kinds["word_problem"]
    assert set(kinds) == {"arithmetic", "equation", "word_problem", "code", "prose"}
    assert 0.35 < r1 / n_math < 0.65 and 0.2 < chat / n_math < 0.55     # r1_share=0.5, 3/4 of it chat-shaped
    assert checked == n_math


def test_code_documents_run_and_their_asserts_pass():
    n = 0
    for i in range(400):
        d = synthetic_document(11, i)
        if d["kind"] == "code":
            exec(compile(d["text"], f"doc{i}", "exec"), {})
            n += 1
    assert n > 20


def test_difficulty_is_graded():
    def mean_digits(level):
        rng = random.Random(level)
        qs = [equation_problem(rng, level)[0] for _ in range(100)]
        return sum(len(re.findall(r"\d", q)) for q in qs) / len(qs)
    assert mean_digits(1) < mean_digits(3) < mean_digits(5)
    by_level = {}
    for i in range(600):
        d = synthetic_document(0, i)
        if d["kind"] == "arithmetic":
            by_level.setdefault(d["level"], []).append(len(d["text"]))
    means = [sum(v) / len(v) for _, v in sorted(by_level.items())]
    assert means == sorted(means) and means[-1] > 1.5 * means[0]


def test_user_corpora_stream(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\nline two\n\n\nsecond doc\n")
    assert list(load_corpus(tmp_path / "a.txt")) == ["first doc\nline two", "second doc"]
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "j1"}) + "\n" + json.dumps({"text": "j2", "x": 1}) + "\n")
    assert list(load_corpus(tmp_path / "b.jsonl")) == ["j1", "j2"]
    import datasets
    datasets.Dataset.from_dict({"text": ["p1", "p2", "p3"]}).to_parquet(str(tmp_path / "c.parquet"))
    assert list(load_corpus(tmp_path / "c.parquet")) == ["p1", "p2", "p3"]
    datasets.Dataset.from_dict({"text": ["d1", "d2"]}).save_to_disk(str(tmp_path / "ds"))
    assert list(load_corpus(tmp_path / "ds")) == ["d1", "d2"]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.jsonl").write_text(json.dumps({"text": "f1"}) + "\n")
    (flat / "y.txt").write_text("f2\n")
    assert list(load_corpus(flat)) == ["f1", "f2"]
    assert list(itertools.islice(corpus_factory(tmp_path / "b.jsonl")(1), 5)) == ["j2"]


def test_user_corpus_errors_name_file_and_key(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"content": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: no key 'text'"):
        list(load_corpus(tmp_path / "bad.jsonl"))
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        list(load_corpus(tmp_path / "bad.csv"))
    with pytest.raises(FileNotFoundError):
        list(load_corpus(tmp_path / "missing.txt"))


def test_packing_is_exact_and_resumable(tok):
    docs = corpus_factory("synthetic", seed=5)
    p = TokenPacker(docs, tok, seq_len=64, batch_docs=8)
    rows = [p.next_row() for _ in range(30)]
    assert all(len(r) == len(d) == 64 for r, d in rows)
    stream = [t for r, _ in rows for t in r]
    expect = []
    for text in synthetic_corpus(seed=5):
        expect += tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
        if len(expect) >= len(stream):
            break
    assert stream == expect[:len(stream)]                 # no token lost, EOS between documents
    doc_ids = [d for _, ds in rows for d in ds]
    assert doc_ids == sorted(doc_ids) and doc_ids[0] == 0
    # resume: a fresh packer loaded with the state after 12 rows gives rows 12.. exactly
    p2 = TokenPacker(docs, tok, seq_len=64, batch_docs=8)
    for _ in range(12):
        p2.next_row()
    state = json.loads(json.dumps(p2.state_dict()))       # survives serialisation
    p3 = TokenPacker(docs, tok, seq_len=64, batch_docs=8)
    p3.load_state_dict(state)
    assert [p3.next_row() for _ in range(18)] == rows[12:]


def test_finite_corpus_wraps_into_a_new_epoch(tmp_path, tok):
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": f"doc number {i}"}) + "\n" for i in range(3)))
    p = TokenPacker(corpus_factory(tmp_path / "c.jsonl"), tok, seq_len=16, batch_docs=2)
    x, _ = p.next_batch(6)
    assert x.shape == (6, 16)
    text = tok.decode(x.flatten().tolist())
    assert text.count("doc number 0") >= 2


def test_doc_attention_mask_blocks_other_documents():
    import torch
    m = doc_attention_mask(torch.tensor([[0, 0, 1, 1, 1]]))[0, 0]
    assert m[1, 0] and not m[0, 1] and not m[2, 1] and m[4, 2] and m[4, 4]
