"""Read a normalised LaTeX answer into a sympy expression without ever running Python on it.

Policy: answers and golds are untrusted text (a completion is written by the policy being trained; a gold
comes from a data file). The old path turned LaTeX into Python source and handed it to sympy's
`parse_expr`, which calls `eval`, so `\\boxed{exec('...')}` ran code. This module is a small
recursive-descent parser over the characters of the answer that builds sympy objects directly. It knows
a fixed list of constructs and refuses everything else (`ParseError`, and the answer scores 0):

- numbers: `12`, `0.25`, `.5`, `1e3` (decimals are read as exact rationals); a numeral with a subscript
  (`2516_8`, a base-8 answer) is a name, equal only to the same spelling;
- letters: a single letter is a symbol (`e`/`E` is Euler's number, `i`/`I` the imaginary unit), with an
  optional alphanumeric subscript (`x_1`, `a_{10}`); runs of letters are products (`xy` = x*y) unless the
  run is a known word: a function name below, `pi`, or a Greek letter name;
- `+ - * / ^ **`, implicit multiplication (`2x`, `x(x+1)`), unary signs, factorial `!` and `!!`;
- groups `( )`, `[ ]`, `{ }`, `\\{ \\}`, absolute value `|x|`, `\\lvert x\\rvert`, `\\lfloor \\rfloor`,
  `\\lceil \\rceil`, `\\langle \\rangle`;
- `\\frac`, `\\dfrac`, `\\tfrac`, `\\cfrac` (`\\frac12` too), `\\sqrt{x}`, `\\sqrt[n]{x}`, `\\binom`,
  `\\cdot`, `\\times`, `\\ast`, `\\div`, `\\pi`, `\\infty`, Greek letters;
- functions `sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh ln log exp sqrt abs gcd lcm max
  min`, with or without a backslash, applied to a parenthesised argument list or, LaTeX style, to the
  product that follows (`\\sin 2x` = sin(2x), `\\sin x \\cos x` = sin(x)cos(x)); `\\sin^2 x` = sin(x)^2,
  `\\sin^{-1} x` = asin(x); `\\log_b x` and `log(x, b)` are logarithms to base b;
- the Unicode signs `− × · ÷ π ∞ √`.

Nothing here evaluates a string: the only sympy calls take sympy objects, Python ints and the fixed
names above, so a hostile answer can at worst fail to parse. Nesting deeper than `MAX_DEPTH` groups and
numerals longer than `MAX_DIGITS` digits are refused. `parse_latex(s, evaluate=False)` builds the
expression without computing anything (sympy's `evaluate=False`), so a caller can inspect it for
astronomically large values before building the evaluated form.

This module is the grammar; the word lists, the limits, `ParseError` and the character-level cursor
(whitespace, `\\command` names, numerals) are in `rewards.math_tokens` (`ParseError`, `MAX_DEPTH` and
`MAX_DIGITS` are importable from here too).
"""

from __future__ import annotations

import sympy

from rewards.math_tokens import (CLOSERS, CONSTANTS, FUNCTIONS, GREEK, INVERSE, LETTERS, MANY_ARGS,
                                 MAX_DEPTH, MAX_DIGITS, ONE_ARG, PAIRS, SPACES, SUBSCRIPT, TIMES, UNICODE,
                                 ParseError, Scanner)

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "ParseError", "parse_latex"]


def parse_latex(s: str, evaluate: bool = True):
    """The sympy expression written in `s` (see the module doc), or raise ParseError."""
    try:
        s = s.translate(UNICODE).strip().rstrip("\\")  # a stray `\` or row break `\\` at the end
        return _Reader(s, evaluate).read()
    except RecursionError as e:
        raise ParseError("too deeply nested") from e


