"""The registry: names, module:function, file.py:function, entry points, YAML, errors, combine."""

import sys
import textwrap

import pytest
import yaml

import rewards
from rewards import RewardError, combine, get_reward, list_rewards, register


def test_builtins_listed_with_docs():
    found = list_rewards()
    for name in ("math_accuracy", "think_format", "code_tests", "tag_count", "language_consistency",
                 "overlong_penalty", "cosine_length"):
        assert name in found and rewards.describe(found[name])


def test_register_and_lookup_by_name():
    @register("test_len_reward")
    def f(completions, **kw):
        """Length of each completion."""
        return [float(len(c)) for c in completions]

    assert get_reward("test_len_reward")(["ab", "c"]) == [2.0, 1.0]
    assert "test_len_reward" in list_rewards()


def test_module_colon_function():
    fn = get_reward("rewards.format:tag_count")
    assert fn(["<think>a</think><answer>b</answer>"]) == [1.0]


def test_unknown_name_lists_close_matches():
    with pytest.raises(RewardError) as e:
        get_reward("math_acuracy")
    msg = str(e.value)
    assert "math_accuracy" in msg and "\n" not in msg


def test_user_file_named_in_yaml_gets_dataset_columns(tmp_path):
    user = tmp_path / "my_rewards.py"
    user.write_text(textwrap.dedent('''
        def keyword(completions, prompts, keyword, difficulty, **kw):
            return [float(k in c) * d for c, k, d in zip(completions, keyword, difficulty)]
    '''))
    cfg = yaml.safe_load(f"rewards:\n  - name: {user}:keyword\n    weight: 0.5\n  - name: think_format\n    weight: 1\n")
    specs = {r["name"]: r["weight"] for r in cfg["rewards"]}
    total = combine(specs)
    batch = {"prompts": ["p1", "p2"], "keyword": ["cat", "dog"], "difficulty": [2.0, 4.0]}
    out = total(["a cat", "<think>x</think><answer>dog</answer>"], **batch)
    assert out == [0.5 * 2.0, 0.5 * 4.0 + 1.0]
    assert total.last_parts[f"{user}:keyword"] == [2.0, 4.0]


def test_entry_point_group(tmp_path, monkeypatch):
    pkg = tmp_path / "ep_reward_pkg.py"
    pkg.write_text("def always_one(completions, **kw):\n    'Always 1.'\n    return [1.0] * len(completions)\n")
    dist = tmp_path / "ep_reward_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-reward-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[r1lab.rewards]\nalways_one = ep_reward_pkg:always_one\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_reward("always_one")(["x", "y"]) == [1.0, 1.0]
    assert "always_one" in list_rewards()


def test_raising_user_reward_names_reward_and_sample(tmp_path):
    user = tmp_path / "bad.py"
    user.write_text("def picky(completions, **kw):\n    return [1.0 / (len(c) - 3) for c in completions]\n")
    fn = get_reward(f"{user}:picky")
    with pytest.raises(RewardError) as e:
        fn(["hello", "abc", "xy"])
    assert "picky" in str(e.value) and "sample 1" in str(e.value) and "'abc'" in str(e.value)


def test_malformed_return_is_reported():
    fn = get_reward(lambda completions, **kw: [1.0])
    with pytest.raises(RewardError, match="list of 2"):
        fn(["a", "b"])


def test_combine_skips_none():
    @register("test_none_reward")
    def maybe(completions, **kw):
        return [None if c == "skip" else 1.0 for c in completions]

    total = combine([("test_none_reward", 2.0), ("test_none_reward", 1.0)])
    assert total(["x", "skip"]) == [3.0, None]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RewardError, match="not found"):
        get_reward(f"{tmp_path}/nope.py:fn")
