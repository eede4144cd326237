"""The oracle of a variant: layers, directions and lengths composed from the masked cell's oracle.

The contract of a variant (README, "Variants"): ``x`` (T, B, I); ``lengths`` int (B,) when the variant
has lengths (passed as the keyword ``lengths``); ``state0[s + "0"]`` (B, H) for one forward layer, else
(L * D, B, H) indexed layer * D + direction; parameters named per layer and direction with the suffix
of :meth:`~rnnspec.derivations.variants.Variant.suffix` (``U_i_l1_reverse``; layer l > 0 reads
D * H features); the head's ``V`` (K, D * H) and ``c``. ``forward`` returns ``h`` (T, B, D * H), the
last layer's outputs, and the final states ``h_n`` (and ``c_n``) shaped as ``h0``; ``vjp`` takes a
cotangent for each of those and returns the gradients of x, the initial states and every parameter.
Under ``state0=default`` no initial state is passed (``state0`` is empty), every run starts from zeros,
and no gradient of the initial states is returned. The composition rules are in
:mod:`rnnspec.derivations.variants`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rnnspec import catalogue
from rnnspec.derivations.evaluate import evaluate
from rnnspec.derivations.oracle import Oracle
from rnnspec.derivations.registry import cell as registered_cell
from rnnspec.derivations.rounding import Rounding
from rnnspec.derivations.variants import (
    MASK,
    Variant,
    clipped,
    mask_of,
    masked,
    output_mask,
    parse_variant,
    reactivated,
    run_params,
)

Arrays = Mapping[str, np.ndarray]


class Composed:
    """Forward, VJP and loss of ``cell`` run as ``variant``, in any of the oracle's backends."""

    def __init__(self, cell: str, variant: Variant | str, activation: str = "tanh", backend: str = "float64",
                 rounding: Rounding | None = None, head: str | None = "softmax-ce") -> None:
        self.variant = parse_variant(variant)
        plain = registered_cell(cell, activation, head)
        step = registered_cell(cell, activation, None)
        if self.variant.gate_activations:  # ONNX's activations list, then its clip (on the pre-activations)
            step = reactivated(step, self.variant.gate_activations)
        if self.variant.clip is not None:  # ONNX's clip: the gates' pre-activations, before the mask
            step = clipped(step, self.variant.clip)
        self.step = Oracle(activation, backend, cell=masked(step), rounding=rounding)
        # each run's oracle starts from zeros when no state is passed (the masked cell's states are the cell's)
        self.step.default_state = self.variant.default_state
        self.head = Oracle(activation, backend, cell=plain, rounding=rounding, head=head)
        self.be = self.step.be
        self.cell = plain
        #: state name -> contract key ("h", and the LSTM's "c" for its state C)
        self.states = {out.name: out.key for out in plain.state_out}
        self.param_names = [v.key for v in plain.params]
        #: the size name of h: H, or P for the LSTM with a projection
        self.width = plain.state_out[0].shape[0]

    # -- the contract ---------------------------------------------------------------------------
    def forward(self, x, state0: Arrays, params: Arrays, lengths=None) -> dict[str, np.ndarray]:
        return self._run(x, state0, params, lengths)[0]

    def vjp(self, x, state0: Arrays, params: Arrays, cotangents: Arrays, lengths=None) -> dict[str, np.ndarray]:
        outputs, runs, mask = self._run(x, state0, params, lengths)
        return self._backward(runs, mask, cotangents, params)

    def loss(self, x, state0: Arrays, params: Arrays, targets, lengths=None):
        outputs, runs, mask = self._run(x, state0, params, lengths)
        return self._loss(outputs, runs, mask, params, targets)

    def everything(self, x, state0: Arrays, params: Arrays, cotangents: Arrays, targets, lengths=None):
        """(outputs and every run's pre-activations, vjp grads, (loss, grads)) with one forward pass.

        The pre-activations of all runs are concatenated along the last axis, by name."""
        outputs, runs, mask = self._run(x, state0, params, lengths)
        traces = {name: np.concatenate([_in_time_order(run, name) for run in runs], axis=-1)
                  for name in self.cell.pre_activations}
        vjp = self._backward(runs, mask, cotangents, params)
        return {**outputs, **traces}, vjp, self._loss(outputs, runs, mask, params, targets)

    # -- forward ----------------------------------------------------------------------------------
    def _state0(self, state0: Arrays, key: str, index: int) -> np.ndarray:
        if key not in state0:
            raise ValueError(f"state0: missing {key!r}")
        value = self.be.asarray(state0[key])
        if not self.variant.stacked:
            return value
        runs = len(self.variant.runs())
        if value.ndim != 3 or value.shape[0] != runs:
            raise ValueError(f"state0[{key!r}]: expected (L * D, B, H) with L * D = {runs}, got shape {value.shape}")
        return value[index]

    def _lengths(self, lengths, steps: int, batch: int) -> np.ndarray | None:
        if self.variant.lengths is None:
            if lengths is not None:
                raise ValueError("lengths: given to a variant without lengths")
            return None
        if lengths is None:
            raise ValueError(f"lengths: required (int (B,)) by the variant {self.variant.name!r}")
        lengths = np.asarray(lengths)
        if lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"lengths: expected integers of shape (B,)=({batch},), "
                             f"got {lengths.dtype} {lengths.shape}")
        if lengths.size and (lengths.min() < 0 or lengths.max() > steps):
            raise ValueError(f"lengths: each must lie in [0, T={steps}], got [{lengths.min()}, {lengths.max()}]")
        return lengths

    def _run(self, x, state0: Arrays, params: Arrays, lengths):
        xs = self.be.asarray(x)
        if xs.ndim != 3:
            raise ValueError(f"x: expected (T, B, I), got shape {xs.shape}")
        steps, batch = xs.shape[:2]
        mask = self.be.asarray(mask_of(self._lengths(lengths, steps, batch), steps, batch))
        variant, runs, layer_in = self.variant, [], xs
        if variant.default_state and state0:
            raise ValueError(f"state0: the variant {variant.name!r} passes no initial states (they are zeros), got "
                             f"{sorted(state0)}")
        for layer in range(variant.layers):
            ys = []
            for direction in range(variant.directions):
                index = layer * variant.directions + direction
                start = {} if variant.default_state else {k: self._state0(state0, k, index)
                                                          for k in self.cell.state0_keys}
                weights = run_params(params, self.param_names, variant, layer, direction)
                run = self._direction(layer_in, start, weights, mask, direction)
                run["index"] = index
                runs.append(run)
                ys.append(run["y"])
            layer_in = np.concatenate(ys, axis=-1)
        finals = {}
        for name, key in self.states.items():
            per_run = [run["final"][name] for run in runs]
            finals[key + "_n"] = np.stack(per_run) if variant.stacked else per_run[0]
        return {"h": layer_in, **finals}, runs, mask

    def _direction(self, x, state0, params, mask, reverse: int) -> dict:
        """One layer in one direction: the masked cell over time (reversed for the reverse direction)."""
        order = (lambda a: a[::-1]) if reverse else (lambda a: a)
        tapes, sizes = self.step._forward(order(x), state0, params, {MASK.name: order(mask)})
        h = self.step._stack([tape["h"] for tape in tapes], self.cell.state_out[0]) if tapes else None
        if tapes:
            final = {name: tapes[-1][name] for name in self.states}
        elif self.variant.default_state:
            final = {out.name: self.be.zeros((sizes["B"], sizes[out.shape[0]])) for out in self.cell.state_out}
        else:
            final = {name: self.be.asarray(state0[key + "0"]) for name, key in self.states.items()}
        if h is None:
            y = self.be.zeros((0, sizes["B"], sizes[self.width]))
        else:
            shown = output_mask(mask, self.variant.lengths, bool(reverse))
            y = order(h) if shown is None else order(h) * self.be.asarray(shown)[:, :, None]
        return {"tapes": tapes, "sizes": sizes, "params": params, "y": y, "final": final, "reverse": reverse}

    # -- backward ---------------------------------------------------------------------------------
    def _backward(self, runs: list[dict], mask, cotangents: Arrays, params: Arrays) -> dict[str, np.ndarray]:
        """BPTT through the stack, top layer first; ``cotangents`` on ``h`` and the final states."""
        known = ("h", *(key + "_n" for key in self.states.values()))
        for key in cotangents:
            if key not in known:
                raise ValueError(f"cotangents: unknown key {key!r} (expected {list(known)})")
        variant = self.variant
        g_out = self.be.asarray(cotangents["h"]) if "h" in cotangents else None
        grads: dict[str, np.ndarray] = {}
        starts: dict[str, list] = {key + "0": [None] * len(runs) for key in self.states.values()}
        for layer in reversed(range(variant.layers)):
            g_in = None
            for direction in range(variant.directions):
                run = runs[layer * variant.directions + direction]
                hidden = run["sizes"][self.width]
                g_y = None if g_out is None else g_out[..., direction * hidden:(direction + 1) * hidden]
                finals = {}
                for name, key in self.states.items():
                    given = cotangents.get(key + "_n")
                    if given is not None:
                        given = self.be.asarray(given)
                        finals[name] = given[run["index"]] if variant.stacked else given
                got = self._direction_backward(run, mask, g_y, finals)
                suffix = variant.suffix(layer, direction)
                grads.update({var.key + suffix: got[var.key] for var in self.cell.params})
                for key in starts:
                    starts[key][run["index"]] = got[key]
                g_in = got["x"] if g_in is None else g_in + got["x"]
            g_out = g_in
        grads["x"] = g_out
        if variant.default_state:  # no initial state was passed: none has a gradient
            return grads
        for key, values in starts.items():
            grads[key] = np.stack(values) if variant.stacked else values[0]
        return grads

    def _direction_backward(self, run: dict, mask, g_y, finals: dict) -> dict[str, np.ndarray]:
        """The VJP of one direction: g_h_t = v_t g_y_t (the output mask's transpose), in the run's own time
        order, the final states' cotangents added at its last step."""
        order = (lambda a: a[::-1]) if run["reverse"] else (lambda a: a)
        tapes, sizes = run["tapes"], run["sizes"]
        steps = len(tapes)
        if not steps:
            out = {var.key: self.be.zeros(np.shape(run["params"][var.key])) for var in self.cell.params}
            out["x"] = self.be.zeros((0, sizes["B"], *(sizes[d] for d in self.cell.inputs[0].shape)))
            for out_var in self.cell.state_out:
                size = sizes[out_var.shape[0]]
                out[out_var.key + "0"] = finals.get(out_var.name, self.be.zeros((sizes["B"], size)))
            return out
        g_h = None
        if g_y is not None:
            shown = output_mask(mask, self.variant.lengths, bool(run["reverse"]))
            g_h = order(g_y if shown is None else g_y * self.be.asarray(shown)[:, :, None])
        per_step = [{} if g_h is None else {"h": g_h[t]} for t in range(steps)]
        for name, value in finals.items():
            per_step[-1][name] = per_step[-1].get(name, 0) + value
        got = self.step._backward(tapes, per_step, sizes, {k: self.be.asarray(v) for k, v in run["params"].items()})
        got["x"] = order(got["x"])
        return got

    # -- the loss ---------------------------------------------------------------------------------
    def _loss(self, outputs: dict, runs: list[dict], mask, params: Arrays, targets):
        """The head over the last layer's outputs at the valid steps, and every gradient."""
        head, be = self.cell.head, self.be
        y = outputs["h"]
        steps, batch = y.shape[:2]
        sizes = {"B": batch, self.width: y.shape[2]}
        head_params = {v.name: self.head._param(params, v) for v in head.params}
        for v in head.params:
            self.head._size_check(sizes, v, head_params[v.name].shape, "params")
        truth = self.head._targets(targets, sizes, steps)
        derivation = self.head.derivation
        total = be.zeros(())
        head_grads = {v.name: be.zeros(head_params[v.name].shape) for v in head.params}
        g_y = be.zeros(y.shape)
        for t in range(steps):
            env = self.head._head_forward({head.reads.name: y[t]}, head_params, truth[t], sizes)
            total = total + np.sum(env[head.loss.name] * mask[t])
            env["g_" + head.loss.name] = mask[t]
            for eq in derivation.head_backward:
                env[eq.target.name] = evaluate(eq, env, derivation.quantities, sizes, batch, be)
            for v in head.params:
                head_grads[v.name] = head_grads[v.name] + env["g_" + v.name]
            g_y[t] = env["g_" + head.reads.name]
        grads = self._backward(runs, mask, {"h": g_y}, params)
        grads.update(head_grads)
        value = total[()] if isinstance(total, np.ndarray) else total
        return (float(value) if be.name in catalogue.DTYPES else value), grads



def _in_time_order(run: dict, name: str) -> np.ndarray:
    """A run's step quantity ``name`` stacked over its steps, in time order (T, B, ...)."""
    stacked = np.stack([tape[name] for tape in run["tapes"]])
    return stacked[::-1] if run["reverse"] else stacked
