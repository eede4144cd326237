"""Layers, directions and lengths written independently of rnnspec's composition, for its tests.

Nothing is masked here: each sequence is cut to its own length and run alone, the reverse direction on
that cut reversed, with the hand-written cells of tests/gated.py and tests/reference.py. The padded
steps' outputs are then filled in by the semantics' words (zeros; or, under "carry", the forward
direction's final state and the reverse direction's initial state), and their cotangents routed by the
same words: under "carry", a padded output of the forward direction is its final state, so its
cotangent joins the final state's; one of the reverse direction is its initial state.
"""

from __future__ import annotations

import numpy as np

import gated
import reference

CELLS = gated.MODELS


class Elman:
    outputs = ("h",)

    def forward(self, x, state0, params):
        return {"h": reference.forward(x, state0["h0"], params["U"], params["W"], params["b"])[0]}

    def vjp(self, x, state0, params, cotangents):
        return reference.vjp(x, state0["h0"], params["U"], params["W"], params["b"], cotangents["h"])


def model(cell: str):
    return Elman() if cell == "elman" else CELLS[cell]()


def _suffix(stacked, layer, direction):
    if not stacked:
        return ""
    return f"_l{layer}" + ("_reverse" if direction else "")


class Reference:
    """The variant's forward, vjp and loss; ``lengths`` None means every sequence is T long."""

    def __init__(self, cell, layers=1, bidirectional=False, lengths=None, stacked=None):
        self.cell, self.layers, self.bidirectional, self.semantics = cell, layers, bidirectional, lengths
        self.stacked = layers > 1 or bidirectional if stacked is None else stacked
        self.model = model(cell)
        self.state_keys = ["h", "c"] if cell.startswith("lstm") else ["h"]

    def _runs(self):
        return [(layer, d) for layer in range(self.layers) for d in range(2 if self.bidirectional else 1)]

    def _start(self, state0, key, index, b):
        value = state0[key + "0"]
        value = value[index] if self.stacked else value
        return value[b:b + 1]

    def _params(self, params, layer, d):
        suffix = _suffix(self.stacked, layer, d)
        return {k[: len(k) - len(suffix)] if suffix else k: v for k, v in params.items()
                if suffix and k.endswith(suffix) or not suffix and k not in ("V", "c")}

    def _one(self, column, n, state0, params, d):
        """Sequence b's first n steps (column (T, 1, I)) in one direction: its states in time order."""
        seq = column[:n]
        run = seq[::-1] if d else seq
        out = self.model.forward(run, state0, params)
        return {k: (out[k][::-1] if d else out[k]) for k in self.state_keys}

    def _last(self, states, key, n, d):
        """The final state: after the last step in the direction's own order."""
        return states[key][0] if d else states[key][n - 1]

    def _fill_padded(self, y, b, n, states, start, final, d):
        """Outputs at t >= n: zero; under "carry" (Keras) the forward direction repeats its last output, h at
        n - 1 (none when n = 0), and the reverse direction has no output yet at its padded steps, run first."""
        if self.semantics == "carry" and not d and n:
            y[n:, b] = final

    def _concat(self, outs, layer):
        return np.concatenate(outs, axis=-1)

    def _stack_finals(self, finals):
        """Per layer and direction, index layer * D + direction."""
        return np.array(finals)

    def forward(self, x, state0, params, lengths=None):
        T, B = x.shape[:2]
        lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
        inputs, finals = x, {k: [] for k in self.state_keys}
        for layer in range(self.layers):
            outs = []
            for d in range(2 if self.bidirectional else 1):
                index = layer * (2 if self.bidirectional else 1) + d
                p = self._params(params, layer, d)
                y = np.zeros((T, B, self._hidden(params)))
                final = {k: [] for k in self.state_keys}
                for b in range(B):
                    n = int(lengths[b])
                    start = {k + "0": self._start(state0, k, index, b) for k in self.state_keys}
                    states = self._one(inputs[:, b:b + 1], n, start, p, d) if n else {}
                    if n:
                        y[:n, b] = states["h"][:n, 0]
                    for k in self.state_keys:
                        last = self._last(states, k, n, d) if n else start[k + "0"]
                        final[k].append(last.reshape(-1))
                    self._fill_padded(y, b, n, states, start, final["h"][-1], d)
                outs.append(y)
                for k in self.state_keys:
                    finals[k].append(np.array(final[k]))
            inputs = self._concat(outs, layer)
        result = {"h": inputs}
        for k in self.state_keys:
            result[k + "_n"] = self._stack_finals(finals[k]) if self.stacked else finals[k][0]
        return result

    def _padded_cotangents(self, g_y, n, d, g_final, g_first):
        """Under "carry", a padded output of the forward direction (after a valid step) is its final state: their
        cotangents go there. Other padded outputs are zeros, whose cotangents go nowhere."""
        if self.semantics == "carry" and not d and n:
            g_final["h"] = g_final["h"] + g_y[n:].sum(axis=0)
        return g_final, g_first

    def vjp(self, x, state0, params, cotangents, lengths=None):
        T, B = x.shape[:2]
        lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
        D = 2 if self.bidirectional else 1
        stacked = self.stacked
        layer_inputs = [x]
        for layer in range(self.layers - 1):  # the inputs of every layer, by running the stack so far
            partial = Reference(self.cell, layer + 1, self.bidirectional, self.semantics, stacked)
            layer_inputs.append(partial.forward(x, _first_layers(state0, layer + 1, D, stacked), params, lengths)["h"])
        grads = {}
        g_out = cotangents.get("h", np.zeros((T, B, D * self._hidden(params))))
        g_state0 = {k + "0": np.zeros_like(state0[k + "0"]) for k in self.state_keys}
        for layer in reversed(range(self.layers)):
            inputs = layer_inputs[layer]
            g_in = np.zeros_like(inputs)
            for d in range(D):
                index = layer * D + d
                p = self._params(params, layer, d)
                H = self._hidden(params)
                suffix = _suffix(self.stacked, layer, d)
                total = {k: np.zeros_like(v) for k, v in p.items()}
                for b in range(B):
                    n = int(lengths[b])
                    start = {k + "0": self._start(state0, k, index, b) for k in self.state_keys}
                    g_y = g_out[:, b, d * H:(d + 1) * H]
                    g_final = {k: (cotangents[k + "_n"][index] if stacked else cotangents[k + "_n"])[b]
                               if k + "_n" in cotangents else np.zeros(state0[k + "0"].shape[-1])
                               for k in self.state_keys}
                    g_first = np.zeros(H)  # cotangent landing on h0 directly (reverse, carry)
                    g_final, g_first = self._padded_cotangents(g_y, n, d, g_final, g_first)
                    if n == 0:
                        for k in self.state_keys:
                            g0 = g_final[k] + (g_first if k == "h" else 0)
                            _add(g_state0[k + "0"], index if stacked else None, b, g0)
                        continue
                    seq = inputs[:n, b:b + 1]
                    run = seq[::-1] if d else seq
                    cot = {k: np.zeros((n, 1, state0[k + "0"].shape[-1])) for k in self.state_keys}
                    cot["h"][:, 0] = g_y[:n][::-1] if d else g_y[:n]
                    for k in self.state_keys:
                        cot[k][-1, 0] += g_final[k]
                    got = self.model.vjp(run, start, p, cot)
                    g_in[:n, b:b + 1] += got["x"][::-1] if d else got["x"]
                    for k in self.state_keys:
                        _add(g_state0[k + "0"], index if stacked else None, b,
                             got[k + "0"][0] + (g_first if k == "h" else 0))
                    for k in total:
                        total[k] += got[k]
                grads.update({k + suffix: v for k, v in total.items()})
            g_out = g_in
        grads["x"] = g_out
        grads.update(g_state0)
        return grads

    def _hidden(self, params):
        key = next(k for k in params if k.startswith("W"))
        return params[key].shape[1]

    def _valid(self, T, B, lengths):
        """Where the loss counts: the steps t < lengths[b]."""
        return np.ones((T, B)) if lengths is None else (np.arange(T)[:, None] < np.asarray(lengths)[None, :])

    def loss(self, x, state0, params, targets, lengths=None):
        T, B = x.shape[:2]
        valid = self._valid(T, B, lengths)
        y = self.forward(x, state0, params, lengths)["h"]
        V, c = params["V"], params["c"]
        a = y @ V.T + c
        a = a - a.max(axis=-1, keepdims=True)
        log_p = a - np.log(np.exp(a).sum(axis=-1, keepdims=True))
        picked = np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
        e = np.exp(log_p)
        np.put_along_axis(e, targets[..., None], np.take_along_axis(e, targets[..., None], -1) - 1, axis=-1)
        e = e * valid[..., None]
        grads = self.vjp(x, state0, params, {"h": e @ V}, lengths)
        grads.update(V=np.einsum("tbk,tbh->kh", e, y), c=e.sum(axis=(0, 1)))
        return float(-(picked * valid).sum()), grads


def _first_layers(state0, layers, D, stacked):
    return {k: (v[: layers * D] if stacked else v) for k, v in state0.items()}


def _add(array, index, b, value):
    if index is None:
        array[b] += value
    else:
        array[index, b] += value
