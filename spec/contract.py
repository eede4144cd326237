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
from rnnspec.derivations.variants import Variant, parse_variant, zero_states

Key = tuple[str, str]  # (method, output)


class Keywords(dict):
    """The keyword arguments of a call, carried last among its arguments (a variant's ``lengths``)."""


@dataclass(frozen=True)
class Contract:
    """The keys and shapes of ``cell`` run as ``variant`` (the plain run: today's single-layer contract).

    A variant (:mod:`rnnspec.derivations.composed` has its contract) returns the last layer's outputs
    ``h`` (T, B, D * H) and the final states ``h_n`` (and ``c_n``); its parameters are named per layer
    and direction (``U_i_l1_reverse``) and its initial states are (L * D, B, H) when it is stacked.
    Under ``state0=default`` (alone: the plain outputs; or with the others) ``state0`` has no key and
    neither vjp nor loss returns a gradient of the initial states.
    """

    cell: Cell
    variant: Variant = Variant()

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def prefix(self) -> str:
        """The clause ids' prefix: ``ELMAN``, ``LSTM``, ``GRU-RESET-AFTER``, ``LSTM-L2-BIDIR-LEN-ZERO``."""
        return self.cell.name.upper() + self.variant.tag

    @property
    def states(self) -> tuple[str, ...]:
        """forward's keys and the cotangents' keys."""
        if self.variant.plain:
            return tuple(v.key for v in self.cell.state_out)
        return ("h", *(v.key + "_n" for v in self.cell.state_out))

    @property
    def output_names(self) -> dict[str, str]:
        """forward's keys -> the names under which the oracle's ``everything`` returns them."""
        if self.variant.plain:
            return {v.key: v.name for v in self.cell.state_out}
        return {k: k for k in self.states}

    @property
    def state0(self) -> tuple[str, ...]:
        """The keys of ``state0`` in a call: none when the initial states are the default (zeros)."""
        return () if self.variant.default_state else self.cell.state0_keys

    @property
    def step_params(self) -> tuple[str, ...]:
        return tuple(v.key + self.variant.suffix(layer, d) for layer, d in self.variant.runs()
                     for v in self.cell.params)

    @property
    def head_params(self) -> tuple[str, ...]:
        return tuple(v.key for v in self.cell.head.params)

    @property
    def vjp_keys(self) -> tuple[str, ...]:
        return ("x", *self.state0, *self.step_params)

    @property
    def loss_keys(self) -> tuple[str, ...]:
        return (*self.vjp_keys, *self.head_params)

    @property
    def width(self) -> str:
        """The size name of the output h: H, or P for the LSTM with a projection."""
        return self.cell.state_out[0].shape[0]

    def param_shapes(self, I: int, H: int, K: int, P: int = 0) -> dict[str, tuple[int, ...]]:
        """Every parameter's shape; layer l > 0 reads the D x (size of h) features of the layer below."""
        variant, dims = self.variant, {"I": I, "H": H, "K": K, "P": P}
        out = {}
        for layer, d in variant.runs():
            sizes = {**dims, "I": I if layer == 0 else variant.directions * dims[self.width]}
            out.update({v.key + variant.suffix(layer, d): tuple(sizes[n] for n in v.shape) for v in self.cell.params})
        sizes = {**dims, self.width: variant.directions * dims[self.width]}
        out.update({v.key: tuple(sizes[n] for n in v.shape) for v in self.cell.head.params})
        return out

    def state_shapes(self, B: int, H: int, P: int = 0) -> dict[str, tuple[int, ...]]:
        """Each initial (or final) state's shape by its state0 key: (B, n), or (L * D, B, n) for a stacked variant
        (also under ``state0=default``, where the initial states are not passed but the final ones are returned)."""
        lead = (len(self.variant.runs()),) if self.variant.stacked else ()
        dims = {"H": H, "P": P}
        return {out.key + "0": lead + (B, dims[out.shape[0]]) for out in self.cell.state_out}

    def output_shapes(self, T: int, B: int, H: int, P: int = 0) -> dict[str, tuple[int, ...]]:
        dims = {"H": H, "P": P}
        if self.variant.plain:
            return {out.key: (T, B, dims[out.shape[0]]) for out in self.cell.state_out}
        states = self.state_shapes(B, H, P)
        width = (T, B, self.variant.directions * dims[self.width])
        return {k: width if k == "h" else states[k.removesuffix("_n") + "0"] for k in self.states}

    def shapes(self, T: int, B: int, I: int, H: int, K: int, P: int = 0) -> dict[Key, tuple[int, ...]]:
        """Every output's shape, by (method, key)."""
        sizes = {"x": (T, B, I), **self.state_shapes(B, H, P), **self.param_shapes(I, H, K, P)}  # state0: if passed
        out = {("forward", k): shape for k, shape in self.output_shapes(T, B, H, P).items()}
        out[("loss", "value")] = ()
        out.update({("vjp", k): sizes[k] for k in self.vjp_keys})
        out.update({("loss", k): sizes[k] for k in self.loss_keys})
        return out

    def call_args(self, method: str, arrays: dict[str, np.ndarray]) -> tuple:
        """The positional arguments of ``method``, from a case's arrays (cotangents are ``cot_<state>``);
        ``state0`` is ``{}`` under ``state0=default``."""
        state0 = {k: arrays[k] for k in self.state0}
        if method == "forward":
            args = arrays["x"], state0, {k: arrays[k] for k in self.step_params}
        elif method == "vjp":
            args = (arrays["x"], state0, {k: arrays[k] for k in self.step_params},
                    {k: arrays["cot_" + k] for k in self.states})
        else:
            args = arrays["x"], state0, {k: arrays[k] for k in self.step_params + self.head_params}, arrays["targets"]
        return (*args, Keywords(lengths=arrays["lengths"])) if self.variant.lengths else args


def default_state0(cell: str, variant: Variant | str, x: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    """The initial states a target that takes them passes on its framework's behalf under ``state0=default``:
    zeros in ``x``'s dtype, shaped as the contract's states (sizes read off ``params``)."""
    spec, dtype = contract(cell, variant), np.asarray(x).dtype
    return zero_states(spec.cell, spec.variant, np.shape(x)[1], params, lambda shape: np.zeros(shape, dtype))


@cache
def contract(cell: str, variant: str | Variant = "") -> Contract:
    """The contract of the registered cell ``cell`` run as ``variant`` (ValueError for an unknown name or a
    bare 'gru')."""
    return Contract(registered_cell(cell), parse_variant(variant))
