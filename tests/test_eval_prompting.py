"""Prompting (R1's instruction through the chat template, templates that pre-open <think>) and benchmark loading."""
import json

import pytest

from eval_helpers import THINK_TEMPLATE, train_tokenizer
from r1lab.eval.benchmarks import BUILTIN, load_benchmark
from r1lab.eval.prompting import R1_INSTRUCTION, PromptBuilder, answer_region


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer()


def test_chat_prompt_carries_r1_instruction(tok):
    p = PromptBuilder(tok)("What is 2+3?")
    assert p.text == f"<|user|>What is 2+3?\n{R1_INSTRUCTION}<|end|><|assistant|>"
    assert tok.decode(p.ids, skip_special_tokens=False) == p.text     # no doubled BOS, round trips
    assert p.prefill == ""
    sysp = PromptBuilder(tok, system="Be brief.")("Q")
    assert sysp.text.startswith("<|system|>Be brief.<|end|><|user|>Q\n")


def test_template_that_preopens_think(tok):
    tok2 = train_tokenizer(chat_template=THINK_TEMPLATE)
    p = PromptBuilder(tok2)("What is 2+3?")
    assert p.text.endswith("<|assistant|><think>\n") and p.prefill == "<think>\n"
    # the model continues inside <think>; the answer is looked for after </think> in prefill + completion
    completion = "2+3 is \\boxed{6}? no, 5.</think>The answer is \\boxed{5}."
    assert answer_region(p.prefill + completion) == "The answer is \\boxed{5}."
    # think=True adds the opening to a template that does not have it, and says so
    q = PromptBuilder(tok, think=True)("What is 2+3?")
    assert q.text.endswith("<|assistant|><think>\n") and q.prefill == "<think>\n"
    # no </think>: the whole response is the answer region
    assert answer_region("so \\boxed{5}") == "so \\boxed{5}"


def test_raw_templates(tok):
    p = PromptBuilder(tok, template="raw")("1+1?")
    assert p.text == f"Problem: 1+1?\n{R1_INSTRUCTION}\n\nSolution:"
    z = PromptBuilder(tok, template="r1zero")("1+1?", instruction=None)
    assert "<think> reasoning process here </think>" in z.text and z.text.endswith("User: 1+1?. Assistant:")
    c = PromptBuilder(tok, template="Q: {problem}\nA:")("1+1?", instruction=None)
    assert c.text == "Q: 1+1?\nA:"
    with pytest.raises(ValueError, match="template"):
        PromptBuilder(tok, template="nonsense")
    tok.chat_template = None
    try:
        assert PromptBuilder(tok).template == "raw"         # auto falls back to raw without a chat template
        with pytest.raises(ValueError, match="no chat_template"):
            PromptBuilder(tok, template="chat")
    finally:
        tok.chat_template = train_tokenizer().chat_template


def test_builtin_benchmarks_load():
    sizes = {"gsm8k": 1319, "math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "humaneval": 164, "mbpp": 500}
    for name in BUILTIN:
        b = load_benchmark(name)
        assert len(b) == sizes[name]
        assert len({r["id"] for r in b.rows}) == len(b)
        key = "answer" if b.kind == "math" else "tests"
        assert all(r.get(key) for r in b.rows) and all(r["problem"] for r in b.rows)
    m = load_benchmark("math500", limit=7)
    assert len(m) == 7 and m.breakdown == ("subject", "level") and "level" in m.rows[0]
    he = load_benchmark("humaneval", limit=1).rows[0]
    assert he["tests"].rstrip().endswith("check(has_close_elements)")


def test_user_jsonl_with_configurable_columns(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"{i}+1?", "a": i + 1, "level": i % 2}) for i in range(5)))
    b = load_benchmark(f"myset={path}", problem_key="q", answer_key="a")
    assert b.name == "myset" and len(b) == 5 and b.rows[2]["problem"] == "2+1?" and b.rows[2]["answer"] == "3"
    assert b.breakdown == ("level",)
    with pytest.raises(ValueError, match="no answer column 'answer'"):
        load_benchmark(str(path), problem_key="q")
    with pytest.raises(ValueError, match="not a built-in"):
        load_benchmark("no_such_benchmark")


def test_synthetic_task_by_name_and_difficulty():
    b = load_benchmark("task:arithmetic@2-3", limit=10)
    assert b.name == "arithmetic_d2-3" and len(b) == 10 and {r["difficulty"] for r in b.rows} == {2, 3}
    assert b.kind == "math" and b.instruction is None and b.breakdown == ("difficulty",)
    assert load_benchmark("task:countdown", limit=3).kind == "countdown"
    assert load_benchmark("task:code", limit=3).kind == "code"
    train = {r["id"] for r in __import__("r1lab.tasks", fromlist=["task_rows"]).task_rows("arithmetic", n=100, split="train")}
    assert not train & {r["id"] for r in load_benchmark("task:arithmetic", limit=50).rows}   # test split only
    with pytest.raises(ValueError, match="difficulty after '@'"):
        load_benchmark("task:arithmetic@x")


def test_synthetic_task_without_limit_takes_what_there_is():
    b = load_benchmark("task:code")            # fewer distinct test problems than the default 100: all of them
    assert 0 < len(b) <= 100 and len({r["id"] for r in b.rows}) == len(b)
