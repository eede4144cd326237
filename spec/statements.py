"""Clause statements in plain text, rendered from a cell's forward and derived backward equations."""

from __future__ import annotations

import sympy as sp

from rnnspec.derivations.derive import derive
from rnnspec.derivations.render import TEXT, matrix_form
from rnnspec.derivations.tensors import PARAM, STATE_IN, Equation
from rnnspec.spec.contract import Contract

COTANGENTS = "g_q: the cotangent dL/dq, by the derived backward step"


class Statements:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.cell = contract.cell
        self.derivation = derive(self.cell)
        self.names = {name: self._text_name(var) for name, var in self.derivation.quantities.items()}

    @staticmethod
    def _text_name(var) -> str:
        if var.kind == PARAM:
            return var.key
        if var.name.startswith("g_"):
            return var.name + ("" if var.kind == "param_cotangent" else "_t")
        if var.kind == STATE_IN:
            return var.key.removesuffix("_prev") + "_{t-1}"
        latex = var.latex or var.name
        return latex if "\\" not in latex else var.name + "_t"

    def _text(self, eq: Equation) -> str:
        form = matrix_form(eq, self.names, TEXT)
        if form:
            return form
        return f"{self.names.get(eq.target.name, eq.target.name)} = {sp.sstr(eq.rhs)}"

    def _rhs(self, eq: Equation) -> str:
        return self._text(eq).split(" = ", 1)[1]

    def _step(self) -> str:
        return "; ".join(self._text(eq) for eq in self.cell.step)

    def _cotangents(self) -> str:
        states = " and ".join(f"{k}_t" for k in self.contract.states)
        return f"for cotangents on every {states}"

    def forward(self, key: str) -> str:
        starts = (", ".join(f"state0[{k!r}]" for k in self.contract.state0)
                  or "zero initial states (none passed: the framework's default)")
        variant = self.contract.variant
        if variant.plain:
            return f"forward returns {key}_t for t = 1..T, from {starts}, where {self._step()}"
        width = "(T, B, 2H), [forward | reverse]" if variant.bidirectional else "(T, B, H)"
        what = (f"the last layer's outputs y_t, {width}" if key == "h"
                else f"the final state {key.removesuffix('_n')} of every layer and direction, at each sequence's own "
                "last step")
        return f"forward returns {what}; {self.composition()}; each step {self._step()}"

    def composition(self) -> str:
        """How the variant composes the cell (rnnspec.derivations.variants has the derivation)."""
        variant, words = self.contract.variant, []
        if variant.layers > 1:
            words.append(f"{variant.layers} layers, layer l+1 reading layer l's outputs")
        if variant.bidirectional:
            words.append("a reverse direction with its own parameters runs x_T..x_1 and its outputs are put back "
                         "in time order")
        if variant.lengths:
            kept = ("zero" if variant.lengths == "zero" else
                    "the direction's last output (zeros before its first: Keras masking)")
            words.append(f"steps t >= lengths[b] keep the state (s_t = m_t s~_t + (1 - m_t) s_(t-1)) and output "
                         f"{kept}; the reverse direction starts at lengths[b] - 1; the loss counts valid steps only")
        if variant.default_state:
            words.append("no initial state is passed: every run starts from zeros (the framework's default)")
        return "; ".join(words)

    def loss_value(self) -> str:
        head = self.cell.head
        equations = "; ".join(self._text(eq) if eq.indices else
                              f"{self.names.get(eq.target.name, eq.target.name)} = {sp.sstr(eq.rhs)}"
                              for eq in head.equations)
        return f"loss returns L = sum over t and batch of ell_t, where {equations} (the head reads h_t; y_t one-hot)"

    def gradient(self, method: str, key: str) -> str:
        """dL/d<key> as the derived backward step gives it."""
        backward = {eq.target.name: eq for eq in self.derivation.step_backward + self.derivation.head_backward}
        by_key = {v.key: v for v in self.cell.all_params + self.cell.inputs}
        by_key.update({o.key + "0": i for i, o in self.cell.states})
        if not self.contract.variant.plain:
            return self._variant_gradient(method, key)
        var = by_key[key]
        rhs = self._rhs(backward["g_" + var.name])
        if key == "x":
            what = f"dL/dx_t = {rhs}"
        elif key in self.contract.state0:
            what = f"dL/d{key} = {rhs} at t = 1 (the initial state {key})"
        else:
            label = "the output bias c" if key == "c" else key
            what = f"dL/d{key} = sum_t {rhs}, summed over the batch ({label})"
        if method == "vjp":
            return f"vjp, {self._cotangents()}, returns {what}; {COTANGENTS}"
        head = self.cell.head
        if key in self.contract.head_params:
            return f"loss returns {what}, with g_a_t = o_t - y_t"
        return f"loss returns {what}, with the cotangent of {head.reads.key}_t from the head, V^T (o_t - y_t); " \
               f"{COTANGENTS}"

    def _variant_gradient(self, method: str, key: str) -> str:
        cotangents = " and ".join(self.contract.states)
        given = f"for cotangents on {cotangents}" if method == "vjp" else "of the loss over the valid steps"
        return (f"{method} returns dL/d{key} {given}, by BPTT through the composition ({self.composition()}): "
                "each run the masked cell's derived backward step, the reversal, concatenation and output mask "
                "transposed")
