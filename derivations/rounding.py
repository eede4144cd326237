"""Elementwise functions that are accurate, but not correctly rounded: a model of other libraries.

A library's ``tanh``, ``exp``, ``log`` or logistic function returns a result within some number of
units in the last place (ulps) of the exact one: NumPy's float32 tanh up to about 1.4, TensorFlow's
0.81 where XLA's is 1.19, CUDA's ``tanhf`` 2, PTX's ``tanh.approx.f32`` 2^-11 relative (about 4096
ulps of float32). Which neighbour it lands on matters where a result is amplified: f'(z) = 1 - h^2
computed from a rounded h = tanh(z) near 1 moves by 2 ulp(1) / (1 - h^2) relative, 4e-4 at z = 4.79
in float32. A :class:`Rounding` moves each such result by up to ``ulps`` ulps of ``dtype``:

    r(v) = v + k * ulp_dtype(v),    k = +ulps (away from 0), -ulps (toward 0), or uniform in [-ulps, ulps]

and a backend holding one evaluates every elementwise factor with its functions rounded so. The
logistic function, which the cells write ``1 / (1 + exp(-u))``, is rounded as one function, and its
derivative ``exp(-u) / (1 + exp(-u))^2`` is rewritten ``sigma(u) (1 - sigma(u))`` first, as
implementations compute it from the rounded output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

MODES = ("away", "toward", "random")

#: the undefined functions a rounded factor calls, by the SymPy function they stand for
_ROUNDED = {sp.tanh: "rounded_tanh", sp.exp: "rounded_exp", sp.log: "rounded_log"}
_LOGISTIC = "rounded_logistic"


@dataclass
class Rounding:
    """Each elementwise function's result moved by up to ``ulps`` ulps of ``dtype``, as ``mode`` says."""

    ulps: float
    dtype: str
    mode: str
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, value):
        """``value`` (in a wider precision) moved by the rounding's number of ulps of ``dtype``."""
        value = np.asarray(value)
        with np.errstate(over="ignore", invalid="ignore"):
            unit = np.spacing(np.abs(value).astype(self.dtype)).astype(value.dtype)
        unit = np.where(np.isfinite(unit), unit, 0)
        if self.mode == "random":
            k = self._rng.uniform(-self.ulps, self.ulps, size=value.shape).astype(value.dtype)
        else:
            k = np.sign(value) * (self.ulps if self.mode == "away" else -self.ulps)
        return value + k * unit

    def namespace(self) -> dict:
        """The rounded functions, by the names :func:`rounded_form` gives them."""
        functions = {name: getattr(np, f.__name__) for f, name in _ROUNDED.items()}
        out = {name: (lambda v, fn=fn: self(fn(v))) for name, fn in functions.items()}
        out[_LOGISTIC] = lambda v: self(1 / (1 + np.exp(-v)))
        return out


def rounded_form(expr: sp.Expr) -> sp.Expr:
    """``expr`` with tanh, exp, log and the logistic function as calls of their rounded stand-ins."""
    for power in expr.atoms(sp.exp):
        (w,) = power.args
        if expr.has(1 + power):
            logistic = sp.Function(_LOGISTIC)(-w)
            expr = sp.cancel(expr.subs(power, (1 - logistic) / logistic))
    for function, name in _ROUNDED.items():
        expr = expr.replace(function, sp.Function(name))
    return expr
