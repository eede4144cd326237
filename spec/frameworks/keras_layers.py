"""The built-in targets ``keras`` (``keras-jax``, ``keras-torch``, ``keras-tensorflow``): Keras 3's own layers.

SimpleRNN (tanh, relu), LSTM, and GRU with ``reset_after=True`` (gru-reset-after) and ``False``
(gru-reset-before), weights through :mod:`rnnspec.spec.conventions`, inputs batch-major as Keras
wants them, gradients by the backend's own differentiation of ``layer.stateless_call`` (jax.vjp,
torch.autograd, tf.GradientTape). The loss is ``keras.ops``: the head's logits and
``sparse_categorical_crossentropy(from_logits=True)`` summed over time and batch.

Keras's LSTM returns the cell state of the last step only. On the torch backend, whose LSTM layer
runs a fused loop of its own on the CPU (not the cell's), c_t of every step is the layer's own final
state after one step from (h_{t-1}, c_{t-1}), chained from the initial states. The jax and
tensorflow backends' LSTM layers run off cuDNN the generic loop over Keras's ``LSTMCell``: there c_t
comes from ``keras.layers.RNN`` over that cell made to output its whole carry [h_t, c_t], on the
same weights (one compiled loop, where T one-step calls would be traced into the program).

Variants (one layer): ``lengths=carry`` passes the mask of the sequences' lengths to the layer, which is what
Keras masking computes: the state is frozen at padded steps and the output repeats the last one (zeros before
the first); ``bidirectional`` adds a ``go_backwards`` layer with the reverse direction's weights, whose
outputs (in its processing order) are flipped back to time order, as ``keras.layers.Bidirectional`` does.
The final states come from ``return_state``. The loss counts the valid steps.
``state0=default`` calls the layers without ``initial_state`` (Keras's own zeros), alone or with the others; the
torch backend's LSTM then chains its per-step c_t from that same default first step.

Keras fixes its backend when first imported: a process that imported Keras with another backend
cannot build this target (it says so).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from rnnspec.derivations.variants import Variant, run_params
from rnnspec.spec.contract import contract
from rnnspec.spec.conventions import KERAS_WEIGHTS, gradients_from_framework, sequence_from, sequence_to, to_framework
from rnnspec.spec.frameworks import TORCH_REQUIREMENT, jax_jit, jax_vjp, require
from rnnspec.spec.targets import TargetError

BACKENDS = ("jax", "torch", "tensorflow")
#: the shapes of a run's cases on a backend that compiles per shape (jax)
COMPILED_SHAPES = 4
BACKEND_INSTALL = {"jax": "pip install jax", "torch": f"pip install {TORCH_REQUIREMENT}",
                   "tensorflow": "pip install tensorflow-cpu"}
#: the backend of the plain ``keras`` target when KERAS_BACKEND is not set (CI installs torch)
DEFAULT_BACKEND = "torch"


def _import_keras(target: str, backend: str):
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
        if keras.backend.backend() != backend:
            raise TargetError(f"target {target!r}: this process imported Keras with the "
                              f"{keras.backend.backend()!r} backend, and Keras cannot switch to {backend!r}")
        return keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices, on every worker
    missing = [m for m in ("keras", backend) if importlib.util.find_spec(m) is None]
    if len(missing) == 2:  # name both installs at once, not one after the other
        raise TargetError(f"target {target!r}: neither keras nor its {backend} backend is installed; "
                          f"pip install 'rnnspec[keras]' and {BACKEND_INSTALL[backend]}")
    require(target, backend, BACKEND_INSTALL[backend])
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64
    return require(target, "keras", "keras")


def _vjp_jax(fn, args, cotangents, constants=()):
    outputs, grads = jax_vjp(fn, args, cotangents, constants)
    return [np.asarray(o) for o in outputs], [np.asarray(g) for g in grads]


def _vjp_torch(fn, args, cotangents, constants=()):
    import torch

    leaves = [torch.from_numpy(np.array(a)).requires_grad_(True) for a in args]
    outputs = fn(*leaves, *constants)
    grads = torch.autograd.grad(outputs, leaves, [torch.from_numpy(np.array(c)) for c in cotangents],
                                allow_unused=True)
    zero = lambda g, a: np.zeros_like(a) if g is None else g.detach().numpy()
    return [o.detach().numpy() for o in outputs], [zero(g, a) for g, a in zip(grads, args)]


def _vjp_tensorflow(fn, args, cotangents, constants=()):
    import tensorflow as tf

    leaves = [tf.constant(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(leaves)
        outputs = fn(*leaves, *constants)
    grads = tape.gradient(outputs, leaves, output_gradients=[tf.constant(c) for c in cotangents])
    zero = lambda g, a: np.zeros_like(a) if g is None else g.numpy()
    return [o.numpy() for o in outputs], [zero(g, a) for g, a in zip(grads, args)]


_VJPS = {"jax": _vjp_jax, "torch": _vjp_torch, "tensorflow": _vjp_tensorflow}


class KerasRNN:
    """Keras 3 SimpleRNN / LSTM / GRU on the backend ``backend`` (the KERAS_BACKEND variable, else torch)."""

    cells = ("elman", "lstm", "gru-reset-after", "gru-reset-before")
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "relu")
    backend: str | None = None
    variants = ("bidirectional", "lengths=carry", "state0=default")
    layers, bidirectional, lengths = 1, False, None
    #: True (state0=default): state0 is {} and the layers get no initial_state
    default_state = False

    def __init__(self, activation: str = "tanh") -> None:
        backend = self.backend or os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND)
        name = f"keras-{backend}" if self.backend else "keras"
        if backend not in BACKENDS:
            raise TargetError(f"target {name!r}: KERAS_BACKEND={backend!r} is not one of {BACKENDS}")
        self.keras = _import_keras(name, backend)
        self.backend = backend
        self.activation = activation
        self._programs: dict = {}  # see _program

    @property
    def shapes(self) -> int | None:
        """On jax, whose jit compiles a program per shape (seconds each), the cases come on a few shapes
        (:func:`rnnspec.spec.cases.few_shapes`): the default check within a minute; ``--shapes all`` for every one."""
        return COMPILED_SHAPES if self.backend == "jax" else None

    def _arguments(self, x, state0, params, targets=None) -> tuple[list, list[str], list[str]]:
        """The differentiated arguments: Keras's weights, x batch-major, the initial states, the head's V and c
        (for the loss); and the names of the states and of the head's parameters among them."""
        weights = to_framework("keras", self.cell, params)
        states = self._states()
        head = ["V", "c"] if targets is not None else []
        args = [weights[k] for k in KERAS_WEIGHTS] + [sequence_to("keras", x)] + [state0[k] for k in states] + \
            [params[k] for k in head]
        return args, states, head

    def _states(self) -> list[str]:
        """The initial states passed to the layer: none under state0=default."""
        return [] if self.default_state else ["h0", "c0"] if self.cell == "lstm" else ["h0"]

    @staticmethod
    def _hidden(weights: dict) -> int:
        """H, read off Keras's recurrent kernel (H, G * H)."""
        return np.shape(weights["recurrent_kernel"])[0]

    def _unpack(self, grads, names: list[str]) -> dict:
        """The canonical gradients from those of :meth:`_arguments`."""
        out = gradients_from_framework("keras", self.cell, dict(zip(KERAS_WEIGHTS, grads[:3])))
        out["x"] = sequence_from("keras", grads[3])
        out.update(zip(names, grads[4:]))
        return out

    def _layer(self, H: int, **options):
        """The Keras layer of the cell: SimpleRNN, LSTM, or GRU with reset_after per the cell."""
        layers = self.keras.layers
        if self.cell == "elman":
            return layers.SimpleRNN(H, activation=self.activation, **options)
        if self.cell == "lstm":
            return layers.LSTM(H, **options)
        return layers.GRU(H, reset_after=self.cell == "gru-reset-after", **options)

    def _layers(self, I: int, H: int, dtype: str):
        """The layer under test and, for the LSTM, the carry-exposing RNN beside it, built on shape (I,)."""
        keras, cell = self.keras, self.cell
        options = {"return_sequences": True, "dtype": dtype}
        layers = [self._layer(H, return_state=cell == "lstm", **options)]
        if cell == "lstm" and self.backend != "torch":
            layers.append(keras.layers.RNN(_carry_cell(keras)(H, dtype=dtype), **options))
        for each in layers:
            each.build((None, None, I))
        return layers

    def _program(self, I: int, H: int, dtype: str, head: bool):
        """f(*weights, xs, *states[, V, c, labels]) listing the outputs, one function (and its layers) per
        cell, activation, sizes and kind, kept: JAX compiles a function once per shape, and the suite calls
        each method twice on a case (its determinism clause)."""
        key = (self.cell, self.activation, I, H, dtype, head, self.default_state)
        if key in self._programs:
            return self._programs[key]
        keras, ops = self.keras, self.keras.ops
        layers = self._layers(I, H, dtype)
        frozen = [[v.value for v in layer.non_trainable_variables] for layer in layers]
        n_states = len(self._states())

        def f(*a):
            w, xs, rest = a[:3], a[3], a[4 + n_states:]
            s = list(a[4:4 + n_states]) or None  # None: the layer's own initial state (state0=default)
            h = layers[0].stateless_call(list(w), frozen[0], xs, initial_state=s)[0]
            h = h[0] if self.cell == "lstm" else h  # the LSTM also returns its final states
            if head:
                V, c, labels = rest
                logits = ops.matmul(h, ops.transpose(V)) + c
                labels = ops.convert_to_tensor(labels)
                return [ops.sum(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))]
            outputs = [h]
            if self.cell == "lstm":
                outputs.append(every_cell_state(w, xs, s))
            return outputs

        def every_cell_state(w, xs, s):
            if self.backend != "torch":
                return layers[1].stateless_call(list(w), frozen[1], xs, initial_state=s)[0][..., H:]
            state, every = s, []
            for t in range(xs.shape[1]):
                _, h, c = layers[0].stateless_call(list(w), frozen[0], xs[:, t: t + 1], initial_state=state)[0]
                state = [h, c]
                every.append(c)
            return ops.stack(every, axis=1)

        self._programs[key] = f
        return f

    def _function(self, x, state0, params, targets=None):
        """(f, args, unpack, constants): f(*args, *constants) lists the outputs; unpack names the gradients of
        args."""
        args, states, head = self._arguments(x, state0, params, targets)
        f = self._program(x.shape[2], self._hidden(dict(zip(KERAS_WEIGHTS, args))), x.dtype.name, targets is not None)
        constants = () if targets is None else (sequence_to("keras", np.asarray(targets)),)
        return f, args, lambda grads: self._unpack(grads, states + head), constants

    def _variant_program(self, I: int, H: int, dtype: str, masked: bool, head: bool):
        """f(*weights of each direction, xs, *states of each direction[, V, c], *constants), constants being
        the mask (B, T) when ``masked`` and the labels when ``head``: one layer, both ways when bidirectional
        (the reverse one a ``go_backwards`` layer, its outputs put back in time order); f lists h (B, T, D*H)
        and the final states, or the loss over the valid steps. Kept per kind, as :meth:`_program` is."""
        key = ("variant", self.cell, self.activation, I, H, dtype, self.bidirectional, masked, head, self.default_state)
        if key in self._programs:
            return self._programs[key]
        keras, ops = self.keras, self.keras.ops
        D = 2 if self.bidirectional else 1
        layers = []
        for d in range(D):
            layer = self._layer(H, return_sequences=True, return_state=True, dtype=dtype, go_backwards=d == 1)
            layer.build((None, None, I))
            layers.append((layer, [v.value for v in layer.non_trainable_variables]))
        n_states = len(self._states())
        n_args = 3 * D + 1 + D * n_states + (2 if head else 0)

        def f(*a):
            xs, rest = a[3 * D], a[n_args:]
            valid = ops.convert_to_tensor(rest[0]) if masked else None
            s = a[3 * D + 1: 3 * D + 1 + D * n_states]
            sequences, finals = [], []
            for d, (layer, frozen) in enumerate(layers):
                given = list(s[d * n_states:(d + 1) * n_states]) or None  # None: the layer's default (zeros)
                out = layer.stateless_call(list(a[3 * d: 3 * d + 3]), frozen, xs, initial_state=given, mask=valid)[0]
                sequences.append(ops.flip(out[0], axis=1) if d else out[0])
                finals.append(out[1:])
            h = ops.concatenate(sequences, axis=-1) if D == 2 else sequences[0]
            if not head:
                stack = (lambda v: ops.stack(v)) if D == 2 else (lambda v: v[0])
                return [h, *(stack([fin[n] for fin in finals]) for n in range(len(finals[0])))]
            V, c = a[3 * D + 1 + D * n_states: n_args]
            logits = ops.matmul(h, ops.transpose(V)) + c
            labels = ops.convert_to_tensor(rest[-1])
            per_step = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            if masked:
                per_step = per_step * ops.cast(valid, per_step.dtype)
            return [ops.sum(per_step)]

        self._programs[key] = f
        return f

    def _variant_function(self, x, state0, params, lengths, targets=None):
        """(f, args, unpack, constants) of :meth:`_variant_program` for this call."""
        T, B, I = x.shape
        D = 2 if self.bidirectional else 1
        states = self._states()
        head = ["V", "c"] if targets is not None else []
        variant = Variant(1, self.bidirectional)
        suffixes = [variant.suffix(0, d) for d in range(D)]
        args = []
        for d in range(D):
            run = run_params(params, contract(self.cell).step_params, variant, 0, d)
            weights = to_framework("keras", self.cell, run)
            args += [weights[k] for k in KERAS_WEIGHTS]
        f = self._variant_program(I, self._hidden(weights), x.dtype.name, lengths is not None, targets is not None)
        args.append(sequence_to("keras", x))
        args += [state0[k][d] if self.bidirectional else state0[k] for d in range(D) for k in states]
        args += [params[k] for k in head]
        constants = [] if lengths is None else [np.arange(T)[None, :] < np.asarray(lengths)[:, None]]  # (B, T)
        constants += [] if targets is None else [sequence_to("keras", np.asarray(targets))]

        def unpack(grads):
            out = {}
            for d, suffix in enumerate(suffixes):
                run = gradients_from_framework("keras", self.cell, dict(zip(KERAS_WEIGHTS, grads[3 * d: 3 * d + 3])))
                out.update({k + suffix: v for k, v in run.items()})
            out["x"] = sequence_from("keras", grads[3 * D])
            rest = grads[3 * D + 1:]
            for n, k in enumerate(states):
                per = [rest[d * len(states) + n] for d in range(D)]
                out[k] = np.stack(per) if D == 2 else per[0]
            out.update(zip(head, rest[D * len(states):]))
            return out

        return f, args, unpack, tuple(constants)

    def _compiled(self, f):
        """f under jax.jit on the jax backend (one compiled program per shape), f itself elsewhere."""
        return jax_jit(f) if self.backend == "jax" else f

    def _check_variant(self) -> None:
        if self.layers != 1:
            raise NotImplementedError("the keras target runs one layer (variants: bidirectional, lengths=carry)")

    @property
    def _plain(self) -> bool:
        return self.lengths is None and not self.bidirectional and self.layers == 1

    def forward(self, x, state0, params, lengths=None):
        if not self._plain:
            self._check_variant()
            f, args, _, constants = self._variant_function(x, state0, params, lengths)
            ops = self.keras.ops
            tensors = [ops.convert_to_tensor(a) for a in args] + [ops.convert_to_tensor(k) for k in constants]
            outputs = [np.asarray(ops.convert_to_numpy(o)) for o in self._compiled(f)(*tensors)]
            keys = ["h_n", "c_n"] if self.cell == "lstm" else ["h_n"]
            return {"h": sequence_from("keras", outputs[0]), **dict(zip(keys, outputs[1:]))}
        f, args, _, _ = self._function(x, state0, params)
        ops = self.keras.ops
        outputs = self._compiled(f)(*[ops.convert_to_tensor(a) for a in args])
        outputs = [sequence_from("keras", np.asarray(ops.convert_to_numpy(o))) for o in outputs]
        return dict(zip(["h", "c"], outputs))

    def vjp(self, x, state0, params, cotangents, lengths=None):
        if not self._plain:
            self._check_variant()
            f, args, unpack, constants = self._variant_function(x, state0, params, lengths)
            keys = ["h", "h_n", "c_n"] if self.cell == "lstm" else ["h", "h_n"]
            given = [sequence_to("keras", np.asarray(cotangents["h"]))] + [np.asarray(cotangents[k]) for k in keys[1:]]
            _, grads = _VJPS[self.backend](f, args, given, constants)
            return unpack(grads)
        f, args, unpack, _ = self._function(x, state0, params)
        keys = ["h", "c"] if self.cell == "lstm" else ["h"]
        _, grads = _VJPS[self.backend](f, args, [sequence_to("keras", np.asarray(cotangents[k])) for k in keys])
        return unpack(grads)

    def loss(self, x, state0, params, targets, lengths=None):
        if not self._plain:
            self._check_variant()
            f, args, unpack, constants = self._variant_function(x, state0, params, lengths, targets)
        else:
            f, args, unpack, constants = self._function(x, state0, params, targets=targets)
        (value,), grads = _VJPS[self.backend](f, args, [np.ones((), x.dtype)], constants)
        return float(value), unpack(grads)


def _carry_cell(keras):
    """Keras's LSTMCell, its per-step output widened to its whole carry [h_t, c_t]."""

    class CarryLSTMCell(keras.layers.LSTMCell):
        def __init__(self, units, **options):
            super().__init__(units, **options)
            self.output_size = 2 * units

        def call(self, inputs, states, training=False):
            h, (h_again, c) = super().call(inputs, states, training)
            return keras.ops.concatenate([h, c], axis=-1), [h_again, c]

    return CarryLSTMCell


class KerasJax(KerasRNN):
    backend = "jax"


class KerasTorch(KerasRNN):
    backend = "torch"


class KerasTensorflow(KerasRNN):
    backend = "tensorflow"
