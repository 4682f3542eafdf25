"""Stage gates (r1lab/gates.py): a stage starts only if an earlier stage's metric passes. A failing gate stops the
run in one line with a non-zero exit, before the stage; a passing one runs it and records the value; a metric the
earlier stage recorded is read, not evaluated; pass@k is evaluated once and kept in gate.json; config errors are one
line naming the key."""
from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest
import torch
import yaml

from pipeline_helpers import tiny_model, tiny_tok  # noqa: F401  (fixtures)
from r1lab.cli import main
from r1lab.config import ConfigError, load_pipeline
from r1lab.params import StageParams
from r1lab.stages import STAGE_KINDS, register_stage_kind
from r1lab.status import status

torch.set_num_threads(1)
GATE_EVAL = {"benchmark": "task:arithmetic@1-3", "limit": 3, "max_new_tokens": 6}


def _note_kind():
    """A plugin stage that saves nothing and returns one metric: the cheapest stage to gate."""
    mod = types.ModuleType("r1lab_test_note")

    class Params(StageParams):
        n: int = 1

    mod.Params, mod.run = Params, lambda ctx: {"n": ctx.params.n}
    return mod


def _cfg(out: Path, model: Path, gate: dict | None) -> dict:
    b = {"name": "b", "kind": "note"}
    if gate is not None:
        b["gate"] = gate
    return {"name": "g", "seed": 0, "output_dir": str(out), "model": str(model), "stages": [
        {"name": "a", "kind": "sft", "learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 4,
         "save_steps": 2, "data": [{"task": "arithmetic", "n": 8, "difficulty": 1}]},
        b,
        {"name": "c", "kind": "note", "n": 2},
    ]}


def _write(tmp: Path, cfg: dict) -> Path:
    p = tmp / "p.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


