"""Proof that the derived BPTT equals the derivative of the unrolled loss.

For small sizes, every parameter, input and initial state entry is a SymPy symbol; the forward
equations, run by the SymPy backend, give the loss as one scalar expression of those symbols, which
is differentiated directly. The derived BPTT, run by the same backend, must equal it: exactly when
the difference expands to 0, otherwise at random rational points to 50 digits. The gated cells'
unrolled losses are large (an LSTM's derivatives at T = 2, H = 2 are millions of characters as SymPy
trees), so SymEngine, which shares subexpressions, builds, differentiates and expands them, and
evaluates in MPFR the entries whose expansion does not cancel.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import symengine
import sympy as sp

from rnnspec.derivations.oracle import Oracle

DIGITS = 50
TRANSCENDENTAL = (sp.tanh, sp.exp, sp.log)


def subterm_sizes(expr):
    """Every distinct subexpression of ``expr`` (SymPy or SymEngine), each visited once, with its size as a
    tree (1 + its arguments' sizes), so that an expression is larger than any it contains. SymPy's ``atoms`` and
    ``count_ops`` walk the tree, and a ReLU network's residual repeats its nested subterms so often that
    walking it took most of a proof's time (a ReLU proof: 69 s, 16 s without)."""
    sizes = {}
    stack = [(expr, False)]
    while stack:
        node, children_done = stack.pop()
        if node in sizes:
            continue
        if children_done:
            sizes[node] = 1 + sum(sizes[a] for a in node.args)
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in node.args if a not in sizes)
    return sizes


def _atoms(sizes: dict, types) -> list:
    """The subexpressions of these types, the smallest first (so each after every one it contains)."""
    return sorted((e for e in sizes if isinstance(e, types)), key=sizes.__getitem__)


def vanishes(residual: sp.Expr) -> bool:
    """True when ``residual`` is identically 0 as a polynomial in its transcendental subterms.

    Each ``Piecewise((A, c), (0, True))`` becomes ``A * theta_c`` with an indicator symbol per
    condition, and each distinct tanh/exp/log subterm (outermost first) a fresh symbol. A polynomial
    identity in those symbols is an identity of the original, and expanding it is cheap, where
    expanding nested transcendental functions takes seconds. False means "not shown", not "wrong".
    """
    indicators: dict[sp.Basic, sp.Dummy] = {}
    mapping: dict[sp.Basic, sp.Expr] = {}
    # innermost first, so that a piecewise inside another's condition is already replaced
    for pw in _atoms(subterm_sizes(residual), sp.Piecewise):
        (value, condition), rest = pw.args[0], pw.args[1:]
        if tuple(tuple(r) for r in rest) != ((0, True),):
            continue
        condition = condition.xreplace(mapping)
        mapping[pw] = value.xreplace(mapping) * indicators.setdefault(condition, sp.Dummy())
    residual = residual.xreplace(mapping)
    atoms = _atoms(subterm_sizes(residual), TRANSCENDENTAL)
    polynomial = residual.xreplace({a: sp.Dummy() for a in atoms})
    if polynomial.has(sp.Piecewise):
        return False
    # SymEngine expands the same polynomial ~30x faster than SymPy; the identity is the same.
    expanded = symengine.sympify(polynomial).expand()
    if expanded == 0:
        return True
    # an indicator is idempotent: theta**n = theta
    idempotent = {symengine.sympify(t) ** n: symengine.sympify(t) for t in indicators.values() for n in (2, 3, 4)}
    return expanded.subs(idempotent).expand() == 0


def vanishes_symengine(residual) -> bool:
    """:func:`vanishes` for a SymEngine expression without piecewise parts (exp(u) is E**u there). Its
    transcendental subterms are found by :func:`subterm_sizes`, which visits each distinct subterm once:
    SymEngine's ``atoms`` walked the whole tree, 1-14 s an entry of the peephole LSTM's proof at T = 2,
    against 0.05 s for the expansion."""
    atoms = [e for e in subterm_sizes(residual) if isinstance(e, (symengine.tanh, symengine.log))
             or (isinstance(e, symengine.Pow) and e.args[0] == symengine.E)]
    return residual.xreplace({a: symengine.Dummy() for a in atoms}).expand() == 0


def random_points(symbols, rng: random.Random, points: int = 2) -> list[dict]:
    """Random rational values in [-40/37, 40/37] for every symbol, ``points`` times."""
    ordered = sorted(symbols, key=str)
    return [{s: symengine.Rational(rng.randint(-40, 40), 37) for s in ordered} for _ in range(points)]


