"""Cells in SymPy: the forward equations, written once, from which everything else is derived.

A cell is named quantities (parameters, per-step inputs, recurrent states) and the equations of
one time step; a head maps the hidden state of each step to a scalar loss. The Elman cell of the
source notes (they write S for h):

    z_t = U x_t + W h_{t-1} + b,   h_t = f(z_t)
    a_t = V h_t + c,               o_t = g(a_t),   loss_t = loss(o_t, y_t)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from rnnspec.derivations.tensors import (
    INPUT,
    INTERMEDIATE,
    PARAM,
    SHIFT,
    STATE_IN,
    STATE_OUT,
    TARGET,
    Equation,
    Shift,
    Var,
    indices,
)

Activation = Callable[[sp.Expr], sp.Expr]

#: the activations f of the hidden state. ReLU's derivative at 0 is 0, as in PyTorch.
ACTIVATIONS: dict[str, Activation] = {
    "tanh": sp.tanh,
    "sigmoid": lambda u: 1 / (1 + sp.exp(-u)),
    "relu": lambda u: sp.Piecewise((u, u > 0), (0, True)),
    "identity": lambda u: u,
}

#: the activation used where a document speaks of any f.
GENERIC = "f"

HEADS = ("softmax-ce", "identity-se")


@dataclass(frozen=True)
class Head:
    """Maps a state of every step to a scalar loss ``loss``; ``outputs`` define o_t for reports."""

    name: str
    reads: Var
    params: tuple[Var, ...]
    target: Var
    equations: tuple[Equation, ...]
    shifts: tuple[Shift, ...]
    loss: Var
    outputs: tuple[Equation, ...]


@dataclass(frozen=True)
class Cell:
    """One time step of a recurrent network, in equations."""

    name: str
    activation: str
    sizes: tuple[tuple[str, str], ...]
    params: tuple[Var, ...]
    inputs: tuple[Var, ...]
    states: tuple[tuple[Var, Var], ...]
    step: tuple[Equation, ...]
    head: Head | None = None

    @cached_property
    def quantities(self) -> dict[str, Var]:
        found = [*self.params, *self.inputs, *(v for pair in self.states for v in pair)]
        found += [e.target for e in self.step]
        if self.head:
            found += [*self.head.params, self.head.target, *(s.target for s in self.head.shifts)]
            found += [e.target for e in self.head.equations + self.head.outputs]
        return {v.name: v for v in found}

    @property
    def state_out(self) -> tuple[Var, ...]:
        return tuple(out for _, out in self.states)

    @property
    def state_in(self) -> tuple[Var, ...]:
        return tuple(inp for inp, _ in self.states)


def activation_function(name: str) -> Activation:
    if name == GENERIC:
        return sp.Function("f")
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def softmax_cross_entropy(h: Var) -> Head:
    """loss_t = -log softmax(a_t)[y_t] = log sum_k exp(a_tk) - y_t . a_t, y_t one-hot.

    The shift mu_t = max_k a_tk keeps exp in range; the loss does not depend on it.
    """
    i, j, k = indices("i j k")
    V = Var("V", ("K", "H"), PARAM, "V")
    c = Var("c", ("K",), PARAM, "c")
    y = Var("y", ("K",), TARGET, "y")
    a = Var("a", ("K",), INTERMEDIATE, "a")
    mu = Var("mu", (), SHIFT, r"\mu")
    s = Var("s", (), INTERMEDIATE, "s")
    loss = Var("ell", (), INTERMEDIATE, r"\ell")
    o = Var("o", ("K",), INTERMEDIATE, "o")
    return Head(
        name="softmax-ce",
        reads=h,
        params=(V, c),
        target=y,
        equations=(
            Equation(a, (i,), V[i, j] * h[j] + c[i]),
            Equation(s, (), sp.exp(a[k] - mu.scalar)),
            Equation(loss, (), sp.log(s.scalar) + mu.scalar - y[k] * a[k]),
        ),
        shifts=(Shift(mu, a, "max"),),
        loss=loss,
        outputs=(Equation(o, (i,), sp.exp(a[i] - mu.scalar) / s.scalar),),
    )


def identity_squared_error(h: Var) -> Head:
    """loss_t = 1/2 ||a_t - y_t||^2 with o_t = a_t."""
    i, j, k = indices("i j k")
    V = Var("V", ("K", "H"), PARAM, "V")
    c = Var("c", ("K",), PARAM, "c")
    y = Var("y", ("K",), TARGET, "y")
    a = Var("a", ("K",), INTERMEDIATE, "a")
    loss = Var("ell", (), INTERMEDIATE, r"\ell")
    o = Var("o", ("K",), INTERMEDIATE, "o")
    return Head(
        name="identity-se",
        reads=h,
        params=(V, c),
        target=y,
        equations=(
            Equation(a, (i,), V[i, j] * h[j] + c[i]),
            Equation(loss, (), (a[k] - y[k]) ** 2 / 2),
        ),
        shifts=(),
        loss=loss,
        outputs=(Equation(o, (i,), a[i]),),
    )


def elman(activation: str = "tanh", bias: bool = True, head: str | None = "softmax-ce") -> Cell:
    """The Elman cell: z_t = U x_t + W h_{t-1} + b, h_t = f(z_t)."""
    f = activation_function(activation)
    i, j, k = indices("i j k")
    U = Var("U", ("H", "I"), PARAM, "U")
    W = Var("W", ("H", "H"), PARAM, "W")
    b = Var("b", ("H",), PARAM, "b")
    x = Var("x", ("I",), INPUT, "x_t")
    h_prev = Var("h_prev", ("H",), STATE_IN, "h_{t-1}")
    z = Var("z", ("H",), INTERMEDIATE, "z_t")
    h = Var("h", ("H",), STATE_OUT, "h_t")
    rhs = U[i, j] * x[j] + W[i, k] * h_prev[k] + (b[i] if bias else 0)
    heads = {"softmax-ce": softmax_cross_entropy, "identity-se": identity_squared_error}
    if head is not None and head not in heads:
        raise ValueError(f"head must be one of {sorted(heads)} or None, got {head!r}")
    return Cell(
        name="elman",
        activation=activation,
        sizes=(("I", "input size"), ("H", "hidden size"), ("K", "output size")),
        params=(U, W, b) if bias else (U, W),
        inputs=(x,),
        states=((h_prev, h),),
        step=(Equation(z, (i,), rhs), Equation(h, (i,), f(z[i]))),
        head=heads[head](h) if head else None,
    )
