"""The built-in target ``flax``: flax.linen's own cells scanned by flax.linen.RNN, gradients by jax.vjp.

SimpleCell (tanh, relu), LSTMCell, GRUCell (gru-reset-after); Flax has no reset-before GRU (see
:mod:`rnnspec.spec.conventions.flax`). Weights through :mod:`rnnspec.spec.conventions`, inputs
batch-major as nn.RNN wants them, float64 with ``jax_enable_x64``. The loss is the head's logits and
optax's ``softmax_cross_entropy_with_integer_labels`` summed over time and batch. An LSTM's c_t of
every step comes from the same scan over Flax's own LSTMCell made to output its whole carry.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions import gradients_from_framework, sequence_from, sequence_to, to_framework
from rnnspec.spec.frameworks import jax_vjp, require


class FlaxRNN:
    """flax.linen.RNN over SimpleCell, LSTMCell or GRUCell, on JAX's CPU backend."""

    cells = ("elman", "lstm", "gru-reset-after")
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "relu")

    def __init__(self, activation: str = "tanh") -> None:
        jax = require("flax", "jax", "flax")
        jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64
        self.jax = jax
        self.nn = require("flax", "flax.linen", "flax")
        self.optax = require("flax", "optax", "flax")
        self.activation = activation

    def _rnn(self, hidden: int, every_c: bool):
        nn = self.nn
        if self.cell == "elman":
            cell = nn.SimpleCell(features=hidden, activation_fn=getattr(nn, self.activation))
        elif self.cell == "lstm":
            cell = (_carry_cell(nn) if every_c else nn.LSTMCell)(features=hidden)
        else:
            cell = nn.GRUCell(features=hidden)
        return nn.RNN(cell)

    def _function(self, x, state0, params, targets=None):
        """(f, args, unpack): f(*args) lists the outputs; unpack names the gradients of args."""
        jnp = self.jax.numpy
        every_c = self.cell == "lstm" and targets is None
        rnn = self._rnn(state0["h0"].shape[-1], every_c)
        weights = to_framework("flax", self.cell, params)
        head = ["V", "c"] if targets is not None else []
        states = ["h0", "c0"] if self.cell == "lstm" else ["h0"]
        args = [weights, sequence_to("flax", x), *[state0[k] for k in states], *[params[k] for k in head]]

        def f(w, xs, *rest):
            s, hd = rest[: len(states)], rest[len(states):]
            carry = (s[1], s[0]) if self.cell == "lstm" else s[0]  # Flax's LSTM carry is (c, h)
            out = rnn.apply({"params": {"cell": w}}, xs, initial_carry=carry)
            if every_c:
                (c, h) = out
                return [h, c]
            if targets is None:
                return [out]
            logits = jnp.einsum("bth,kh->btk", out, hd[0]) + hd[1]
            labels = jnp.asarray(sequence_to("flax", np.asarray(targets)))
            return [jnp.sum(self.optax.softmax_cross_entropy_with_integer_labels(logits, labels))]

        def unpack(grads):
            out = gradients_from_framework("flax", self.cell, grads[0])
            out["x"] = sequence_from("flax", np.asarray(grads[1]))
            out.update({k: np.asarray(g) for k, g in zip(states + head, grads[2:])})
            return out

        return f, args, unpack

    def forward(self, x, state0, params):
        f, args, _ = self._function(x, state0, params)
        outputs = self.jax.jit(f)(*args)
        return {k: sequence_from("flax", np.asarray(o)) for k, o in zip(["h", "c"], outputs)}

    def vjp(self, x, state0, params, cotangents):
        f, args, unpack = self._function(x, state0, params)
        keys = ["h", "c"] if self.cell == "lstm" else ["h"]
        _, grads = jax_vjp(f, args, [sequence_to("flax", np.asarray(cotangents[k])) for k in keys])
        return unpack(grads)

    def loss(self, x, state0, params, targets):
        f, args, unpack = self._function(x, state0, params, targets=targets)
        (value,), grads = jax_vjp(f, args, [np.ones((), x.dtype)])
        return float(value), unpack(grads)


def _carry_cell(nn):
    """Flax's LSTMCell, its per-step output widened to its whole carry (c_t, h_t)."""

    class CarryLSTMCell(nn.LSTMCell):
        @nn.compact
        def __call__(self, carry, inputs):
            carry, _ = super().__call__(carry, inputs)
            return carry, carry

    return CarryLSTMCell
