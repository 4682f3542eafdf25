"""Templated word problems: one to three arithmetic steps wrapped in a short story.

difficulty 1: one step; 2: two steps; 3+: three steps with larger numbers.
"""
from __future__ import annotations

from r1lab.tasks.base import r1_format

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goro", "Hana", "Ivan", "Jomo", "Kira", "Luis", "Mina", "Noor"]
ITEMS = ["apples", "books", "coins", "marbles", "pencils", "stickers", "shells", "cards", "stamps", "beads"]
SUFFIX = " Give the final number in <answer></answer>."


def _one(rng, s, name, item):
    a, b = rng.randint(2, 9 * s), rng.randint(2, 9 * s)
    if rng.random() < 0.5:
        return (f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
                f"{name} starts with {a} and gets {b} more: {a} + {b} = {a + b}.", a + b)
    a = a + b
    return (f"{name} has {a} {item} and gives away {b}. How many {item} are left?",
            f"{name} starts with {a} and gives away {b}: {a} - {b} = {a - b}.", a - b)


def _two(rng, s, name, item):
    bags, per, extra = rng.randint(2, 6 + s), rng.randint(2, 6 + s), rng.randint(1, 9 * s)
    if rng.random() < 0.5:
        t = bags * per
        return (f"{name} buys {bags} bags of {item} with {per} in each bag, then finds {extra} more. "
                f"How many {item} does {name} have?",
                f"The bags hold {bags} × {per} = {t}.\nAdding {extra}: {t} + {extra} = {t + extra}.", t + extra)
    t = bags * per + extra
    return (f"{name} has {t} {item}, gives away {extra}, and shares the rest equally among {bags} friends. "
            f"How many {item} does each friend get?",
            f"After giving away {extra}: {t} - {extra} = {t - extra}.\nShared among {bags}: {t - extra} / {bags} = {per}.", per)


def _three(rng, s, name, item):
    a, b, c, k = rng.randint(5, 20 * s), rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 5)
    other = NAMES[(NAMES.index(name) + 1) % len(NAMES)]
    t1 = a + b * c
    return (f"{name} has {a} {item}. {other} gives {name} {b} boxes of {c} {item} each. Then {name} "
            f"trades them so the pile becomes {k} times as large. "
            f"How many {item} does {name} end with?",
            f"The boxes hold {b} × {c} = {b * c}.\n{name} then has {a} + {b * c} = {t1}.\n"
            f"Multiplying by {k}: {t1} × {k} = {t1 * k}.", t1 * k)


def make(rng, d: int):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    fn = _one if d <= 1 else (_two if d == 2 else _three)
    q, think, ans = fn(rng, max(d, 1), name, item)
    return {"key": q, "prompt": q + SUFFIX, "answer": str(ans), "solution": r1_format(think, str(ans))}
