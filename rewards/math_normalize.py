"""Step 2 of math_accuracy: a canonical spelling of an answer string.

LaTeX spacing and sizing, `\\text{}`, `\\dfrac`, units (pct, percentage...), degrees, `\\$`, percent,
thousands separators, `{,}`, mixed numbers, "or"/"and" lists, negated inequalities, an `\\approx`
decimal after an exact value. Every step is a linear scan (no backtracking regex over unbounded text).
"""

from __future__ import annotations

import re

from rewards.math_extract import brace_partners, undouble


def is_variable(s: str) -> bool:
    """A single name: `x`, `x_1`, `\\theta`, `f(x)`."""
    return bool(re.fullmatch(r"[A-Za-z](_\w+)?|\\[a-z]+|[A-Za-z]\([A-Za-z]\)", s))


_SPACING = [r"\!", r"\,", r"\;", r"\:", r"\qquad", r"\quad", r"\displaystyle", "~", r"\limits"]
_UNIT_WORDS = frozenset("""
    unit units square sq cubic cm mm km m meter meters metre metres centimeter centimeters inches inch in feet
    foot ft yard yards mile miles mph hour hours hr hrs minute minutes min mins second seconds sec secs s day
    days week weeks month months year years dollar dollars cent cents pound pounds lb lbs ounce ounces oz gram
    grams g kg kilogram kilograms liter liters litre litres l ml gallon gallons degree degrees percent pct
    percentage people
    student students apple apples marble marbles book books boxes cookies cup cups page pages times ways point
    points
""".split())
_UNIT_POWER = re.compile(r"\^?\{?[23]\}?$")  # cm^2, cm^{3}, cm2


def _strip_units(s: str) -> str:
    """`5 square units` -> `5`, `12cm^2` -> `12`: drop the unit words (each optionally squared or cubed and
    followed by a dot) at the end of an answer, when what is left ends in a digit or `}` and has a digit.
    Scans words from the end, so it is linear (a regex alternation of unit names backtracked exponentially
    on `1mmm...m`). A letter run that is not a whole unit word (`mmm`) is not a unit."""
    end = len(s)
    while True:
        j = end
        while j > 0 and s[j - 1].isspace():
            j -= 1
        j -= j > 0 and s[j - 1] == "."
        power = _UNIT_POWER.search(s, max(0, j - 5), j)
        k = power.start() if power else j
        start = k
        while start > 0 and s[start - 1].isascii() and s[start - 1].isalpha():
            start -= 1
        if start == k or s[start:k].lower() not in _UNIT_WORDS:
            break
        end = start
    if end == len(s):
        return s
    rest = s[:end].rstrip()
    if rest[-1:] and (rest[-1].isdigit() or rest[-1] == "}") and re.search(r"\d", rest):
        return rest
    return s


def _unwrap_text(s: str) -> str:
    """`\\text{abc}` (and \\textbf, \\mathrm, \\mbox, ...) -> `abc`, nested ones too, in one pass; an
    unclosed `\\text{` is left as it is."""
    partner = brace_partners(s)
    cut: set[int] = set()  # indices of the command names, their `{` and their `}`
    for m in _TEXT_CMD.finditer(s):
        close = partner.get(m.end() - 1)
        if close is not None:
            cut.update(range(m.start(), m.end()))
            cut.add(close)
    return "".join(c for i, c in enumerate(s) if i not in cut) if cut else s


_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname|textnormal)\s*\{")


# `17\text{ any text}`, `15\mbox{ cm}^2`: words after a number are its unit or label (one linear scan: the
# pattern is anchored and has one unbounded run)
_TEXT_AFTER_NUMBER = re.compile(r"^([^\\]*\d)\s*\\(?:text|mbox|textnormal|mathrm)\s*\{[^{}]*\}(?:\^\{?[23]\}?)?$")


def _strip_delims(s: str) -> str:
    s = s.strip()
    for a, b in (("$$", "$$"), ("$", "$"), (r"\(", r"\)"), (r"\[", r"\]")):
        if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b):
            s = s[len(a) : len(s) - len(b)].strip()
    return s.replace("$", "")


