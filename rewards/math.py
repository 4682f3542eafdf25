"""math_accuracy: pull the final answer out of a completion and decide whether it equals the gold answer.

Three steps, each a small function:
  1. `extract_answer(text)`: the last `\\boxed{...}` (nested braces; several boxes standing together at the
     end make one list answer), else the last `<answer>...</answer>`, else GSM8K's `#### N`, else the last
     "the (final) answer is ..." (its `$...$`, or its first sentence cut before an explanation). R1 requires
     a final-answer marker: prose without one has no answer.
  2. `normalize(s)`: LaTeX spacing and sizing, `\\text{}`, `\\dfrac`, units (pct, percentage...), degrees,
     `\\$`, percent, thousands separators, `{,}`, mixed numbers, "or"/"and" lists, negated inequalities, an
     `\\approx` decimal after an exact value.
  3. `equiv(pred, gold)`: read both into a structure -- a choice letter, a text answer, an interval or a
     union of them, a set (unordered), a tuple (ordered), a bare list of answers (unordered), a matrix, an
     equation (named answers `(p,q)=(3,2)`, `x \\in [-2,7]`; in a chain the last right-hand side), or one
     expression -- and compare piece by piece; expressions go to sympy (`math_sympy`).

Policy (what a careful human grader does): answers must be exact (`0.5` = `1/2`, `0.333` != `1/3`; there is
no tolerance option); `x = 3` equals `3`; "all solutions" lists are unordered, parenthesised tuples are
ordered; units, degree signs, dollar signs and percent signs do not matter; a gold `(D) Alina` accepts `D`,
`(D) Alina` or `Alina`.

Hostile input (the policy being trained writes the completions; golds come from data files): no answer or
gold text is ever evaluated as code (expressions are read by `math_parse`, a grammar that builds sympy
objects); extraction and normalisation are linear-time scans (no backtracking regexes), and answers or golds
over `MAX_ANSWER_CHARS` score 0, so the caller's share of the work is bounded on any input.

`math_accuracy` scores a batch: cheap string/number decisions happen in the caller; the rest go to a pool
of worker processes, each comparison limited to `timeout` seconds (a hostile `10^{10^{10^{10}}}`
scores 0 quickly and never hangs the trainer); see `rewards.pool` for the workers' integrity check.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction

from rewards.registry import completion_texts, record_reasons, register

# ---------------------------------------------------------------- 1. extraction


def matching_close(s: str, start: int, opens: str = "{", closes: str = "}") -> int:
    """Index of the bracket closing the one that opens at s[start], counting nesting over the `opens`/`closes`
    characters; -1 if it never closes. O(len(s)) per call: `structure` uses it on answers already capped at
    MAX_ANSWER_CHARS; extraction, which sees whole completions, matches all braces at once (brace_partners)."""
    depth = 0
    for j in range(start, len(s)):
        depth += 1 if s[j] in opens else -1 if s[j] in closes else 0
        if depth == 0:
            return j
    return -1


def brace_partners(text: str) -> dict[int, int]:
    """Index of each `{` -> index of the `}` closing it, for every balanced group in text, in one pass
    (so a text with thousands of unclosed `\\boxed{` costs one scan, not one per `\\boxed`)."""
    stack, partner = [], {}
    for m in re.finditer(r"[{}]", text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            partner[stack.pop()] = m.start()
    return partner


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_BOX = re.compile(r"\s+([^\s$]+)")  # \boxed 5


def _closed_boxes(text: str):
    """(start of the command, content, end) of each `\\boxed{...}` / `\\fbox{...}` that closes (nested braces
    allowed) and each `\\boxed 5`, last first. Linear in len(text): the braces are matched once."""
    partner = None
    for m in reversed(list(_BOX.finditer(text))):
        j = m.end()
        while j < len(text) and text[j].isspace():
            j += 1
        if j < len(text) and text[j] == "{":
            partner = brace_partners(text) if partner is None else partner
            if j in partner:
                yield m.start(), text[j + 1 : partner[j]], partner[j] + 1
        elif (bare := _BARE_BOX.match(text, m.end())) is not None:
            yield m.start(), bare.group(1).strip(), bare.end()


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` that closes (or `\\boxed 5`)."""
    return next((content for _, content, _ in _closed_boxes(text)), None)


