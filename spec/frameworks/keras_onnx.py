"""The built-in targets ``keras-onnx`` and ``keras-tf2onnx``: Keras 3's SimpleRNN, LSTM and GRU (``reset_after``
True and False) on the TensorFlow backend, converted to ONNX by tf2onnx and run by ONNX Runtime's CPU provider.

``keras-onnx`` converts with Keras's own ``model.export(path, format="onnx")`` (on the TensorFlow backend: the
model's serving function through ``tf2onnx.convert.from_function``); ``keras-tf2onnx`` with
``tf2onnx.convert.from_keras(model)``. Both at the converter's default opset. Forward only: ONNX Runtime runs
no gradients of these graphs.

What is converted is a functional ``keras.Model`` over the framework's own layers, as a user builds one: the layer
(in ``keras.layers.Bidirectional(merge_mode="concat")`` for ``bidirectional``, one after another for ``layers``),
its weights set by ``set_weights`` from :mod:`rnnspec.spec.conventions`, named inputs ``x`` (batch-major, T and B
dynamic), ``mask`` (bool (B, T), the sequences' lengths) and the initial states ``s{l}_{k}`` (layer l; for each
direction h, and c for the LSTM, forward first, as Bidirectional splits ``initial_state``). The outputs are the
sequence and the final states (``return_state=True``).

tf2onnx folds the weights into the graph (its LSTM rewriter needs them constant to write an ONNX LSTM
operator), so there are no weights to feed: every case's weights are a conversion of their own (about 0.5 to 2 s),
kept for the case's second call (the determinism clause) and for the LSTM's c_t. What tf2onnx makes of it: the
plain LSTM (also bidirectional, stacked, without initial states) becomes ONNX's LSTM operator; the LSTM under a
mask, SimpleRNN and both GRUs become a ``Loop`` over the TensorFlow while loop's body.

Keras's LSTM returns the cell state of the last step only: c_t of every step is the converted graph's final c run
on the prefix x_0 .. x_t (the graph's T is dynamic, so one conversion serves every prefix).

Variants: ``layers``, ``bidirectional``, ``state0=default`` (the layers called without ``initial_state``) and the
two length semantics of Keras masking, the mask a graph input: the state is held at padded steps, and the output
repeats the last one (``lengths=carry``: Keras's default, ``zero_output_for_mask=False``) or is zero
(``lengths=zero``: ``zero_output_for_mask=True``). ``keras.layers.Bidirectional`` forces ``zero_output_for_mask=True``
on both its layers (keras/src/layers/rnn/bidirectional.py): a bidirectional run under ``lengths=carry`` is therefore
two layers, the second ``go_backwards=True`` with its outputs flipped back (``keras.ops.flip``) and concatenated, as
the ``keras`` target runs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import tempfile
import warnings

import numpy as np

from rnnspec import catalogue
from rnnspec.derivations.variants import Variant, run_params
from rnnspec.spec.contract import contract
from rnnspec.spec.conventions import KERAS_WEIGHTS, sequence_from, sequence_to, to_framework
from rnnspec.spec.conventions import keras as layout
from rnnspec.spec.targets import TargetError

#: what installs the converter and its backend (the versions this target was checked with); tensorflow-cpu 2.21.0
#: pins h5py 3.14.0, so it may want an environment of its own (docs/exporters.md)
REQUIREMENT = "pip install keras tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx onnxruntime"
#: the modules the targets import, and the package that provides each
MODULES = {"keras": "keras", "tensorflow": "tensorflow-cpu", "tf2onnx": "tf2onnx", "onnx": "onnx",
           "onnxruntime": "onnxruntime"}
WITH_CELL_STATE = catalogue.with_cell_state()
#: conversions between two keras.backend.clear_session() calls
CLEAR_EVERY = 25

#: why float64 is not declared (keras 3.15.1, tf2onnx 1.17.0, onnxruntime 1.32.0; tests/test_keras_onnx.py checks it)
NO_DOUBLE = ("tf2onnx converts Keras's float64 LSTM to an ONNX LSTM operator that ONNX Runtime's CPU provider "
             "cannot run ('LSTM operator does not support double yet'), and Keras's export documents float32 models "
             "only; the float64 SimpleRNN and GRU convert to Loop graphs that run, but a target's dtypes are one for "
             "all its cells")
NOT_PROVIDED = {"float64": NO_DOUBLE}


def _require(target: str):
    """keras on the TensorFlow backend, tf2onnx and ONNX Runtime, or one TargetError naming all that is missing."""
    missing = [package for module, package in MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise TargetError(f"target {target!r}: {', '.join(missing)} not installed; {REQUIREMENT}")
    from rnnspec.spec.frameworks.keras_layers import _import_keras

    keras = _import_keras(target, "tensorflow")
    for name in ("tf2onnx", "tensorflow"):  # their progress lines and deprecation notices kept off the report
        logging.getLogger(name).setLevel(logging.ERROR)
    return keras


class KerasOnnx:
    """Keras 3 SimpleRNN / LSTM / GRU converted by ``model.export(format="onnx")``, run in ONNX Runtime."""

    name = "keras-onnx"
    converter = "keras"
    cells = tuple(layout.LAYERS)
    cell = "elman"
    dtypes = ("float32",)
    activations = ("tanh", "relu")
    variants = ("layers", "bidirectional", "lengths=zero", "lengths=carry", "state0=default")
    layers, bidirectional, lengths, default_state = 1, False, None, False
    #: every case its own shape: the weights are folded into the graph, so each case converts anew anyway
    shapes: int | None = None
    #: why a dtype or variant it does not declare is missing (the compatibility matrix prints it)
    not_provided = NOT_PROVIDED

    def __init__(self, activation: str = "tanh") -> None:
        self.keras = _require(self.name)
        import onnxruntime

        self.ort = onnxruntime
        if activation not in self.activations:
            raise TargetError(f"target {self.name!r}: SimpleRNN is checked with activation in {self.activations}, "
                              f"got {activation!r}")
        self.activation = activation
        self._sessions: dict[str, tuple] = {}  # digest of the model -> (session, input names), the last few
        self._converted = 0

    @property
    def variant(self) -> Variant:
        return Variant(self.layers, self.bidirectional, self.lengths, self.default_state)

    # -- the Keras model -----------------------------------------------------------------------------------

    def _layer(self, H: int, **options):
        layers = self.keras.layers
        options.update(return_sequences=True, return_state=True, dtype="float32")
        if self.cell == "elman":
            return layers.SimpleRNN(H, activation=self.activation, **options)
        if self.cell == "lstm":
            return layers.LSTM(H, **options)
        return layers.GRU(H, reset_after=self.cell == "gru-reset-after", **options)

    def _model(self, I: int, H: int, weights: list[list[dict]]):
        """The functional model: ``weights[l][d]`` are Keras's weights of layer l, direction d."""
        keras, variant = self.keras, self.variant
        n_states = len(contract(self.cell).cell.state0_keys)
        x = keras.Input((None, I), name="x", dtype="float32")
        inputs = [x]
        mask = None
        if variant.lengths:
            mask = keras.Input((None,), name="mask", dtype="bool")
            inputs.append(mask)
        # "zero": the layers' own zero_output_for_mask=True (keras.layers.Bidirectional sets it in any case);
        # "carry": Keras's default, False
        options = {"zero_output_for_mask": True} if variant.lengths == "zero" else {}
        h, finals, parts = x, [], []
        for layer_index in range(variant.layers):
            states = [] if variant.default_state else [
                keras.Input((H,), name=f"s{layer_index}_{k}", dtype="float32")
                for k in range(n_states * variant.directions)]
            inputs += states
            given = {"mask": mask} if mask is not None else {}
            if not variant.bidirectional or variant.lengths == "carry":
                # one direction, or both as two layers (the second go_backwards, its outputs flipped back to time
                # order): Bidirectional would force zero_output_for_mask=True, which is not Keras's carry masking
                sequences = []
                for d in range(variant.directions):
                    layer = self._layer(H, go_backwards=d == 1, **options)
                    own = states[d * n_states:(d + 1) * n_states]
                    out = layer(h, **given, **({"initial_state": own} if own else {}))
                    sequences.append(keras.ops.flip(out[0], axis=1) if d else out[0])
                    finals += list(out[1:])
                    parts.append(layer)
                h = keras.layers.Concatenate()(sequences) if len(sequences) == 2 else sequences[0]
            else:
                layer = keras.layers.Bidirectional(self._layer(H, **options), merge_mode="concat")
                out = layer(h, **given, **({"initial_state": states} if states else {}))
                h, finals = out[0], finals + list(out[1:])
                parts += [layer.forward_layer, layer.backward_layer]
        for part, each in zip(parts, [w for per_direction in weights for w in per_direction]):
            part.set_weights([each[k] for k in KERAS_WEIGHTS])
        return keras.Model(inputs, [h, *finals])

    def _convert(self, model) -> bytes:
        """The model's ONNX graph, by the target's converter."""
        sink = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            if self.converter == "tf2onnx":
                import tf2onnx

                proto, _ = tf2onnx.convert.from_keras(model)
                return proto.SerializeToString()
            with tempfile.TemporaryDirectory(prefix="rnnspec-keras-onnx-") as folder:
                path = os.path.join(folder, "model.onnx")
                # the model's own inputs as the signature: without one, export refuses a model built from Inputs that
                # has not been called on data ("The model provided has never called.")
                model.export(path, format="onnx", verbose=False, input_signature=[model.inputs])
                with open(path, "rb") as f:
                    return f.read()

    def _session(self, I: int, H: int, weights: list[list[dict]]):
        """(ONNX Runtime session, its input names) of the converted model of these weights, kept for the case."""
        digest = hashlib.sha256(repr((self.cell, self.activation, self.variant, I, H)).encode())
        for per_direction in weights:
            for each in per_direction:
                for k in KERAS_WEIGHTS:
                    digest.update(np.ascontiguousarray(each[k]).tobytes())
        key = digest.hexdigest()
        if key not in self._sessions:
            self._converted += 1
            if self._converted % CLEAR_EVERY == 0:  # Keras's graph of the earlier cases' models let go now and then
                self.keras.backend.clear_session()  # (0.18 s a call, a third of a conversion: not every case)
            proto = self._convert(self._model(I, H, weights))
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            session = self.ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])
            while len(self._sessions) >= 2:  # this case's model and the one before are enough
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[key] = (session, [i.name for i in session.get_inputs()])
        return self._sessions[key]

    # -- running -------------------------------------------------------------------------------------------

    def _weights(self, params) -> list[list[dict]]:
        """Keras's weights of each layer and direction, from the canonical (suffixed) parameters."""
        variant, names = self.variant, contract(self.cell).step_params
        out = []
        for layer_index in range(variant.layers):
            out.append([to_framework("keras", self.cell, run_params(params, names, variant, layer_index, d))
                        for d in range(variant.directions)])
        return out

    def _feed(self, names: list[str], x, state0, lengths) -> dict:
        """The graph's inputs by name: x batch-major, the mask (B, T), the states of each layer and direction."""
        variant = self.variant
        T, B = x.shape[:2]
        feed = {"x": np.ascontiguousarray(sequence_to("keras", x))}
        if variant.lengths:
            feed["mask"] = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
        if not variant.default_state:
            keys = contract(self.cell).cell.state0_keys
            for layer_index in range(variant.layers):
                k = 0
                for d in range(variant.directions):
                    for key in keys:
                        value = state0[key]
                        value = value[layer_index * variant.directions + d] if variant.stacked else value
                        feed[f"s{layer_index}_{k}"] = np.ascontiguousarray(value)
                        k += 1
        if sorted(feed) != sorted(names):
            raise RuntimeError(f"the converted graph takes inputs {names}; the model was built with {sorted(feed)}")
        return feed

    def _run(self, session, feed: dict) -> list[np.ndarray]:
        options = self.ort.RunOptions()
        options.log_severity_level = 3  # its error is raised, not also printed
        return session.run(None, feed, options)

    def forward(self, x, state0, params, lengths=None):
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise TypeError(f"target {self.name!r}: x must be float32 (the declared dtype), got {x.dtype}")
        weights = self._weights(params)
        H = np.shape(weights[0][0]["recurrent_kernel"])[0]
        session, names = self._session(x.shape[2], H, weights)
        feed = self._feed(names, x, state0, lengths)
        outputs = self._run(session, feed)
        h = sequence_from("keras", outputs[0])
        with_c = self.cell in WITH_CELL_STATE
        if self.variant.plain:
            out = {"h": h}
            if with_c:
                # c_t: the final c of the same graph run on x_0 .. x_t (its T is dynamic)
                every = []
                for t in range(x.shape[0]):
                    every.append(self._run(session, {**feed, "x": np.ascontiguousarray(feed["x"][:, : t + 1])})[2])
                out["c"] = np.stack(every) if every else np.zeros((0, *outputs[2].shape), x.dtype)
            return out
        # the final states, per layer and direction in the order of Variant.runs(): [h, (c)] each
        per_run = 2 if with_c else 1
        finals = outputs[1:]
        out = {"h": h, "h_n": np.stack(finals[0::per_run])}
        if with_c:
            out["c_n"] = np.stack(finals[1::per_run])
        if not self.variant.stacked:
            out = {k: (v if k == "h" else v[0]) for k, v in out.items()}
        return out


class KerasTf2onnx(KerasOnnx):
    """The same models converted by ``tf2onnx.convert.from_keras(model)``."""

    name = "keras-tf2onnx"
    converter = "tf2onnx"
