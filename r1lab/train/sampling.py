"""Sampling traces and keeping the good ones: R1's rejection sampling, shared by the rejection_sampling stage and
the distill stage's teacher sampling. All generation goes through the rollout engine (r1lab/rollout).

From a model, sample `n` completions per
prompt with a rollout engine (native fast generate, or vLLM), score each with the named rewards, and keep a
sample only when EVERY named reward gives it ≥ `threshold` (default 1: "correct"; a reward returning None does
not apply to that row and is skipped; a sample no reward applies to is dropped). Then the filters R1 describes:
  format     the think/answer format is well formed (think_format = 1)
  language   no language mixing (language_consistency ≠ 0)
  length     min_tokens ≤ completion tokens ≤ max_tokens, and the completion finished (not cut by max_new_tokens)
  duplicates identical completions (whitespace-normalised) of one prompt are kept once
and at most `max_per_prompt` survivors per prompt. Rows go to data/samples.jsonl as prompt/completion pairs
(what the sft stage reads) with provenance: model, prompt id, sample index, reward (weighted sum) and each
reward's value, task, difficulty. The report gives the yield (kept / sampled and prompts with ≥ 1 kept) per task
and difficulty, and where the rejected samples went (which check rejected them first).
"""
from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from typing import Literal

from pydantic import Field

from r1lab import dist
from r1lab.errors import DataError
from r1lab.loading import load_tokenizer
from r1lab.params import DataBlock, RewardsBlock, short_name
from r1lab.report import samples_table


