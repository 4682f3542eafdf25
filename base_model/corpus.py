"""The pretraining corpus, generically: user corpora that stream, and packing them into fixed-length rows.

A corpus, for pretraining, is a document-stream factory: a function `start -> iterator of documents beginning at
document start`. `corpus_factory(spec)` makes one from a path or passes a factory through; r1lab's synthetic
corpus (worked problems from r1lab/tasks, `r1lab.tasks.corpus.synthetic_factory`) is such a factory, restartable
in O(1), which the r1lab `pretrain` stage hands to `base_model.pretrain.pretrain`. `python -m r1lab.tasks.corpus
--out corpus.jsonl` writes it to a file for the CLIs here, which take paths only.

User corpora (`load_corpus(path)`): a .txt file (documents separated by a blank line), a .jsonl file (one object a
line, field `text`), a .parquet file (column `text`, read in record batches), a `datasets.save_to_disk`
directory, or a directory of such files. Everything streams: nothing needs the corpus to fit in memory.

Packing (`TokenPacker`): documents are tokenized in small batches, each followed by EOS, concatenated into one
token stream and cut into rows of exactly `seq_len` tokens (no padding, no tokens wasted). A document that
does not fit continues in the next row. Cross-document attention: causal attention inside a row is NOT masked
at document boundaries — a token may attend to the previous document's tokens, separated from it by EOS.
This is what GPT-2/3, nanoGPT and most LLM pretraining do; the model learns that EOS starts something
unrelated. Each row also carries `doc_ids` (a document index per token), so a caller that wants a
block-diagonal mask or per-document position ids can build one (`doc_attention_mask`). The packer's state
(documents consumed + leftover tokens) is saved in checkpoints, so a resumed run sees exactly the rows it would
have seen.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

DocFactory = Callable[[int], Iterator[str]]   # start -> the documents from index `start` on

# `--corpus synthetic` (PretrainConfig's default) names r1lab's corpus, which base_model cannot import.
SYNTHETIC_HINT = ("corpus 'synthetic' is r1lab's (worked problems from r1lab/tasks): write it with "
                  "`python -m r1lab.tasks.corpus --out corpus.jsonl` and pass --corpus corpus.jsonl, "
                  "or pretrain through an r1lab pipeline's `pretrain` stage")

# ----------------------------------------------------------------------------------------------- user corpora


def _iter_txt(path: Path) -> Iterator[str]:
    buf: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() == "":
                if buf:
                    yield "".join(buf).rstrip("\n")
                    buf = []
            else:
                buf.append(line)
    if buf:
        yield "".join(buf).rstrip("\n")


def _iter_jsonl(path: Path, field: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if field not in row:
                raise ValueError(f"{path}:{n}: no key {field!r} (expected a string field {field!r} per line)")
            yield row[field]


def _iter_parquet(path: Path, field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if field not in pf.schema_arrow.names:
        raise ValueError(f"{path}: no column {field!r} (columns: {pf.schema_arrow.names})")
    for batch in pf.iter_batches(batch_size=1024, columns=[field]):
        yield from batch.column(0).to_pylist()


def _iter_datasets_dir(path: Path, field: str) -> Iterator[str]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    if field not in ds.column_names:
        raise ValueError(f"{path}: no column {field!r} (columns: {ds.column_names})")
    for i in range(0, len(ds), 1024):  # memory-mapped arrow: only one slice is materialised at a time
        yield from ds[i:i + 1024][field]


def load_corpus(path: str | Path, field: str = "text") -> Iterator[str]:
    """Stream the documents of a user corpus (see the module docstring for the accepted layouts)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"corpus {p}: no such file or directory")
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists():
            yield from _iter_datasets_dir(p, field)
            return
        files = sorted(f for f in p.rglob("*") if f.suffix in (".txt", ".jsonl", ".parquet"))
        if not files:
            raise ValueError(f"corpus {p}: directory holds no .txt/.jsonl/.parquet files and is not a datasets dir")
        for f in files:
            yield from load_corpus(f, field)
        return
    if p.suffix == ".txt":
        yield from _iter_txt(p)
    elif p.suffix == ".jsonl":
        yield from _iter_jsonl(p, field)
    elif p.suffix == ".parquet":
        yield from _iter_parquet(p, field)
    else:
        raise ValueError(f"corpus {p}: unsupported file type {p.suffix!r} (expected .txt, .jsonl, .parquet or a datasets dir)")