class _Reader(Scanner):
    """One pass over the characters of one answer; each method reads one grammar rule at `self.i` (the
    character-level reads -- whitespace, `\\command` names, numerals, nesting depth -- are `Scanner`'s)."""

    def __init__(self, s: str, evaluate: bool):
        super().__init__(s)
        self.ev = evaluate
        self.bars = 0  # open |...| pairs: inside one, a `|` closes it

    # ------------------------------------------------------------ building blocks (evaluate or not)

    def add(self, a, b):
        return sympy.Add(a, b, evaluate=self.ev)

    def neg(self, a):
        return sympy.Mul(sympy.Integer(-1), a, evaluate=self.ev)

    def mul(self, a, b):
        return sympy.Mul(a, b, evaluate=self.ev)

    def div(self, a, b):
        return sympy.Mul(a, sympy.Pow(b, sympy.Integer(-1), evaluate=self.ev), evaluate=self.ev)

    def pow(self, a, b):
        return sympy.Pow(a, b, evaluate=self.ev)

    def call(self, fn, *args):
        return fn(*args, evaluate=self.ev)

    # ------------------------------------------------------------ grammar

    def read(self):
        e = self.sum()
        if self.peek():
            raise ParseError(f"unexpected {self.peek()!r} at {self.i}")
        return e

    def sum(self):
        """signed_product (('+' | '-') signed_product)*"""
        e = self.signed()
        while (c := self.peek()) in ("+", "-"):
            self.i += 1
            r = self.signed()
            e = self.add(e, r if c == "+" else self.neg(r))
        return e

    def signed(self):
        """Unary signs, then a product: `-x^2` is -(x^2), `-2x` is -(2x)."""
        return self.unary(self.product)

    def unary(self, inner):
        """Any run of unary `+`/`-` signs, then `inner()`."""
        c = self.peek()
        if c in ("+", "-"):
            self.i += 1
            e = self.unary(inner)
            return e if c == "+" else self.neg(e)
        return inner()

    def product(self):
        """power (('*' | '/' | \\cdot | \\times | \\div) operand | <juxtaposition> power)*, left to right like
        Python: `1/2x` is x/2."""
        e = self.power()
        while True:
            c, cmd = self.peek(), self.command_at()
            if (c == "*" and not self.s.startswith("**", self.i)) or cmd in TIMES:
                self.i += 1 if c == "*" else 1 + len(cmd)
                e = self.mul(e, self.operand())
            elif c == "/" or cmd == "div":
                self.i += 1 if c == "/" else 4
                e = self.div(e, self.operand())
            elif self.starts_atom():
                e = self.mul(e, self.power())
            else:
                return e

    def operand(self):
        """The right side of an explicit `*` or `/`: a power, with any unary signs (`2*-3`)."""
        return self.unary(self.power)

    def starts_atom(self, functions: bool = True) -> bool:
        """Can an implicit factor start here? (`functions=False` inside a LaTeX function's argument.)"""
        c = self.peek()
        if c == "" or c in "+-*/^_!)]},=":
            return False
        if c == "|":
            return self.bars == 0
        if c == "\\":
            cmd = self.command_at()
            if cmd in TIMES or cmd in CLOSERS or cmd in ("div", "}", "right"):
                return False
            return functions or cmd not in FUNCTIONS
        if c.isalpha() and not functions:
            m = LETTERS.match(self.s, self.i)
            return not (m and m.group(0) in FUNCTIONS)
        return True

    def power(self):
        """postfix (('^' | '**') exponent)*, right-associative like Python's `**`."""
        base = self.postfix(self.atom())
        exps = []
        while self.peek() == "^" or self.s.startswith("**", self.i):
            self.i += 1 if self.s[self.i] == "^" else 2
            exps.append(self.exponent())
        if not exps:
            return base
        top = exps[-1]
        for e in reversed(exps[:-1]):
            top = self.pow(e, top)
        return self.pow(base, top)

    def postfix(self, e):
        """`n!` and `n!!` after an atom."""
        while self.peek() == "!":
            if self.s.startswith("!!", self.i):
                self.i += 2
                e = self.call(sympy.factorial2, e)
            else:
                self.i += 1
                e = self.call(sympy.factorial, e)
        return e

    def exponent(self):
        """What follows `^`: a {group}, a signed exponent, a (group), a whole numeral (`2^10` is 1024, as
        the writer meant), one letter, or one command atom."""
        c = self.peek()
        if c in ("+", "-"):
            self.i += 1
            e = self.exponent()
            return e if c == "+" else self.neg(e)
        if c.isdigit() or c == ".":
            return self.number()
        if c.isalpha():
            return self.letter()
        return self.atom()

    def atom(self):
        c = self.peek()
        if c == "":
            raise ParseError("unexpected end")
        if c.isdigit() or c == ".":
            return self.number()
        if c.isalpha() and c.isascii():
            return self.word()
        if c in "([{":
            return self.group(c, {"(": ")", "[": "]", "{": "}"}[c])
        if c == "|":
            self.bars += 1
            e = self.group("|", "|")
            self.bars -= 1
            return self.call(sympy.Abs, e)
        if c == "\\":
            return self.command()
        if c == "π":
            self.i += 1
            return sympy.pi
        if c == "∞":
            self.i += 1
            return sympy.oo
        if c == "√":
            self.i += 1
            return self.call(sympy.sqrt, self.argument())
        raise ParseError(f"unexpected {c!r} at {self.i}")

    def group(self, open_: str, close: str):
        self.expect(open_)
        self.enter()
        e = self.sum()
        self.expect(close)
        self.depth -= 1
        return e

    def letter(self):
        """One letter (a LaTeX argument such as the `x` of `e^x`)."""
        c = self.s[self.i]
        self.i += 1
        return self.symbol(c)

    def symbol(self, name: str):
        """A letter or Greek name, with its subscript if one follows: `x_1` -> Symbol('x_1')."""
        m = SUBSCRIPT.match(self.s, self.i)
        if m:
            self.i = m.end()
            return sympy.Symbol(f"{name}_{m.group(1) or m.group(2)}")
        if name in ("e", "E"):
            return sympy.E
        if name in ("i", "I"):
            return sympy.I
        return sympy.Symbol(name)

    def word(self):
        """A run of letters: a known word (function, pi, Greek name), else its first letter alone (the rest
        is read as further implicit factors, so `xy^2` is x*y^2)."""
        run = LETTERS.match(self.s, self.i).group(0)
        if run in FUNCTIONS:
            self.i += len(run)
            return self.function(run)
        if run == "pi":
            self.i += 2
            return sympy.pi
        if run in GREEK:
            self.i += len(run)
            return self.symbol(run)
        return self.letter()

    def command(self):
        name = self.take_command()
        if name in ("frac", "dfrac", "tfrac", "cfrac"):
            a = self.argument()
            return self.div(a, self.argument())
        if name in ("binom", "dbinom", "tbinom"):
            a = self.argument()
            return self.call(sympy.binomial, a, self.argument())
        if name == "sqrt":
            if self.peek() == "[":
                n = self.group("[", "]")
                return self.pow(self.argument(), self.div(sympy.Integer(1), n))
            return self.call(sympy.sqrt, self.argument())
        if name in FUNCTIONS:
            return self.function(name)
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in GREEK:
            return self.symbol(name)
        if name in PAIRS:
            close, fn = PAIRS[name]
            self.enter()
            e = self.sum()
            if self.take_command() != close:
                raise ParseError(f"\\{name} without \\{close}")
            self.depth -= 1
            return self.call(fn, e) if fn else e
        if name == "{":
            self.enter()
            e = self.sum()
            self.expect("\\}")
            self.depth -= 1
            return e
        if name in SPACES:
            return self.atom()
        raise ParseError(f"unsupported command \\{name}")

    def argument(self):
        """A LaTeX macro argument: a {group}, or one digit, one letter, or one command atom."""
        c = self.peek()
        if c == "{":
            return self.group("{", "}")
        if c.isdigit():
            self.i += 1
            return sympy.Integer(int(c))
        if c.isalpha() and c.isascii():
            return self.letter()
        if c == "\\":
            return self.command()
        raise ParseError(f"missing argument at {self.i}")

    def function(self, name: str):
        """A named function after its name: optional `^power` (`^{-1}` on sin/cos/tan: the inverse), `_base`
        for log, then `(args)` or the LaTeX-style argument (the product that follows, up to the next
        function name or an explicit operator)."""
        power = None
        if self.peek() == "^":
            self.i += 1
            power = self.exponent()
            if power == -1 and name in INVERSE:
                name, power = INVERSE[name], None
        base = None
        if name == "log" and self.peek() == "_":
            self.i += 1
            base = self.argument()
        self.enter()
        if self.peek() == "(":
            args = self.arguments()
        else:
            arg = self.power()
            while self.starts_atom(functions=False):
                arg = self.mul(arg, self.power())
            args = [arg]
        self.depth -= 1
        value = self.apply(name, args, base)
        return self.pow(value, power) if power is not None else value

    def arguments(self) -> list:
        """`(a)` or `(a, b, ...)`."""
        self.expect("(")
        args = [self.sum()]
        while self.peek() == ",":
            self.i += 1
            args.append(self.sum())
        self.expect(")")
        return args

    def apply(self, name: str, args: list, base):
        if name == "log" and len(args) == 2 and base is None:
            args, base = args[:1], args[1]
        if name in MANY_ARGS:
            if name in ("max", "min"):
                return self.call(sympy.Max if name == "max" else sympy.Min, *args)
            if len(args) != 2:
                raise ParseError(f"{name} takes two arguments")
            if not self.ev:  # no unevaluated form: a plain function node keeps the arguments inspectable
                return sympy.Function(name)(*args)
            return (sympy.gcd if name == "gcd" else sympy.lcm)(*args)
        if len(args) != 1:
            raise ParseError(f"{name} takes one argument")
        value = self.call(ONE_ARG[name], args[0])
        if base is not None:
            value = self.div(value, self.call(sympy.log, base))
        return value