_NEGATED = re.compile(r"\\not\s*(<|>|\\(?:leq?|geq?|lt|gt)(?![a-zA-Z]))|\\(nless|ngtr|nleq|ngeq)(?![a-zA-Z])")
_NEGATION = {"<": r"\geq ", r"\lt": r"\geq ", "nless": r"\geq ", ">": r"\leq ", r"\gt": r"\leq ", "ngtr": r"\leq ",
             r"\le": ">", r"\leq": ">", "nleq": ">", r"\ge": "<", r"\geq": "<", "ngeq": "<"}


def _latex_cleanup(s: str) -> str:
    s = _NEGATED.sub(lambda m: _NEGATION[m.group(1) or m.group(2)], s)  # x \not< 3 -> x \geq 3
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])\.?", "", s)
    for sp in _SPACING:
        s = s.replace(sp, " ")
    s = re.sub(r"(?<!\\)\\ ", " ", s)  # "\ " (a LaTeX space), but not the row break "\\ "
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = s.replace(r"\le ", r"\leq ").replace(r"\ge ", r"\geq ").replace(r"\neq", r"\ne")
    s = s.replace("{,}", "").replace(r"\%", "%").replace(r"\$", "")
    s = re.sub(r"\^\s*\{?\\circ\}?|°|\\degree", "", s)
    return s


def _numbers(s: str, thousands: bool = True) -> str:
    """Thousands separators (unless the comma was followed by a space: `32, 349` is two numbers), leading
    `+`, `\\frac12` shorthand, mixed numbers `2\\frac{1}{2}`."""
    if thousands and re.fullmatch(r"-?[1-9]\d{0,2}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = re.sub(r"^(-?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}$", r"\1(\2+\\frac{\3}{\4})", s)  # mixed number
    s = re.sub(r"^(-?)(\d+)\s+(\d+)/(\d+)$", r"\1(\2+\3/\4)", s)
    return s[1:] if s.startswith("+") else s


def _drop_approximation(s: str) -> str:
    """`\\frac{1}{\\sqrt3} \\approx 0.577` -> `\\frac{1}{\\sqrt3}`: an exact value followed by its decimal
    approximation is the exact value. A bare `\\approx 0.577` (or `x \\approx 0.577`) is `0.577`, which, by
    the exact-answer policy, does not equal 1/sqrt(3)."""
    m = re.search(r"\\approx(?![a-zA-Z])|≈", s)
    if not m:
        return s
    before = s[: m.start()].strip()
    return before if before and not is_variable(before) else s[m.end() :].strip()


def normalize(s: str) -> str:
    """A canonical spelling of an answer string (see the module doc); spaces are kept only inside words."""
    s = undouble(str(s)).replace(r"\$", "")
    spaced_comma = re.search(r"\d,\s+\d", s) is not None  # `32, 349` (but `11,\! 111` is one number)
    s = _strip_delims(_latex_cleanup(_strip_delims(s)))
    s = _strip_delims(_unwrap_text(_TEXT_AFTER_NUMBER.sub(r"\1", s)))
    s = _drop_approximation(re.sub(r"\s+", " ", s).strip()).rstrip(".").strip()
    s = s.replace("%", "").strip()
    s = re.sub(r"\s+(?:or|and)\s+|(?<=[)\]])\s*(?:or|and)\s*(?=[(\[])", ",", s)
    s = _strip_units(s)
    s = re.sub(r"(?<=[\d}])\s+(?=[\d\\])", " ", s)
    s = re.sub(r"(?<![A-Za-z])\s+|\s+(?![A-Za-z])", "", s)
    return _numbers(s, thousands=not spaced_comma)

