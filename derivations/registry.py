"""Every cell by name: the one place a new cell is registered (spec/ reads its clauses from here)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from rnnspec.derivations.cells import Cell, elman
from rnnspec.derivations.gated import gru, lstm

#: name -> builder(activation, head); the gated cells accept only their fixed activations ("tanh")
_BUILDERS: dict[str, Callable[[str, str | None], Cell]] = {
    "elman": lambda activation, head: elman(activation, True, head),
    "lstm": lambda activation, head: lstm(head),
    "lstm-proj": lambda activation, head: lstm(head, projection=True),
    "lstm-peephole": lambda activation, head: lstm(head, peephole=True),
    "gru-reset-after": lambda activation, head: gru(True, head),
    "gru-reset-before": lambda activation, head: gru(False, head),
}

CELL_NAMES: tuple[str, ...] = tuple(_BUILDERS)

#: why a bare "gru" is refused
GRU_IS_AMBIGUOUS = (
    "'gru' is ambiguous: say 'gru-reset-after' (the reset gate multiplies the recurrent product "
    "W_n h + b_hn: PyTorch, cuDNN, Keras 3 with reset_after=True, Flax) or 'gru-reset-before' (the reset "
    "gate multiplies h before W_n, no b_hn: ONNX's default linear_before_reset=0, Keras reset_after=False, "
    "TensorFlow 1, the 2014 paper)")


def check_name(name: object) -> str:
    """``name`` if it is a registered cell, else a ValueError that says what is known."""
    if name == "gru":
        raise ValueError(GRU_IS_AMBIGUOUS)
    if name not in _BUILDERS:
        raise ValueError(f"unknown cell {name!r}; known: {', '.join(CELL_NAMES)}")
    return name


@cache
def cell(name: str, activation: str = "tanh", head: str | None = "softmax-ce") -> Cell:
    """The cell ``name`` with ``activation`` (Elman's f; the gated cells' is fixed) and ``head``."""
    check_name(name)
    made = _BUILDERS[name](activation, head)
    if activation not in made.activations and activation != "f":
        raise ValueError(f"cell {name!r} takes activation in {made.activations}, got {activation!r}")
    return made
