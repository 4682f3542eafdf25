"""Step 3b of math_accuracy: are two answer strings the same answer? Compares their structures piece by
piece; expressions go to sympy (`math_sympy`, imported lazily: the caller decides cheap cases without it,
and the pool workers import it once at start, `pool_warm_up`).

Policy (what a careful human grader does): answers must be exact (`0.5` = `1/2`, `0.333` != `1/3`; there is
no tolerance option); `x = 3` equals `3`; "all solutions" lists are unordered, parenthesised tuples are
ordered; units, degree signs, dollar signs and percent signs do not matter; a gold `(D) Alina` accepts `D`,
`(D) Alina` or `Alina`.
"""

from __future__ import annotations

import re

from rewards.math_extract import too_long
from rewards.math_normalize import normalize
from rewards.math_structure import is_label, structure, to_number

def scalar_equal(p: str, g: str) -> bool:
    if p == g:
        return True
    a, b = to_number(p), to_number(g)
    if a is not None and b is not None:
        return a == b
    from rewards.math_sympy import parse, sym_equal

    ea, eb = parse(p), parse(g)
    return ea is not None and eb is not None and sym_equal(ea, eb)


def _unordered(ps: list, gs: list) -> bool:
    """Lists of answers compare as sets: every answer given is a gold one and every gold one is given (a
    solution written twice, as in Math-Verify's numina case, is still one solution)."""
    return all(any(node_equal(p, g) for g in gs) for p in ps) and all(any(node_equal(p, g) for p in ps) for g in gs)


def _ordered(ps: list, gs: list) -> bool:
    return len(ps) == len(gs) and all(node_equal(p, g) for p, g in zip(ps, gs))


def _eq_equal(p: list, g: list) -> bool:
    if p[0] == g[0]:
        return node_equal(p[1], g[1])
    from rewards.math_sympy import parse, proportional

    exprs = [parse(f"{x[0]}-({x[1]})") for x in (p, g)]
    return None not in exprs and proportional(*exprs)


def _flatten_vector(node):
    kind, val = node
    if kind == "matrix" and (len(val) == 1 or all(len(r) == 1 for r in val)):
        return ("tuple", [c for r in val for c in r])
    return node


def _as_interval(kind, val):
    if kind == "tuple" and len(val) == 2:
        return "interval", ("(", val[0], val[1], ")")
    return kind, val


def node_equal(p, g) -> bool:
    """Compare two answers given as strings or (kind, payload) structures (pred first, gold second)."""
    p = structure(p) if isinstance(p, str) else p
    g = structure(g) if isinstance(g, str) else g
    (pk, pv), (gk, gv) = _flatten_vector(p), _flatten_vector(g)
    if gk == "eq" and pk != "eq":
        return is_label(gv[0]) and node_equal(p, gv[1])
    if pk == "eq" and gk != "eq":
        return is_label(pv[0]) and node_equal(pv[1], g)
    if {pk, gk} == {"list", "tuple"}:
        return _ordered(pv, gv)
    if {pk, gk} == {"interval", "tuple"}:  # an open interval written (a, b)
        (pk, pv), (gk, gv) = (_as_interval(pk, pv), _as_interval(gk, gv))
    if {pk, gk} <= {"list", "set"}:
        return _unordered(pv, gv)
    if pk == "union" and gk == "union":
        return _unordered(pv, gv)
    if pk != gk:
        return False
    if pk == "ratio":  # 11:21 = 22:42; with a zero part (a time, 12:00) part by part
        if len(pv) == len(gv) == 2 and 0 not in map(to_number, pv + gv):
            return scalar_equal(f"\\frac{{{pv[0]}}}{{{pv[1]}}}", f"\\frac{{{gv[0]}}}{{{gv[1]}}}")
        return _ordered(pv, gv)
    if pk == "matrix":
        return len(pv) == len(gv) and all(_ordered(a, b) for a, b in zip(pv, gv))
    if pk == "tuple":
        return _ordered(pv, gv)
    if pk == "interval":
        return pv[0] == gv[0] and pv[3] == gv[3] and _ordered(list(pv[1:3]), list(gv[1:3]))
    if pk == "eq":
        return _eq_equal(pv, gv)
    if pk in ("choice", "text"):
        return re.sub(r"\W", "", pv) == re.sub(r"\W", "", gv)
    return scalar_equal(pv, gv)


