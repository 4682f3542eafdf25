"""Step 1 of math_accuracy: pull the final answer out of a completion (and out of a gold that is a worked solution).

Policy (R1): a completion must mark its final answer -- the last `\\boxed{...}` (several boxes standing
together at the end make one list answer), else the last `<answer>...</answer>`, else GSM8K's `#### N`,
else the last "the (final) answer is ..." / "Answer: ..." (its `$...$`, or its first sentence cut before
an explanation). Prose without any marker has no answer and scores 0. When the completion closes its
reasoning with `</think>`, only the text after it counts: an answer inside the reasoning is not final.

Hostile input: every step scans the text a bounded number of times (no backtracking regexes, braces
matched once), so extraction is linear in the completion's length; answers over MAX_ANSWER_CHARS are
refused later (`too_long`).
"""

from __future__ import annotations

import re

MAX_ANSWER_CHARS = 1000


def too_long(answer: str) -> bool:
    """Policy: an extracted answer (or gold) longer than MAX_ANSWER_CHARS characters is not an answer and
    scores 0 (reason `too_long`) without being normalised or parsed. Real final answers are short (the
    longest MATH-500 gold has 53 characters; a 3x3 matrix of fractions fits in a few hundred), and the cap
    bounds the work any hostile answer can cause after the linear-time extraction."""
    return len(answer) > MAX_ANSWER_CHARS

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
_BOX_GAP = re.compile(r"(?:\s|[,;$~]|\\[,;:!()]|\\q?quad|\\text\{[^{}]{0,30}?\band\s*\}|\\text\{\s*,?\s*\}|and|"
                      r"[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=)*")  # `\) and \( y_2 = \boxed{...}`


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
_PHRASE_HEAD = re.compile(r"\s*(?:is|:)\s*|[ \t]+(?=\$|\\[(\[])", re.IGNORECASE)  # `Answer $9$` too; one
# quantifier per gap: no backtracking
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


_NAMED_VALUE = re.compile(r"(The [^.=]{1,80}?) is (.+)")


def _phrase_value(tail: str) -> str | None:
    """The answer at the start of the text after an answer phrase: its first `$...$` / `\\(...\\)` if it
    starts with one; else the first sentence, cut before a connective that starts an explanation
    (`42 because ...`, `42, since ...`)."""
    math = re.match(r"\$+([^$]+)\$+", tail) or re.match(r"\\\((.+?)\\\)", tail) or re.match(r"\\\[(.+?)\\\]", tail)
    if math:
        return math.group(1).strip()
    value = re.split(r"\.(?:\s|$)", tail)[0].strip().rstrip(".")
    named = _NAMED_VALUE.match(value)  # Minerva's `Final Answer: The volume of $V$ is 120.`
    if named and "answer" not in named.group(1).lower():
        value = named.group(2).strip()
        math = re.fullmatch(r"\$+([^$]+)\$+", value)
        value = math.group(1).strip() if math else value
    if len(value) <= MAX_ANSWER_CHARS:  # (longer ones are refused anyway; this keeps the regex linear)
        value = _CONNECTIVE.split(value, maxsplit=1)[0].strip()
    return value or None


def _extract(text: str) -> str | None:
    boxed = final_boxed(text)
    if boxed is not None:
        # a "Final Answer: ..." after the last box states the answer again, later: it wins (Minerva's
        # format after boxed intermediate results)
        fin = text.lower().rfind("final answer")
        if fin > next(_closed_boxes(text))[2]:
            stated = _after_answer_phrase(text[fin:])
            if stated:
                return stated
        return boxed.strip()
    inner = _last_tagged(text)
    if inner is not None:
        return (final_boxed(inner) or _after_answer_phrase(inner) or inner).strip()
    hashes = _after_hashes(text)
    if hashes is not None:
        return hashes
    return _after_answer_phrase(text)


_DOUBLED = re.compile(r"(?<!\\)\\\\(?=(?:boxed|frac|dfrac|tfrac|left|right|le|leq|ge|geq|sqrt|pi|cdot|times|"
                      r"text|infty|in|cup|pm)(?![A-Za-z]))")


def undouble(text: str) -> str:
    """`\\\\frac{1}{2}` -> `\\frac{1}{2}`: LaTeX whose backslashes were escaped twice (a JSON or Python
    string written once too often) -- a doubled backslash before a known command name, which a row break
    `\\\\` never is in an answer."""
    return _DOUBLED.sub(r"\\", text) if "\\\\" in text else text


def extract_answer(text: str | None) -> str | None:
    """The final answer of a completion, or None if it gives none. When the completion closes its reasoning
    with `</think>`, only the text after the last one counts (an answer inside the reasoning is not a final
    answer). Every step scans the text a bounded number of times: linear time on any input."""
    if not text:
        return None
    return _extract(undouble(text.rsplit("</think>", 1)[-1]))



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

