r"""Read the LaTeX that the derivation documents print, as a reader would, and evaluate it.

Written apart from the renderer (``rnnspec/derivations/render.py``): nothing here imports it. A formula is
parsed into a tree and evaluated with NumPy, so that a rendering slip (a sum over a term it should not
cover, a lost transpose or parenthesis, a wrong index) shows as a wrong value.

The reading is the ordinary one, and the one the documents' notation paragraphs state:

- juxtaposition is a product: of numbers, or of matrices and column vectors (``W^{T} v``, ``u v^{T}``);
  ``\odot`` is the elementwise product; a scalar multiplies elementwise; ``1 - z_{t}`` is elementwise;
- ``\sum_{k}`` sums the factors after it up to the next ``+`` or ``-`` at its level; an index sum's range is
  the length of the axis its index runs over; ``\sum_{t=1}^{T}`` sums over steps;
- ``q_{t,i}`` is entry i of q_{t} (the name as the document writes it, then the index letters);
- in a program (statements over time) ``q_{t+1}``, ``q_{1}``, ``q_t`` are q at that step.

Names are resolved through a table ``LaTeX -> key`` that the caller builds from the quantities' written
names; numbers and the functions tanh, log, exp (``e^{...}``), sigma, diag, the Kronecker delta and the
caller's own (``f``, ``f'``) are read here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

Node = tuple

#: a subscript that names a step: t, T, t+1, t-1, T+1, 0, 1, j (a step bound by a sum or product), ...
TIME = re.compile(r"^(?:[a-zA-Z](?:[+-]\d+)?|\d+)$")
#: what ends a product (at the current nesting level)
STOPS = re.compile(r"[-+=,&)}><]|\\\\|\\right\b|\\rVert\b|\\le\b|\\qquad\b")


class ReadError(ValueError):
    """The text cannot be read (a formula the reader does not understand, or an unknown name)."""


@dataclass
class Names:
    r"""How the printed names resolve: ``plain`` LaTeX -> key (with index letters appended as the document does:
    ``h_{t-1}`` -> ``h_{t-1,i}``, ``W`` -> ``W_{ij}``), and ``families``: a stem -> key whose subscript is a step
    (``\delta`` -> the series of delta, read in ``\delta_{t+1}``)."""

    plain: Mapping[str, str]
    families: Mapping[str, str] = field(default_factory=dict)
    functions: Mapping[str, Callable] = field(default_factory=dict)

    def __post_init__(self) -> None:
        patterns = []
        for text, key in self.plain.items():
            if re.search(r"_\{[^{}]*\}$", text):
                indexed = re.escape(text[:-1]) + r",([a-z]+)\}"
            else:
                indexed = re.escape(text) + r"_\{([a-z]+)\}"
            patterns.append((re.compile(indexed), key, True))
            patterns.append((re.compile(re.escape(text)), key, False))
        for stem, key in self.families.items():
            patterns.append((re.compile(re.escape(stem) + r"_(?:\{([^{}]+)\}|([0-9a-zA-Z]))"), key, None))
        self._patterns = patterns

    def match(self, text: str, pos: int) -> tuple[int, Node] | None:
        """The longest name at ``pos``: its end and leaf node ``("leaf", key, index letters, step or None)``."""
        best = None
        for pattern, key, indexed in self._patterns:
            m = pattern.match(text, pos)
            if not m:
                continue
            if indexed is None:
                when = m.group(1) or m.group(2)
                if not TIME.match(when):
                    continue
                node = ("leaf", key, "", when)
            else:
                node = ("leaf", key, m.group(1) if indexed else "", None)
            if best is None or m.end() > best[0]:
                best = (m.end(), node)
        return best


class _Parser:
    def __init__(self, text: str, names: Names) -> None:
        self.s, self.i, self.names = text, 0, names

    # -- scanning -------------------------------------------------------------------------------------
    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1
        for spacer in (r"\,", r"\:", r"\;", r"\!"):
            if self.s.startswith(spacer, self.i):
                self.i += len(spacer)
                self.ws()

    def peek(self, token: str) -> bool:
        self.ws()
        return self.s.startswith(token, self.i)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.i += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise ReadError(f"expected {token!r} at {self.i} in {self.s!r}: ...{self.s[self.i:self.i + 40]!r}")

    def at_stop(self) -> bool:
        self.ws()
        return self.i >= len(self.s) or bool(STOPS.match(self.s, self.i))

    # -- grammar --------------------------------------------------------------------------------------
    def statements(self) -> list[Node]:
        out = [self.relation()]
        while self.take(","):
            self.take(r"\qquad")
            out.append(self.relation())
        self.ws()
        if self.i != len(self.s):
            raise ReadError(f"unread text at {self.i} in {self.s!r}: {self.s[self.i:self.i + 40]!r}")
        return out

    def relation(self) -> Node:
        parts, ops = [self.expr()], []
        while True:
            for op in ("=", r"\le", ">"):
                if self.take(op):
                    ops.append(op)
                    parts.append(self.expr())
                    break
            else:
                break
        return ("relation", tuple(ops), tuple(parts)) if ops else parts[0]

    def expr(self) -> Node:
        node = ("neg", self.product()) if self.take("-") else self.product()
        while True:
            if self.take("+"):
                node = ("add", node, self.product())
            elif self.take("-"):
                node = ("sub", node, self.product())
            else:
                return node

    def product(self) -> Node:
        if self.at_stop():
            raise ReadError(f"expected a factor at {self.i} in {self.s!r}: {self.s[self.i:self.i + 40]!r}")
        node = self.factor()
        while not self.at_stop():
            if self.take(r"\odot"):
                node = ("odot", node, self.factor())
            else:
                node = ("mul", node, self.factor())
        return node

    def factor(self) -> Node:
        for command, kind in ((r"\sum_{", "sum"), (r"\prod_{", "prod")):
            if self.take(command):
                var = self.word()
                low = high = None
                if self.take("="):
                    low = self.expr()
                self.expect("}")
                if self.take("^{"):
                    high = self.expr()
                    self.expect("}")
                return (kind, var, low, high, self.product())
        return self.postfix(self.atom())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.take("^{T}"):
                node = ("T", node)
            elif self.take("^{"):
                power = self.expr()
                self.expect("}")
                node = ("pow", node, power)
            else:
                return node

    def word(self) -> str:
        self.ws()
        m = re.compile(r"[A-Za-z]+").match(self.s, self.i)
        if not m:
            raise ReadError(f"expected a letter at {self.i} in {self.s!r}")
        self.i = m.end()
        return m.group(0)

    def group(self) -> Node:
        """``\\left( expr \\right)`` or ``( expr )``."""
        if self.take(r"\left("):
            inner = self.expr()
            self.expect(r"\right)")
            return inner
        self.expect("(")
        inner = self.expr()
        self.expect(")")
        return inner

    def call(self, name: str) -> Node:
        """The argument of a function printed as ``name{\\left(x \\right)}`` or ``name\\left(x\\right)``, with an
        optional power ``name^{2}{...}``."""
        power = None
        if self.take("^{"):
            power = self.expr()
            self.expect("}")
        braced = self.take("{")
        arg = self.group()
        if braced:
            self.expect("}")
        node = ("fn", name, arg)
        return ("pow", node, power) if power is not None else node

    def atom(self) -> Node:
        self.ws()
        named = self.names.match(self.s, self.i)
        if named:
            self.i = named[0]
            return named[1]
        m = re.compile(r"\d+(\.\d+)?").match(self.s, self.i)
        if m:
            self.i = m.end()
            return ("num", float(m.group(0)))
        if self.take(r"\frac{"):
            top = self.expr()
            self.expect("}{")
            bottom = self.expr()
            self.expect("}")
            return ("div", top, bottom)
        if self.take(r"\delta_{"):
            a, b = self.word(), self.word()
            self.expect("}")
            return ("delta", a, b)
        if self.take("e^{"):
            power = self.expr()
            self.expect("}")
            return ("fn", "exp", power)
        for command, name in ((r"\tanh", "tanh"), (r"\log", "log"), (r"\sigma", "sigma"),
                              (r"\operatorname{diag}", "diag")):
            if self.take(command):
                return self.call(name)
        for name in sorted(self.names.functions, key=len, reverse=True):
            after = self.s[self.i + len(name):]
            if self.s.startswith(name, self.i) and after.lstrip().startswith(("{", r"\left(", "(", "^{")):
                self.i += len(name)
                return self.call(name)
        if self.take(r"\begin{cases}"):
            return self.cases()
        for opening, closing in ((r"\left\lVert", r"\right\rVert"), (r"\lVert", r"\rVert")):
            if self.take(opening):
                inner = self.expr()
                self.expect(closing)
                return ("norm", inner)
        bound = re.compile(r"[A-Za-z](?![A-Za-z])").match(self.s, self.i)
        if bound:  # a step or index bound by a sum or product: \sum_{t=1}^{T}, ^{t-k}
            self.i = bound.end()
            return ("var", bound.group(0))
        if self.peek(r"\left(") or self.peek("("):
            return self.group()
        raise ReadError(f"cannot read at {self.i} in {self.s!r}: {self.s[self.i:self.i + 40]!r}")

    def cases(self) -> Node:
        pieces = []
        while True:
            value = self.expr()
            self.expect("&")
            if self.take(r"\text{otherwise}"):
                pieces.append((value, None))
            else:
                self.expect(r"\text{for}")
                pieces.append((value, self.relation()))
            if self.take(r"\end{cases}"):
                return ("cases", tuple(pieces))
            self.expect(r"\\")


def read(text: str, names: Names) -> list[Node]:
    """The statements of ``text`` (``a = b``, or ``a = b, \\qquad c = d``), or one expression."""
    return _Parser(text, names).statements()


# -- evaluation ---------------------------------------------------------------------------------------------

Lookup = Callable[[str, "int | None"], np.ndarray]

_FUNCTIONS: dict[str, Callable] = {
    "tanh": np.tanh, "log": np.log, "exp": np.exp, "sigma": lambda u: 1 / (1 + np.exp(-u)),
}


@dataclass
class Context:
    """What a formula is evaluated with: ``lookup(key, step)`` gives a quantity's array (without batch axis);
    ``matrix``: vectors are columns and names carry no indices; ``bind``: index letters (and ``t``, ``T``)."""

    lookup: Lookup
    matrix: bool
    functions: Mapping[str, Callable] = field(default_factory=dict)
    bind: dict[str, int] = field(default_factory=dict)


def _step(when: str, bind: Mapping[str, int]) -> int:
    m = re.fullmatch(r"([a-zA-Z])([+-]\d+)?|(\d+)", when)
    if m.group(3):
        return int(m.group(3))
    if m.group(1) not in bind:
        raise ReadError(f"step {when!r} where {m.group(1)} is not bound")
    return bind[m.group(1)] + int(m.group(2) or 0)


def _scalar(value) -> bool:
    return np.ndim(value) == 0


def _same(a, b, what: str):
    if not (_scalar(a) or _scalar(b)) and np.shape(a) != np.shape(b):
        raise ReadError(f"{what} of shapes {np.shape(a)} and {np.shape(b)}")


def evaluate(node: Node, ctx: Context):
    """The value of ``node``: a number, or (matrix form) a 2-D array, vectors as columns."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "leaf":
        _, key, letters, when = node
        value = np.asarray(ctx.lookup(key, None if when is None else _step(when, ctx.bind)))
        if ctx.matrix:
            if letters:
                raise ReadError(f"{key} carries indices {letters!r} in matrix form")
            return value.reshape(-1, 1) if value.ndim == 1 else value
        if len(letters) != value.ndim:
            raise ReadError(f"{key} has {value.ndim} indices, read {letters!r}")
        return value[tuple(ctx.bind[c] for c in letters)] if letters else value
    if kind == "var":
        if node[1] not in ctx.bind:
            raise ReadError(f"{node[1]} is not bound here")
        return ctx.bind[node[1]]
    if kind == "neg":
        return -evaluate(node[1], ctx)
    if kind in ("add", "sub", "odot"):
        a, b = evaluate(node[1], ctx), evaluate(node[2], ctx)
        _same(a, b, kind)
        return a + b if kind == "add" else a - b if kind == "sub" else a * b
    if kind == "mul":
        a, b = evaluate(node[1], ctx), evaluate(node[2], ctx)
        if _scalar(a) or _scalar(b):
            return a * b
        if np.shape(a)[1] != np.shape(b)[0]:
            raise ReadError(f"product of shapes {np.shape(a)} and {np.shape(b)}")
        return a @ b
    if kind == "div":
        a, b = evaluate(node[1], ctx), evaluate(node[2], ctx)
        _same(a, b, "quotient")
        return a / b
    if kind == "pow":
        power = evaluate(node[2], ctx)
        if not _scalar(power):
            raise ReadError("a power that is not a number")
        return evaluate(node[1], ctx) ** power
    if kind == "T":
        value = evaluate(node[1], ctx)
        return value if _scalar(value) else np.transpose(value)
    if kind == "fn":
        _, name, arg = node
        value = evaluate(arg, ctx)
        if name == "diag":
            if _scalar(value) or np.shape(value)[1] != 1:
                raise ReadError(f"diag of shape {np.shape(value)}")
            return np.diagflat(value)
        function = ctx.functions.get(name) or _FUNCTIONS.get(name)
        if function is None:
            raise ReadError(f"unknown function {name!r}")
        return function(value)
    if kind == "delta":
        return 1.0 if ctx.bind[node[1]] == ctx.bind[node[2]] else 0.0
    if kind == "sum":
        _, var, low, high, body = node
        if low is None:
            values = range(_extent(body, var, ctx))
        else:
            values = range(int(evaluate(low, ctx)), int(evaluate(high, ctx)) + 1)
        total = 0.0
        for value in values:
            inner = Context(ctx.lookup, ctx.matrix, ctx.functions, {**ctx.bind, var: value})
            total = total + evaluate(body, inner)
        return total
    if kind == "prod":  # of matrices, the factor of the highest step on the left (as the documents say)
        _, var, low, high, body = node
        out = None
        for value in range(int(evaluate(high, ctx)), int(evaluate(low, ctx)) - 1, -1):
            factor = evaluate(body, Context(ctx.lookup, ctx.matrix, ctx.functions, {**ctx.bind, var: value}))
            out = factor if out is None else out * factor if _scalar(out) or _scalar(factor) else out @ factor
        if out is None:
            raise ReadError("an empty product")
        return out
    if kind == "norm":
        value = evaluate(node[1], ctx)
        return abs(value) if _scalar(value) else float(np.linalg.norm(value, 2))
    if kind == "cases":
        for value, condition in node[1]:
            if condition is None or _holds(condition, ctx):
                return evaluate(value, ctx)
        raise ReadError("no case applies")
    if kind == "relation":
        raise ReadError("a relation where a value was expected")
    raise ReadError(f"unknown node {kind!r}")


