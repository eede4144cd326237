"""The implementation contract of a cell, read off its definition: every key, shape and argument.

Nothing in spec/ names a parameter: a cell's ``forward`` returns its states (``h``; the LSTM's
``h`` and ``c``), ``state0`` holds ``<state>0``, ``params`` its step parameters (``U``, ``W``,
``b``; per gate ``U_i`` ... ``b_hn``), the loss also the head's ``V`` and ``c`` (the output bias, not
the LSTM's cell state ``c``), and ``vjp`` takes one cotangent per state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from rnnspec.derivations.cells import Cell
from rnnspec.derivations.registry import cell as registered_cell

Key = tuple[str, str]  # (method, output)


@dataclass(frozen=True)
class Contract:
    cell: Cell

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def prefix(self) -> str:
        """The clause ids' prefix: ``ELMAN``, ``LSTM``, ``GRU-RESET-AFTER``."""
        return self.cell.name.upper()

    @property
    def states(self) -> tuple[str, ...]:
        """forward's keys and the cotangents' keys."""
        return tuple(v.key for v in self.cell.state_out)

    @property
    def state0(self) -> tuple[str, ...]:
        return self.cell.state0_keys

    @property
    def step_params(self) -> tuple[str, ...]:
        return tuple(v.key for v in self.cell.params)

    @property
    def head_params(self) -> tuple[str, ...]:
        return tuple(v.key for v in self.cell.head.params)

    @property
    def vjp_keys(self) -> tuple[str, ...]:
        return ("x", *self.state0, *self.step_params)

    @property
    def loss_keys(self) -> tuple[str, ...]:
        return (*self.vjp_keys, *self.head_params)

    def param_shapes(self, I: int, H: int, K: int) -> dict[str, tuple[int, ...]]:
        sizes = {"I": I, "H": H, "K": K}
        return {v.key: tuple(sizes[d] for d in v.shape) for v in self.cell.all_params}

    def shapes(self, T: int, B: int, I: int, H: int, K: int) -> dict[Key, tuple[int, ...]]:
        """Every output's shape, by (method, key)."""
        sizes = {"x": (T, B, I), **{k: (B, H) for k in self.state0}, **self.param_shapes(I, H, K)}
        out = {("forward", k): (T, B, H) for k in self.states}
        out[("loss", "value")] = ()
        out.update({("vjp", k): sizes[k] for k in self.vjp_keys})
        out.update({("loss", k): sizes[k] for k in self.loss_keys})
        return out

    def call_args(self, method: str, arrays: dict[str, np.ndarray]) -> tuple:
        """The positional arguments of ``method``, from a case's arrays (cotangents are ``cot_<state>``)."""
        state0 = {k: arrays[k] for k in self.state0}
        if method == "forward":
            return arrays["x"], state0, {k: arrays[k] for k in self.step_params}
        if method == "vjp":
            return (arrays["x"], state0, {k: arrays[k] for k in self.step_params},
                    {k: arrays["cot_" + k] for k in self.states})
        return arrays["x"], state0, {k: arrays[k] for k in self.step_params + self.head_params}, arrays["targets"]


@cache
def contract(cell: str) -> Contract:
    """The contract of the registered cell ``cell`` (ValueError for an unknown name or a bare 'gru')."""
    return Contract(registered_cell(cell))
