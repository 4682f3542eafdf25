"""End to end: the eval CLI on a randomly initialised HF Llama (not our model), and the runner's metrics on a
scripted generator whose right/wrong pattern is known."""
import json
import math

import pytest

from eval_helpers import THINK_TEMPLATE, one_thread, tiny_llama, train_tokenizer  # noqa: F401 (fixture)
from r1lab.eval import metrics as M
from r1lab.eval.generation import Completion
from r1lab.eval.runner import EvalConfig, evaluate_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("llama")
    tiny_llama(d, train_tokenizer())
    return d


def test_cli_on_a_random_hf_llama(llama_dir, tmp_path):
    from r1lab.eval.cli import main
    out = tmp_path / "out"
    rc = main(["--model", f"{llama_dir},other={llama_dir}", "--benchmarks", "gsm8k,math500", "--samples", "2",
               "--limit", "3", "--max-new-tokens", "5", "--out", str(out), "--engine", "hf", "--quiet"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["models"]) == [llama_dir.name, "other"]
    for model in res["models"]:
        for bench in ("gsm8k", "math500"):
            r = res["models"][model]["benchmarks"][bench]
            lines = [json.loads(l) for l in (out / "samples" / model / f"{bench}.jsonl").read_text().splitlines()]
            assert len(lines) == 3 * (2 + 1)                        # 3 problems x (2 samples + greedy)
            assert {"prompt", "completion", "extracted", "correct", "answer"} <= set(lines[0])
            assert "Please reason step by step" in lines[0]["prompt"]
            sampled = [l for l in lines if l["sample"] != "greedy"]
            assert all(l["n_tokens"] <= 5 for l in lines)
            by_id = {}
            for l in sampled:
                by_id.setdefault(l["id"], []).append(float(l["correct"]))
            assert r["pass@1"]["mean"] == pytest.approx(M.pass_at_1(list(by_id.values())))
            assert r["response_tokens"]["mean"] == pytest.approx(sum(l["n_tokens"] for l in sampled) / len(sampled))
            assert set(r["pass@k"]) == {"1", "2"} and set(r["cons@k"]) == {"1", "2"}
    assert "level" in res["models"]["other"]["benchmarks"]["math500"]["breakdown"]
    report = (out / "report.md").read_text()
    assert "| model | benchmark |" in report and "pass@1" in report and "math500 by subject: other" in report
    for png in ("benchmarks.png", "pass_at_k.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Scripted:
    """A generator that answers from a script: problem i gets PATTERNS[i % 3]; greedy is right on even i."""
    PATTERNS = [["R", "R", "R", "R"],             # 4/4 right
                ["R", "W1", "W1", "W1"],          # 1/4 right, majority wrong
                ["R", "R=", "W1", "W2"]]          # 2/4 right (one in an equivalent spelling), majority right

    def __init__(self, tok, bench):
        self.tok, self.bench = tok, bench

    def _row(self, ids):
        text = self.tok.decode(ids, skip_special_tokens=False)
        return next(i for i, r in enumerate(self.bench.rows) if r["problem"] in text)

    def __call__(self, prompts, n=1, temperature=0.0, **kw):
        out = []
        for ids in prompts:
            i = self._row(ids)
            gold = int(self.bench.rows[i]["answer"])
            say = {"R": f"\\boxed{{{gold}}}", "R=": f"\\boxed{{\\frac{{{2 * gold}}}{{2}}}}",
                   "W1": f"\\boxed{{{gold + 1}}}", "W2": f"\\boxed{{{gold + 2}}}"}
            pat = ["R" if i % 2 == 0 else "W1"] if temperature == 0 else self.PATTERNS[i % 3][:n]
            # the think template pre-opens <think>; a wrong boxed answer inside the reasoning must be ignored
            out.append([Completion(f"maybe \\boxed{{{gold + 3}}}</think>So {say[p]}.", 10 + len(p), "stop")
                        for p in pat])
        return out


def test_runner_metrics_on_a_scripted_generator(tmp_path):
    from r1lab.eval.benchmarks import load_benchmark
    tok = train_tokenizer(chat_template=THINK_TEMPLATE)
    bench = load_benchmark("gsm8k", limit=6)
    cfg = EvalConfig(benchmarks=["gsm8k"], samples=4, limit=6, n_boot=200)
    res = evaluate_model(None, tok, cfg, "scripted", tmp_path, [bench], generator=Scripted(tok, bench))["gsm8k"]
    assert res["pass@1"]["mean"] == pytest.approx((1 + 0.25 + 0.5) / 3)
    assert res["cons@k"]["4"] == pytest.approx(2 / 3)
    assert res["pass@k"]["4"] == 1.0
    assert res["pass@k"]["2"] == pytest.approx((1 + M.pass_at_k(4, 1, 2) + M.pass_at_k(4, 2, 2)) / 3)
    assert res["greedy"] == pytest.approx(0.5)
    assert res["no_answer"] == 0.0 and res["truncated"] == 0.0
    per = [1.0, 0.25, 0.5] * 2
    assert res["pass@1"]["stderr"] == pytest.approx(
        math.sqrt(sum((p - sum(per) / 6) ** 2 for p in per) / 5) / math.sqrt(6))
    lines = [json.loads(l) for l in (tmp_path / "samples" / "scripted" / "gsm8k.jsonl").read_text().splitlines()]
    first = [l for l in lines if l["id"] == bench.rows[0]["id"] and l["sample"] == 0][0]
    assert first["prefill"] == "<think>\n" and first["extracted"] == bench.rows[0]["answer"] and first["correct"]


def test_stage_style_call_writes_nothing_without_out_dir():
    tok = train_tokenizer()
    from r1lab.eval.benchmarks import load_benchmark
    bench = load_benchmark("gsm8k", limit=3)
    cfg = EvalConfig(benchmarks=["gsm8k"], samples=1, greedy=False, n_boot=0)
    res = evaluate_model(None, tok, cfg, benchmarks=[bench], generator=Scripted(tok, bench))
    assert res["gsm8k"]["pass@1"]["mean"] == 1.0 and "greedy" not in res["gsm8k"]


def test_cli_registration_and_module_entry_point():
    import subprocess
    import sys

    from r1lab.cli import build_parser
    from r1lab.eval.cli import run_eval
    a = build_parser().parse_args(["eval", "--model", "m1,m2", "--benchmarks", "gsm8k,aime24", "--samples", "8"])
    assert a.func is run_eval and a.samples == 8 and a.engine == "auto"
    from r1lab.eval.cli import config_from_args
    cfg = config_from_args(a)
    assert cfg.benchmarks == ["gsm8k", "aime24"] and cfg.temperature == 0.6 and cfg.top_p == 0.95
    r = subprocess.run([sys.executable, "-m", "r1lab.eval", "--model", "/nonexistent", "--benchmarks", "gsm8k",
                        "--limit", "1", "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no config.json" in r.stderr and "Traceback" not in r.stderr
