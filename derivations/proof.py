"""Proof that the derived BPTT equals the derivative of the unrolled loss.

For small sizes, every parameter, input and initial state entry is a SymPy symbol; the forward
equations, run by the SymPy backend, give the loss as one scalar expression of those symbols, which
``sympy.diff`` differentiates directly. The derived BPTT, run by the same backend, must equal
it: exactly when the difference expands to 0, otherwise at random rational points to 50 digits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import mpmath
import numpy as np
import symengine
import sympy as sp

from rnnspec.derivations.oracle import Oracle

DIGITS = 50
TRANSCENDENTAL = (sp.tanh, sp.exp, sp.log)


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
    for pw in sorted(residual.atoms(sp.Piecewise), key=sp.count_ops):
        (value, condition), rest = pw.args[0], pw.args[1:]
        if tuple(tuple(r) for r in rest) != ((0, True),):
            continue
        condition = condition.xreplace(mapping)
        mapping[pw] = value.xreplace(mapping) * indicators.setdefault(condition, sp.Dummy())
    residual = residual.xreplace(mapping)
    atoms = sorted(residual.atoms(*TRANSCENDENTAL), key=sp.default_sort_key)
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


def numeric_residual(residual: sp.Expr, rng: random.Random, points: int = 2) -> float:
    """|residual| at random rational points, in DIGITS-digit arithmetic."""
    symbols = sorted(residual.free_symbols, key=sp.default_sort_key)
    function = sp.lambdify(symbols, residual, "mpmath")
    worst = mpmath.mpf(0)
    with mpmath.workdps(DIGITS):
        for _ in range(points):
            values = [mpmath.mpf(rng.randint(-40, 40)) / 37 for _ in symbols]
            worst = max(worst, abs(function(*values)))
    return float(worst)


@dataclass(frozen=True)
class Certificate:
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

    @property
    def proved(self) -> bool:
        return self.exact + self.numeric == self.entries


def _symbols(name: str, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        out[index] = sp.Symbol(f"{name}_{'_'.join(map(str, index))}", real=True)
    return out


def prove(activation: str, head: str, T: int = 3, B: int = 1, I: int = 2, H: int = 2, K: int = 2,
          seed: int = 0) -> Certificate:
    oracle = Oracle(activation, backend="sympy", head=head)
    x = _symbols("x", (T, B, I))
    state0 = {"h0": _symbols("h0", (B, H))}
    params = {"U": _symbols("U", (H, I)), "W": _symbols("W", (H, H)), "b": _symbols("b", (H,)),
              "V": _symbols("V", (K, H)), "c": _symbols("c", (K,))}
    if head == "softmax-ce":
        targets = (np.arange(T * B).reshape(T, B) % K).astype(np.int64)
    else:
        rng = random.Random(seed + 1)
        targets = np.array([sp.Rational(rng.randint(-9, 9), 7) for _ in range(T * B * K)],
                           dtype=object).reshape(T, B, K)
    loss, grads = oracle.loss(x, state0, params, targets)
    point = {"x": x, "h0": state0["h0"], **params}
    rng = random.Random(seed)
    exact = numeric = 0
    worst = 0.0
    for name, symbols in point.items():
        for index in np.ndindex(*symbols.shape):
            residual = sp.diff(loss, symbols[index]) - grads[name][index]
            if vanishes(residual):
                exact += 1
            else:
                worst = max(worst, numeric_residual(residual, rng))
                numeric += 1
    entries = sum(v.size for v in point.values())
    tolerance = mpmath.mpf(10) ** (-(DIGITS - 10))
    if worst > tolerance:
        exact = numeric = 0
    return Certificate(activation, head, T, B, I, H, K, entries, exact, numeric, worst)
