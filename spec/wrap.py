"""Helpers that turn plain functions into an implementation of the contract.

``from_functions`` wraps NumPy-level functions; ``from_torch`` wraps one PyTorch function of the
forward pass and lets autograd supply the VJP and the loss gradients:

    def my_rnn(x, h0, U, W, b):            # torch tensors in, all states (T, B, H) out
        ...
    impl = from_torch(my_rnn, dtypes=("float32", "float64"))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class FunctionTarget:
    """An implementation made of functions; missing ones are reported 'not provided'."""

    cell = "elman"

    def __init__(self, forward: Callable, vjp: Callable | None = None, loss: Callable | None = None, *,
                 dtypes: tuple[str, ...] = ("float64",), activation: str = "tanh",
                 activations: tuple[str, ...] | None = None) -> None:
        self._forward, self._vjp, self._loss = forward, vjp, loss
        self.dtypes = tuple(dtypes)
        self.activation = activation
        self.activations = tuple(activations) if activations else (activation,)

    def forward(self, x, state0, params):
        return self._call(self._forward, x, state0, params)

    @property
    def vjp(self):
        """The wrapped vjp, or None (the contract's 'not provided') when none was given."""
        if self._vjp is None:
            return None
        return lambda x, state0, params, cotangents: self._call(self._vjp, x, state0, params, cotangents)

    @property
    def loss(self):
        """The wrapped loss, or None when none was given."""
        if self._loss is None:
            return None
        return lambda x, state0, params, targets: self._call(self._loss, x, state0, params, targets)

    def _call(self, function, *args):
        try:
            return function(*args, activation=self.activation)
        except TypeError as exc:
            if "activation" not in str(exc):
                raise
            return function(*args)


def from_functions(forward: Callable, vjp: Callable | None = None, loss: Callable | None = None, **options):
    """forward(x, state0, params) -> {"h"}, vjp(..., cotangents) -> grads, loss(..., targets) -> (L, grads).

    Each function may take an ``activation=`` keyword; options are ``dtypes``, ``activation`` and
    ``activations`` (the contract's attributes).
    """
    return FunctionTarget(forward, vjp, loss, **options)


def from_torch(step: Callable, *, dtypes: tuple[str, ...] = ("float32", "float64"), activation: str = "tanh"):
    """``step(x, h0, U, W, b) -> h`` on torch tensors (all states, (T, B, H)); autograd does the rest.

    The loss is the contract's: softmax cross-entropy of V h_t + c, summed over time and batch.
    """
    import torch

    def tensors(x, state0, params, names):
        out = {"x": torch.tensor(np.array(x), requires_grad=True),
               "h0": torch.tensor(np.array(state0["h0"]), requires_grad=True)}
        out.update({k: torch.tensor(np.array(params[k]), requires_grad=True) for k in names})
        return out

    def forward(x, state0, params):
        t = tensors(x, state0, params, ("U", "W", "b"))
        with torch.no_grad():
            return {"h": step(t["x"], t["h0"], t["U"], t["W"], t["b"]).numpy()}

    def vjp(x, state0, params, cotangents):
        t = tensors(x, state0, params, ("U", "W", "b"))
        h = step(t["x"], t["h0"], t["U"], t["W"], t["b"])
        h.backward(torch.tensor(np.array(cotangents["h"])))
        return {k: v.grad.numpy() for k, v in t.items()}

    def loss(x, state0, params, targets):
        t = tensors(x, state0, params, ("U", "W", "b", "V", "c"))
        h = step(t["x"], t["h0"], t["U"], t["W"], t["b"])
        T, B, _ = h.shape
        logits = (h @ t["V"].T + t["c"]).reshape(T * B, -1)
        value = torch.nn.functional.cross_entropy(logits, torch.tensor(np.asarray(targets).reshape(-1)),
                                                  reduction="sum")
        value.backward()
        return float(value.item()), {k: v.grad.numpy() for k, v in t.items()}

    return FunctionTarget(forward, vjp, loss, dtypes=dtypes, activation=activation)
