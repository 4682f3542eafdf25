"""LaTeX -> sympy, and "are these two expressions the same number/function?".

The converter is a small hand-written pass (LaTeX commands to Python syntax) followed by
`sympy.parse_expr(..., evaluate=False)`, so nothing is computed while parsing. A guard then refuses
expressions whose evaluation could be astronomically large (`10^{10^{10}}`, `1000000!`). Equality is
decided by `simplify(a - b) == 0`, then by high-precision numerics (exact answers only: `0.333` is not
`1/3`), then, for expressions with free symbols, by evaluation at random rational points. These functions
run inside `rewards.pool` workers, which are killed when a call runs past its time limit.
"""

from __future__ import annotations

import random
import re
import string

import sympy
from sympy.parsing.sympy_parser import (
    factorial_notation,
    implicit_multiplication_application,
    parse_expr,
    rationalize,
    standard_transformations,
)

from rewards.math import matching_close

_TRANSFORMS = standard_transformations + (implicit_multiplication_application, rationalize, factorial_notation)

_FUNCS = {
    "sin": "sin", "cos": "cos", "tan": "tan", "cot": "cot", "sec": "sec", "csc": "csc",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh",
    "ln": "log", "exp": "exp", "log": "log", "det": "det", "gcd": "gcd", "max": "Max", "min": "Min",
}
_CONSTS = {"pi": " pi ", "infty": " oo ", "infinity": " oo ", "e": " E ", "imath": " I "}
_TIMES = {"cdot": "*", "times": "*", "ast": "*", "div": "/"}
_BRACKETS = {"lfloor": " floor(", "rfloor": ")", "lceil": " ceiling(", "rceil": ")", "lvert": " Abs(",
             "rvert": ")", "langle": "(", "rangle": ")"}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
          "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi",
          "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}

_LOCALS = {c: sympy.Symbol(c) for c in string.ascii_letters}
_LOCALS.update({g: sympy.Symbol(g) for g in _GREEK if g != "lambda"})
_LOCALS.update({"e": sympy.E, "E": sympy.E, "i": sympy.I, "I": sympy.I, "pi": sympy.pi, "oo": sympy.oo,
                "lamda": sympy.Symbol("lambda")})


def group(s: str, i: int) -> tuple[str, int]:
    """The argument starting at s[i]: a {...} group (nested), a \\command, or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise ValueError("missing argument")
    if s[i] == "{":
        j = matching_close(s, i)
        if j < 0:
            raise ValueError("unbalanced braces")
        return s[i + 1 : j], j + 1
    m = re.match(r"\\[a-zA-Z]+", s[i:])
    if m:
        return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def _command(s: str, i: int, name: str, out: list) -> int:
    """Translate one \\command whose name ended at s[i]; return the new position."""
    if name in ("frac", "dfrac", "tfrac", "cfrac"):
        a, i = group(s, i)
        b, i = group(s, i)
        out.append(f"(({to_python(a)})/({to_python(b)}))")
    elif name == "sqrt":
        n = "2"
        if i < len(s) and s[i] == "[":
            j = s.index("]", i)
            n, i = to_python(s[i + 1 : j]), j + 1
        a, i = group(s, i)
        out.append(f"(({to_python(a)})**(1/({n})))" if n != "2" else f"sqrt({to_python(a)})")
    elif name == "binom":
        a, i = group(s, i)
        b, i = group(s, i)
        out.append(f"binomial({to_python(a)},{to_python(b)})")
    elif name == "log" and i < len(s) and s[i] == "_":
        base, i = group(s, i + 1)
        arg, i = group(s, i) if s[i : i + 1] != "(" else _paren(s, i)
        out.append(f"(log({to_python(arg)})/log({to_python(base)}))")
    elif name in _FUNCS:
        out.append(f" {_FUNCS[name]}")
    elif name in _CONSTS:
        out.append(_CONSTS[name])
    elif name in _TIMES:
        out.append(_TIMES[name])
    elif name in _BRACKETS:
        out.append(_BRACKETS[name])
    elif name in _GREEK:
        out.append(" lamda " if name == "lambda" else f" {name} ")
    else:
        raise ValueError(f"unsupported LaTeX command \\{name}")
    return i


def _paren(s: str, i: int) -> tuple[str, int]:
    j = matching_close(s, i, "(", ")")
    if j < 0:
        raise ValueError("unbalanced parentheses")
    return s[i + 1 : j], j + 1


def to_python(s: str) -> str:
    """LaTeX (already normalised: no \\left, \\text, spacing) -> a string `parse_expr` can read."""
    out: list[str] = []
    i, bars = 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = re.match(r"\\([a-zA-Z]+)", s[i:])
            if not m:
                sym = s[i + 1 : i + 2]
                out.append({"{": "(", "}": ")", "|": "|"}.get(sym, ""))
                i += 2
                continue
            i = _command(s, i + len(m.group(0)), m.group(1), out)
        elif c == "^":
            arg, i = group(s, i + 1)
            out.append(f"**({to_python(arg)})")
        elif c == "_":
            arg, i = group(s, i + 1)
            if not re.fullmatch(r"[A-Za-z0-9]+", arg):
                raise ValueError(f"unsupported subscript {arg!r}")
            out.append("_" + arg)
        elif c == "|":
            bars += 1
            out.append(" Abs(" if bars % 2 else ")")
            i += 1
        else:
            out.append({"{": "(", "}": ")", "[": "(", "]": ")"}.get(c, c))
            i += 1
    return "".join(out)


def _too_big(expr) -> bool:
    """True for powers/factorials whose value could not be computed in reasonable time and memory."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_number and node.base.is_number:
            if _big(node.exp) and not _unit(node.base):
                return True
        if isinstance(node, (sympy.factorial, sympy.binomial)) and any(_big(a, 10**4) for a in node.args):
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
    """sympy expression for a LaTeX string, or None when it cannot be read (or is hostile)."""
    try:
        py = to_python(s)
        if re.search(r"\d{5,}\s*!|\d{3000,}", py):  # 12345! or a 3000-digit literal: refuse before parsing
            return None
        expr = parse_expr(py, local_dict=dict(_LOCALS), transformations=_TRANSFORMS, evaluate=False)
        if not isinstance(expr, sympy.Basic) or _too_big(expr):
            return None
        return parse_expr(py, local_dict=dict(_LOCALS), transformations=_TRANSFORMS)  # now safe to evaluate
    except Exception:
        return None


def _close(v, scale) -> bool:
    return abs(complex(v)) <= 1e-12 * max(1.0, abs(complex(scale)))


def _numeric_equal(a, b) -> bool:
    diff = sympy.N(a - b, 40)
    return diff.is_number and _close(diff, sympy.N(b, 40))


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
