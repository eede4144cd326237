"""The built-in target ``torch``: PyTorch's own layers (nn.RNN, nn.LSTM, nn.GRU), gradients by autograd.

The loss is nn.Linear's map and cross_entropy summed over time and batch. Weights go through
:mod:`rnnspec.spec.conventions` (stacked gates, two biases split at random). nn.LSTM returns the cell
state of the last step only; c_t of every step is its final state after one step of its own from
(h_{t-1}, c_{t-1}), chained from (h0, c0), so both outputs come from the layer itself (one call per
step; runs on the prefixes x[:t+1] would cost T^2 / 2 steps).

``torch-cuda`` runs the same layers on a GPU (cuDNN) with PyTorch's defaults, under which cuDNN may
use TF32 for float32 (``torch.backends.cudnn.allow_tf32`` is True by default): TF32 rounds the
products' inputs to 10 bits, far outside float32's tolerance, so the suite reports that as not
conformant. ``torch-cuda-no-tf32`` sets ``allow_tf32 = False`` first.
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

    device = "cpu"
    #: torch.backends.cudnn.allow_tf32 on a GPU (None: PyTorch's default, which allows it)
    allow_tf32: bool | None = None

    def __init__(self, activation: str = "tanh") -> None:
        name = "torch" if self.device == "cpu" else f"torch-{self.device}"
        try:
            import torch
        except ImportError as exc:
            raise TargetError(f"target {name!r}: PyTorch is not installed (pip install torch)") from exc
        if activation not in self.activations:
            raise TargetError(f"target {name!r}: nn.RNN has no {activation!r} nonlinearity")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise TargetError(f"target {name!r}: PyTorch sees no CUDA device (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda})")
        if self.device == "cuda" and self.allow_tf32 is not None:
            torch.backends.cudnn.allow_tf32 = self.allow_tf32
        self.torch = torch
        self.activation = activation

    def _tensor(self, array):
        return self.torch.from_numpy(np.array(array)).to(self.device)

    def _module(self, params, dtype):
        torch = self.torch
        weights = to_framework("torch", self.cell, params)
        H4, I = weights["weight_ih_l0"].shape
        H = weights["weight_hh_l0"].shape[1]
        options = {"nonlinearity": self.activation} if self.cell == "elman" else {}
        module = getattr(torch.nn, LAYERS[self.cell])(I, H, **options).to(dtype).to(self.device)
        with torch.no_grad():
            for name, value in weights.items():
                getattr(module, name).copy_(self._tensor(value))
        return module

    def _run(self, x, state0, params, every_c: bool):
        """The module, the leaf tensors (x and the initial states) and the outputs {"h", "c"}."""
        torch = self.torch
        dtype = torch.float32 if x.dtype == np.float32 else torch.float64
        module = self._module(params, dtype)
        leaves = {"x": self._tensor(x).requires_grad_(True)}
        leaves.update({k: self._tensor(v[None]).requires_grad_(True) for k, v in state0.items()})
        if self.cell != "lstm":
            out, _ = module(leaves["x"], leaves["h0"])
            return module, leaves, {"h": out}
        start = (leaves["h0"], leaves["c0"])
        out, _ = module(leaves["x"], start)
        outputs = {"h": out}
        if every_c:
            states, every = start, []
            for t in range(x.shape[0]):
                _, states = module(leaves["x"][t: t + 1], states)
                every.append(states[1][0])
            outputs["c"] = torch.stack(every)
        return module, leaves, outputs

    def _grads(self, module, leaves):
        grads = gradients_from_framework("torch", self.cell,
                                         {n: p.grad.cpu().numpy() for n, p in module.named_parameters()})
        grads["x"] = leaves["x"].grad.cpu().numpy()
        grads.update({k: v.grad[0].cpu().numpy() for k, v in leaves.items() if k != "x"})
        return grads

    def forward(self, x, state0, params):
        with self.torch.no_grad():
            _, _, outputs = self._run(x, state0, params, every_c=True)
        return {k: v.cpu().numpy() for k, v in outputs.items()}

    def vjp(self, x, state0, params, cotangents):
        module, leaves, outputs = self._run(x, state0, params, every_c=True)
        keys = sorted(outputs)
        self.torch.autograd.backward([outputs[k] for k in keys],
                                     [self._tensor(cotangents[k]) for k in keys])
        return self._grads(module, leaves)

    def loss(self, x, state0, params, targets):
        torch = self.torch
        module, leaves, outputs = self._run(x, state0, params, every_c=False)
        V = self._tensor(params["V"]).requires_grad_(True)
        c = self._tensor(params["c"]).requires_grad_(True)
        out = outputs["h"]
        T, B, H = out.shape
        logits = torch.nn.functional.linear(out, V, c).reshape(T * B, -1)
        loss = torch.nn.functional.cross_entropy(logits, self._tensor(np.asarray(targets).reshape(-1)),
                                                 reduction="sum")
        loss.backward()
        grads = self._grads(module, leaves)
        grads.update(V=V.grad.cpu().numpy(), c=c.grad.cpu().numpy())
        return float(loss.item()), grads


class TorchCUDA(TorchRNN):
    """The same layers on a CUDA device (cuDNN), with PyTorch's default TF32 setting."""

    device = "cuda"


class TorchCUDANoTF32(TorchCUDA):
    """On a CUDA device with ``torch.backends.cudnn.allow_tf32 = False``."""

    allow_tf32 = False
