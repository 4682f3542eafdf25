"""Step 3a of math_accuracy: read a normalised answer into a structure.

Kinds: a choice letter, a text answer, an interval or a union of them, a set (unordered), a tuple
(ordered), a bare list of answers (unordered), a ratio, a matrix, an equation (named answers
`(p,q)=(3,2)`, `x \\in [-2,7]`; in a chain the last right-hand side), or one expression.
"""

from __future__ import annotations

import re
from fractions import Fraction

from rewards.math_extract import matching_close
from rewards.math_normalize import is_variable

def split_top(s: str, seps: str = ",") -> list[str]:
    """Split at separators that are not inside (), [], {} (and `\\{ \\}`)."""
    parts, depth, cur, i = [], 0, [], 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c in seps and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts]


_INEQ = re.compile(r"(\\leq|\\geq|\\le|\\ge|\\lt|\\gt|<=|>=|<|>|≤|≥)")
_LESS = {r"\leq": True, r"\le": True, "<=": True, "≤": True, "<": False, r"\lt": False}  # value: closed?
_MORE = {r"\geq": True, r"\ge": True, ">=": True, "≥": True, ">": False, r"\gt": False}


_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "≤": "≥", "≥": "≤", r"\lt": r"\gt", r"\gt": r"\lt",
         r"\le": r"\ge", r"\ge": r"\le", r"\leq": r"\geq", r"\geq": r"\leq"}


def _inequality(s: str):
    """`x > 3`, `-1 \\le x \\le 4`, `3 < x`, `-x > -1` -> the interval they describe (one variable only)."""
    parts = [p.strip() for p in _INEQ.split(s)]
    if len(parts) == 3 and parts[0][:1] == "-" and is_variable(parts[0][1:]) and not is_variable(parts[2]):
        parts = [parts[0][1:], _FLIP[parts[1]], f"-({parts[2]})"]  # -x > -1 is x < 1
    if len(parts) == 3 and is_variable(parts[0]) != is_variable(parts[2]):
        var_left = is_variable(parts[0])
        value, op = (parts[2] if var_left else parts[0]), parts[1]
        less = (op in _LESS) == var_left  # the variable is below the value
        closed = bool(_LESS.get(op) or _MORE.get(op))
        if less:
            return ("interval", ("(", r"-\infty", value, "]" if closed else ")"))
        return ("interval", ("[" if closed else "(", value, r"\infty", ")"))
    if len(parts) == 5 and is_variable(parts[2]) and not is_variable(parts[0]) and not is_variable(parts[4]):
        (a, op1, _, op2, b) = parts
        if op1 in _LESS and op2 in _LESS:
            return ("interval", ("[" if _LESS[op1] else "(", a, b, "]" if _LESS[op2] else ")"))
        if op1 in _MORE and op2 in _MORE:
            return ("interval", ("[" if _MORE[op2] else "(", b, a, "]" if _MORE[op1] else ")"))
    return None


def _matrix(s: str):
    m = re.fullmatch(r"\\begin\{([pbvBV]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}", s, flags=re.DOTALL)
    if not m:
        return None
    rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
    return ("matrix", [[c.strip() for c in r.split("&")] for r in rows])


