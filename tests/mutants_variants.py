"""Deliberately wrong variants (layers, directions, lengths): each overrides one seam of the correct,
independent composition of tests/variants_reference.py, made a target of the suite.

Each mutant names the variant it is checked as (``checked_as``) and its cell; most are LSTMs run with two
layers, both directions and packed ("zero") lengths, where every seam is exercised. Each declares in
``must_fail`` the clauses a correct suite must fail on it (tests/must_fail.py). The composition's vjp
recomputes each layer's inputs with a fresh, correct Reference and never calls the seams of the forward
pass (``_one``, ``_last``, ``_fill_padded``, ``_concat``): a mutant of those is wrong in its forward and loss
only, its vjp the correct one's.
"""

from __future__ import annotations

import numpy as np
from variants_reference import Reference, model

ALL = "layers=2,bidirectional,lengths=zero"
#: what a mutant of the forward pass's seams fails: the states and the loss (its vjp is the correct one's)
FORWARD_AND_LOSS = ("FWD-*", "LOSS-*")
CARRY = "bidirectional,lengths=carry"


class VariantTarget(Reference):
    """The independent composition as a target: every cell and variant feature, float32 and float64 (computed
    in float64, returned in the inputs' dtype)."""

    cells = ("lstm", "elman", "gru-reset-after", "gru-reset-before")
    cell = "lstm"
    dtypes = ("float32", "float64")
    variants = ("layers", "bidirectional", "lengths=zero", "lengths=carry")
    layers, bidirectional, lengths = 1, False, None
    checked_as = ALL

    def __init__(self) -> None:  # the suite sets cell, layers, bidirectional and lengths
        pass

    @property
    def semantics(self):
        return self.lengths

    @property
    def stacked(self):
        return self.layers > 1 or self.bidirectional

    @property
    def model(self):
        return model(self.cell)

    @property
    def state_keys(self):
        return ["h", "c"] if self.cell == "lstm" else ["h"]

    def _call(self, method, x, state0, params, *rest, lengths=None):
        wide = lambda d: {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}
        rest = [wide(r) if isinstance(r, dict) else r for r in rest]
        out = getattr(Reference, method)(self, np.asarray(x, np.float64), wide(state0), wide(params), *rest,
                                         lengths=lengths)
        narrow = lambda d: {k: np.asarray(v, dtype=x.dtype) for k, v in d.items()}
        return (out[0], narrow(out[1])) if method == "loss" else narrow(out)

    def forward(self, x, state0, params, lengths=None):
        return self._call("forward", x, state0, params, lengths=lengths)

    def vjp(self, x, state0, params, cotangents, lengths=None):
        return self._call("vjp", x, state0, params, cotangents, lengths=lengths)

    def loss(self, x, state0, params, targets, lengths=None):
        return self._call("loss", x, state0, params, targets, lengths=lengths)


class CarryTarget(VariantTarget):
    checked_as = CARRY
    cell = "gru-reset-after"


class ReverseOutputsNotRestored(VariantTarget):
    """The reverse direction's outputs left in its processing order, not put back in time order (onnx#2881)."""

    must_fail = FORWARD_AND_LOSS

    def _one(self, column, n, state0, params, d):
        seq = column[:n]
        out = self.model.forward(seq[::-1] if d else seq, state0, params)
        return {k: out[k] for k in self.state_keys}

    def _last(self, states, key, n, d):
        return states[key][n - 1]


class ReverseStartsAtTheEnd(VariantTarget):
    """The reverse direction starts at T - 1, through the padded steps, instead of at lengths[b] - 1."""

    must_fail = FORWARD_AND_LOSS

    def _one(self, column, n, state0, params, d):
        if not d:
            return super()._one(column, n, state0, params, d)
        out = self.model.forward(column[::-1], state0, params)
        return {k: out[k][::-1] for k in self.state_keys}


class FinalStateAtTheEnd(VariantTarget):
    """The forward direction's final state taken after T steps, through the padded ones, not at lengths[b] - 1."""

    must_fail = ("FWD-H_N", "FWD-C_N")

    def _one(self, column, n, state0, params, d):
        return super()._one(column, len(column) if not d else n, state0, params, d)

    def _last(self, states, key, n, d):
        return states[key][0] if d else states[key][-1]


class PaddedStepsUpdateTheState(CarryTarget):
    """Under "carry", the padded steps run the cell, so the outputs there move on instead of holding the state."""

    must_fail = ("FWD-H",)

    def _one(self, column, n, state0, params, d):
        return super()._one(column, len(column) if not d else n, state0, params, d)

    def _last(self, states, key, n, d):
        return states[key][0] if d else states[key][n - 1]

    def _fill_padded(self, y, b, n, states, start, final, d):
        if d:
            y[n:, b] = start["h0"][0]
        elif n:  # a sequence with no valid step ran nothing (the forward pass skips it): no states to show
            y[n:, b] = states["h"][n:, 0]


