"""Helpers that turn plain functions into an implementation of the contract.

``from_functions`` wraps NumPy-level functions; ``from_torch`` wraps one PyTorch function of the
forward pass and lets autograd supply the VJP and the loss gradients:

    def my_rnn(x, h0, U, W, b):            # Elman: torch tensors in, all states (T, B, H) out
        ...
    impl = from_torch(my_rnn, dtypes=("float32", "float64"))

    def my_lstm(x, state0, params):        # any other cell: dicts of tensors in, {"h", "c"} out
        ...
    impl = from_torch(my_lstm, cell="lstm")
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnspec import catalogue


class FunctionTarget:
    """An implementation made of functions; missing ones are reported 'not provided'."""

    def __init__(self, forward: Callable, vjp: Callable | None = None, loss: Callable | None = None, *,
                 dtypes: tuple[str, ...] = ("float64",), activation: str = "tanh",
                 activations: tuple[str, ...] | None = None, cell: str = "elman") -> None:
        self._forward, self._vjp, self._loss = forward, vjp, loss
        self.cell = cell
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

    Each function may take an ``activation=`` keyword; options are ``cell``, ``dtypes``, ``activation``
    and ``activations`` (the contract's attributes).
    """
    return FunctionTarget(forward, vjp, loss, **options)


def from_torch(step: Callable, *, dtypes: tuple[str, ...] = catalogue.DTYPES, activation: str = "tanh",
               cell: str = "elman"):
    """A target from one PyTorch function of the forward pass; autograd does the rest.

    Elman: ``step(x, h0, U, W, b) -> h`` (all states, (T, B, H)). Any other cell: ``step(x, state0,
    params) -> {"h": ..., "c": ...}``, dicts of tensors keyed as the contract keys them (``h0``, ``c0``;
    ``U_i`` ... ``b_hn``), every state for every step. The loss is the contract's: softmax cross-entropy
    of V h_t + c, summed over time and batch.
    """
    import torch

    from rnnspec.spec.contract import contract

    terms = contract(cell)

    def tensors(x, state0, params, names):
        out = {"x": torch.tensor(np.array(x), requires_grad=True)}
        out.update({k: torch.tensor(np.array(state0[k]), requires_grad=True) for k in terms.state0})
        out.update({k: torch.tensor(np.array(params[k]), requires_grad=True) for k in names})
        return out

    def run(t) -> dict:
        if cell == "elman":
            return {"h": step(t["x"], t["h0"], t["U"], t["W"], t["b"])}
        return step(t["x"], {k: t[k] for k in terms.state0}, {k: t[k] for k in terms.step_params})

    def forward(x, state0, params):
        t = tensors(x, state0, params, terms.step_params)
        with torch.no_grad():
            return {k: v.numpy() for k, v in run(t).items()}

    def vjp(x, state0, params, cotangents):
        t = tensors(x, state0, params, terms.step_params)
        out = run(t)
        torch.autograd.backward([out[k] for k in terms.states],
                                [torch.tensor(np.array(cotangents[k])) for k in terms.states])
        return {k: v.grad.numpy() for k, v in t.items()}

    def loss(x, state0, params, targets):
        t = tensors(x, state0, params, terms.step_params + terms.head_params)
        h = run(t)["h"]
        T, B, _ = h.shape
        logits = (h @ t["V"].T + t["c"]).reshape(T * B, -1)
        value = torch.nn.functional.cross_entropy(logits, torch.tensor(np.asarray(targets).reshape(-1)),
                                                  reduction="sum")
        value.backward()
        return float(value.item()), {k: v.grad.numpy() for k, v in t.items()}

    return FunctionTarget(forward, vjp, loss, dtypes=dtypes, activation=activation, cell=cell)