# what may stand between boxes that together make one answer: `\boxed{3}, \boxed{5}`, `$\boxed{3}$ and ...`
# ("or" does not: `\boxed{15\frac{39}{40}}, or \boxed{\frac{639}{40}}` spells one answer twice)
_BOX_GAP = re.compile(r"(?:\s|[,;$~]|\\[,;:!]|\\q?quad|\\text\{\s*(?:and|,)?\s*\}|and)*")


def final_boxed(text: str) -> str | None:
    """The last box's content; when several boxes stand together at the end, with only separators (commas,
    "and", `$`, spacing) between them, all of them joined with commas: `\\boxed{3} and \\boxed{5}` ->
    `3,5` (a list of answers; lists compare unordered). A box after other words stands alone."""
    parts, start = [], None
    for begin, content, end in _closed_boxes(text):
        if parts and not (end <= start and start - end <= 40 and _BOX_GAP.fullmatch(text, end, start)):
            break
        parts.append(content.strip())
        start = begin
    return ",".join(reversed(parts)) if parts else None


def _last_tagged(text: str) -> str | None:
    """Content of the last `<answer>...</answer>` (the last `<answer>` that is closed, up to its close)."""
    close = text.rfind("</answer>")
    if close < 0:
        return None
    start = text.rfind("<answer>", 0, close)
    if start < 0:
        return None
    return text[start + len("<answer>") : text.find("</answer>", start)]


def _after_hashes(text: str) -> str | None:
    """GSM8K's `#### 72`: the rest of the line after the last `####` (skipping blank lines)."""
    i = text.rfind("####")
    if i < 0:
        return None
    line = re.compile(r"\s*([^\n]*)").match(text, i + 4).group(1).strip()
    return line or None


_ANSWER_WORD = re.compile(r"answer", re.IGNORECASE)
_PHRASE_HEAD = re.compile(r"\s*(?:is|:)\s*", re.IGNORECASE)  # one quantifier per gap: no backtracking
_PHRASE_LINE = re.compile(r":?\s*([^\n]+)")


def _after_answer_phrase(text: str) -> str | None:
    """`The (final) answer is $-\\frac34$.` -> `-\\frac34`: the line after the last "answer is" / "answer:",
    its first `$...$` / `\\(...\\)` if it starts with one, else up to the first full stop."""
    for i in reversed([m.end() for m in _ANSWER_WORD.finditer(text)]):
        head = _PHRASE_HEAD.match(text, i)
        body = _PHRASE_LINE.match(text, head.end()) if head else None
        if body:
            return _phrase_value(body.group(1).strip())
    return None


_CONNECTIVE = re.compile(r"[,;]?\s+(?:because|since|as|which|so|therefore|thus|hence|where|when|given|if|for|"
                         r"from|by|after|due|meaning|i\.e\.|that is)\b", re.IGNORECASE)


def _phrase_value(tail: str) -> str | None:
    """The answer at the start of the text after an answer phrase: its first `$...$` / `\\(...\\)` if it
    starts with one; else the first sentence, cut before a connective that starts an explanation
    (`42 because ...`, `42, since ...`)."""
    math = re.match(r"\$+([^$]+)\$+", tail) or re.match(r"\\\((.+?)\\\)", tail)
    if math:
        return math.group(1).strip()
    value = re.split(r"\.(?:\s|$)", tail)[0].strip().rstrip(".")
    if len(value) <= MAX_ANSWER_CHARS:  # (longer ones are refused anyway; this keeps the regex linear)
        value = _CONNECTIVE.split(value, maxsplit=1)[0].strip()
    return value or None