def _holds(relation: Node, ctx: Context) -> bool:
    _, ops, parts = relation
    values = [evaluate(p, ctx) for p in parts]
    checks = {"=": np.equal, r"\le": np.less_equal, ">": np.greater}
    return all(bool(np.all(checks[op](a, b))) for op, a, b in zip(ops, values, values[1:]))


def _extent(node: Node, letter: str, ctx: Context) -> int:
    """The length of the axis ``letter`` indexes, read off the first name that carries it."""
    found = _axes(node, letter, ctx)
    if not found:
        raise ReadError(f"nothing in the sum is indexed by {letter!r}")
    if len(set(found)) != 1:
        raise ReadError(f"index {letter!r} runs over axes of lengths {sorted(set(found))}")
    return found[0]


def _axes(node: Node, letter: str, ctx: Context) -> list[int]:
    if node[0] == "leaf":
        _, key, letters, when = node
        if letter not in letters:
            return []
        shape = np.shape(ctx.lookup(key, None if when is None else _step(when, ctx.bind)))
        return [shape[n] for n, c in enumerate(letters) if c == letter]
    found = []
    for child in node[1:]:
        if isinstance(child, tuple) and child and isinstance(child[0], str):
            found += _axes(child, letter, ctx)
        elif isinstance(child, tuple):  # the pieces of cases
            for piece in child:
                for part in piece if isinstance(piece, tuple) else ():
                    if isinstance(part, tuple):
                        found += _axes(part, letter, ctx)
    return found