# `(D) Alina`, `C Cecile`, `B. Paris`: a choice letter with its option text
_OPTION = re.compile(r"\(?([A-E])(?:\)\s*|[.:)]?\s+(?=[A-Z]))([^\s()].*)", re.DOTALL)
_FIRST_LETTER = re.compile(r"(?<![A-Za-z])[A-E](?![A-Za-z])")


def _choice_letter(pred: str) -> str:
    """`(C) 12`, `C) 12`, `\\text{(C)}` -> `C`, so multiple-choice answers may carry their option text."""
    m = re.match(r"\(?([A-E])\)(?:\s|$)|\\text\{\(?([A-E])\)?\}", pred.strip())
    return (m.group(1) or m.group(2)) if m else pred


def equiv(pred: str, gold: str) -> bool:
    """Do the answer strings pred and gold mean the same thing? (Runs sympy; may be slow: see is_equiv.)"""
    if too_long(pred) or too_long(gold):
        return False
    option = _OPTION.fullmatch(gold.strip())
    if option:  # a gold `(D) Alina`: the letter, the letter with the text, or the text itself
        letter, text = option.groups()
        return _choice_letter(pred).strip() in (letter, f"({letter})") or equiv(pred, text)
    p, g = normalize(pred), normalize(gold)
    if p == g or _same_word(p, g):
        return True
    if structure(g)[0] == "choice":
        p = normalize(_choice_letter(pred))
        if structure(p)[0] != "choice" and re.search(r"[A-Za-z]{2,}", p) and (first := _FIRST_LETTER.search(pred)):
            # prose after the marker: its first choice letter (`for sure D, not A or B`)
            p = first.group()
    p, g = _decimal_comma(p, g, pred, gold)
    try:
        return node_equal(p, g)
    except (RecursionError, ValueError, TypeError, AttributeError, IndexError):
        return False


def _same_word(p: str, g: str) -> bool:
    """`Yes` = `yes`: words (two letters or more) compare without case."""
    return p.lower() == g.lower() and bool(re.fullmatch(r"[A-Za-z][A-Za-z ']+", p))


_COMMA_DECIMAL = re.compile(r"-?\d+,\d+")
_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(,\d{3})+")


def _decimal_comma(p: str, g: str, raw_p: str, raw_g: str) -> tuple[str, str]:
    """`1000,99` and `0,111` against a decimal number are decimal commas: a comma between digits that
    cannot be a thousands separator, written without a space (`1, 22` is two answers)."""
    for a, b, raw in ((p, g, raw_p), (g, p, raw_g)):
        if (_COMMA_DECIMAL.fullmatch(a) and not _THOUSANDS.fullmatch(a) and "." in b and to_number(b) is not None
                and not re.search(r",\s", raw)):
            return (a.replace(",", "."), b) if a is p else (b, a.replace(",", "."))
    return p, g


def quick_equiv(pred: str, gold: str) -> bool | None:
    """A decision without sympy when the strings settle it (same spelling, or two plain numbers); else None."""
    p, g = _decimal_comma(normalize(pred), normalize(gold), pred, gold)
    if p == g or _same_word(p, g):
        return True
    a, b = to_number(p), to_number(g)
    if a is not None and b is not None:
        return a == b
    return None



def pool_warm_up() -> None:
    """Called by each pool worker at start: import what `equiv` imports lazily (sympy and the parser), so the
    worker's integrity snapshot (see rewards.pool) covers them from the first task on."""
    import rewards.math_sympy  # noqa: F401