def _extract(text: str) -> str | None:
    boxed = final_boxed(text)
    if boxed is not None:
        return boxed.strip()
    inner = _last_tagged(text)
    if inner is not None:
        return (final_boxed(inner) or _after_answer_phrase(inner) or inner).strip()
    hashes = _after_hashes(text)
    if hashes is not None:
        return hashes
    return _after_answer_phrase(text)


def extract_answer(text: str | None) -> str | None:
    """The final answer of a completion (text after the last `</think>` first), or None if it gives none.
    Every step scans the text a bounded number of times: linear time on any input."""
    if not text:
        return None
    tail = text.rsplit("</think>", 1)[-1]
    if tail is not text:
        found = _extract(tail)
        if found is not None:
            return found
    return _extract(text)


# ---------------------------------------------------------------- 2. normalisation

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


def _numbers(s: str) -> str:
    """Thousands separators, leading `+`, `\\frac12` shorthand, mixed numbers `2\\frac{1}{2}`."""
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
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
    return before if before and not _is_variable(before) else s[m.end() :].strip()


def normalize(s: str) -> str:
    """A canonical spelling of an answer string (see the module doc); spaces are kept only inside words."""
    s = str(s).replace(r"\$", "")
    s = _strip_delims(_unwrap_text(_latex_cleanup(_strip_delims(s))))
    s = _drop_approximation(re.sub(r"\s+", " ", s).strip()).rstrip(".").strip()
    s = s.replace("%", "").strip()
    s = re.sub(r"\s+(?:or|and)\s+", ",", s)
    s = _strip_units(s)
    s = re.sub(r"(?<=[\d}])\s+(?=[\d\\])", " ", s)
    s = re.sub(r"(?<![A-Za-z])\s+|\s+(?![A-Za-z])", "", s)
    return _numbers(s)


# ---------------------------------------------------------------- 3. structure and comparison


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


