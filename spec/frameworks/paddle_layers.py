"""The built-in target ``paddle``: PaddlePaddle's own layers (paddle.nn.SimpleRNN, LSTM, GRU) on the CPU,
gradients by ``paddle.grad``.

Weights go through :mod:`rnnspec.spec.conventions` (PyTorch's packing; the projected LSTM's ``weight_ho`` is
W_hr transposed), each run's into its cell (``module[l].cell``, or ``cell_fw`` / ``cell_bw``), whose parameters
are the ones Paddle's fused CPU kernel (``_C_ops.rnn``) reads; with ``proj_size`` Paddle runs its Python loop
over LSTMCell instead. Inputs are batch-major (``time_major=False``, the default). A float64 layer is built
under ``paddle.set_default_dtype("float64")``: ``layer.to(dtype="float64")`` raises on these layers (Paddle
3.3.1). The loss is ``F.linear`` and ``F.cross_entropy`` summed over time and batch (the valid steps only);
Paddle's cross_entropy caps each sample's loss at 64 (docs/mlx-paddle.md, defect 5), so LOSS-VALUE fails on
large logits.

``paddle.grad`` asked for only some of the fused kernel's inputs (x alone, say) raises ``Required tensor shall
not be nullptr`` (PaddlePaddle/Paddle#58158, still in 3.3.1), so every call asks for all of them: x, the
initial states and every parameter. nn.LSTM returns the last cell state only; c_t of every step is its final
state after one step of its own from (h_{t-1}, c_{t-1}), as the torch target does.

Variants: ``num_layers``, ``direction="bidirect"``, ``sequence_length`` and no initial states
(``initial_states=None``, Paddle's zeros).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from rnnspec import catalogue
from rnnspec.derivations.variants import Variant, run_params
from rnnspec.spec import conventions
from rnnspec.spec.contract import contract
from rnnspec.spec.conventions import paddle as layout
from rnnspec.spec.conventions._layout import GATES, gates
from rnnspec.spec.frameworks import require

#: what installs PaddlePaddle's CPU build (the version this target was checked with)
PADDLE_REQUIREMENT = "pip install paddlepaddle==3.3.1"
LAYERS = {"elman": "SimpleRNN", "lstm": "LSTM", "gru-reset-after": "GRU", "lstm-proj": "LSTM"}
WITH_CELL_STATE = catalogue.with_cell_state()


class PaddleRNN:
    """paddle.nn.SimpleRNN (tanh, relu), nn.LSTM (with proj_size: lstm-proj) and nn.GRU (reset after), CPU."""

    cells = tuple(LAYERS)
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "relu")
    variants = ("layers", "bidirectional", "lengths=zero", "state0=default")
    layers, bidirectional, lengths, default_state = 1, False, None, False

    def __init__(self, activation: str = "tanh") -> None:
        require("paddle", "paddle", PADDLE_REQUIREMENT).set_device("cpu")  # a GPU build would pick its GPU
        self.activation = activation

    @property
    def paddle(self):
        """Paddle, looked up rather than kept, so that the target pickles (a spawned worker)."""
        import paddle

        return paddle

    @property
    def variant(self) -> Variant:
        return Variant(self.layers, self.bidirectional, self.lengths, self.default_state)

    @contextmanager
    def _default_dtype(self, dtype: str):
        before = self.paddle.get_default_dtype()
        self.paddle.set_default_dtype(dtype)
        try:
            yield
        finally:
            self.paddle.set_default_dtype(before)

    def _cells(self, module) -> list:
        """Each run's cell, in the order of Variant.runs() (layer, then direction)."""
        if self.bidirectional:
            return [c for layer in module for c in (layer.cell_fw, layer.cell_bw)]
        return [layer.cell for layer in module]

    def _module(self, params, dtype: str, I: int):
        """The layer with the variant's layers and directions, each run's weights set on its cell."""
        variant = self.variant
        step = contract(self.cell).step_params
        runs = [conventions.to_framework("paddle", self.cell, run_params(params, step, variant, layer, d))
                for layer, d in variant.runs()]
        H = runs[0]["weight_hh_l0"].shape[0] // len(gates(GATES[self.cell]))  # the gates stacked along rows
        options = {"num_layers": variant.layers, "direction": "bidirect" if variant.bidirectional else "forward"}
        if self.cell == "elman":
            options["activation"] = self.activation
        if self.cell == "lstm-proj":
            options["proj_size"] = runs[0][layout.PROJECTION["weight_hr_l0"]].shape[1]
        with self._default_dtype(dtype):
            module = getattr(self.paddle.nn, LAYERS[self.cell])(I, H, **options)
        for cell, weights in zip(self._cells(module), runs):
            for name, value in weights.items():
                attribute = name.removesuffix("_l0").removeprefix("0.cell.")
                getattr(cell, attribute).set_value(np.ascontiguousarray(value))
        return module

    def _tensor(self, array, leaf: bool = False):
        tensor = self.paddle.to_tensor(np.array(array))
        tensor.stop_gradient = not leaf
        return tensor

    def _run(self, x, state0, params, lengths, every_c: bool):
        """The module, the leaves (x, then the initial states passed) and the outputs {"h"[, "c"], "h_n"[, "c_n"]}."""
        module = self._module(params, x.dtype.name, x.shape[2])
        variant = self.variant
        leaves = {"x": self._tensor(np.swapaxes(x, 0, 1), leaf=True)}
        stacked = (lambda v: v) if variant.stacked else (lambda v: v[None])
        leaves.update({k: self._tensor(stacked(state0[k]), leaf=True) for k in contract(self.cell, variant).state0})
        lstm = self.cell in WITH_CELL_STATE
        start = None if variant.default_state else (leaves["h0"], leaves["c0"]) if lstm else leaves["h0"]
        length = None if lengths is None else self._tensor(np.asarray(lengths).astype(np.int64))
        out, final = module(leaves["x"], start, length)
        finals = final if lstm else (final,)
        unstack = (lambda v: v) if variant.stacked else (lambda v: v[0])
        outputs = {"h": out.transpose([1, 0, 2])}
        if variant.plain:
            if lstm and every_c:
                outputs["c"] = self._every_c(module, leaves, start)
        else:
            outputs["h_n"] = unstack(finals[0])
            if lstm:
                outputs["c_n"] = unstack(finals[1])
        return module, leaves, outputs

    def _every_c(self, module, leaves, start):
        """c_t of every step: the layer's final cell state after one step from (h_{t-1}, c_{t-1})."""
        paddle = self.paddle
        states, every = start, []
        for t in range(leaves["x"].shape[1]):
            _, states = module(leaves["x"][:, t: t + 1], states)
            every.append(states[1][0])
        return paddle.stack(every)

    def _grads(self, module, leaves, outputs: list, cotangents: list) -> dict:
        """The gradients of every leaf and parameter, all asked for at once (PaddlePaddle/Paddle#58158)."""
        paddle = self.paddle
        cells = self._cells(module)
        names = [[n for n, _ in cell.named_parameters()] for cell in cells]
        tensors = list(leaves.values()) + [p for cell in cells for _, p in cell.named_parameters()]
        grads = paddle.grad(outputs, tensors, cotangents, allow_unused=True)
        # a tensor no output reached (every sequence of length 0) has no gradient: it is 0
        dtype = leaves["x"].numpy().dtype
        arrays = [np.zeros(t.shape, dtype) if g is None else g.numpy() for t, g in zip(tensors, grads)]
        out = dict(zip(leaves, arrays[: len(leaves)]))
        out["x"] = np.swapaxes(out["x"], 0, 1)
        variant = self.variant
        if not variant.stacked:  # one layer, one direction: the states are (B, H), not (1, B, H)
            out.update({k: out[k][0] for k in contract(self.cell, variant).state0})
        rest = iter(arrays[len(leaves):])
        for (layer, d), cell_names in zip(variant.runs(), names):
            run = {}
            for name in cell_names:
                key = layout.PROJECTION["weight_hr_l0"] if name == "weight_ho" else f"{name}_l0"
                run[key] = next(rest)
            suffix = variant.suffix(layer, d)
            canonical = conventions.gradients_from_framework("paddle", self.cell, run)
            out.update({k + suffix: v for k, v in canonical.items()})
        return out

    def forward(self, x, state0, params, lengths=None):
        with self.paddle.no_grad():
            _, _, outputs = self._run(x, state0, params, lengths, every_c=True)
        return {k: v.numpy() for k, v in outputs.items()}

    def vjp(self, x, state0, params, cotangents, lengths=None):
        module, leaves, outputs = self._run(x, state0, params, lengths, every_c=True)
        keys = sorted(outputs)
        return self._grads(module, leaves, [outputs[k] for k in keys],
                           [self._tensor(np.asarray(cotangents[k])) for k in keys])

    def loss(self, x, state0, params, targets, lengths=None):
        paddle = self.paddle
        F = paddle.nn.functional
        module, leaves, outputs = self._run(x, state0, params, lengths, every_c=False)
        V, c = self._tensor(params["V"], leaf=True), self._tensor(params["c"], leaf=True)
        h = outputs["h"]
        T, B = h.shape[:2]
        logits = F.linear(h, V.T, c).reshape([T * B, -1])
        labels = self._tensor(np.asarray(targets).reshape(-1).astype(np.int64))
        per_step = F.cross_entropy(logits, labels, reduction="none").reshape([T * B])
        if lengths is not None:
            valid = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
            per_step = per_step * self._tensor(valid.reshape(-1).astype(x.dtype))
        loss = per_step.sum()
        leaves = {**leaves, "V": V, "c": c}
        grads = self._grads(module, leaves, [loss], [paddle.ones_like(loss)])
        return float(loss.item()), grads
