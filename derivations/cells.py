"""Cells in SymPy: the forward equations, written once, from which everything else is derived.

A cell is named quantities (parameters, per-step inputs, recurrent states) and the equations of
one time step; a head (:mod:`rnnspec.derivations.heads`) maps the hidden state of each step to a
scalar loss. The Elman cell of the source notes (they write S for h):

    z_t = U x_t + W h_{t-1} + b,   h_t = f(z_t)

The gated cells are in :mod:`rnnspec.derivations.gated`, and every cell by name in
:mod:`rnnspec.derivations.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from rnnspec.derivations.heads import HEADS, Head, make_head
from rnnspec.derivations.tensors import INPUT, INTERMEDIATE, PARAM, STATE_IN, STATE_OUT, Equation, Var, indices

__all__ = ["ACTIVATIONS", "GENERIC", "HEADS", "Cell", "Gate", "activation_function", "elman", "sigmoid"]

Activation = Callable[[sp.Expr], sp.Expr]


def sigmoid(u: sp.Expr) -> sp.Expr:
    """The logistic function 1 / (1 + exp(-u)) (the rounding model recognises this form)."""
    return 1 / (1 + sp.exp(-u))


#: the activations f of the hidden state. ReLU's derivative at 0 is 0, as in PyTorch.
ACTIVATIONS: dict[str, Activation] = {
    "tanh": sp.tanh,
    "sigmoid": sigmoid,
    "relu": lambda u: sp.Piecewise((u, u > 0), (0, True)),
    "identity": lambda u: u,
}

#: the activation used where a document speaks of any f.
GENERIC = "f"


@dataclass(frozen=True)
class Gate:
    """A gate of a gated cell, for the cases that drive it open (value near 1) or shut (near 0)."""

    name: str  # as the equations write it: "f", "r", ...
    bias: str  # the parameter whose offset opens or shuts it
    meaning: str  # "forget", "reset", ...


@dataclass(frozen=True)
class Cell:
    """One time step of a recurrent network, in equations, and what the suite needs to know of it.

    ``activations``: the values the contract's ``activation`` may take for this cell (the gated
    cells have their nonlinearities fixed, written ``tanh``). ``pre_activations``: the step's
    quantities that feed a nonlinearity (where overflow and ReLU's kink are looked for).
    """

    name: str
    activation: str
    sizes: tuple[tuple[str, str], ...]
    params: tuple[Var, ...]
    inputs: tuple[Var, ...]
    states: tuple[tuple[Var, Var], ...]
    step: tuple[Equation, ...]
    head: Head | None = None
    title: str = ""
    activations: tuple[str, ...] = ("tanh",)
    pre_activations: tuple[str, ...] = ()
    gates: tuple[Gate, ...] = ()

    @cached_property
    def quantities(self) -> dict[str, Var]:
        found = [*self.params, *self.inputs, *(v for pair in self.states for v in pair)]
        found += [e.target for e in self.step]
        if self.head:
            found += [*self.head.params, self.head.target, *(s.target for s in self.head.shifts)]
            found += [e.target for e in self.head.equations + self.head.outputs]
        names = [v.name for v in found]
        clash = sorted({n for n in names if names.count(n) > 1 and len({v for v in found if v.name == n}) > 1})
        if clash:
            raise ValueError(f"cell {self.name}: two different quantities are named {clash}")
        return {v.name: v for v in found}

    @property
    def state_out(self) -> tuple[Var, ...]:
        return tuple(out for _, out in self.states)

    @property
    def state_in(self) -> tuple[Var, ...]:
        return tuple(inp for inp, _ in self.states)

    @property
    def state0_keys(self) -> tuple[str, ...]:
        """The contract's initial-state keys: ``h0`` (and ``c0``)."""
        return tuple(out.key + "0" for out in self.state_out)

    @property
    def all_params(self) -> tuple[Var, ...]:
        """The step's parameters, then the head's."""
        return self.params + (self.head.params if self.head else ())


def activation_function(name: str) -> Activation:
    if name == GENERIC:
        return sp.Function("f")
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


SIZES = (("I", "input size"), ("H", "hidden size"), ("K", "output size"))


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
    return Cell(
        name="elman",
        activation=activation,
        sizes=SIZES,
        params=(U, W, b) if bias else (U, W),
        inputs=(x,),
        states=((h_prev, h),),
        step=(Equation(z, (i,), rhs), Equation(h, (i,), f(z[i]))),
        head=make_head(head, h),
        title="Elman RNN",
        activations=tuple(ACTIVATIONS),
        pre_activations=("z",),
    )