@pytest.fixture(scope="module", autouse=True)
def note_kind():
    register_stage_kind("note", _note_kind())
    yield
    STAGE_KINDS.pop("note", None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """Stage a (2 SFT steps on the tiny model) done once; each test copies the run dir."""
    base = tmp_path_factory.mktemp("gate_base")
    p = _write(base, _cfg(base / "out", tiny_model, None))
    assert main(["run", str(p), "--only", "a"]) == 0
    return base / "out", tiny_model


def _setup(tmp_path, trained, gate) -> tuple[Path, Path]:
    src, model = trained
    out = tmp_path / "out"
    shutil.copytree(src, out)
    return _write(tmp_path, _cfg(out, model, gate)), out


def _no_eval(monkeypatch):
    import r1lab.eval.runner as runner

    def boom(*a, **k):
        raise AssertionError("the gate evaluated a model")
    monkeypatch.setattr(runner, "evaluate", boom)


def test_failing_gate_stops_the_run_in_one_line_then_resume_reuses_gate_json(tmp_path, trained, capsys, monkeypatch):
    p, out = _setup(tmp_path, trained, {"stage": "a", "metric": "pass@1", "min": 1.01, **GATE_EVAL})
    a_done = (out / "a" / "done.json").read_bytes()
    capsys.readouterr()
    assert main(["run", str(p)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: stage b: gate not passed: a pass@1 = ") and " < min 1.01 " in err[0]
    assert err[0].endswith("(task:arithmetic@1-3, 3 problems, 1 samples)"), err[0]
    assert not (out / "b" / "done.json").exists() and not (out / "c").exists()        # later stages: not run
    assert (out / "a" / "done.json").read_bytes() == a_done                            # nothing earlier lost
    rec = json.loads((out / "b" / "gate.json").read_text())
    assert rec["passed"] is False and rec["from"] == "evaluated" and rec["source"] == "a"
    assert rec["problems"] == 3 and rec["samples"] == 1 and rec["min"] == 1.01 and 0.0 <= rec["value"] <= 1.0
    assert rec["source_fingerprint"] == json.loads(a_done)["fingerprint"]
    st = {s.name: s for s in status(load_pipeline(p))}
    assert st["a"].state == "done" and st["b"].state == "gated" and "stopped at its gate" in st["b"].reason
    assert st["c"].state == "pending"
    assert main(["status", str(p)]) == 0 and "gated" in capsys.readouterr().out

    # rerun (resume): gate.json is reused, not evaluated again; still fails the same way
    _no_eval(monkeypatch)
    assert main(["run", str(p)]) == 1
    assert "gate not passed" in capsys.readouterr().err
    # lower the bar: the cached value passes, b and c run, b records the gate
    assert main(["run", str(p), "--set", "stages.b.gate.min=0.0"]) == 0
    said = capsys.readouterr().out
    assert "b: gate passed: a pass@1 = " in said and "≥ 0 (task:arithmetic@1-3, 3 problems, 1 samples)" in said
    done_b = json.loads((out / "b" / "done.json").read_text())
    assert done_b["metrics"]["gate/a/pass@1"] == rec["value"] and done_b["metrics"]["n"] == 1
    assert "Gate" in (out / "b" / "report.md").read_text()
    assert json.loads((out / "c" / "done.json").read_text())["metrics"] == {"n": 2}
    assert json.loads((out / "b" / "gate.json").read_text())["from"] == "cached"


def test_passing_gate_evaluates_and_runs_the_stage(tmp_path, trained):
    p, out = _setup(tmp_path, trained, {"stage": "a", "metric": "greedy", "min": 0.0, **GATE_EVAL})
    from r1lab.pipeline import run_pipeline

    res = run_pipeline(load_pipeline(p))
    assert [r["action"] for r in res] == ["skipped", "ran", "ran"]
    rec = json.loads((out / "b" / "gate.json").read_text())
    assert rec["passed"] is True and rec["from"] == "evaluated" and rec["metric"] == "greedy"
    assert json.loads((out / "b" / "done.json").read_text())["metrics"]["gate/a/greedy"] == rec["value"]
    assert (out / "b" / "gate" / "a.arithmetic_d1-3.jsonl").exists()      # the per-sample records


def test_a_recorded_metric_is_read_without_evaluating(tmp_path, trained, capsys, monkeypatch):
    _no_eval(monkeypatch)
    p, out = _setup(tmp_path, trained, {"stage": "a", "metric": "train_loss", "max": 1e-6})
    loss = json.loads((out / "a" / "done.json").read_text())["metrics"]["train_loss"]
    capsys.readouterr()
    assert main(["run", str(p)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: stage b: gate not passed: a train_loss = {loss:.4g} > max 1e-06 (recorded by a)"
    assert not (out / "b" / "done.json").exists()

    assert main(["run", str(p), "--set", "stages.b.gate.max=1000"]) == 0
    assert f"b: gate passed: a train_loss = {loss:.4g} ≤ 1000 (recorded by a)" in capsys.readouterr().out
    rec = json.loads((out / "b" / "gate.json").read_text())
    assert rec["from"] == "recorded" and rec["value"] == loss and rec["passed"] is True


@pytest.mark.parametrize("gate, key, frag", [
    ({"stage": "c", "metric": "pass@1", "min": 0.1}, "stages.b.gate.stage", "'c' names no earlier stage"),
    ({"stage": "a", "metric": "pass@k", "min": 0.1}, "stages.b.gate.metric", "neither pass@k, greedy nor a metric"),
    ({"stage": "a", "metric": "accuracy", "min": 0.1}, "stages.b.gate.metric", "a sft stage reports (train_loss"),
    ({"stage": "a", "metric": "pass@8"}, "stages.b.gate.min", "a gate needs min, max or both"),
    ({"stage": "a", "metric": "pass@8", "min": 0.1, "samples": 3}, "stages.b.gate.samples", "needs samples = 8"),
    ({"stage": "a", "metric": "pass@8", "min": 0.1, "limt": 3}, "stages.b.gate.limt", "unknown key"),
])
def test_config_errors_are_one_line_with_the_key_path(tmp_path, tiny_model, gate, key, frag):
    p = _write(tmp_path, _cfg(tmp_path / "out", tiny_model, gate))
    with pytest.raises(ConfigError) as ei:
        load_pipeline(p)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{p}: {key}: "), msg
    assert frag in msg, msg


def test_validate_shows_gates_with_their_defaults(tmp_path, tiny_model, capsys):
    p = _write(tmp_path, _cfg(tmp_path / "out", tiny_model, {"stage": "a", "metric": "pass@8", "min": 0.3}))
    assert main(["validate", str(p)]) == 0
    assert "gate before b: a pass@8 ≥ 0.3 (task:arithmetic@1-3, 50 problems, 8 samples)" in capsys.readouterr().out
    cfg = load_pipeline(p)
    assert cfg.stage("b").gate.temperature == 0.6
    assert cfg.resolved()["stages"][1]["gate"]["samples"] == 8
    assert "gate" not in cfg.stage("b").resolved()         # not part of the fingerprint
    assert not (tmp_path / "out").exists()                  # validate runs nothing