def structure(s: str):
    """Read a normalised answer into (kind, payload); kinds: matrix, set, union, interval, tuple, list,
    eq, ratio, choice, text, expr."""
    if (mat := _matrix(s)) is not None:
        return mat
    if re.fullmatch(r"\(?[A-Ea-e]\)?|\\text\{\(?[A-E]\)?\}", s) and re.search(r"[A-E]", s):
        return ("choice", re.search(r"[A-E]", s).group(0))
    if s.count(r"\pm") == 1 and "," not in s:
        a, b = s.split(r"\pm")
        return ("list", [f"{a}+{b}", f"{a}-{b}"] if a else [b, f"-{b}"])
    if s.startswith(r"\{") and s.endswith(r"\}"):
        return ("set", split_top(s[2:-2].replace(r"\{", "{").replace(r"\}", "}")))
    if s.startswith("{") and s.endswith("}") and matching_close(s, 0) == len(s) - 1:  # `{1,3}`: LaTeX grouping
        return structure(s[1:-1])
    if r"\cup" in s:
        return ("union", [structure(p) for p in s.split(r"\cup")])
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and matching_close(s, 0, "([{", ")]}") == len(s) - 1:
        items = split_top(s[1:-1])
        if len(items) == 1:
            return structure(items[0])
        if len(items) == 2 and (s[0] == "[" or s[-1] == "]"):
            return ("interval", (s[0], items[0], items[1], s[-1]))
        return ("tuple", items)
    items = split_top(s, ";")  # `p=5,q=2;p=7,q=2`: `;` separates answers whose parts `,` separates
    if len(items) == 1:
        items = split_top(s, ",")
    if len(items) > 1:
        return ("list", items)
    if (iv := _inequality(s)) is not None:
        return iv
    member = re.fullmatch(r"(.+?)\\in(?![a-zA-Z])(.+)", s)  # x \in [-2,7]: the set, named
    if member and is_label(member.group(1)):
        return ("eq", [member.group(1), member.group(2)])
    eq = split_top(s, "=")
    if len(eq) >= 2 and all(eq):
        return _equation(eq)
    ratio = split_top(s, ":")  # `11:21`
    if len(ratio) > 1 and all(ratio):
        return ("ratio", ratio)
    if re.fullmatch(r"[A-Za-z][A-Za-z ']*[A-Za-z]", s) and not re.fullmatch(r"[a-z]{1,3}", s):
        return ("text", s.lower())
    return ("expr", s)


def _equation(sides: list[str]):
    """`y = 2x+3` is an equation; in a chain the last right-hand side wins (`x = 2+3 = 5` is `x = 5`), and a
    computation without letters is its result (`6 \\times 7 = 42` is `42`; `7 = 11a+c` stays an equation)."""
    if is_label(sides[0]):
        return ("eq", [sides[0], sides[-1]])
    letters = [re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", x)) is not None for x in (sides[0], sides[-1])]
    if len(sides) > 2 or letters == [False, False]:
        return structure(sides[-1])
    return ("eq", sides)


def _repeating(s: str) -> Fraction | None:
    """`0.1\\overline{6}` -> 1/6 (a repeating decimal is an exact rational)."""
    m = re.fullmatch(r"(-?)(\d*)\.(\d*)\\overline\{(\d+)\}", s)
    if not m:
        return None
    whole, fixed, rep = m.group(2) or "0", m.group(3), m.group(4)
    value = Fraction(int(whole + fixed + rep) - int(whole + fixed), 10 ** (len(fixed) + len(rep)) - 10 ** len(fixed))
    return -value if m.group(1) else value


def to_number(s: str) -> Fraction | None:
    """An exact rational for plain numerals: `12`, `-0.25`, `007`, `3/4`, `\\frac{3}{4}`, `0.1\\overline{6}`."""
    if "overline" in s:
        return _repeating(s)
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", s) or re.fullmatch(r"(-?)(\d+)/(\d+)", s)
    try:
        if m:
            return (-1 if m.group(1) else 1) * Fraction(int(m.group(2)), int(m.group(3)))
        if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", s):
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


_LABEL = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?|\\[a-zA-Z]+|[A-Za-z]\([A-Za-z]\)|[A-Za-z]{2,3}|\|[A-Za-z]{1,3}\||"
                    r"\\frac\{[A-Za-z]{1,3}\}\{[A-Za-z]{1,3}\}")


def is_label(s: str) -> bool:
    """A name an answer may be given under: `x`, `x_1`, `\\theta`, `f(x)`, `AB` (a segment), or a tuple of
    them, `(p,q)`, or a ratio of them, `V_1:V_2`, `|AB|`, `\\frac{NO}{BO}`; `(p,q)=(3,2)` then equals `(3,2)`,
    `x \\in [-2,7]` equals `[-2,7]` and `V_1:V_2=11:21` equals `11:21`."""
    if ":" in s:
        return all(_LABEL.fullmatch(n) for n in s.split(":"))
    if s[:1] == "(" and s[-1:] == ")":
        names = split_top(s[1:-1])
        return len(names) > 1 and all(_LABEL.fullmatch(n) for n in names)
    return bool(_LABEL.fullmatch(s))
