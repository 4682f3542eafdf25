"""Pipeline YAML validation: broken configs fail fast with one line naming file, key and expectation;
--set overrides and ${...} references resolve before validation."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from r1lab.params import DataSpec
from r1lab.config import ConfigError, apply_overrides, interpolate, known_presets, load_pipeline

BAD = sorted((Path(__file__).parent / "fixtures" / "bad_yamls").glob("*.yaml"))


def _expect(path: Path) -> tuple[str, str]:
    first = path.read_text().splitlines()[0]
    key, frag = first.removeprefix("# expect:").split("|")
    return key.strip(), frag.strip()


def test_there_are_at_least_ten_broken_fixtures():
    assert len(BAD) >= 10


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_broken_yaml_fails_in_one_line_naming_the_key(path):
    key, frag = _expect(path)
    known_presets()          # warm the heavy imports (torch, transformers) so the timing is validation's own
    t0 = time.time()
    with pytest.raises(ConfigError) as ei:
        load_pipeline(path)
    msg = str(ei.value)
    # a guard against validation that trains or samples (minutes), not a benchmark: the first TRL import alone takes
    # ~6 s on a loaded 2-core box
    assert time.time() - t0 < 30, "validation must not run anything heavy"
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key}: "), msg
    assert frag in msg, msg


def test_cli_validate_reports_the_error_and_exit_code():
    path = BAD[1]
    r = subprocess.run([sys.executable, "-m", "r1lab.cli", "validate", str(path)], capture_output=True, text=True)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "stages.sft.learning_rate" in err, err


def _good(tmp_path, tiny_model, **extra):
    cfg = {"name": "good", "seed": 3, "output_dir": str(tmp_path / "out"), "model": str(tiny_model),
           "stages": [{"name": "cold", "kind": "sft", "learning_rate": 1e-3, "data": ["task:arithmetic"]},
                      {"name": "blend", "kind": "sft", "from": "cold", "learning_rate": "${stages.cold.learning_rate}",
                       "data": [{"task": "chat", "n": 10}, {"path": "${stages.cold.out_dir}/x.jsonl"}]}]}
    cfg.update(extra)
    p = tmp_path / "good.yaml"
    p.write_text(yaml.safe_dump(cfg))
    (tmp_path / "out" / "cold").mkdir(parents=True)
    (tmp_path / "out" / "cold" / "x.jsonl").write_text('{"prompt": "hi", "completion": "<think>\\n</think>\\n<answer>hi</answer>"}\n')
    return p


from pipeline_helpers import tiny_model, tiny_tok  # noqa: E402,F401  (fixtures)


def test_good_config_overrides_and_references(tmp_path, tiny_model):
    p = _good(tmp_path, tiny_model)
    cfg = load_pipeline(p)
    assert [s.name for s in cfg.stage_list] == ["cold", "blend"]
    assert cfg.stage("blend").params.learning_rate == 1e-3                     # ${stages.cold.learning_rate}, type kept (float)
    assert cfg.stage("blend").params.data[1].path == f"{tmp_path / 'out'}/cold/x.jsonl"
    assert cfg.stage("blend").depends_on() == ["cold"]
    cfg2 = load_pipeline(p, ["stages.cold.learning_rate=5e-5", "seed=7", "stages.blend.lora={r: 4}"])
    assert cfg2.stage("cold").params.learning_rate == 5e-5 and cfg2.seed == 7
    assert cfg2.stage("blend").params.learning_rate == 5e-5                    # the reference follows the override
    assert cfg2.stage("blend").params.lora.r == 4 and cfg2.stage("blend").params.lora.alpha == 16
    with pytest.raises(ConfigError, match=r"--set stages.nope.learning_rate.*no stage named 'nope'"):
        load_pipeline(p, ["stages.nope.learning_rate=1"])
    with pytest.raises(ConfigError, match=r"stages.cold.learning_rate: Input should be greater than 0"):
        load_pipeline(p, ["stages.cold.learning_rate=-1"])


def test_interpolation_rules():
    raw = {"name": "n", "output_dir": "runs/x", "a": {"b": 2}, "s": "v=${a.b}", "t": "${a.b}",
           "stages": [{"name": "p", "kind": "sft", "k": "${stages.p.model}"}]}
    out = interpolate(raw)
    assert out["s"] == "v=2" and out["t"] == 2 and out["stages"][0]["k"] == "runs/x/p/model"
    with pytest.raises(ConfigError, match="circular"):
        interpolate({"a": "${b}", "b": "${a}"})


def test_set_requires_key_value():
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        apply_overrides({"a": 1}, ["a"])


def test_dataspec_shorthands():
    assert DataSpec.model_validate("task:linear").task == "linear"
    assert DataSpec.model_validate("stage:rs").stage == "rs"
    with pytest.raises(ValueError, match="exactly one of"):
        DataSpec.model_validate({"task": "linear", "stage": "rs"})


def test_unknown_reward_fails_validation_when_the_registry_is_there(tmp_path, tiny_model):
    rewards = pytest.importorskip("rewards")
    if not hasattr(rewards, "get_reward"):
        pytest.skip("rewards registry not merged yet")
    import types

    from r1lab.params import RewardSpec
    from r1lab.stages import STAGE_KINDS, register_stage_kind
    from r1lab.params import StageParams

    mod = types.ModuleType("r1lab_test_rewarded")

    class Params(StageParams):
        rewards: dict[RewardSpec, float]

    mod.Params, mod.run = Params, lambda ctx: {}
    register_stage_kind("rewarded", mod)
    try:
        p = tmp_path / "r.yaml"
        p.write_text(yaml.safe_dump({"name": "r", "model": str(tiny_model), "stages": [
            {"name": "rl", "kind": "rewarded", "rewards": {"no_such_reward_xyz": 1.0}}]}))
        with pytest.raises(ConfigError) as ei:
            load_pipeline(p)
        assert "stages.rl.rewards" in str(ei.value) and "no_such_reward_xyz" in str(ei.value)
    finally:
        STAGE_KINDS.pop("rewarded")
