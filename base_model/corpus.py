"""The pretraining corpus: a built-in synthetic one, user corpora, and streaming packing into fixed-length rows.

Synthetic corpus (`synthetic_corpus(seed)`): an endless, deterministic stream of documents that gives a tiny
model something worth learning, because the R1 stages after pretraining need a base model that can already do a
little arithmetic and knows the `<think>…</think><answer>…</answer>` shape:
  - arithmetic worked digit by digit (addition with carries, subtraction with borrows, multiplication by
    partial products), linear equations solved step by step, templated word problems with solutions,
  - small Python functions (with docstrings and an assert), and plain templated prose.
Each document has a difficulty level 1..5 (more digits, harder equations, longer stories), drawn with
weights that favour the easy levels (LEVEL_WEIGHTS). Worked math is
written in three shapes: the chat/R1 shape (`<|user|>question<|assistant|><think>steps</think><answer>x</answer>
<|endoftext|>`, exactly what `apply_chat_template` + a good completion looks like), the bare R1 shape
(question, then the tags, no role tokens), and plain prose ("Solution: … The answer is x."). Document i depends
only on (seed, i), so a stream can be restarted at any index in O(1) — exact resume needs that.

User corpora (`load_corpus(path)`): a .txt file (documents separated by a blank line), a .jsonl file (one object a
line, field `text`), a .parquet file (column `text`, read in record batches), a `datasets.save_to_disk`
directory, or a directory of such files. Everything streams: nothing needs the corpus to fit in memory.

Packing (`TokenPacker`): documents are tokenized in small batches, each followed by EOS, concatenated into one
token stream and cut into rows of exactly `seq_len` tokens (no padding, no tokens wasted). A document that
does not fit continues in the next row. Cross-document attention: causal attention inside a row is NOT masked
at document boundaries — a token may attend to the previous document's tokens, separated from it by EOS.
This is what GPT-2/3, nanoGPT and most LLM pretraining do; the model learns that EOS starts something
unrelated. Each row also carries `doc_ids` (a document index per token), so a caller that wants a
block-diagonal mask or per-document position ids can build one. The packer's state (documents consumed +
leftover tokens) is saved in checkpoints, so a resumed run sees exactly the rows it would have seen.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Iterable, Iterator

from base_model.tokenizer import format_chat

# ----------------------------------------------------------------------------------------------- arithmetic


def _digits_for(level: int, rng: random.Random) -> int:
    return rng.randint(level, level + 1)


def _rand_int(n_digits: int, rng: random.Random) -> int:
    return rng.randint(10 ** (n_digits - 1) if n_digits > 1 else 0, 10 ** n_digits - 1)


def add_steps(a: int, b: int) -> list[str]:
    """Column addition, right to left, one line per column with the carry."""
    sa, sb = str(a)[::-1], str(b)[::-1]
    steps, carry, out = [], 0, []
    for i in range(max(len(sa), len(sb))):
        da = int(sa[i]) if i < len(sa) else 0
        db = int(sb[i]) if i < len(sb) else 0
        s = da + db + carry
        steps.append(f"{da} + {db} + {carry} = {s}, write {s % 10}, carry {s // 10}")
        out.append(s % 10)
        carry = s // 10
    if carry:
        steps.append(f"write the last carry {carry}")
    steps.append(f"so {a} + {b} = {a + b}")
    return steps


def sub_steps(a: int, b: int) -> list[str]:
    """Column subtraction with borrows; a negative result is computed as -(b - a)."""
    if a < b:
        return [f"{a} is smaller than {b}, so {a} - {b} = -({b} - {a})"] + sub_steps(b, a)[:-1] + \
               [f"so {a} - {b} = {a - b}"]
    sa, sb = str(a)[::-1], str(b)[::-1]
    steps, borrow = [], 0
    for i in range(len(sa)):
        top, bot = int(sa[i]), int(sb[i]) if i < len(sb) else 0
        v = top - bot - borrow
        if v < 0:
            steps.append(f"{top} - {bot} - {borrow} is negative, borrow: {top + 10} - {bot} - {borrow} = {v + 10}, "
                         f"write {v + 10}, borrow 1")
            borrow = 1
        else:
            steps.append(f"{top} - {bot} - {borrow} = {v}, write {v}, borrow 0")
            borrow = 0
    steps.append(f"so {a} - {b} = {a - b}")
    return steps


def mul1_steps(a: int, d: int) -> list[str]:
    """Multi-digit times one digit, right to left with carries."""
    steps, carry = [], 0
    for ch in str(a)[::-1]:
        p = int(ch) * d + carry
        steps.append(f"{ch} * {d} + {carry} = {p}, write {p % 10}, carry {p // 10}")
        carry = p // 10
    if carry:
        steps.append(f"write the last carry {carry}")
    steps.append(f"so {a} * {d} = {a * d}")
    return steps


def mul_steps(a: int, b: int) -> list[str]:
    """Long multiplication: one partial product per digit of b, then their sum."""
    if b < 10:
        return mul1_steps(a, b)
    steps, partials = [], []
    for k, ch in enumerate(str(b)[::-1]):
        p = a * int(ch) * 10 ** k
        steps.append(f"{a} * {int(ch) * 10 ** k} = {p}")
        partials.append(p)
    total = partials[0]
    for p in partials[1:]:
        steps.append(f"{total} + {p} = {total + p}")
        total += p
    steps.append(f"so {a} * {b} = {a * b}")
    return steps


_ARITH_Q = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}.", "{a} {op} {b} = ?",
            "Find the value of {a} {op} {b}.", "Evaluate {a} {op} {b}."]


def arithmetic_problem(rng: random.Random, level: int) -> tuple[str, list[str], str]:
    op = rng.choice(["+", "+", "-", "-", "*"])
    if op == "*":
        a = _rand_int(min(level + 1, 4), rng)
        b = _rand_int(1 if level <= 2 else min(level - 1, 3), rng)
        steps = mul_steps(a, b)
        ans = a * b
    else:
        a, b = _rand_int(_digits_for(level, rng), rng), _rand_int(_digits_for(level, rng), rng)
        steps, ans = (add_steps(a, b), a + b) if op == "+" else (sub_steps(a, b), a - b)
    q = rng.choice(_ARITH_Q).format(a=a, b=b, op=op)
    # restate the operands first: copying a span is easy for attention, and the digits the steps need are then near
    return q, [f"{a} {op} {b}"] + steps, str(ans)


# ----------------------------------------------------------------------------------------------- equations


def _signed(v: int) -> str:
    return f"+ {v}" if v >= 0 else f"- {-v}"


def _eval_side(side: str, var: str, x: int) -> int:
    """Value of one side like '3x - 4' or '12' at var = x (the tiny grammar equation_problem writes)."""
    expr = side.replace(var, f"*({x})")
    if expr.startswith("*"):
        expr = "1" + expr
    return int(eval(expr, {"__builtins__": {}}))  # our own generated text: digits, x, + - * only


def equation_problem(rng: random.Random, level: int) -> tuple[str, list[str], str]:
    """Linear equations in one unknown with an integer solution; harder levels move x to both sides."""
    var = rng.choice("xxxyzn")
    x = rng.randint(-3 * level, 5 * level) if level >= 3 else rng.randint(0, 10 * level)
    a = rng.randint(2, 3 + 2 * level)
    b = rng.randint(-5 * level, 9 * level) or 1
    if level <= 1:
        c = x + b
        q = f"{var} {_signed(b)} = {c}"
        steps = [f"subtract {b} from both sides" if b > 0 else f"add {-b} to both sides",
                 f"{var} = {c} {_signed(-b)} = {x}"]
    elif level == 2:
        c = a * x
        q = f"{a}{var} = {c}"
        steps = [f"divide both sides by {a}", f"{var} = {c} / {a} = {x}"]
    elif level <= 4:
        c = a * x + b
        q = f"{a}{var} {_signed(b)} = {c}"
        steps = [f"move {b} to the right side: {a}{var} = {c} {_signed(-b)} = {c - b}",
                 f"divide by {a}: {var} = {c - b} / {a} = {x}"]
    else:
        c = rng.randint(1, a - 1)
        d = (a - c) * x + b
        q = f"{a}{var} {_signed(b)} = {c}{var} {_signed(d)}"
        steps = [f"subtract {c}{var} from both sides: {a - c}{var} {_signed(b)} = {d}",
                 f"move {b} to the right side: {a - c}{var} = {d} {_signed(-b)} = {d - b}",
                 f"divide by {a - c}: {var} = {d - b} / {a - c} = {x}"]
    left, right = q.split(" = ")
    steps.append(f"check: with {var} = {x}, {left} = {_eval_side(left, var, x)} and {right} = {_eval_side(right, var, x)}")
    prompt = rng.choice(["Solve for {v}: {q}", "Find {v} if {q}.", "Solve the equation {q}.", "What is {v} when {q}?"])
    return prompt.format(v=var, q=q), steps, str(x)


# ----------------------------------------------------------------------------------------------- word problems

_NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena", "Mia", "Noor",
          "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara"]
_ITEMS = ["apples", "books", "marbles", "pencils", "stamps", "cookies", "coins", "shells", "cards", "stickers"]


def word_problem(rng: random.Random, level: int) -> tuple[str, list[str], str]:
    n1, n2 = rng.sample(_NAMES, 2)
    item = rng.choice(_ITEMS)
    hi = 10 ** (level + 1) // 2
    kind = rng.choice(["more", "less", "groups", "share", "two_step"] if level >= 2 else ["more", "less", "groups"])
    if kind == "more":
        a, b = rng.randint(2, hi), rng.randint(2, hi)
        q = f"{n1} has {a} {item}. {n2} gives {n1} {b} more. How many {item} does {n1} have now?"
        steps, ans = [f"{n1} starts with {a} and gets {b}", f"{a} + {b} = {a + b}"], a + b
    elif kind == "less":
        a = rng.randint(3, hi)
        b = rng.randint(1, a)
        q = f"{n1} had {a} {item} and gave {b} of them to {n2}. How many {item} does {n1} have left?"
        steps, ans = [f"{n1} gives away {b} of {a}", f"{a} - {b} = {a - b}"], a - b
    elif kind == "groups":
        a, b = rng.randint(2, 3 + 3 * level), rng.randint(2, 3 + 3 * level)
        q = f"There are {a} boxes with {b} {item} in each box. How many {item} are there in total?"
        steps, ans = [f"{a} boxes of {b} each", f"{a} * {b} = {a * b}"], a * b
    elif kind == "share":
        per, k = rng.randint(2, 4 + 3 * level), rng.randint(2, 2 + 2 * level)
        q = f"{n1} shares {per * k} {item} equally among {k} friends. How many {item} does each friend get?"
        steps, ans = [f"divide {per * k} by {k}", f"{per * k} / {k} = {per}"], per
    else:
        a, b, c = rng.randint(5, hi), rng.randint(1, hi), rng.randint(1, hi)
        q = (f"{n1} has {a} {item}. {n1} buys {b} more and then gives {c} to {n2}. "
             f"How many {item} does {n1} have now?")
        steps, ans = [f"after buying: {a} + {b} = {a + b}", f"after giving: {a + b} - {c} = {a + b - c}"], a + b - c
    return q, steps, str(ans)


# ----------------------------------------------------------------------------------------------- code

_CODE = [
    ("add", ["a", "b"], "Return the sum of {0} and {1}.", "return {0} + {1}", lambda a, b: a + b, "int2"),
    ("subtract", ["a", "b"], "Return {0} minus {1}.", "return {0} - {1}", lambda a, b: a - b, "int2"),
    ("multiply", ["a", "b"], "Return the product of {0} and {1}.", "return {0} * {1}", lambda a, b: a * b, "int2"),
    ("square", ["n"], "Return {0} squared.", "return {0} * {0}", lambda n: n * n, "int1"),
    ("is_even", ["n"], "Return True if {0} is even.", "return {0} % 2 == 0", lambda n: n % 2 == 0, "int1"),
    ("maximum", ["a", "b"], "Return the larger of {0} and {1}.", "if {0} > {1}:\n        return {0}\n    return {1}",
     lambda a, b: max(a, b), "int2"),
    ("absolute", ["n"], "Return the absolute value of {0}.", "if {0} < 0:\n        return -{0}\n    return {0}",
     abs, "int1"),
    ("sum_list", ["xs"], "Return the sum of the numbers in {0}.",
     "total = 0\n    for x in {0}:\n        total += x\n    return total", sum, "list"),
    ("count_positive", ["xs"], "Count the positive numbers in {0}.",
     "count = 0\n    for x in {0}:\n        if x > 0:\n            count += 1\n    return count",
     lambda xs: sum(1 for x in xs if x > 0), "list"),
    ("factorial", ["n"], "Return the factorial of {0}.",
     "result = 1\n    for i in range(2, {0} + 1):\n        result *= i\n    return result",
     lambda n: __import__("math").factorial(n), "small"),
    ("reverse", ["s"], "Return the string {0} reversed.", "return {0}[::-1]", lambda s: s[::-1], "str"),
    ("count_vowels", ["s"], "Count the vowels in the string {0}.",
     "return sum(1 for c in {0} if c in 'aeiou')", lambda s: sum(1 for c in s if c in "aeiou"), "str"),
]
_ARGNAMES = {"a": ["a", "x", "first"], "b": ["b", "y", "second"], "n": ["n", "k", "value"], "xs": ["xs", "nums", "items"],
             "s": ["s", "text", "word"]}
_WORDS = ["apple", "river", "stone", "python", "garden", "cloud", "lemon", "tiger", "music", "planet"]


def code_document(rng: random.Random, level: int) -> str:
    name, args, doc, body, fn, kind = rng.choice(_CODE)
    names = [rng.choice(_ARGNAMES[a]) for a in args]
    if len(set(names)) < len(names):
        names = args
    src = f"def {name}({', '.join(names)}):\n    \"\"\"{doc.format(*names)}\"\"\"\n    {body.format(*names)}\n"
    tests = []
    for _ in range(min(level, 3)):
        if kind == "int2":
            v = (rng.randint(-20 * level, 20 * level), rng.randint(-20 * level, 20 * level))
        elif kind == "int1":
            v = (rng.randint(-20 * level, 20 * level),)
        elif kind == "small":
            v = (rng.randint(0, 3 + level),)
        elif kind == "list":
            v = ([rng.randint(-9, 9) for _ in range(rng.randint(1, 2 + level))],)
        else:
            v = (rng.choice(_WORDS),)
        tests.append(f"assert {name}({', '.join(repr(x) for x in v)}) == {fn(*v)!r}")
    return src + "\n\n" + "\n".join(tests) + "\n"


# ----------------------------------------------------------------------------------------------- prose

_ANIMALS = ["cat", "dog", "fox", "owl", "horse", "rabbit", "bear", "duck"]
_PLACES = ["the forest", "the river", "the market", "the hill", "the village", "the garden", "the school", "the lake"]
_ADJ = ["small", "quiet", "brave", "old", "happy", "curious", "tired", "clever"]
_FACTS = ["Water boils at 100 degrees Celsius at sea level.", "The sun rises in the east and sets in the west.",
          "A week has seven days.", "A triangle has three sides.", "Plants need light and water to grow.",
          "Ice is frozen water.", "A year has twelve months.", "The moon goes around the earth.",
          "A square has four equal sides.", "Bees make honey from the nectar of flowers.",
          "Even numbers can be divided by two without a remainder.", "Zero is neither positive nor negative."]


def _number_fact(rng: random.Random, level: int) -> str:
    n = rng.randint(1, 10 ** (level + 1))
    parity = "even" if n % 2 == 0 else "odd"
    return f"The number {n} is {parity}. {n} plus one is {n + 1}, and {n} times two is {2 * n}."


def prose_document(rng: random.Random, level: int) -> str:
    sents = []
    for _ in range(1 + level):
        r = rng.random()
        if r < 0.45:
            name, animal, place, adj = rng.choice(_NAMES), rng.choice(_ANIMALS), rng.choice(_PLACES), rng.choice(_ADJ)
            sents.append(rng.choice([
                f"{name} saw a {adj} {animal} near {place}.",
                f"One morning, {name} walked to {place} and met a {adj} {animal}.",
                f"The {adj} {animal} lived near {place} with its family.",
                f"{name} told a story about a {animal} from {place}.",
            ]))
        elif r < 0.75:
            sents.append(rng.choice(_FACTS))
        else:
            sents.append(_number_fact(rng, level))
    return " ".join(sents)


# ----------------------------------------------------------------------------------------------- the mix


def render_math(rng: random.Random, question: str, steps: list[str], answer: str, r1_share: float) -> str:
    """Write a worked problem in the chat/R1 shape, the bare R1 shape, or plain prose."""
    r = rng.random()
    think = "<think>\n" + "\n".join(steps) + "\n</think>\n<answer>" + answer + "</answer>"
    if r < r1_share * 0.75:
        return format_chat([{"role": "user", "content": question}, {"role": "assistant", "content": think}])
    if r < r1_share:
        return f"Question: {question}\n{think}"
    return f"Problem: {question}\nSolution:\n" + "\n".join(steps) + f"\nThe answer is {answer}."


# Easy problems are the most frequent (a small model learns the digit procedure on them first), hard ones stay present.
LEVEL_WEIGHTS = [0.30, 0.25, 0.20, 0.15, 0.10] + [0.05] * 20
DEFAULT_MIX = {"arithmetic": 0.40, "equation": 0.15, "word_problem": 0.15, "code": 0.12, "prose": 0.18}


def synthetic_document(seed: int, index: int, max_level: int = 5, r1_share: float = 0.75,
                       mix: dict[str, float] | None = None) -> dict:
    """Document `index` of the stream for `seed`: {"text", "kind", "level"}. Depends only on its arguments."""
    rng = random.Random(f"r1lab-corpus-{seed}-{index}")
    mix = mix or DEFAULT_MIX
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    level = rng.choices(range(1, max_level + 1), weights=LEVEL_WEIGHTS[:max_level])[0]
    if kind in ("arithmetic", "equation", "word_problem"):
        gen = {"arithmetic": arithmetic_problem, "equation": equation_problem, "word_problem": word_problem}[kind]
        q, steps, ans = gen(rng, level)
        text = render_math(rng, q, steps, ans, r1_share)
    elif kind == "code":
        text = code_document(rng, level)
    elif kind == "prose":
        text = prose_document(rng, level)
    else:
        raise ValueError(f"corpus mix: unknown kind {kind!r} (expected one of {sorted(DEFAULT_MIX)})")
    return {"text": text, "kind": kind, "level": level}


def synthetic_corpus(seed: int = 0, start: int = 0, max_level: int = 5, r1_share: float = 0.75,
                     mix: dict[str, float] | None = None, limit: int | None = None) -> Iterator[str]:
    """Endless (or `limit`-long) deterministic stream of synthetic documents, beginning at document `start`."""
    i = start
    while limit is None or i < start + limit:
        yield synthetic_document(seed, i, max_level, r1_share, mix)["text"]
        i += 1


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


def corpus_factory(spec: str | Path = "synthetic", seed: int = 0, field: str = "text",
                   **synthetic_kwargs) -> Callable[[int], Iterator[str]]:
    """A function start -> document iterator beginning at document `start` (O(1) for synthetic, a skip otherwise)."""
    if str(spec) == "synthetic":
        return lambda start: synthetic_corpus(seed=seed, start=start, **synthetic_kwargs)

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

    def __init__(self, docs: Callable[[int], Iterator[str]], tokenizer, seq_len: int, batch_docs: int = 64):
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


def iter_texts(docs: Iterable[str], n: int) -> Iterator[str]:
    """The first n documents (for tokenizer training)."""
    for i, d in enumerate(docs):
        if i >= n:
            return
        yield d