def chat_prompt_ids(tok, messages: list[dict]) -> list[int]:
    """Token ids of a conversation rendered with the chat template, ending with the assistant-turn opener."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


class RejectionParams(RewardsBlock, DataBlock):
    threshold: float = Field(1.0, description="a sample is kept when every reward is ≥ this")
    n: int = Field(4, ge=1, description="samples per prompt")
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(256, ge=1)
    engine: Literal["native", "vllm", "hf", "auto"] | None = Field(None, description="rollout engine (default: the "
                                                                  "pipeline's `rollout:`)")
    batch_prompts: int = Field(16, ge=1, description="prompts per generate call")
    mtp_rollouts: bool = Field(False, description="sample with MTP self-speculation (exact in distribution; native "
                               "engine, a model with an MTP head)")
    require_format: bool = True
    no_language_mixing: bool = True
    min_tokens: int = Field(1, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    drop_truncated: bool = True
    dedup: bool = True
    max_per_prompt: int | None = Field(None, ge=1)
    seed: int | None = None


def prompt_messages(row: dict, system_prompt: str | None) -> list[dict]:
    prompt = row.get("prompt")
    if prompt is None:
        raise DataError(f"rejection_sampling rows need a `prompt` column; got columns {sorted(row)}")
    sys = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return sys + (prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}])


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def select(samples: list[dict], p: RejectionParams) -> tuple[list[dict], Counter]:
    """Apply the correctness test, the filters, dedup and the cap to one prompt's scored samples (in order).
    Each sample has `text`, `n_tokens`, `finish_reason`, `scores` (name -> value|None), `format`, `language`.
    Returns (kept, Counter of the first reason each rejected sample failed)."""
    kept, why, seen = [], Counter(), set()
    for s in samples:
        vals = [v for v in s["scores"].values() if v is not None]
        if not vals or any(v < p.threshold for v in vals):
            why["incorrect"] += 1
        elif p.require_format and s.get("format") != 1.0:
            why["format"] += 1
        elif p.no_language_mixing and s.get("language") == 0.0:
            why["language_mixing"] += 1
        elif p.drop_truncated and s["finish_reason"] == "length":
            why["truncated"] += 1
        elif s["n_tokens"] < p.min_tokens or (p.max_tokens and s["n_tokens"] > p.max_tokens):
            why["length"] += 1
        elif p.dedup and _norm(s["text"]) in seen:
            why["duplicate"] += 1
        elif p.max_per_prompt and len(kept) >= p.max_per_prompt:
            why["cap"] += 1
        else:
            seen.add(_norm(s["text"]))
            kept.append(s)
    return kept, why


def rejection_sample(ctx, p, model_path: str, tokenizer_path: str) -> dict:
    """Sample `p.n` completions per prompt from the model at `model_path` with the rollout engine, score them, keep
    what passes (see the module doc); writes data/samples.jsonl and the report's yield table, returns metrics."""
    import torch
    from transformers import TrainerState

    import rewards
    from r1lab.rollout import SamplingParams, open_engine, require_native

    seed = ctx.seed if p.seed is None else p.seed
    tok = load_tokenizer(tokenizer_path, p.chat_template)
    engine_name = ctx.engine_name(p.engine)
    try:
        require_native(engine_name, ["mtp_rollouts"] if p.mtp_rollouts else [])
    except ValueError as e:
        raise ValueError(f"stage {ctx.name}: {e}") from None
    engine = open_engine(engine_name, model_path, tok, **({"use_mtp": True} if p.mtp_rollouts else {}))
    mtp = {"mtp_proposed": 0, "mtp_accepted": 0}
    scorer = rewards.combine(p.rewards)            # the weighted sum; each reward's values in .last_parts
    names = [short_name(spec) for spec in p.rewards]
    fmt = rewards.get_reward("think_format")
    lang = rewards.get_reward("language_consistency")
    rows = list(ctx.load_mixture(p.data, size=p.mix_size))
    sampling = SamplingParams(n=p.n, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
                              max_new_tokens=p.max_new_tokens, seed=seed)

    out_rows, reasons, rejected = [], Counter(), []
    stats = defaultdict(lambda: {"prompts": 0, "sampled": 0, "kept": 0, "prompts_with_kept": 0})
    n_tokens_total, t_gen = 0, 0.0
    # the rewards get TRL's call: conversational completions, completion_ids, trainer_state, log_metric, log_extra
    state, logged = TrainerState(), defaultdict(list)
    rank, size = dist.world()      # more than one process: each samples every size-th batch, rank 0 writes
    with ctx.progress(len(rows), f"{ctx.name}: sampling") as update:
        for b in range(0, len(rows), p.batch_prompts):
            if (b // p.batch_prompts) % size != rank:
                continue
            batch = rows[b:b + p.batch_prompts]
            msgs = [prompt_messages(r, p.system_prompt) for r in batch]
            ids = [chat_prompt_ids(tok, m) for m in msgs]
            t0 = time.perf_counter()
            with torch.no_grad():
                outs = engine.generate(ids, sampling)
            t_gen += time.perf_counter() - t0
            for k in mtp:
                mtp[k] += (getattr(engine, "stats", None) or {}).get(k, 0)
            # score the whole batch at once, TRL-style: one entry per completion, columns repeated
            flat = [(i, s) for i, samples in enumerate(outs) for s in samples]
            texts = [s.text for _, s in flat]
            completions = [[{"role": "assistant", "content": t}] for t in texts]   # TRL's conversational form
            extra: dict[str, list] = {}
            cols = {k: [batch[i].get(k) for i, _ in flat] for k in batch[0]}
            cols.update(prompts=[msgs[i] for i, _ in flat], completion_ids=[s.token_ids for _, s in flat],
                        trainer_state=state, log_metric=lambda k, v: logged[k].append(float(v)),
                        log_extra=lambda k, vals: extra.__setitem__(k, list(vals)))
            totals = scorer(completions, **cols)
            scores = dict(zip(names, scorer.last_parts.values()))
            f_vals = fmt(completions, **cols) if p.require_format else [None] * len(flat)
            l_vals = lang(completions, **cols) if p.no_language_mixing else [None] * len(flat)
            per_prompt = defaultdict(list)
            for k, (i, s) in enumerate(flat):
                n_tokens_total += len(s.token_ids)
                per_prompt[i].append({"text": s.text, "n_tokens": len(s.token_ids), "finish_reason": s.finish_reason,
                                      "scores": {n: v[k] for n, v in scores.items()}, "format": f_vals[k],
                                      "language": l_vals[k], "index": len(per_prompt[i]), "total": totals[k],
                                      "extra": {c: v[k] for c, v in extra.items() if len(v) == len(flat)}})
            for i, row in enumerate(batch):
                kept, why = select(per_prompt[i], p)
                reasons.update(why)
                key = (row.get("task", "?"), row.get("difficulty"))
                st = stats[key]
                st["prompts"] += 1
                st["sampled"] += len(per_prompt[i])
                st["kept"] += len(kept)
                st["prompts_with_kept"] += bool(kept)
                pid = row.get("id", f"row-{b + i}")
                kept_ids = {s["index"] for s in kept}
                for s in per_prompt[i]:
                    if s["index"] not in kept_ids and len(rejected) < 4:
                        rejected.append({"_batch": b, "prompt": row["prompt"], "completion": s["text"], "reward": s["total"],
                                         "rewards": s["scores"]})
                for s in kept:
                    cols_kept = {k: v for k, v in row.items() if k not in ("prompt", "solution", "messages", "id")}
                    out_rows.append({"_batch": b, **cols_kept, **s["extra"], "id": f"{pid}-s{s['index']}", "prompt_id": pid,
                                     "prompt": row["prompt"],
                                     "completion": s["text"], "reward": s["total"], "rewards": s["scores"],
                                     "n_tokens": s["n_tokens"], "sample_index": s["index"], "model": model_path})
            update(advance=len(batch), kept=len(out_rows))

    if size > 1:                   # every rank's batches, in batch order, on every rank
        parts = dist.gather((out_rows, dict(stats), reasons, rejected, dict(logged), n_tokens_total, t_gen))
        out_rows = sorted((r for part in parts for r in part[0]), key=lambda r: r["_batch"])
        rejected = sorted((r for part in parts for r in part[3]), key=lambda r: r["_batch"])[:4]
        stats, reasons, logged = defaultdict(lambda: {"prompts": 0, "sampled": 0, "kept": 0, "prompts_with_kept": 0}), Counter(), defaultdict(list)
        for part in parts:
            for key, st in part[1].items():
                for f, v in st.items():
                    stats[key][f] += v
            reasons.update(part[2])
            for k, v in part[4].items():
                logged[k] += v
        n_tokens_total, t_gen = sum(part[5] for part in parts), max(part[6] for part in parts)
    for r in out_rows + rejected:
        r.pop("_batch", None)
    ctx.write_jsonl("samples", out_rows)
    if logged:
        ctx.log({k: sum(v) / len(v) for k, v in logged.items()}, step=0)
    sampled = sum(s["sampled"] for s in stats.values())
    yield_table = [{"task": t, "difficulty": d, **st, "yield": st["kept"] / max(st["sampled"], 1)}
                   for (t, d), st in sorted(stats.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))]
    lines = ["| task | difficulty | prompts | sampled | kept | yield | prompts with ≥1 kept |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['difficulty']} | {r['prompts']} | {r['sampled']} | {r['kept']} | {r['yield']:.1%} | "
              f"{r['prompts_with_kept']} |" for r in yield_table]
    ctx.add_report(f"Rejection sampling from `{model_path}`: {p.n} samples per prompt (T={p.temperature}), kept "
                   f"those with every reward ≥ {p.threshold} ({', '.join(names)}), then filters; {len(out_rows)} of "
                   f"{sampled} kept. Rejected by: {dict(reasons) or 'none'}.\n\n" + "\n".join(lines))
    if out_rows:
        ctx.add_report("### Kept samples (first 4 of data/samples.jsonl)\n\n" + samples_table(out_rows, limit=4))
    if rejected:
        ctx.add_report("### Rejected samples (the first 4)\n\n" + samples_table(rejected, limit=4))
    for r in yield_table:
        ctx.print(f"{ctx.name}: {r['task']} d={r['difficulty']}: kept {r['kept']}/{r['sampled']} ({r['yield']:.1%})")
    return {"prompts": len(rows), "sampled": sampled, "kept": len(out_rows), "yield": len(out_rows) / max(sampled, 1),
            "rejected": dict(reasons), "per_task": yield_table,
            "rollout_tokens_per_s": n_tokens_total / t_gen if t_gen else None, "rollout_tokens": n_tokens_total,
            **({"mtp_acceptance": mtp["mtp_accepted"] / max(mtp["mtp_proposed"], 1)} if p.mtp_rollouts else {})}
