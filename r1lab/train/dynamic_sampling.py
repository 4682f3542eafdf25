"""DAPO's dynamic sampling with re-sampling: a step trains only on informative groups.

A group whose rewards are all equal (all right or all wrong) has zero advantage everywhere: it costs its rollouts
and carries no gradient. DAPO keeps generating until the step's batch is filled with non-flat groups:

    out = generate and score the step's groups
    while some groups are flat and tries < max_tries:
        draw as many fresh prompts as there are flat groups (from the training set, seeded by seed/step/try/rank)
        generate and score them; each new non-flat group takes the place of one flat group
    groups still flat after the last try are masked out (`mask` mode's rule: no loss, not in the token count)

Logged per step: `dynamic_sampling/tries` (generation rounds), `dynamic_sampling/flat_after` (share of the batch
still flat), `dynamic_sampling/rollouts` (completions generated / completions trained on). Advantages are per
group, so moving whole groups keeps them right (with `scale_rewards: batch` the std is the one of each round's
batch). Under several processes every rank runs the same number of rounds, each drawing the largest count of any
rank, because TRL gathers rewards across ranks inside each round.
"""
from __future__ import annotations

import random

import torch

from r1lab.train.seeding import stable_seed


def draw_prompts(trainer, n_groups: int, g: int, seed: int, step: int, attempt: int) -> list[dict]:
    """`n_groups` fresh training rows, each repeated g times (TRL's layout of a generation batch)."""
    ds = trainer.train_dataset
    rng = random.Random(stable_seed(seed, step, attempt, trainer.accelerator.process_index))
    picks = [ds[rng.randrange(len(ds))] for _ in range(n_groups)]
    return [dict(row) for row in picks for _ in range(g)]


def _pad_to(t: torch.Tensor, width: int, value, left: bool) -> torch.Tensor:
    extra = width - t.shape[1]
    if extra <= 0:
        return t
    pad = t.new_full((t.shape[0], extra, *t.shape[2:]), value)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


PROMPT_KEYS = ("prompt_ids", "prompt_mask")       # left-padded; every other [B, T] tensor is right-padded


def take_rows(a: dict, b: dict, rows_a: list[int], rows_b: list[int], pad_id: int) -> dict:
    """A batch made of rows `rows_a` of `a` then rows `rows_b` of `b` (TRL's generate-and-score outputs), each
    [B, T] tensor padded to the wider of the two. Per-row lists follow; scalars are a's."""
    n = a["completion_ids"].shape[0]
    out = {}
    ia, ib = torch.tensor(rows_a, dtype=torch.long), torch.tensor(rows_b, dtype=torch.long)
    for key, va in a.items():
        vb = b.get(key)
        if isinstance(va, torch.Tensor) and va.ndim >= 1 and va.shape[0] == n and isinstance(vb, torch.Tensor):
            xa, xb = va[ia.to(va.device)], vb[ib.to(vb.device)]
            if va.ndim >= 2 and va.shape[1] != vb.shape[1]:
                width = max(va.shape[1], vb.shape[1])
                value = pad_id if key.endswith("_ids") else 0
                xa, xb = (_pad_to(x, width, value, key in PROMPT_KEYS) for x in (xa, xb))
            out[key] = torch.cat([xa, xb])
        elif isinstance(va, list) and len(va) == n and isinstance(vb, list):
            out[key] = [va[i] for i in rows_a] + [vb[i] for i in rows_b]
        else:
            out[key] = va
    return out


def refill(out: dict, flat: torch.Tensor, new: dict, new_flat: torch.Tensor, g: int, pad_id: int) -> tuple[dict, torch.Tensor]:
    """Put the non-flat groups of `new` in the place of flat groups of `out` (as many as there are of both).
    Returns the batch (kept groups first, then the new ones) and its flat flags."""
    donors = [i for i, f in enumerate(new_flat.tolist()) if not f]
    holes = [i for i, f in enumerate(flat.tolist()) if f][:len(donors)]
    if not holes:
        return out, flat
    taken = set(holes)
    keep = [i for i in range(len(flat)) if i not in taken]
    donors = donors[:len(holes)]
    rows = lambda groups: [r for i in groups for r in range(i * g, (i + 1) * g)]   # noqa: E731
    merged = take_rows(out, new, rows(keep), rows(donors), pad_id)
    new_flags = torch.cat([flat[torch.tensor(keep, dtype=torch.long)], new_flat[torch.tensor(donors, dtype=torch.long)]])
    return merged, new_flags


def global_max(trainer, n: int) -> int:
    t = torch.tensor([n], device=trainer.accelerator.device)
    return int(trainer.accelerator.gather(t).max())
