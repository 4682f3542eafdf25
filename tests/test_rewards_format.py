"""Format and length rewards."""

import math

from rewards.format import (cosine_length, language_consistency, overlong, overlong_penalty, tag_count,
                            think_format)


def test_think_format():
    good = "<think>\nstep\n</think>\n<answer>4</answer>"
    bad = ["<think>a</think>4", "<answer>4</answer>", "<think>a</think><answer>1</answer><answer>2</answer>",
           "<think>a<think>b</think><answer>1</answer>", "<think>a</think><answer> </answer>"]
    assert think_format([good] + bad) == [1.0] + [0.0] * len(bad)


def test_think_format_when_template_opened_think():
    text = "step\n</think>\n<answer>4</answer>"
    assert think_format([text], prompts=["<|Assistant|><think>\n"]) == [1.0]
    assert think_format([text], prompts=["<|Assistant|>"]) == [0.0]


def test_tag_count():
    assert tag_count(["<think>a</think><answer>1</answer>", "<think>a</think>", "nothing",
                      "<think><think></think>"]) == [1.0, 0.5, 0.0, 0.25]


def test_language_consistency():
    en = "<think>First add the two numbers then divide</think><answer>3</answer>"
    mixed = "<think>First 我们 add 两个数 then divide</think><answer>3</answer>"
    zh = "<think>我们先把两个数相加</think><answer>3</answer>"
    out = language_consistency([en, mixed, zh], prompts=["What is 1+2?"] * 3)
    assert out[0] == 1.0 and 0.5 < out[1] < 1.0 and out[2] == 0.0
    assert language_consistency([zh], language=["zh"]) == [1.0]


def test_overlong_penalty_dapo():
    assert overlong(100, 1000, 200) == 0.0
    assert overlong(900, 1000, 200) == -0.5
    assert overlong(1000, 1000, 200) == -1.0 and overlong(5000, 1000, 200) == -1.0
    ids = [[0] * 700, [0] * 900]
    assert overlong_penalty(["a", "b"], completion_ids=ids, max_length=1000, cache_length=200) == [0.0, -0.5]


def test_cosine_length():
    short_right, long_right = r"\boxed{3}", "x" * 1000 + r"\boxed{3}"
    short_wrong, long_wrong = r"\boxed{4}", "x" * 1000 + r"\boxed{4}"
    r = cosine_length([short_right, long_right, short_wrong, long_wrong, "x"], answer=["3"] * 4 + [None],
                      max_length=1000)
    assert r[0] > r[1] > 0 > r[3] > r[2] and r[4] is None
    assert math.isclose(r[1], 0.5, abs_tol=1e-9) and math.isclose(r[3], -0.5, abs_tol=1e-9)
