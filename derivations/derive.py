"""What the engine derives for a cell: the step and head VJPs, the step Jacobian, the gain bound."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import sympy as sp
from sympy.calculus.util import maximum

from rnnspec.derivations.cells import Cell, activation_function, elman
from rnnspec.derivations.engine import cotangent, incoming, jacobian, reverse
from rnnspec.derivations.tensors import MASK, Equation, Var


@dataclass(frozen=True, eq=False)
class Derivation:
    """Backward equations of one step, of the head, and the step Jacobian of the first state.

    ``step_backward`` maps the cotangents ``g_<state>`` of a step's new states to those of its
    parameters, inputs and previous states; BPTT is this applied for t = T..1 with
    ``g_h_t = (dL_t/dh_t from the head) + g_h_prev from step t+1``.
    """

    cell: Cell
    step_backward: tuple[Equation, ...]
    head_backward: tuple[Equation, ...]
    step_jacobian: Equation

    @cached_property
    def quantities(self) -> dict[str, Var]:
        """The cell's quantities and their cotangents, by name."""
        found = dict(self.cell.quantities)
        found.update({cotangent(v).name: cotangent(v) for v in self.cell.quantities.values()})
        found.update({incoming(v).name: incoming(v) for v in self.cell.state_out})
        return found

    @cached_property
    def seeds(self) -> dict[str, str]:
        """State name -> the name under which BPTT hands a step the cotangent of that new state."""
        computed = {eq.target.name for eq in self.step_backward}
        return {v.name: incoming(v).name if cotangent(v).name in computed else cotangent(v).name
                for v in self.cell.state_out}


@cache
def derive(cell: Cell) -> Derivation:
    q = cell.quantities
    inputs = tuple(v for v in cell.inputs if v.kind != MASK)  # a mask has no cotangent
    step = reverse(cell.step, q, cell.state_out, cell.params + inputs + cell.state_in)
    head = ()
    if cell.head is not None:
        hd = cell.head
        head = tuple(reverse(hd.equations, q, (hd.loss,), hd.params + (hd.reads,)))
    first_in, first_out = cell.states[0]
    return Derivation(cell, tuple(step), head, jacobian(cell.step, q, first_out, first_in))


@cache
def elman_derivation(activation: str = "tanh", bias: bool = True, head: str | None = "softmax-ce") -> Derivation:
    return derive(elman(activation, bias, head))


def activation_derivative(activation: str) -> sp.Expr:
    """f'(u), derived by SymPy."""
    u = sp.Symbol("u", real=True)
    return sp.diff(activation_function(activation)(u), u)


def activation_gain(activation: str) -> sp.Expr:
    """gamma_f = sup_u |f'(u)|, the factor in ||dh_t/dh_k|| <= (gamma_f ||W||)^(t-k)."""
    u = sp.Symbol("u", real=True)
    derivative = activation_derivative(activation)
    if isinstance(derivative, sp.Piecewise):
        return sp.Max(*[sp.Abs(piece) for piece, _ in derivative.args])
    return maximum(sp.Abs(derivative), u, sp.S.Reals)
