"""Cold-start SFT vs its base model: held-out accuracy and R1-format rate on the arithmetic task.

    python benchmarks/cold_start_sft.py --pipeline pipelines/r1_smoke.yaml [--set stages.pretrain.max_steps=700 ...]
        [--stage-base pretrain --stage-sft cold_start --n 100 --difficulty 1,2]

Runs (or reuses) the pipeline, then samples greedy answers to n held-out (test split) problems from both the base
stage's model and the SFT stage's model with the native rollout engine, scores them with the registry's
math_accuracy and think_format, prints a table and writes benchmarks/results/cold_start_sft.json.
"""
from __future__ import annotations

import argparse
import sys
import json
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def score(model_dir: str, rows: list[dict], max_new_tokens: int) -> dict:
    import rewards

    from r1lab.rollout import SamplingParams, get_engine
    from r1lab.loading import load_tokenizer

    tok = load_tokenizer(model_dir)
    eng = get_engine("native", model_dir, tok, batch_size=32)
    prompts = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True,
                                       tokenize=True, return_dict=True)["input_ids"] for r in rows]
    t0 = time.time()
    outs = eng.generate(prompts, SamplingParams(temperature=0, max_new_tokens=max_new_tokens))
    texts = [g[0].text for g in outs]
    acc = rewards.get_reward("math_accuracy")(texts, answer=[r["answer"] for r in rows])
    fmt = rewards.get_reward("think_format")(texts)
    return {"accuracy": sum(a or 0 for a in acc) / len(rows), "format": sum(f or 0 for f in fmt) / len(rows),
            "seconds": time.time() - t0, "example": texts[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", default="pipelines/r1_smoke.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--stage-base", default="pretrain")
    ap.add_argument("--stage-sft", default="cold_start")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--difficulty", default="1,2")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    a = ap.parse_args()
    from r1lab.config import load_pipeline
    from r1lab.pipeline import run_pipeline
    from r1lab.tasks import task_rows

    cfg = load_pipeline(a.pipeline, a.sets)
    run_pipeline(cfg)
    rows = task_rows("arithmetic", n=a.n, split="test", seed=1234, difficulty=[int(x) for x in a.difficulty.split(",")])
    out = Path(cfg.output_dir)
    res = {name: score(str(out / name / "model"), rows, a.max_new_tokens) for name in (a.stage_base, a.stage_sft)}
    print(f"{'model':<14}{'accuracy':>10}{'R1 format':>11}")
    for k, v in res.items():
        print(f"{k:<14}{v['accuracy']:>10.3f}{v['format']:>11.3f}")
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/cold_start_sft.json").write_text(json.dumps(
        {"pipeline": a.pipeline, "sets": a.sets, "n": a.n, "difficulty": a.difficulty, "results": res}, indent=2))


if __name__ == "__main__":
    main()
