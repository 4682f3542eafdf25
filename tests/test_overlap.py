"""2-rank pipeline over gloo: GPipe, 1F1B, interleaved 1F1B and DualPipeV give the single-process loss."""
import json
import os
import subprocess
import sys
from pathlib import Path

from base_model.overlap import split_points, stages_of_rank

ROOT = Path(__file__).resolve().parents[1]


def test_stage_placement():
    assert stages_of_rank("dualpipev", 0, 2) == (4, [0, 3]) and stages_of_rank("dualpipev", 1, 2) == (4, [1, 2])
    assert stages_of_rank("interleaved1f1b", 1, 2) == (4, [1, 3]) and stages_of_rank("1f1b", 1, 2) == (2, [1])
    assert split_points(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)] and split_points(5, 2) == [(0, 3), (3, 5)]


def test_pipeline_schedules_match_single_process(tmp_path):
    out = tmp_path / "overlap.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "base_model.overlap", "--steps", "3", "--seq", "32", "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    ref = res["single_process"]["losses"]
    assert len(ref) == 3 and ref[-1] < ref[0]                        # SGD steps really train
    names = [s["schedule"] for s in res["schedules"]]
    assert names == ["gpipe", "1f1b", "interleaved1f1b", "dualpipev"]
    for s in res["schedules"]:
        # same model, same batches: micro-batching only changes float summation order
        assert all(abs(a - b) < 1e-4 for a, b in zip(s["losses"], ref)), s
        assert s["step_time_s"] > 0 and 0 <= s["bubble_ratio"] < 1
