"""The built-in target ``torch``: PyTorch's own layers (nn.RNN, nn.LSTM, nn.GRU), gradients by autograd.

The loss is nn.Linear's map and cross_entropy summed over time and batch. Weights go through
:mod:`rnnspec.spec.conventions` (stacked gates, two biases split at random). nn.LSTM returns the cell
state of the last step only; c_t of every step is its final state on the prefix x[:t+1], so both
outputs come from the layer itself.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions import gradients_from_framework, to_framework
from rnnspec.spec.targets import TargetError

LAYERS = {"elman": "RNN", "lstm": "LSTM", "gru-reset-after": "GRU"}


class TorchRNN:
    """torch.nn.RNN (tanh, relu), nn.LSTM and nn.GRU (reset after) on the CPU."""

    cells = tuple(LAYERS)
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "relu")

    def __init__(self, activation: str = "tanh") -> None:
        try:
            import torch
        except ImportError as exc:
            raise TargetError("target 'torch': PyTorch is not installed (pip install torch)") from exc
        if activation not in self.activations:
            raise TargetError(f"target 'torch': nn.RNN has no {activation!r} nonlinearity")
        self.torch = torch
        self.activation = activation

    def _module(self, params, dtype):
        torch = self.torch
        weights = to_framework("torch", self.cell, params)
        H4, I = weights["weight_ih_l0"].shape
        H = weights["weight_hh_l0"].shape[1]
        options = {"nonlinearity": self.activation} if self.cell == "elman" else {}
        module = getattr(torch.nn, LAYERS[self.cell])(I, H, **options).to(dtype)
        with torch.no_grad():
            for name, value in weights.items():
                getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        return module

    def _run(self, x, state0, params, every_c: bool):
        """The module, the leaf tensors (x and the initial states) and the outputs {"h", "c"}."""
        torch = self.torch
        dtype = torch.float32 if x.dtype == np.float32 else torch.float64
        module = self._module(params, dtype)
        leaves = {"x": torch.from_numpy(np.array(x)).requires_grad_(True)}
        leaves.update({k: torch.from_numpy(np.array(v))[None].requires_grad_(True) for k, v in state0.items()})
        if self.cell != "lstm":
            out, _ = module(leaves["x"], leaves["h0"])
            return module, leaves, {"h": out}
        start = (leaves["h0"], leaves["c0"])
        out, _ = module(leaves["x"], start)
        outputs = {"h": out}
        if every_c:
            outputs["c"] = torch.stack([module(leaves["x"][: t + 1], start)[1][1][0] for t in range(x.shape[0])])
        return module, leaves, outputs

    def _grads(self, module, leaves):
        grads = gradients_from_framework("torch", self.cell,
                                         {n: p.grad.numpy() for n, p in module.named_parameters()})
        grads["x"] = leaves["x"].grad.numpy()
        grads.update({k: v.grad[0].numpy() for k, v in leaves.items() if k != "x"})
        return grads

    def forward(self, x, state0, params):
        with self.torch.no_grad():
            _, _, outputs = self._run(x, state0, params, every_c=True)
        return {k: v.numpy() for k, v in outputs.items()}

    def vjp(self, x, state0, params, cotangents):
        module, leaves, outputs = self._run(x, state0, params, every_c=True)
        keys = sorted(outputs)
        self.torch.autograd.backward([outputs[k] for k in keys],
                                     [self.torch.from_numpy(np.array(cotangents[k])) for k in keys])
        return self._grads(module, leaves)

    def loss(self, x, state0, params, targets):
        torch = self.torch
        module, leaves, outputs = self._run(x, state0, params, every_c=False)
        V = torch.from_numpy(np.array(params["V"])).requires_grad_(True)
        c = torch.from_numpy(np.array(params["c"])).requires_grad_(True)
        out = outputs["h"]
        T, B, H = out.shape
        logits = torch.nn.functional.linear(out, V, c).reshape(T * B, -1)
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.asarray(targets).reshape(-1)),
                                                 reduction="sum")
        loss.backward()
        grads = self._grads(module, leaves)
        grads.update(V=V.grad.numpy(), c=c.grad.numpy())
        return float(loss.item()), grads