def corpus_factory(spec: str | Path | DocFactory, field: str = "text") -> DocFactory:
    """A document-stream factory: `spec` itself if it is one (a callable), else one over the user corpus at path
    `spec` (restarting at document `start` skips that many documents)."""
    if callable(spec):
        return spec
    if str(spec) == "synthetic":
        raise ValueError(SYNTHETIC_HINT)

    def from_path(start: int) -> Iterator[str]:
        it = load_corpus(spec, field)
        for _ in range(start):
            next(it, None)
        return it
    return from_path


# ----------------------------------------------------------------------------------------------- packing


class TokenPacker:
    """Stream documents -> tokens (+EOS after each) -> rows of exactly `seq_len` tokens, resumable.

    `next_row()` returns (input_ids, doc_ids), both lists of `seq_len` ints. `state_dict()` / `load_state_dict()`
    capture the position (documents consumed + the leftover token buffer), so a restart yields the same rows.
    """

    def __init__(self, docs: DocFactory, tokenizer, seq_len: int, batch_docs: int = 64):
        self.docs, self.tok, self.seq_len, self.batch_docs = docs, tokenizer, seq_len, batch_docs
        self.eos = tokenizer.eos_token_id
        self.docs_consumed = 0              # documents already tokenized into the buffer
        self.buf: list[int] = []            # tokens not yet emitted
        self.buf_doc: list[int] = []        # document index of each buffered token
        self._it: Iterator[str] | None = None

    def _refill(self):
        if self._it is None:
            self._it = self.docs(self.docs_consumed)
        batch = []
        for _ in range(self.batch_docs):
            d = next(self._it, None)
            if d is None:
                break
            batch.append(d)
        if not batch:
            if not self.buf and self.docs_consumed == 0:
                raise ValueError("corpus is empty")
            self._it = self.docs(0)       # finite corpus: start another epoch over it
            self.docs_consumed = 0
            return
        enc = self.tok(batch, add_special_tokens=False)["input_ids"]
        for ids in enc:
            ids = list(ids) + [self.eos]
            self.buf.extend(ids)
            self.buf_doc.extend([self.docs_consumed] * len(ids))
            self.docs_consumed += 1

    def next_row(self) -> tuple[list[int], list[int]]:
        while len(self.buf) < self.seq_len:
            self._refill()
        row, doc = self.buf[:self.seq_len], self.buf_doc[:self.seq_len]
        del self.buf[:self.seq_len], self.buf_doc[:self.seq_len]
        return row, doc

    def next_batch(self, batch_size: int):
        """A [batch_size, seq_len] LongTensor of token ids and the matching doc_ids tensor."""
        import torch

        rows = [self.next_row() for _ in range(batch_size)]
        return torch.tensor([r for r, _ in rows]), torch.tensor([d for _, d in rows])

    def state_dict(self) -> dict:
        return {"docs_consumed": self.docs_consumed, "buf": list(self.buf), "buf_doc": list(self.buf_doc)}

    def load_state_dict(self, s: dict):
        self.docs_consumed = int(s["docs_consumed"])
        self.buf, self.buf_doc = list(s["buf"]), list(s["buf_doc"])
        self._it = None


def doc_attention_mask(doc_ids) -> "torch.Tensor":
    """Block-diagonal causal mask [B, 1, S, S] (True = may attend) for callers that want no cross-document attention."""
    import torch

    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    causal = torch.ones(doc_ids.shape[1], doc_ids.shape[1], dtype=torch.bool, device=doc_ids.device).tril()
    return (same & causal)[:, None]
