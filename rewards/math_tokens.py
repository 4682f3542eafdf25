"""The vocabulary of `math_parse`'s grammar and the cursor it reads an answer with.

`math_parse` is the grammar (which rule follows which, and the sympy objects each builds); this module
is everything below it: the size limits, `ParseError`, the fixed lists of words, commands and signs the
grammar knows (functions, constants, Greek names, bracket pairs, spacing commands, Unicode signs), and
`Scanner`, a position in the text that skips whitespace, reads `\\command` names and numerals, and counts
open groups. Nothing here evaluates a string: the tables hold sympy functions and constants by name, and a
numeral becomes a sympy Rational through `fractions.Fraction`.
"""

from __future__ import annotations

import re
from fractions import Fraction

import sympy

MAX_DEPTH = 100  # nested groups / function arguments
MAX_DIGITS = 3000  # characters of one numeral, and the largest power of ten `1e...` may write


class ParseError(ValueError):
    """The text is not an expression this reader knows."""


NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
LETTERS = re.compile(r"[A-Za-z]+")
SUBSCRIPT = re.compile(r"_(?:\{([A-Za-z0-9]+)\}|([A-Za-z0-9]))")

GREEK = frozenset({
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
    "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
})
ONE_ARG = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan, "asin": sympy.asin, "acos": sympy.acos,
    "atan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "ln": sympy.log,
    "log": sympy.log, "exp": sympy.exp, "sqrt": sympy.sqrt, "abs": sympy.Abs,
}
INVERSE = {"sin": "arcsin", "cos": "arccos", "tan": "arctan"}  # \sin^{-1} x
MANY_ARGS = {"gcd", "lcm", "max", "min"}
FUNCTIONS = frozenset(ONE_ARG) | MANY_ARGS
CONSTANTS = {"pi": sympy.pi, "infty": sympy.oo, "infinity": sympy.oo, "imath": sympy.I}
TIMES = {"cdot", "times", "ast"}
SPACES = {",", ";", "!", ":", " "}  # \, \; \! \: and "\ " are LaTeX spacing
PAIRS = {"lfloor": ("rfloor", sympy.floor), "lceil": ("rceil", sympy.ceiling), "lvert": ("rvert", sympy.Abs),
         "langle": ("rangle", None)}
CLOSERS = {"rfloor", "rceil", "rvert", "rangle"}
UNICODE = str.maketrans({"−": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/"})


class Scanner:
    """A position `self.i` in one answer `self.s`, and the token-level reads the grammar is built on."""

    def __init__(self, s: str):
        self.s, self.i = s, 0
        self.depth = 0  # open groups, bounded by MAX_DEPTH

    def peek(self) -> str:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, text: str) -> None:
        self.peek()
        if not self.s.startswith(text, self.i):
            raise ParseError(f"expected {text!r} at {self.i}")
        self.i += len(text)

    def command_at(self) -> str | None:
        """The name of the `\\command` at the current position (letters, or one non-letter), else None."""
        if self.peek() != "\\":
            return None
        m = LETTERS.match(self.s, self.i + 1)
        if m:
            return m.group(0)
        return self.s[self.i + 1 : self.i + 2] or None

    def take_command(self) -> str:
        name = self.command_at()
        if name is None:
            raise ParseError("expected a command")
        self.i += 1 + len(name)
        return name

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("too deeply nested")

    def number(self):
        m = NUMBER.match(self.s, self.i)
        if not m:
            raise ParseError(f"bad number at {self.i}")
        text = m.group(0)
        exponent = re.search(r"[eE][+-]?0*(\d+)$", text)
        huge_power = exponent is not None and (len(exponent.group(1)) > 4 or int(exponent.group(1)) > MAX_DIGITS)
        if len(text) > MAX_DIGITS or huge_power:
            raise ParseError("numeral too long")
        self.i = m.end()
        sub = SUBSCRIPT.match(self.s, self.i)
        if sub and text.isdigit():  # 2516_8: a numeral in base 8, equal only to the same spelling
            self.i = sub.end()
            return sympy.Symbol(f"{text}_{sub.group(1) or sub.group(2)}")
        value = Fraction(text)
        return sympy.Rational(value.numerator, value.denominator)
