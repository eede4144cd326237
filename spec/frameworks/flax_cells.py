"""The built-in target ``flax``: flax.linen's own cells scanned by flax.linen.RNN, gradients by jax.vjp.

SimpleCell (tanh, relu), LSTMCell, GRUCell (gru-reset-after), MGUCell (mgu-flax, not the MGU paper's
cell); Flax has no reset-before GRU and no paper MGU (see :mod:`rnnspec.spec.conventions.flax`). Weights
through :mod:`rnnspec.spec.conventions`, inputs batch-major as nn.RNN wants them, float64 with
``jax_enable_x64``. The loss is the head's logits and optax's ``softmax_cross_entropy_with_integer_labels``
summed over time and batch. An LSTM's c_t of every step comes from the same scan over Flax's own LSTMCell
made to output its whole carry.

``state0=default`` calls nn.RNN without ``initial_carry``: it takes the cell's ``initialize_carry``, zeros
(``carry_init``'s default) in the cell's ``param_dtype``, so the cells are built with ``param_dtype`` the call's
dtype, as a float64 Flax model is (with the default float32, a float64 scan fails on its carry's dtype). The
target runs one forward layer over full sequences: nn.RNN has no stacking, and its reverse direction and
``seq_lengths`` are not wired here.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.contract import default_state0
from rnnspec.spec.conventions import cells_of, gradients_from_framework, sequence_from, sequence_to, to_framework
from rnnspec.spec.frameworks import jax_jit, jax_vjp, require


class FlaxRNN:
    """flax.linen.RNN over SimpleCell, LSTMCell, GRUCell or MGUCell, on JAX's CPU backend."""

    #: every cell the Flax layout has a layer for (spec/conventions/flax.py), Elman first (the default)
    cells = cells_of("flax")
    #: jax.jit compiles a program per shape (seconds each): the cases come on a few shapes, edge sizes among them
    #: (:func:`rnnspec.spec.cases.few_shapes`), so the default check takes under a minute; --shapes all for more
    shapes = 4
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "relu")
    variants = ("state0=default",)
    layers, bidirectional, lengths = 1, False, None
    #: True (state0=default): state0 is {} and nn.RNN gets no initial_carry (the cell's initialize_carry)
    default_state = False

    def __init__(self, activation: str = "tanh") -> None:
        jax = require("flax", "jax", "flax")
        jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64
        self.jax = jax
        self.nn = require("flax", "flax.linen", "flax")
        self.optax = require("flax", "optax", "flax")
        self.activation = activation
        self._programs: dict = {}  # see _program

    def _rnn(self, hidden: int, every_c: bool, dtype: str):
        nn = self.nn
        # param_dtype: the dtype of the default carry (initialize_carry), and of a model of this dtype's weights
        options = {"features": hidden, "param_dtype": dtype}
        if self.cell == "elman":
            cell = nn.SimpleCell(activation_fn=getattr(nn, self.activation), **options)
        elif self.cell == "lstm":
            cell = (_carry_cell(nn) if every_c else nn.LSTMCell)(**options)
        elif self.cell == "mgu-flax":
            # reset_gate=True is the default; named because reset_gate=False computes another cell
            cell = nn.MGUCell(reset_gate=True, **options)
        else:
            cell = nn.GRUCell(**options)
        return nn.RNN(cell)

    def _states(self) -> list[str]:
        """The initial states passed to nn.RNN: none under state0=default."""
        return [] if self.default_state else ["h0", "c0"] if self.cell == "lstm" else ["h0"]

    def _program(self, hidden: int, every_c: bool, head: bool, dtype: str):
        """f(weights, xs, *states[, V, c, labels]) listing the outputs, one function per cell, activation,
        H, dtype and kind, kept: JAX compiles a function once per shape, and the suite calls each method twice
        on a case (its determinism clause), so a function made anew per call would double the compiling."""
        key = (self.cell, self.activation, hidden, every_c, head, dtype, self.default_state)
        if key in self._programs:
            return self._programs[key]
        jnp = self.jax.numpy
        rnn = self._rnn(hidden, every_c, dtype)
        lstm = self.cell == "lstm"
        optax = self.optax
        n_states = len(self._states())

        def f(w, xs, *rest):
            states = rest[:n_states]
            if not states:  # state0=default: nn.RNN's own initial carry
                carry = None
            else:
                carry = (states[1], states[0]) if lstm else states[0]  # Flax's LSTM carry is (c, h)
            out = rnn.apply({"params": {"cell": w}}, xs, initial_carry=carry)
            if every_c:
                (c, h) = out
                return [h, c]
            if not head:
                return [out]
            V, c, labels = rest[n_states:]
            logits = jnp.einsum("bth,kh->btk", out, V) + c
            return [jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels))]

        self._programs[key] = f
        return f

    def _function(self, x, state0, params, targets=None):
        """(f, args, constants, unpack): f(*args, *constants) lists the outputs; unpack names the gradients
        of args."""
        every_c = self.cell == "lstm" and targets is None
        hidden = (state0 or default_state0(self.cell, "", x, params))["h0"].shape[-1]  # sizes off the parameters
        f = self._program(hidden, every_c, targets is not None, x.dtype.name)
        weights = to_framework("flax", self.cell, params)
        head = ["V", "c"] if targets is not None else []
        states = self._states()
        args = [weights, sequence_to("flax", x), *[state0[k] for k in states], *[params[k] for k in head]]
        constants = () if targets is None else (sequence_to("flax", np.asarray(targets)),)

        def unpack(grads):
            out = gradients_from_framework("flax", self.cell, grads[0])
            out["x"] = sequence_from("flax", np.asarray(grads[1]))
            out.update({k: np.asarray(g) for k, g in zip(states + head, grads[2:])})
            return out

        return f, args, constants, unpack

    def forward(self, x, state0, params):
        f, args, _, _ = self._function(x, state0, params)
        outputs = jax_jit(f)(*args)
        return {k: sequence_from("flax", np.asarray(o)) for k, o in zip(["h", "c"], outputs)}

    def vjp(self, x, state0, params, cotangents):
        f, args, _, unpack = self._function(x, state0, params)
        keys = ["h", "c"] if self.cell == "lstm" else ["h"]
        _, grads = jax_vjp(f, args, [sequence_to("flax", np.asarray(cotangents[k])) for k in keys])
        return unpack(grads)

    def loss(self, x, state0, params, targets):
        f, args, constants, unpack = self._function(x, state0, params, targets=targets)
        (value,), grads = jax_vjp(f, args, [np.ones((), x.dtype)], constants)
        return float(value), unpack(grads)


def _carry_cell(nn):
    """Flax's LSTMCell, its per-step output widened to its whole carry (c_t, h_t)."""

    class CarryLSTMCell(nn.LSTMCell):
        @nn.compact
        def __call__(self, carry, inputs):
            carry, _ = super().__call__(carry, inputs)
            return carry, carry

    return CarryLSTMCell
