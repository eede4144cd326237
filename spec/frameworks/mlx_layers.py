"""The built-in target ``mlx``: MLX's own layers (mlx.nn.RNN, LSTM, GRU) on its CPU backend, gradients by mx.vjp.

Weights go through :mod:`rnnspec.spec.conventions` (mlx.nn's attributes ``Wx``, ``Wh``, ``b``/``bias``,
``bhn``); the layer is given them with ``Module.update`` inside the differentiated function, as
``mlx.nn.value_and_grad`` does, so MLX's autodiff sees them as inputs. Inputs are batch-major (N, L, D).
nn.LSTM returns the hidden and cell states of every step, so ``c`` comes from the layer itself. The loss is
``mlx.nn.losses.cross_entropy`` (reduction "sum") of the head's logits h @ V^T + c, summed over time and batch,
its value and gradients from ``mx.value_and_grad``.

Dtypes: MLX computes float64 on its CPU backend (not on a GPU), so both dtypes are declared; NumPy float64
arrays must be converted with ``dtype=mx.float64`` named, since ``mx.array(a)`` of a float64 array is float32.
MLX 0.32.4's float64 exp (and so sigmoid and the loss's logsumexp) has float32 accuracy (docs/mlx-paddle.md,
defect 1): float64 fails there.
nn.RNN takes any callable as its nonlinearity: mlx.nn's tanh, sigmoid and relu, and the identity.
MLX's layers have one layer and one direction and take no sequence lengths; the one variant declared is
``state0=default``: the layer called without ``hidden`` (and ``cell``), a code path of its own in every MLX layer
(each step tests ``hidden is not None``; ml-explore/mlx#3249, fixed before 0.32.4, dropped nn.GRU's ``bhn`` there).
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions import gradients_from_framework, sequence_from, sequence_to, to_framework
from rnnspec.spec.conventions import mlx as layout
from rnnspec.spec.frameworks import require

#: what installs MLX's Linux CPU build (the version these targets were checked with)
MLX_REQUIREMENT = "pip install 'mlx[cpu]==0.32.4'"


class MlxRNN:
    """mlx.nn.RNN (tanh, sigmoid, relu, identity), nn.LSTM and nn.GRU (reset after) on MLX's CPU backend."""

    cells = tuple(layout.LAYERS)
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "sigmoid", "relu", "identity")
    variants = ("state0=default",)
    #: set by the suite before each case: True, no initial states are passed (state0 is {})
    default_state = False

    def __init__(self, activation: str = "tanh") -> None:
        for module in ("mlx.core", "mlx.nn"):
            require("mlx", module, MLX_REQUIREMENT)
        self.activation = activation

    # MLX's modules are looked up, not kept, so that the target pickles: a process that has used MLX cannot
    # fork a worker whose MLX works (its thread pool does not survive fork), and a spawned one gets it by pickle
    @property
    def mx(self):
        import mlx.core

        mlx.core.set_default_device(mlx.core.cpu)
        return mlx.core

    @property
    def nn(self):
        import mlx.nn

        return mlx.nn

    def _nonlinearity(self):
        nn = self.nn
        return {"tanh": nn.tanh, "sigmoid": nn.sigmoid, "relu": nn.relu, "identity": lambda z: z}[self.activation]

    def _layer(self, I: int, H: int):
        nn = self.nn
        if self.cell == "elman":
            return nn.RNN(I, H, nonlinearity=self._nonlinearity())
        return {"lstm": nn.LSTM, "gru-reset-after": nn.GRU}[self.cell](I, H)

    def _array(self, value, dtype):
        return self.mx.array(np.asarray(value), dtype=dtype)

    def _function(self, x, state0, params, targets=None):
        """(f, names, args): f(*args) lists the outputs (or is the loss, given ``targets``); ``names`` the canonical
        names of the arguments' gradients (the layer's weights as conventions' keys, then x, h0 (c0), V, c)."""
        mx = self.mx
        head = targets is not None
        labels = mx.array(sequence_to("mlx", np.asarray(targets)).astype(np.int32)) if head else None
        dtype = mx.float64 if x.dtype == np.float64 else mx.float32
        weights = to_framework("mlx", self.cell, params)
        keys = list(weights)
        states = [] if self.default_state else ["h0", "c0"] if self.cell == "lstm" else ["h0"]
        layer = self._layer(x.shape[2], weights[layout.WEIGHTS[self.cell][1]].shape[1])
        args = [self._array(weights[k], dtype) for k in keys] + [self._array(sequence_to("mlx", x), dtype)]
        args += [self._array(state0[k], dtype) for k in states]
        if head:
            args += [self._array(params["V"], dtype), self._array(params["c"], dtype)]
        n = len(keys)

        def f(*a):
            layer.update(dict(zip(keys, a[:n])))  # the weights as this function's inputs
            out = layer(a[n], *a[n + 1: n + 1 + len(states)])
            if not head:
                return list(out) if self.cell == "lstm" else [out]
            h = out[0] if self.cell == "lstm" else out
            V, c = a[n + 1 + len(states):]
            logits = h @ V.T + c
            return self.nn.losses.cross_entropy(logits, labels, reduction="sum")

        return f, keys + ["x"] + states + (["V", "c"] if head else []), args

    def _unpack(self, names: list[str], grads) -> dict:
        arrays = [np.array(g) for g in grads]
        n = names.index("x")  # the layer's weights come first
        out = gradients_from_framework("mlx", self.cell, dict(zip(names[:n], arrays[:n])))
        out.update(zip(names[n:], arrays[n:]))
        out["x"] = sequence_from("mlx", out["x"])
        return out

    def forward(self, x, state0, params):
        f, _, args = self._function(x, state0, params)
        outputs = f(*args)
        self.mx.eval(outputs)
        return {k: sequence_from("mlx", np.array(o)) for k, o in zip(["h", "c"], outputs)}

    def vjp(self, x, state0, params, cotangents):
        mx = self.mx
        f, names, args = self._function(x, state0, params)
        keys = ["h", "c"] if self.cell == "lstm" else ["h"]
        given = [self._array(sequence_to("mlx", cotangents[k]), args[0].dtype) for k in keys]
        _, grads = mx.vjp(f, args, given)
        mx.eval(grads)
        return self._unpack(names, grads)

    def loss(self, x, state0, params, targets):
        mx = self.mx
        f, names, args = self._function(x, state0, params, targets)
        value, grads = mx.value_and_grad(f, argnums=list(range(len(args))))(*args)
        mx.eval(value, grads)
        return float(value.item()), self._unpack(names, grads)
