"""Named tensor quantities and equations in index (Einstein) notation.

An equation ``v[i, ...] = rhs`` means: for every value of the left-hand indices, each top-level
term of ``rhs`` is summed over the indices it carries that are not on the left. Factors inside a
term are evaluated elementwise. This is the only summation convention in the project; the
evaluator and the derivation engine both follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

#: kinds of quantity. A MASK is a per-step input that is never differentiated (the variants' m_t in {0, 1}).
PARAM, INPUT, STATE_IN, STATE_OUT, INTERMEDIATE, TARGET, SHIFT, COTANGENT, PARAM_COTANGENT, MASK = (
    "param", "input", "state_in", "state_out", "intermediate", "target", "shift", "cotangent",
    "param_cotangent", "mask",
)


@dataclass(frozen=True)
class Var:
    """A tensor quantity: a name, a shape given by size names, and a kind.

    Every kind except parameters and their cotangents has one value per batch example.
    """

    name: str
    shape: tuple[str, ...]
    kind: str
    latex: str = ""
    #: the name the implementation contract uses, where it differs from ``name`` (the LSTM's cell
    #: state is ``c`` in the contract and ``C`` here, apart from the head's output bias ``c``)
    contract: str = ""

    @property
    def key(self) -> str:
        return self.contract or self.name

    @property
    def per_example(self) -> bool:
        return self.kind not in (PARAM, PARAM_COTANGENT)

    @property
    def base(self) -> sp.IndexedBase | sp.Symbol:
        return sp.IndexedBase(self.name) if self.shape else sp.Symbol(self.name)

    def __getitem__(self, index) -> sp.Expr:
        index = index if isinstance(index, tuple) else (index,)
        if len(index) != len(self.shape):
            raise ValueError(f"{self.name} has {len(self.shape)} indices, got {len(index)}")
        return self.base[index] if self.shape else self.base

    @property
    def scalar(self) -> sp.Symbol:
        if self.shape:
            raise ValueError(f"{self.name} is not a scalar")
        return sp.Symbol(self.name)


@dataclass(frozen=True)
class Equation:
    """``target[indices] = rhs`` in the summation convention of this module."""

    target: Var
    indices: tuple[sp.Symbol, ...]
    rhs: sp.Expr

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.target.shape):
            raise ValueError(f"equation for {self.target.name}: index count does not match its shape")

    @property
    def lhs(self) -> sp.Expr:
        return self.target[self.indices] if self.indices else self.target.scalar


@dataclass(frozen=True)
class Shift:
    """A stop-gradient quantity that keeps exponentials in range and cancels exactly.

    ``reduce`` names the reduction of ``source`` over its last axis that gives its value in floating
    point; symbolic evaluation uses 0. Its derivative is taken as zero, which is exact because the
    equations that use it are invariant under it.
    """

    target: Var
    source: Var
    reduce: str = "max"


def indices(names: str) -> tuple[sp.Symbol, ...]:
    """Integer index symbols, e.g. ``indices("i j k")``."""
    return tuple(sp.Symbol(n, integer=True) for n in names.split())


def indexed_atoms(expr: sp.Expr) -> list[sp.Expr]:
    """Indexed objects and scalar symbols of ``expr`` in a stable order (indices excluded)."""
    found = sorted(expr.atoms(sp.Indexed), key=sp.default_sort_key)
    inner = {s for a in found for s in a.indices}
    scalars = sorted((s for s in expr.free_symbols if not isinstance(s, sp.Indexed)
                      and s not in inner and not s.is_integer), key=sp.default_sort_key)
    return found + [s for s in scalars if not any(s == a.base.label for a in found)]


def index_symbols(expr: sp.Expr) -> list[sp.Symbol]:
    """The index symbols carried by ``expr``, in order of first appearance."""
    out: list[sp.Symbol] = []
    for a in sp.preorder_traversal(expr):
        if isinstance(a, sp.Indexed):
            out.extend(i for i in a.indices if i not in out)
        elif isinstance(a, sp.KroneckerDelta):
            out.extend(i for i in a.args if isinstance(i, sp.Symbol) and i not in out)
    return out
