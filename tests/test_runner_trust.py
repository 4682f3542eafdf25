"""Trusting the runner (issue 13, items 1-8): divergence stops a stage, one runner per output dir, read commands
change nothing, r1lab deletes only what it wrote, corruption is caught, no extra step on resume, bad input fails in
one line, no multi-process runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from pipeline_helpers import tiny_model, tiny_tok  # noqa: F401  (fixtures)
from r1lab.cli import main
from r1lab.config import ConfigError, load_pipeline

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _sft(name="a", **kw):
    st = {"name": name, "kind": "sft", "learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 4, "save_steps": 1,
          "data": [{"task": "arithmetic", "n": 16, "difficulty": 1}]}
    st.update(kw)
    return st


def _write(tmp_path: Path, model, stages, out=None, name="p.yaml") -> Path:
    # keep_checkpoints all: these tests make a kill's leftovers out of a finished run, whose checkpoints the
    # default retention would have stripped of optimizer state (a real kill comes before done.json and retention)
    cfg = {"name": "t", "seed": 0, "output_dir": str(out or tmp_path / "out"), "model": str(model), "stages": stages,
           "keep_checkpoints": "all"}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


# ----------------------------------------------------------------------------- 1. divergence

@pytest.mark.parametrize("override, frag", [
    ("stages.a.learning_rate=.inf", "finite"),
    ("stages.a.learning_rate=.nan", "finite"),
    ("stages.a.max_steps=true", "expected a number"),
    ("stages.a.per_device_train_batch_size=1.0e+12", "at most"),
    ("stages.a.per_device_train_batch_size=1000000000000", "at most"),
    ("seed=.inf", "seed"),
])
def test_validation_rejects_non_finite_and_absurd_numbers(tmp_path, tiny_model, override, frag):
    p = _write(tmp_path, tiny_model, [_sft()])
    with pytest.raises(ConfigError) as ei:
        load_pipeline(p, [override])
    msg = str(ei.value)
    assert "\n" not in msg and frag in msg, msg


def test_nan_training_fails_the_stage_and_keeps_the_last_finite_checkpoint(tmp_path, tiny_model, capsys):
    p = _write(tmp_path, tiny_model, [_sft(learning_rate=1000.0, max_steps=12, save_steps=1, lr_scheduler_type="constant")])
    rc = main(["run", str(p)])
    err = _one_line_error(capsys)
    assert rc != 0
    assert "stage a" in err and "diverged at step" in err, err
    d = tmp_path / "out" / "a"
    assert not (d / "done.json").exists()
    assert not (d / "model").exists()
    ckpts = sorted(d.glob("checkpoints/checkpoint-*"))
    for ck in ckpts:   # every checkpoint left is finite; the newest is named as the resume point
        sd = load_file(str(ck / "model.safetensors"))
        assert all(torch.isfinite(t).all() for t in sd.values()), ck
    if ckpts:
        newest = max(ckpts, key=lambda c: int(c.name.split("-")[1]))
        assert newest.name in err


# ----------------------------------------------------------------------------- 2. one runner per output dir

@pytest.fixture
def noop_kind():
    """A plugin stage kind that writes one data file: a pipeline that runs in a blink."""
    import types

    from r1lab.stages import STAGE_KINDS, register_stage_kind
    from r1lab.params import StageParams

    mod = types.ModuleType("r1lab_test_noop")

    class Params(StageParams):
        rows: int = 2

    def run(ctx):
        ctx.write_jsonl("rows", [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(ctx.params.rows)])
        return {"rows": ctx.params.rows}

    mod.Params, mod.run = Params, run
    register_stage_kind("noop", mod)
    yield "noop"
    STAGE_KINDS.pop("noop", None)


def _noop_pipeline(tmp_path, tiny_model, out=None, stages=("w",)) -> Path:
    return _write(tmp_path, tiny_model, [{"name": n, "kind": "noop"} for n in stages], out=out)


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from r1lab.pipeline import run_lock
    Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
    with run_lock(Path(sys.argv[1])):
        print("holding", flush=True)
        time.sleep(120)
""")


def test_second_runner_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, tiny_model, noop_kind, capsys):
    import socket

    p = _noop_pipeline(tmp_path, tiny_model)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "holding"
        rc = main(["run", str(p)])
        err = _one_line_error(capsys)
        assert rc != 0
        assert f"pid {holder.pid}" in err and socket.gethostname() in err and "since" in err, err
        assert not (out / "w" / "done.json").exists()
    finally:
        holder.kill()       # SIGKILL: the holder dies without any cleanup
        holder.wait()
    assert main(["run", str(p)]) == 0       # the dead holder's lock is taken over
    assert (out / "w" / "done.json").exists()