class DirectionsSwapped(VariantTarget):
    """The two directions' halves of the outputs swapped: [reverse | forward]."""

    must_fail = FORWARD_AND_LOSS

    def _concat(self, outs, layer):
        return np.concatenate(outs[::-1], axis=-1)


class FinalStatesDirectionMajor(VariantTarget):
    """h_n and c_n laid out direction-major (index direction * L + layer) instead of layer * D + direction."""

    must_fail = ("FWD-H_N", "FWD-C_N")

    def _stack_finals(self, finals):
        D = 2 if self.bidirectional else 1
        return np.array([finals[layer * D + d] for d in range(D) for layer in range(self.layers)])


class ReverseUsesForwardParameters(VariantTarget):
    """The reverse direction runs with the forward direction's parameters of its layer."""

    # its vjp runs each reverse direction wrongly, and carries that back into layer 0 and x; the top layer's
    # forward direction reads layer 0's outputs from the vjp's own correct forward, so its gradients stay right
    must_fail = (*FORWARD_AND_LOSS, "VJP-X", "VJP-[HC]0", "VJP-*_L0", "VJP-*_REVERSE")

    def _params(self, params, layer, d):
        return super()._params(params, layer, 0)


class ReverseIgnoresH0(VariantTarget):
    """The reverse direction starts from zeros, not from its own initial state."""

    # its vjp runs each reverse direction wrongly, and carries that back into layer 0 and x; the top layer's
    # forward direction reads layer 0's outputs from the vjp's own correct forward, so its gradients stay right
    must_fail = (*FORWARD_AND_LOSS, "VJP-X", "VJP-[HC]0", "VJP-*_L0", "VJP-*_REVERSE")

    def _start(self, state0, key, index, b):
        value = super()._start(state0, key, index, b)
        return value * 0 if index % 2 else value


class SecondLayerFedPreActivation(VariantTarget):
    """Layer 2 reads layer 1's pre-activation z_t (Elman), not its output h_t = tanh(z_t)."""

    must_fail = FORWARD_AND_LOSS

    cell = "elman"

    def _concat(self, outs, layer):
        out = super()._concat(outs, layer)
        return np.arctanh(out) if layer < self.layers - 1 else out


class GradientsIntoPaddedSteps(VariantTarget):
    """Under "zero", the cotangents of the padded (zero) outputs are passed into the state, as if carried."""

    must_fail = ("VJP-X", "VJP-[HC]0", "VJP-*_L0", "VJP-*_L0_REVERSE", "VJP-*_L1")

    def _padded_cotangents(self, g_y, n, d, g_final, g_first):
        if d:
            return g_final, g_first + g_y[n:].sum(axis=0)
        g_final["h"] = g_final["h"] + g_y[n:].sum(axis=0)
        return g_final, g_first


class LossCountsPaddedSteps(VariantTarget):
    """The loss sums over every step, the padded ones too."""

    must_fail = ("LOSS-VALUE", "LOSS-C")

    def _valid(self, T, B, lengths):
        return np.ones((T, B))


class CarryWhereZeroIsDeclared(VariantTarget):
    """Keras masking's semantics (padded outputs repeat the state) where zeros are declared (onnxruntime#12492)."""

    must_fail = ("FWD-H", "VJP-X", "VJP-[HC]0", "VJP-*_L0", "VJP-*_L0_REVERSE", "VJP-*_L1")

    @property
    def semantics(self):
        return "carry"


class ZeroWhereCarryIsDeclared(CarryTarget):
    """ONNX Runtime's semantics (padded outputs zero) where Keras masking's carry is declared."""

    must_fail = ("FWD-H", "VJP-X", "VJP-H0", "VJP-*_L0")

    @property
    def semantics(self):
        return "zero"


class DropsFinalCellCotangent(VariantTarget):
    """vjp ignores the cotangent of the final cell state c_n."""

    must_fail = ("VJP-*",)

    def vjp(self, x, state0, params, cotangents, lengths=None):
        return super().vjp(x, state0, params, {k: v for k, v in cotangents.items() if k != "c_n"}, lengths)


class FinalCellStateIsTheHiddenOne(VariantTarget):
    """c_n returned as h_n's copy."""

    must_fail = ("FWD-C_N",)

    def forward(self, x, state0, params, lengths=None):
        out = super().forward(x, state0, params, lengths)
        out["c_n"] = out["h_n"].copy()
        return out


MUTANTS = [ReverseOutputsNotRestored, ReverseStartsAtTheEnd, FinalStateAtTheEnd, PaddedStepsUpdateTheState,
           DirectionsSwapped, FinalStatesDirectionMajor, ReverseUsesForwardParameters, ReverseIgnoresH0,
           SecondLayerFedPreActivation, GradientsIntoPaddedSteps, LossCountsPaddedSteps, CarryWhereZeroIsDeclared,
           ZeroWhereCarryIsDeclared, DropsFinalCellCotangent, FinalCellStateIsTheHiddenOne]
