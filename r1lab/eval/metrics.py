"""Metrics of DeepSeek-R1's evaluation protocol, computed from a pool of k sampled answers per problem.

- pass@1  = mean over problems of the mean correctness of that problem's k samples (R1: temperature 0.6,
  top-p 0.95, k = 4..64). Unbiased for the per-sample accuracy whatever k is, so it does not drift with k;
  its standard error is over problems (the k samples of one problem are not independent evidence).
- pass@k  = the unbiased estimator of Chen et al. 2021 (Codex): 1 - C(n-c, k) / C(n, k) for n samples, c right.
- cons@k  = majority vote over the extracted answers of k samples. Answers are clustered by the math
  verifier's equivalence (``1/2`` and ``0.5`` vote together), a missing answer never votes, and a tie
  counts as the fraction of tied clusters that are right (the expectation of a uniformly random tie break),
  so the result does not depend on the order of the samples. With a pool of n > k samples, cons@k is the
  exact mean over all k-subsets of the pool (or a seeded Monte-Carlo mean when there are too many), which is
  an unbiased estimate of cons@k for any pool size n >= k.
"""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from typing import Callable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples of which c are right: 1 - C(n-c,k)/C(n,k), in exact integers."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(verdicts: Sequence[Sequence[float]], k: int) -> float:
    """pass@k averaged over problems; ``verdicts[i]`` are the 0/1 verdicts of problem i's samples."""
    return float(np.mean([pass_at_k(len(v), int(round(sum(v))), k) for v in verdicts]))


def ks_for(n: int) -> list[int]:
    """The k values reported for a pool of n samples: powers of two below n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) < n]
    return ks + [n]


def pass_at_1(verdicts: Sequence[Sequence[float]]) -> float:
    """Mean over problems of the mean over that problem's samples."""
    return float(np.mean([np.mean(v) for v in verdicts]))


def paired_difference(a: dict, b: dict) -> dict:
    """pass@1 of b minus a on the problems both saw ({problem id: that problem's pass@1}), with the standard error of
    the per-problem differences. Pairing removes the problem-difficulty variance both models share, so two models
    on one test set are compared far more tightly than their separate standard errors suggest."""
    ids = [i for i in a if i in b]
    d = np.array([b[i] - a[i] for i in ids], dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    stderr = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "stderr": stderr, "n_problems": n}


def pass_at_1_stats(verdicts: Sequence[Sequence[float]], n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95) -> dict:
    """pass@1 with its standard error over problems and a percentile bootstrap interval (problems resampled)."""
    per_problem = np.array([np.mean(v) for v in verdicts], dtype=np.float64)
    p = len(per_problem)
    mean = float(per_problem.mean()) if p else float("nan")
    stderr = float(per_problem.std(ddof=1) / math.sqrt(p)) if p > 1 else float("nan")
    if p > 1 and n_boot > 0:
        rng = np.random.default_rng(seed)
        boots = per_problem[rng.integers(0, p, size=(n_boot, p))].mean(axis=1)
        lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
        ci = [float(lo), float(hi)]
    else:
        ci = [mean, mean]
    return {"mean": mean, "stderr": stderr, "ci": ci, "ci_level": level, "n_problems": p}


# ----------------------------------------------------------------------------------------- majority vote
def cluster_answers(answers: Sequence[str | None], equiv: Callable[[str, str], bool]) -> list[int | None]:
    """Cluster id per answer (None stays None): an answer joins the first cluster whose representative it is
    equivalent to. Identical strings are matched without calling ``equiv``."""
    reps: list[str] = []
    by_string: dict[str, int] = {}
    out: list[int | None] = []
    for a in answers:
        if a is None:
            out.append(None)
            continue
        if a in by_string:
            out.append(by_string[a])
            continue
        cid = next((i for i, r in enumerate(reps) if _safe_equiv(equiv, a, r)), None)
        if cid is None:
            cid = len(reps)
            reps.append(a)
        by_string[a] = cid
        out.append(cid)
    return out


def _safe_equiv(equiv, a, b) -> bool:
    try:
        return bool(equiv(a, b))
    except Exception:
        return False


def majority_correct(labels: Sequence[int | None], correct_of: dict[int, bool]) -> float:
    """Expected correctness of a majority vote over cluster labels (ties broken uniformly at random)."""
    counts = Counter(l for l in labels if l is not None)
    if not counts:
        return 0.0
    top = max(counts.values())
    tied = [c for c, n in counts.items() if n == top]
    return sum(bool(correct_of[c]) for c in tied) / len(tied)


def cons_at_k(labels: Sequence[int | None], correct_of: dict[int, bool], k: int | None = None,
              max_subsets: int = 2000, seed: int = 0) -> float:
    """cons@k for one problem from a pool of cluster labels: the mean majority-vote correctness over all
    k-subsets of the pool (exact when there are at most ``max_subsets`` of them, else a seeded sample)."""
    n = len(labels)
    k = n if k is None else k
    if not 1 <= k <= n:
        raise ValueError(f"cons_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if k == n:
        return majority_correct(labels, correct_of)
    if math.comb(n, k) <= max_subsets:
        subsets = itertools.combinations(range(n), k)
    else:
        rng = random.Random(seed)
        subsets = (rng.sample(range(n), k) for _ in range(max_subsets))
    vals = [majority_correct([labels[i] for i in s], correct_of) for s in subsets]
    return float(np.mean(vals))


def problem_votes(answers: Sequence[str | None], verdicts: Sequence[float],
                  equiv: Callable[[str, str], bool]) -> tuple[list[int | None], dict[int, bool]]:
    """Cluster a problem's answers and mark each cluster right/wrong (by the verdict of its first member)."""
    labels = cluster_answers(answers, equiv)
    correct_of: dict[int, bool] = {}
    for lab, v in zip(labels, verdicts):
        if lab is not None and lab not in correct_of:
            correct_of[lab] = bool(v)
    return labels, correct_of


def mean_cons_at_k(votes: Sequence[tuple[list, dict]], k: int | None = None, seed: int = 0,
                   max_subsets: int = 200) -> float:
    """cons@k averaged over problems; ``votes`` from :func:`problem_votes`. Per problem at most
    ``max_subsets`` k-subsets (exact below that); the average over problems smooths the rest."""
    return float(np.mean([cons_at_k(l, c, k, max_subsets=max_subsets, seed=seed + i)
                          for i, (l, c) in enumerate(votes)]))