# ----------------------------------------------------------------------------- 3. read commands change nothing

def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def test_status_and_validate_change_nothing_on_disk(tmp_path, tiny_model, noop_kind, capsys):
    p = _noop_pipeline(tmp_path, tiny_model, stages=("w", "v"))
    assert main(["run", str(p)]) == 0
    out = tmp_path / "out"
    (out / "v" / "done.json").unlink()            # v: interrupted (attempt.json, no done.json) ...
    half = out / "v" / "checkpoints" / "checkpoint-3"
    half.mkdir(parents=True)                      # ... mid-save of a checkpoint (no .complete yet: a live writer)
    (half / "model.safetensors").write_bytes(b"partial")
    good = out / "v" / "checkpoints" / "checkpoint-2"
    good.mkdir()
    (good / ".complete").write_text("ok\n")
    before = _snapshot(tmp_path)
    for cmd in ("status", "validate"):
        assert main([cmd, str(p)]) == 0
        assert _snapshot(tmp_path) == before, cmd
    said = capsys.readouterr().out
    assert "resumable" in said and "checkpoint-2" in said
    assert (half / "model.safetensors").read_bytes() == b"partial"


# ----------------------------------------------------------------------------- 4. delete only what r1lab wrote

def test_output_dir_that_is_not_a_run_is_refused_and_user_files_survive(tmp_path, tiny_model, noop_kind, capsys):
    victim = tmp_path / "victim"
    (victim / "important").mkdir(parents=True)
    (victim / "important" / "precious.txt").write_text("mine")
    p = _noop_pipeline(tmp_path, tiny_model, out=victim, stages=("important",))
    rc = main(["run", str(p)])
    err = _one_line_error(capsys)
    assert rc != 0 and str(victim) in err and "not an r1lab run" in err, err
    assert (victim / "important" / "precious.txt").read_text() == "mine"
    assert sorted(x.name for x in victim.iterdir()) == ["important"]      # nothing written either


def test_user_dir_named_like_a_stage_inside_a_run_is_not_deleted(tmp_path, tiny_model, noop_kind, capsys):
    p = _noop_pipeline(tmp_path, tiny_model, stages=("w",))
    assert main(["run", str(p)]) == 0
    out = tmp_path / "out"
    (out / "notes").mkdir()
    (out / "notes" / "precious.txt").write_text("mine")
    p = _noop_pipeline(tmp_path, tiny_model, stages=("w", "notes"))
    capsys.readouterr()
    rc = main(["run", str(p)])
    err = _one_line_error(capsys)
    assert rc != 0 and "notes" in err and "not written by r1lab" in err, err
    assert (out / "notes" / "precious.txt").read_text() == "mine"
    # an empty existing dir is fine, and a rerun of a run dir is fine
    (tmp_path / "empty").mkdir()
    assert main(["run", str(_noop_pipeline(tmp_path, tiny_model, out=tmp_path / "empty"))]) == 0
    assert main(["run", str(_noop_pipeline(tmp_path, tiny_model, out=tmp_path / "empty"))]) == 0


# ----------------------------------------------------------------------------- 8. weights or not done (more than one process: tests/test_ddp_stages.py)

def test_a_model_dir_without_weights_is_never_marked_done(tmp_path, tiny_model, tiny_tok, capsys):
    import types

    from r1lab.stages import STAGE_KINDS, register_stage_kind
    from r1lab.params import StageParams

    mod = types.ModuleType("r1lab_test_tok_only")

    class Params(StageParams):
        pass

    def run(ctx):   # what a non-zero rank left: model/ with the tokenizer files only
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tiny_tok).save_pretrained(ctx.model_dir)
        return {}

    mod.Params, mod.run = Params, run
    register_stage_kind("tok_only", mod)
    try:
        p = _write(tmp_path, tiny_model, [{"name": "s", "kind": "tok_only"}])
        rc = main(["run", str(p)])
        err = _one_line_error(capsys)
        assert rc != 0 and "stage s" in err and "no weights" in err, err
        assert not (tmp_path / "out" / "s" / "done.json").exists()
    finally:
        STAGE_KINDS.pop("tok_only", None)


