"""The forward equations of every cell of the catalogue (:mod:`rnnspec.catalogue`), by name.

The catalogue lists the cells; this module attaches the equations to each name, and checks, when a cell is
built, that its equations declare the catalogue's parameters (keys, shapes, order), gates and states.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from rnnspec import catalogue
from rnnspec.derivations.cells import Cell, elman
from rnnspec.derivations.gated import gru, lstm, mgu

#: name -> builder(activation, head); the gated cells accept only their fixed activations ("tanh")
_BUILDERS: dict[str, Callable[[str, str | None], Cell]] = {
    "elman": lambda activation, head: elman(activation, True, head),
    "lstm": lambda activation, head: lstm(head),
    "lstm-proj": lambda activation, head: lstm(head, projection=True),
    "lstm-peephole": lambda activation, head: lstm(head, peephole=True),
    "lstm-coupled": lambda activation, head: lstm(head, coupled=True),
    "gru-reset-after": lambda activation, head: gru(True, head),
    "gru-reset-before": lambda activation, head: gru(False, head),
    "mgu": lambda activation, head: mgu(False, head),
    "mgu-flax": lambda activation, head: mgu(True, head),
}

CELL_NAMES: tuple[str, ...] = catalogue.NAMES

#: why a bare "gru" is refused
GRU_IS_AMBIGUOUS = catalogue.REFUSED["gru"]


def check_name(name: object) -> str:
    """``name`` if it is a cell of the catalogue, else a ValueError that says why."""
    return catalogue.check_name(name)


def _agrees(made: Cell) -> Cell:
    """``made``, after checking that its equations declare what the catalogue says of the cell."""
    entry = catalogue.cell(made.name)
    params = tuple((v.key, tuple(v.shape)) for v in made.params)
    said = tuple((p.key, p.shape) for p in entry.params)
    states = tuple(v.key for v in made.state_out)
    # the per-gate parameters (U_k, W_k, b_k) carry the gates and their order
    problems = [f"parameters {params}, catalogue {said}" if params != said else "",
                f"states {states}, catalogue {entry.states}" if states != entry.states else "",
                f"sizes {made.sizes}, catalogue {entry.sizes}" if tuple(n for n, _ in made.sizes) != entry.sizes
                else ""]
    problems = [p for p in problems if p]
    if problems:
        raise AssertionError(f"cell {made.name}: the equations disagree with the catalogue: {'; '.join(problems)}")
    return made


@cache
def cell(name: str, activation: str = "tanh", head: str | None = "softmax-ce") -> Cell:
    """The cell ``name`` with ``activation`` (Elman's f; the gated cells' is fixed) and ``head``."""
    check_name(name)
    if name not in _BUILDERS:
        raise AssertionError(f"cell {name!r} is in the catalogue but has no equations in {__name__}")
    made = _agrees(_BUILDERS[name](activation, head))
    if activation not in made.activations and activation != "f":
        raise ValueError(f"cell {name!r} takes activation in {made.activations}, got {activation!r}")
    return made