def _inequality(s: str):
    """`x > 3`, `-1 \\le x \\le 4`, `3 < x` -> the interval they describe (one variable only)."""
    parts = [p.strip() for p in _INEQ.split(s)]
    if len(parts) == 3 and _is_variable(parts[0]) != _is_variable(parts[2]):
        var_left = _is_variable(parts[0])
        value, op = (parts[2] if var_left else parts[0]), parts[1]
        less = (op in _LESS) == var_left  # the variable is below the value
        closed = bool(_LESS.get(op) or _MORE.get(op))
        if less:
            return ("interval", ("(", r"-\infty", value, "]" if closed else ")"))
        return ("interval", ("[" if closed else "(", value, r"\infty", ")"))
    if len(parts) == 5 and _is_variable(parts[2]) and not _is_variable(parts[0]) and not _is_variable(parts[4]):
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
    eq, choice, text, expr."""
    if (mat := _matrix(s)) is not None:
        return mat
    if re.fullmatch(r"\(?[A-Ea-e]\)?|\\text\{\(?[A-E]\)?\}", s) and re.search(r"[A-E]", s):
        return ("choice", re.search(r"[A-E]", s).group(0))
    if s.count(r"\pm") == 1 and "," not in s:
        a, b = s.split(r"\pm")
        return ("list", [f"{a}+{b}", f"{a}-{b}"] if a else [b, f"-{b}"])
    if s.startswith(r"\{") and s.endswith(r"\}"):
        return ("set", split_top(s[2:-2].replace(r"\{", "{").replace(r"\}", "}")))
    if r"\cup" in s:
        return ("union", [structure(p) for p in s.split(r"\cup")])
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and matching_close(s, 0, "([{", ")]}") == len(s) - 1:
        items = split_top(s[1:-1])
        if len(items) == 1:
            return structure(items[0])
        if len(items) == 2 and (s[0] == "[" or s[-1] == "]"):
            return ("interval", (s[0], items[0], items[1], s[-1]))
        return ("tuple", items)
    items = split_top(s, ",;")
    if len(items) > 1:
        return ("list", items)
    if (iv := _inequality(s)) is not None:
        return iv
    member = re.fullmatch(r"(.+?)\\in(?![a-zA-Z])(.+)", s)  # x \in [-2,7]: the set, named
    if member and _is_label(member.group(1)):
        return ("eq", [member.group(1), member.group(2)])
    eq = split_top(s, "=")
    if len(eq) >= 2 and all(eq):
        return _equation(eq)
    if re.fullmatch(r"[A-Za-z][A-Za-z ']*[A-Za-z]", s) and not re.fullmatch(r"[a-z]{1,3}", s):
        return ("text", s.lower())
    return ("expr", s)


def _equation(sides: list[str]):
    """`y = 2x+3` is an equation; in a chain the last right-hand side wins (`x = 2+3 = 5` is `x = 5`), and a
    computation without letters before `=` is its result (`6 \\times 7 = 42` is `42`)."""
    if _is_label(sides[0]):
        return ("eq", [sides[0], sides[-1]])
    if len(sides) > 2 or not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", sides[0])):
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


def _is_variable(s: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z](_\w+)?|\\[a-z]+|[A-Za-z]\([A-Za-z]\)", s))


_LABEL = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?|\\[a-zA-Z]+|[A-Za-z]\([A-Za-z]\)|[A-Za-z]{2,3}")


def _is_label(s: str) -> bool:
    """A name an answer may be given under: `x`, `x_1`, `\\theta`, `f(x)`, `AB` (a segment), or a tuple of
    them, `(p,q)`; `(p,q)=(3,2)` then equals `(3,2)` and `x \\in [-2,7]` equals `[-2,7]`."""
    if s[:1] == "(" and s[-1:] == ")":
        names = split_top(s[1:-1])
        return len(names) > 1 and all(_LABEL.fullmatch(n) for n in names)
    return bool(_LABEL.fullmatch(s))


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
    if len(ps) != len(gs):
        return False
    left = list(gs)
    for p in ps:
        hit = next((k for k, g in enumerate(left) if node_equal(p, g)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


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
        return _is_label(gv[0]) and node_equal(p, gv[1])
    if pk == "eq" and gk != "eq":
        return _is_label(pv[0]) and node_equal(pv[1], g)
    if pk == "list" and gk == "tuple":
        return _ordered(pv, gv)
    if {pk, gk} == {"interval", "tuple"}:  # an open interval written (a, b)
        (pk, pv), (gk, gv) = (_as_interval(pk, pv), _as_interval(gk, gv))
    if {pk, gk} <= {"list", "set"}:
        return _unordered(pv, gv)
    if pk == "union" and gk == "union":
        return _unordered(pv, gv)
    if pk != gk:
        return False
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


_OPTION = re.compile(r"\(([A-E])\)\s*([^\s()].*)", re.DOTALL)  # `(D) Alina`: a choice letter with its text


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
    try:
        return node_equal(p, g)
    except (RecursionError, ValueError, TypeError, AttributeError, IndexError):
        return False


def _same_word(p: str, g: str) -> bool:
    """`Yes` = `yes`: words (two letters or more) compare without case."""
    return p.lower() == g.lower() and bool(re.fullmatch(r"[A-Za-z][A-Za-z ']+", p))


def quick_equiv(pred: str, gold: str) -> bool | None:
    """A decision without sympy when the strings settle it (same spelling, or two plain numbers); else None."""
    p, g = normalize(pred), normalize(gold)
    if p == g or _same_word(p, g):
        return True
    a, b = to_number(p), to_number(g)
    if a is not None and b is not None:
        return a == b
    return None


# ---------------------------------------------------------------- batched, time-bounded scoring

MAX_ANSWER_CHARS = 1000


def too_long(answer: str) -> bool:
    """Policy: an extracted answer (or gold) longer than MAX_ANSWER_CHARS characters is not an answer and
    scores 0 (reason `too_long`) without being normalised or parsed. Real final answers are short (the
    longest MATH-500 gold has 53 characters; a 3x3 matrix of fractions fits in a few hundred), and the cap
    bounds the work any hostile answer can cause after the linear-time extraction."""
    return len(answer) > MAX_ANSWER_CHARS


_POOL = None


def pool_warm_up() -> None:
    """Called by each pool worker at start: import what `equiv` imports lazily (sympy and the parser), so the
    worker's integrity snapshot (see rewards.pool) covers them from the first task on."""
    import rewards.math_sympy  # noqa: F401


