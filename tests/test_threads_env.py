"""The thread policy (base_model/threads.py), `r1lab env`, and the lock the README installs from."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from base_model import threads
from r1lab.cli import main
from r1lab.env import lock_differences, read_lock, version

ROOT = Path(__file__).resolve().parents[1]
CLEAN = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", threads.ENV)}


def test_policy_sources_and_bad_values(monkeypatch):
    for k in ("OMP_NUM_THREADS", threads.ENV):
        monkeypatch.delenv(k, raising=False)
    assert threads.policy() == "auto"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.policy() == "3"                          # a user's OMP_NUM_THREADS is a fixed count
    monkeypatch.setenv(threads.ENV, "torch")
    assert threads.policy() == "torch"                      # R1LAB_THREADS beats it
    assert threads.policy("1") == "1"                       # and --threads beats both
    for bad in ("0", "-2", "many", "1.5"):
        with pytest.raises(ValueError, match="threads: expected auto, torch or a positive integer"):
            threads.policy(bad)
    assert threads.value_from_argv(["run", "p.yaml", "--threads", "2"]) == "2"
    assert threads.value_from_argv(["run", "--threads=torch"]) == "torch"
    assert threads.value_from_argv(["run", "p.yaml"]) is None


def test_free_threads_from_the_load_of_others():
    n = threads.cores()
    assert threads.free_threads(0.0) == n
    assert threads.free_threads(None) == n
    assert threads.free_threads(float(n)) == 1                       # never 0
    assert threads.free_threads(100.0) == 1
    # machine: 3 of 4 cores-worth busy over 1 s, of which this process used 1 core -> 2 by others
    before = (0.0, (0.0, 0.0), 0.0)
    after = (1.0, (3.0 * 100 / (os.cpu_count() or 1), 100.0), 1.0)
    assert threads.others_busy(before, after) == pytest.approx(2.0)
    assert threads.others_busy(before, (1.0, None, 1.0)) is None      # no /proc: unknown


def test_auto_leaves_a_busy_neighbours_core_alone(monkeypatch):
    """A real busy loop next to us: `auto` measures it and takes at most the cores it leaves free."""
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n0 = torch.get_num_threads()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        desc = threads.configure("auto", probe_s=1.0)
        assert torch.get_num_threads() <= max(1, threads.cores() - 1), desc
        assert "auto" in desc
    finally:
        hog.kill()
        hog.wait()
        threads._state["policy"] = None
        torch.set_num_threads(n0)


def test_fixed_policy_sets_the_count_and_adapt_leaves_it(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n0 = torch.get_num_threads()
    try:
        threads.configure("1")
        threads._state["last"] = None
        threads.adapt()
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"             # children (workers, ranks) follow
    finally:
        threads._state["policy"] = None
        torch.set_num_threads(n0)


def _fresh(code: str, **env) -> str:
    out = subprocess.run([sys.executable, "-c", code], env={**CLEAN, "PYTHONPATH": str(ROOT), **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_entry_points_set_passive_waits_before_torch_loads():
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: the policy must be in place before that."""
    code = ("import os, sys; from base_model import threads; assert 'torch' not in sys.modules; "
            "threads.configure(); print(os.environ.get('OMP_WAIT_POLICY'))")
    assert _fresh(code) == "PASSIVE"
    assert _fresh(code, R1LAB_THREADS="torch") == "None"                  # torch's own defaults: untouched
    assert _fresh(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"             # a user's choice is kept
    # `python -m base_model.pretrain` imports torch at module level: pretrain.py prepares first
    assert _fresh("import os, base_model.pretrain; print(os.environ.get('OMP_WAIT_POLICY'))") == "PASSIVE"
    # the r1lab CLI, before its parser (which loads torch)
    code = ("import os, sys; from r1lab.cli import main; main(['tasks']); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    assert _fresh(code).splitlines()[-1] == "PASSIVE"


def test_cli_rejects_a_bad_threads_value(capsys):
    assert main(["run", "pipelines/r1_smoke.yaml", "--threads", "lots"]) == 2
    assert "threads: expected auto, torch or a positive integer, got 'lots'" in capsys.readouterr().err


def test_env_reports_versions_and_lock_match(tmp_path, capsys):
    yml = version("pyyaml")
    good = tmp_path / "good.lock"
    good.write_text(f"# a comment\nPyYAML=={yml}\nsympy=={version('sympy')}\n")
    assert main(["env", "--lock", str(good), "--check-lock"]) == 0
    out = capsys.readouterr().out
    assert f"transformers: {version('transformers')}" in out and f"torch: {torch.__version__}" in out
    assert "lock: installed set matches" in out and "2 packages" in out
    assert "GPU:" in out and "threads:" in out

    bad = tmp_path / "bad.lock"
    bad.write_text(f"pyyaml==0.0.1\nsympy=={version('sympy')}\nno-such-package-r1lab==1.0\n")
    assert main(["env", "--lock", str(bad), "--check-lock"]) == 1
    out = capsys.readouterr().out
    assert "2 of 3 packages differ" in out
    assert f"pyyaml: installed {yml}, lock 0.0.1" in out and "no-such-package-r1lab: installed none" in out
    assert main(["env", "--lock", str(bad)]) == 0                      # a report, not a check, unless asked


def test_the_lock_is_complete_and_within_the_declared_ranges():
    """requirements.lock pins every dependency of r1lab[dev], at versions pyproject.toml's ranges admit."""
    import tomllib

    pins = read_lock(ROOT / "requirements.lock")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    for r in reqs:
        name = re.sub(r"[-_.]+", "-", r.name).lower()
        if name == "torch":
            assert name not in pins                                  # an existing (CUDA) torch is kept
            continue
        assert name in pins, f"{r.name} is not in requirements.lock"
        assert r.specifier.contains(pins[name], prereleases=True), f"lock {name}=={pins[name]} outside {r}"
    assert len(pins) > len(reqs)                                     # transitive dependencies are pinned too


@pytest.mark.skipif(not os.environ.get("CI"), reason="CI installs exactly the lock; a dev venv may differ")
def test_ci_installed_exactly_the_lock():
    assert lock_differences(read_lock(ROOT / "requirements.lock")) == []