def numeric_residual(residual, points: list[dict]) -> float:
    """The largest |residual| at the given rational points, evaluated with DIGITS decimal digits (MPFR)."""
    residual = symengine.sympify(residual)
    bits = int(DIGITS * 3.33) + 8
    worst = 0.0
    for point in points:
        value = residual.xreplace(point)
        worst = max(worst, abs(float(value.evalf(bits, real=True))))
    return worst


@dataclass(frozen=True)
class Certificate:
    cell: str
    activation: str
    head: str
    T: int
    B: int
    I: int
    H: int
    K: int
    entries: int
    exact: int
    numeric: int
    worst_residual: float
    #: the variant proved ("" one forward layer), and the sequences' lengths when it has them
    variant: str = ""
    lengths: tuple[int, ...] = ()

    @property
    def proved(self) -> bool:
        return self.exact + self.numeric == self.entries


def _symbols(name: str, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        out[index] = sp.Symbol(f"{name}_{'_'.join(map(str, index))}", real=True)
    return out


def prove(activation: str, head: str, T: int = 3, B: int = 1, I: int = 2, H: int = 2, K: int = 2,
          seed: int = 0, cell: str = "elman", variant: str = "", lengths: tuple[int, ...] = ()) -> Certificate:
    """Every entry of every gradient of the loss against the derivative of the unrolled loss.

    ``variant`` (``"layers=2"``, ``"bidirectional,lengths=zero"``) proves the composition of
    :mod:`rnnspec.derivations.composed` the same way, on sequences of the given ``lengths``."""
    from rnnspec.derivations.composed import Composed
    from rnnspec.derivations.variants import parse_variant

    expand = cell == "elman"
    backend = "sympy" if expand else "symengine"
    plan = parse_variant(variant)
    oracle = Oracle(activation, backend=backend, head=head, cell=cell)
    width = oracle.spec.state_out[0].shape[0]
    dims = {"I": I, "H": H, "K": K, "P": 1}  # a projection (lstm-proj) of size 1
    model = Composed(cell, plan, activation, backend, head=head) if variant else oracle
    x = _symbols("x", (T, B, I))
    lead = (len(plan.runs()),) if plan.stacked else ()
    state0 = {out.key + "0": _symbols(out.key + "0", lead + (B, dims[out.shape[0]])) for out in oracle.spec.state_out}
    params = {}
    for layer, d in plan.runs():
        sizes = {**dims, "I": I if layer == 0 else plan.directions * dims[width]}
        params.update({v.key + plan.suffix(layer, d): _symbols(v.key + plan.suffix(layer, d),
                                                                 tuple(sizes[n] for n in v.shape))
                       for v in oracle.spec.params})
    sizes = {**dims, width: plan.directions * dims[width]}
    params.update({v.key: _symbols(v.key, tuple(sizes[n] for n in v.shape)) for v in oracle.spec.head.params})
    if head == "softmax-ce":
        targets = (np.arange(T * B).reshape(T, B) % K).astype(np.int64)
    else:
        rng = random.Random(seed + 1)
        targets = np.array([sp.Rational(rng.randint(-9, 9), 7) for _ in range(T * B * K)],
                           dtype=object).reshape(T, B, K)
    keywords = {"lengths": np.array(lengths, dtype=np.int64)} if plan.lengths else {}
    loss, grads = model.loss(x, state0, params, targets, **keywords)
    point = {"x": x, **state0, **params}
    rng = random.Random(seed)
    exact = numeric = 0
    worst = 0.0
    unrolled = None if expand else symengine.sympify(loss)
    points = random_points([symengine.Symbol(str(s)) for v in point.values() for s in v.flat], rng)
    for name, symbols in point.items():
        for index in np.ndindex(*symbols.shape):
            if expand:
                residual = sp.diff(loss, symbols[index]) - grads[name][index]
                if vanishes(residual):
                    exact += 1
                    continue
            else:
                residual = unrolled.diff(symengine.sympify(symbols[index])) - grads[name][index]
                if vanishes_symengine(residual):
                    exact += 1
                    continue
            worst = max(worst, numeric_residual(residual, points))
            numeric += 1
    entries = sum(v.size for v in point.values())
    if worst > 10.0 ** (-(DIGITS - 10)):
        exact = numeric = 0
    return Certificate(cell, activation, head, T, B, I, H, K, entries, exact, numeric, worst, plan.name,
                       tuple(lengths))