def _pool():
    global _POOL
    if _POOL is None:
        from rewards.pool import TimeoutPool

        workers = int(os.environ.get("R1LAB_REWARD_WORKERS", "0")) or None
        _POOL = TimeoutPool("rewards.math:equiv", workers)
    return _POOL


def judge_many(pairs: list[tuple[str, str]], timeout: float = 5.0) -> list[tuple[bool, str]]:
    """(pred, gold) pairs -> (equal?, reason) with reason in ok / wrong / too_long / timeout / error."""
    from rewards.pool import TIMEOUT

    out: list = [None] * len(pairs)
    slow = []
    for i, (p, g) in enumerate(pairs):
        if too_long(p) or too_long(g):
            out[i] = (False, "too_long")
            continue
        quick = quick_equiv(p, g)
        if quick is None:
            slow.append(i)
        else:
            out[i] = (quick, "ok" if quick else "wrong")
    for i, res in zip(slow, _pool().map([pairs[i] for i in slow], timeout) if slow else []):
        if res is TIMEOUT:
            out[i] = (False, "timeout")
        elif isinstance(res, Exception):
            out[i] = (False, "error")
        else:
            out[i] = (bool(res), "ok" if res else "wrong")
    return out


def is_equiv(pred: str, gold: str, timeout: float = 5.0) -> bool:
    """Do two answer strings mean the same thing? Never takes much longer than `timeout` seconds."""
    if pred is None or gold is None:
        return False
    return judge_many([(str(pred), str(gold))], timeout)[0][0]


def gold_answer(gold) -> str | None:
    """The gold answer of a row: the string itself, or what a worked solution boxes / marks with #### /
    states after "The final answer is" (Minerva's `Final Answer: The final answer is $100$. I hope it is
    correct.`)."""
    if gold is None:
        return None
    g = str(gold)
    if "\\boxed" in g or "\\fbox" in g or "####" in g or "<answer>" in g:
        return extract_answer(g)
    return _after_answer_phrase(g) or g.strip() or None


@register("math_accuracy")
def math_accuracy(completions, answer=None, timeout: float = 5.0, **columns) -> list[float | None]:
    """1.0 if the completion's final answer (boxed / <answer> / #### / "the answer is") equals column `answer`."""
    texts = completion_texts(completions)
    golds = [gold_answer(g) for g in (answer if answer is not None else [None] * len(texts))]
    preds = [extract_answer(t) for t in texts]
    todo = [i for i in range(len(texts)) if preds[i] is not None and golds[i] is not None]
    verdicts = dict(zip(todo, judge_many([(preds[i], golds[i]) for i in todo], timeout)))
    scores, reasons = [], []
    for i in range(len(texts)):
        if golds[i] is None:
            scores.append(None), reasons.append("no_gold")
        elif preds[i] is None:
            scores.append(0.0), reasons.append("no_answer")
        else:
            scores.append(1.0 if verdicts[i][0] else 0.0), reasons.append(verdicts[i][1])
    record_reasons("math_accuracy", reasons, columns.get("log_metric"))
    return scores
