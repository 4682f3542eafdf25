"""base_model's corpus plumbing: user corpora stream, a document-stream factory passes through, packing is exact and
resumable. (r1lab's synthetic corpus itself: tests/test_synthetic_corpus.py.)"""
import itertools
import json

import pytest

from base_model.corpus import TokenPacker, corpus_factory, doc_attention_mask, load_corpus
from base_model.tokenizer import train_tokenizer
from r1lab.tasks.corpus import synthetic_corpus, synthetic_factory


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(synthetic_corpus(seed=1, limit=300), vocab_size=500)


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


def test_a_factory_passes_through_and_synthetic_names_r1lab():
    f = synthetic_factory(seed=5)
    assert corpus_factory(f) is f
    with pytest.raises(ValueError, match="r1lab.tasks.corpus"):
        corpus_factory("synthetic")


def test_packing_is_exact_and_resumable(tok):
    docs = corpus_factory(synthetic_factory(seed=5))
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
