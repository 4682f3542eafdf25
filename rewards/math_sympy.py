"""LaTeX -> sympy, and "are these two expressions the same number/function?".

The reader is `rewards.math_parse`, a small grammar that builds sympy objects directly: no answer or
gold text is ever evaluated as Python (sympy's `parse_expr` calls `eval`, so it is not used). The answer
is first read without evaluation (`evaluate=False`), so nothing is computed while parsing; a guard refuses
expressions whose evaluation could be astronomically large (`10^{10^{10}}`, `1000000!`). Equality is
decided by `simplify(a - b) == 0`, then by high-precision numerics (exact answers only: `0.333` is not
`1/3`), then, for expressions with free symbols, by evaluation at random rational points. These functions
run inside `rewards.pool` workers, which are killed when a call runs past its time limit.
"""

from __future__ import annotations

import random

import sympy

from rewards.math_parse import parse_latex


def _too_big(expr) -> bool:
    """True for powers/factorials whose value could not be computed in reasonable time and memory."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_number and node.base.is_number:
            if _big(node.exp) and not _unit(node.base):
                return True
        if isinstance(node, (sympy.factorial, sympy.factorial2, sympy.binomial)) and any(_big(a, 10**4) for a in node.args):
            return True
    return False


def _big(x, limit=10**4) -> bool:
    if x.has(sympy.Pow) and any(isinstance(p, sympy.Pow) and p.base.is_number and p.exp.is_number
                                and not _unit(p.base) and _big(p.exp, 64) for p in sympy.preorder_traversal(x)):
        return True
    try:
        return abs(complex(sympy.N(x, 15))) > limit
    except (TypeError, ValueError, OverflowError):
        return True


def _unit(base) -> bool:
    try:
        return abs(complex(sympy.N(base, 15))) in (0.0, 1.0)
    except (TypeError, ValueError, OverflowError):
        return False


def parse(s: str):
    """sympy expression for a LaTeX string, or None when it cannot be read (or is hostile).

    Read twice by `math_parse` (which never evaluates text as code): first unevaluated, to refuse values too
    large to compute, then evaluated."""
    try:
        if _too_big(parse_latex(s, evaluate=False)):
            return None
        expr = parse_latex(s)
        return expr if isinstance(expr, sympy.Basic) else None
    except Exception:  # ParseError, or anything sympy raises on a strange but well-formed answer
        return None


def _close(v, scale) -> bool:
    return abs(complex(v)) <= 1e-12 * max(1.0, abs(complex(scale)))


def _numeric_equal(a, b) -> bool:
    """Equal to 60 significant digits (exact policy: a 16-digit decimal is not the irrational it rounds)."""
    diff = sympy.N(a - b, 60)
    return diff.is_number and abs(complex(diff)) <= 1e-45 * max(1.0, abs(complex(sympy.N(b, 60))))


def _random_points_equal(a, b, symbols, tries: int = 4) -> bool:
    rng = random.Random(0)
    for t in range(tries):
        point = {s: (-1) ** (t + k) * sympy.Rational(rng.randint(1, 97), rng.randint(1, 13))
                 for k, s in enumerate(sorted(symbols, key=str))}
        try:
            va, vb = sympy.N(a.subs(point), 30), sympy.N(b.subs(point), 30)
            if not (va.is_number and vb.is_number and _close(va - vb, vb)):
                return False
        except (TypeError, ValueError, ZeroDivisionError):
            return False
    return True


def sym_equal(a, b) -> bool:
    """Are sympy expressions a and b mathematically equal (exactly, or as functions of their symbols)?"""
    if a == b:
        return True
    try:
        if sympy.simplify(a - b) == 0:
            return True
    except Exception:
        pass
    try:
        symbols = (a - b).free_symbols
        if not symbols:
            return _numeric_equal(a, b)
        return _random_points_equal(a, b, symbols)
    except Exception:
        return False


def proportional(a, b) -> bool:
    """For equations moved to one side (a = 0, b = 0): is a a non-zero constant multiple of b?"""
    try:
        ratio = sympy.simplify(a / b)
        return ratio != 0 and not ratio.free_symbols and ratio.is_finite is not False
    except Exception:
        return False