# ----------------------------------------------------------------------------- 5. corruption

def _truncate(f: Path, keep: float = 0.5) -> None:
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * keep)])


def test_truncated_model_is_not_done_and_the_stage_is_redone(tmp_path, tiny_model, capsys):
    p = _write(tmp_path, tiny_model, [_sft(max_steps=2, save_steps=1)])
    assert main(["run", str(p)]) == 0
    w = tmp_path / "out" / "a" / "model" / "model.safetensors"
    good = w.read_bytes()
    _truncate(w)
    capsys.readouterr()
    assert main(["status", str(p)]) == 0
    said = capsys.readouterr().out
    assert "damaged" in said and "done" not in said.split("damaged")[0].splitlines()[-1], said
    assert main(["run", str(p)]) == 0
    assert json.loads((w.parent.parent / "done.json").read_text())["artifacts"]["model/model.safetensors"]["size"] == len(good)
    assert w.read_bytes() == good                      # redone from the final checkpoint: the same weights (item 6)
    assert json.loads((w.parent.parent / "done.json").read_text())["metrics"]["steps"] == 2


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_model, capsys):
    p = _write(tmp_path, tiny_model, [_sft(max_steps=3, save_steps=1)])
    assert main(["run", str(p)]) == 0
    d = tmp_path / "out" / "a"
    ref = load_file(str(d / "model" / "model.safetensors"))
    import shutil

    (d / "done.json").unlink()                        # as if killed after checkpoint-3, before the model was saved
    shutil.rmtree(d / "model")
    _truncate(d / "checkpoints" / "checkpoint-3" / "model.safetensors")
    with open(d / "metrics.jsonl", "a") as f:          # and a torn last line in the log
        f.write('{"step": 3, "lo')
    capsys.readouterr()
    assert main(["run", str(p)]) == 0
    err = capsys.readouterr().err
    assert "torn" in err
    done = json.loads((d / "done.json").read_text())
    assert done["metrics"]["resumed_from_step"] == 2 and done["metrics"]["steps"] == 3
    got = load_file(str(d / "model" / "model.safetensors"))
    assert all(torch.equal(got[k], ref[k]) for k in ref)   # bitwise the uninterrupted run's weights


def test_pretrain_rerun_survives_a_torn_metrics_line_and_a_damaged_checkpoint(tmp_path, tiny_tok, capsys):
    import shutil

    cfg = {"name": "pt", "seed": 0, "output_dir": str(tmp_path / "out"), "model": "nano", "tokenizer": str(tiny_tok),
           "keep_checkpoints": "all", "stages": [{"name": "pt", "kind": "pretrain", "max_steps": 3, "ckpt_every": 1, "log_every": 1,
                       "keep_checkpoints": 3, "batch_size": 2, "micro_batch_size": 2, "seq_len": 32,
                       "sample_prompts": [], "progress": False}]}
    p = tmp_path / "pt.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(p)]) == 0
    d = tmp_path / "out" / "pt"
    ref = load_file(str(d / "model" / "model.safetensors"))
    (d / "done.json").unlink()
    shutil.rmtree(d / "model")
    _truncate(d / "checkpoints" / "step_0000003" / "model.safetensors")
    with open(d / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')
    capsys.readouterr()
    assert main(["run", str(p)]) == 0
    assert "torn" in capsys.readouterr().err
    got = load_file(str(d / "model" / "model.safetensors"))
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert json.loads((d / "done.json").read_text())["metrics"]["steps"] == 3


# ----------------------------------------------------------------------------- 6. no extra step

def test_killed_between_model_save_and_done_json_trains_no_extra_step(tmp_path, tiny_model):
    p = _write(tmp_path, tiny_model, [_sft(max_steps=3, save_steps=1, per_device_train_batch_size=2)])   # 16 rows / 2: 8 steps an epoch
    assert main(["run", str(p)]) == 0
    d = tmp_path / "out" / "a"
    ref_done = json.loads((d / "done.json").read_text())
    ref = load_file(str(d / "model" / "model.safetensors"))
    (d / "done.json").unlink()                         # killed after model/ was saved, before done.json
    lines = (d / "metrics.jsonl").read_text().splitlines()
    assert main(["run", str(p)]) == 0
    done = json.loads((d / "done.json").read_text())
    assert done["resumed"] and done["metrics"]["steps"] == 3
    assert done["metrics"]["train_loss"] == pytest.approx(ref_done["metrics"]["train_loss"], rel=1e-6)
    got = load_file(str(d / "model" / "model.safetensors"))
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert max(json.loads(x)["step"] for x in (d / "metrics.jsonl").read_text().splitlines()) == 3
    assert len((d / "metrics.jsonl").read_text().splitlines()) <= len(lines)


# ----------------------------------------------------------------------------- 7. bad input: one line, exit != 0

def _validate_fails(capsys, p, *frags):
    rc = main(["validate", str(p)])
    err = _one_line_error(capsys)
    assert rc != 0 and err.startswith("error: "), err
    for f in frags:
        assert f in err, err
    return err


def test_non_utf8_yaml(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_bytes(b"name: caf\xe9\nmodel: nano\nstages: []\n")
    _validate_fails(capsys, p, str(p), "UTF-8")


@pytest.mark.parametrize("content, frag", [
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n', "line 2: not UTF-8"),
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "a", "comp\n{"prompt": "c", "completion": "d"}\n', "line 2: not a JSON object"),
    (b"", "no rows"),
])
def test_bad_or_empty_jsonl_data_is_found_by_validate(tmp_path, tiny_model, capsys, content, frag):
    data = tmp_path / "d.jsonl"
    data.write_bytes(content)
    p = _write(tmp_path, tiny_model, [_sft(data=[str(data)])])
    _validate_fails(capsys, p, str(data), frag)


def test_bad_stage_data_fails_the_run_in_one_line(tmp_path, tiny_model, capsys):
    import types

    from r1lab.stages import STAGE_KINDS, register_stage_kind
    from r1lab.params import StageParams

    mod = types.ModuleType("r1lab_test_bad_writer")

    class Params(StageParams):
        pass

    def run(ctx):   # a (plugin) stage whose data artifact is half broken
        ctx.data_dir.mkdir(parents=True)
        (ctx.data_dir / "rows.jsonl").write_bytes(b'{"prompt": "p", "completion": "c"}\n\xff\xfe\n')
        return {}

    mod.Params, mod.run = Params, run
    register_stage_kind("bad_writer", mod)
    try:
        p = _write(tmp_path, tiny_model, [{"name": "w", "kind": "bad_writer"}, _sft(name="b", data=["stage:w"])])
        rc = main(["run", str(p)])
        err = _one_line_error(capsys)
        assert rc != 0 and "stage b" in err and "rows.jsonl: line 2: not UTF-8" in err, err
    finally:
        STAGE_KINDS.pop("bad_writer", None)


def test_huge_task_n_is_rejected_quickly(tmp_path, tiny_model, capsys):
    import signal

    def hung(*_):
        raise TimeoutError("validate hung on n: 100000000")

    p = _write(tmp_path, tiny_model, [_sft(data=[{"task": "arithmetic", "n": 100000000}])])
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        _validate_fails(capsys, p, "stages.a.data[0].n", "at most")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_from_a_stage_without_a_model(tmp_path, tiny_model, capsys):
    stages = [_sft(), {"name": "ev", "kind": "eval", "from": "a", "benchmarks": ["task:arithmetic"], "limit": 2},
              _sft(name="c", **{"from": "ev"})]
    p = _write(tmp_path, tiny_model, stages)
    _validate_fails(capsys, p, "stages.c.from", "'ev' is a eval stage, which saves no model")


def test_code_tests_reward_on_data_without_tests(tmp_path, tiny_model, capsys):
    g = {"name": "g", "kind": "grpo", "rewards": ["code_tests"], "max_steps": 1, "num_generations": 2,
         "per_device_train_batch_size": 4, "data": [{"task": "arithmetic", "n": 4}]}
    p = _write(tmp_path, tiny_model, [g])
    _validate_fails(capsys, p, "stages.g.rewards.code_tests", "`tests` column")


def test_error_text_with_rich_markup_is_printed_verbatim(tmp_path, tiny_model, capsys):
    import types

    from r1lab.stages import STAGE_KINDS, register_stage_kind
    from r1lab.params import StageParams

    mod = types.ModuleType("r1lab_test_boom")

    class Params(StageParams):
        pass

    def run(ctx):
        raise RuntimeError("cannot open [/data/x] or [bold]y[/bold]")

    mod.Params, mod.run = Params, run
    register_stage_kind("boom", mod)
    try:
        p = _write(tmp_path, tiny_model, [{"name": "s", "kind": "boom"}])
        with pytest.raises(RuntimeError, match=r"cannot open \[/data/x\]"):
            main(["run", str(p)])
        said = capsys.readouterr()
        assert "cannot open [/data/x] or [bold]y[/bold]" in said.out + said.err
    finally:
        STAGE_KINDS.pop("boom", None)


def test_grpo_killed_between_model_save_and_done_json_trains_no_extra_step(tmp_path, tiny_model):
    g = {"name": "g", "kind": "grpo", "rewards": ["math_accuracy"], "max_steps": 2, "save_steps": 1,
         "num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 8, "learning_rate": 1e-4,
         "data": [{"task": "arithmetic", "n": 8, "difficulty": 1}]}
    p = _write(tmp_path, tiny_model, [g])
    assert main(["run", str(p)]) == 0
    d = tmp_path / "out" / "g"
    ref = load_file(str(d / "model" / "model.safetensors"))
    (d / "done.json").unlink()
    assert main(["run", str(p)]) == 0
    assert json.loads((d / "done.json").read_text())["metrics"]["steps"] == 2
    got = load_file(str(d / "model" / "model.safetensors"))
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_pretrain_divergence_stops_the_loop_before_a_non_finite_checkpoint(tmp_path, tiny_tok, capsys):
    cfg = {"name": "pt", "seed": 0, "output_dir": str(tmp_path / "out"), "model": "nano", "tokenizer": str(tiny_tok),
           "keep_checkpoints": "all", "stages": [{"name": "pt", "kind": "pretrain", "max_steps": 6, "ckpt_every": 1, "log_every": 1,
                       "keep_checkpoints": 10, "warmup_steps": 0, "lr": 1.0e+30, "batch_size": 2,
                       "micro_batch_size": 2, "seq_len": 32, "sample_prompts": [], "progress": False}]}
    p = tmp_path / "pt.yaml"
    p.write_text(yaml.safe_dump(cfg))
    rc = main(["run", str(p)])
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert rc != 0 and len(err) == 1 and "stage pt" in err[0] and "diverged at step" in err[0], err
    d = tmp_path / "out" / "pt"
    assert not (d / "done.json").exists() and not (d / "model").exists()
    for ck in d.glob("checkpoints/step_*"):
        sd = load_file(str(ck / "model.safetensors"))
        assert all(torch.isfinite(t).all() for t in sd.values()), ck


def test_corrupt_parquet_fails_the_run_in_one_line(tmp_path, tiny_model, capsys):
    data = tmp_path / "d.parquet"
    data.write_bytes(b"PAR1 this is not parquet")
    p = _write(tmp_path, tiny_model, [_sft(data=[str(data)])])
    rc = main(["run", str(p)])
    err = _one_line_error(capsys)
    assert rc != 0 and "stage a" in err and str(data) in err, err


@pytest.mark.parametrize("keep", ["weights", "none", "all"])
def test_keep_checkpoints_drops_optimizer_state_once_the_stage_is_done(tmp_path, tiny_model, keep):
    """Item 9: a done stage's checkpoints can't be resumed from; by default they lose their optimizer state
    (most of their bytes), `none` drops them, `all` keeps them whole. The stage stays done and skips."""
    p = _write(tmp_path, tiny_model, [_sft(max_steps=2, save_steps=1)])
    cfg = yaml.safe_load(p.read_text())
    del cfg["keep_checkpoints"]
    if keep != "weights":                              # weights is the default
        cfg["keep_checkpoints"] = keep
    p.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(p)]) == 0
    d = tmp_path / "out" / "a"
    cks = sorted((d / "checkpoints").glob("checkpoint-*"))
    if keep == "none":
        assert cks == [] and (d / "model" / "model.safetensors").exists()
    else:
        assert len(cks) == 2
        for ck in cks:
            assert (ck / "model.safetensors").exists()
            assert (ck / "optimizer.pt").exists() == (keep == "all")
    from r1lab.status import status

    st = {s.name: s.state for s in status(load_pipeline(str(p)))}
    assert st == {"a": "done"}
    assert json.loads((d / "done.json").read_text())["metrics"]["steps"] == 2
    (d / "done.json").unlink()                         # now a rerun can't resume from stripped checkpoints:
    assert main(["run", str(p)]) == 0                  # it trains the stage again from its start
    done = json.loads((d / "done.json").read_text())
    assert done["metrics"]["steps"] == 2 and bool(done["metrics"]["resumed_from_step"]) == (keep == "all")
