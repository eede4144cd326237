"""The built-in targets ``openvino`` and ``openvino-f32``: the ONNX RNN, LSTM and GRU operators read by OpenVINO's
ONNX frontend (``Core.read_model``) and run by its CPU plugin.

The ONNX models are those of the ``onnxruntime`` target (:func:`rnnspec.spec.frameworks.onnx_operators.build_model`
and ``build_stacked_model``: weights, biases and initial states as graph inputs), so the two runtimes run the same
graphs; everything else (feeding, layers chained, ``sequence_lens``, c_t of every step as ``Y_c`` of the prefix
x[:t+1]) is the ``onnxruntime`` target's own. One compiled model per cell, activation, dtype, H and variant;
T, B and I stay dynamic. Forward only: OpenVINO runs no gradients.

``openvino`` keeps the CPU plugin's defaults: on a CPU with native bfloat16 (AVX512_BF16 or AMX) its
``INFERENCE_PRECISION_HINT`` is bf16, so a float32 model is computed in bfloat16 there (OpenVINO's documented
default, as TF32 is cuDNN's), and on other CPUs in f32. ``openvino-f32`` sets the hint to f32 first.
Both declare float64: the CPU plugin takes an f64 model and returns f64 outputs, computed in f32
(``docs/exporters.md``).

A model input that OpenVINO's frontend did not keep is not fed: the LSTM's peepholes ``P`` are dropped by the ONNX
frontend (2026.4.1), so ``lstm-peephole`` runs, and its numbers are those of an LSTM without peepholes. Likewise
``input_forget=1`` is ignored (``lstm-coupled`` runs as a plain LSTM reading the f blocks the packing fills with
random values), and ``layout=1`` too: ``openvino-batch-major`` (f32) runs the batch-major graphs, which OpenVINO
reads as time-major (docs/onnx-attributes.md).
"""

from __future__ import annotations

from rnnspec.spec.frameworks import require
from rnnspec.spec.frameworks.onnx_operators import BatchMajor, OnnxRuntime, build_model, build_stacked_model

#: the rank of each ONNX RNN / LSTM / GRU input (its name without the layer number)
_RANKS = {"X": 3, "W": 3, "R": 3, "B": 2, "sequence_lens": 1, "initial_h": 3, "initial_c": 3, "P": 2}


class _Compiled:
    """An OpenVINO compiled model answering ONNX Runtime's ``run(None, feed)``: its outputs in the graph's order."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self.names = set().union(*(port.get_names() for port in compiled.inputs))
        self.request = compiled.create_infer_request()

    def run(self, _outputs, feed: dict) -> list:
        # an input the frontend dropped (the LSTM's P) has no port: fed, it would raise; its value is not used
        results = self.request.infer({k: v for k, v in feed.items() if k in self.names}, share_inputs=False)
        return [results[port].copy() for port in self.compiled.outputs]


class OpenVino(OnnxRuntime):
    """OpenVINO's CPU plugin running the ONNX RNN / LSTM / GRU operator, with the plugin's default precision."""

    dtypes = ("float32", "float64")
    not_provided: dict[str, str] = {}
    name = "openvino"
    #: INFERENCE_PRECISION_HINT (None: the plugin's default, bf16 on CPUs with native bfloat16)
    precision: str | None = None

    def __init__(self, activation: str = "tanh") -> None:
        self.ov = require(self.name, "openvino", "openvino")
        require(self.name, "onnx", "onnx")
        self.core = self.ov.Core()
        self.activation = activation
        self._sessions: dict = {}

    def forward(self, x, state0, params, lengths=None):
        self._dtype = x.dtype.name  # the inherited forward asks for a session by H only
        return super().forward(x, state0, params, lengths)

    def _session(self, hidden: int):
        dtype = getattr(self, "_dtype", "float32")
        key = (self.cell, self.activation, hidden, self.layers, self.bidirectional, self.lengths, dtype,
               self.default_state, self.layout, self.clip, self.gate_activations)
        if key not in self._sessions:
            if self._plain:
                model = build_model(self.cell, hidden, self.activation, dtype, self.default_state, self.layout)
            else:
                model = build_stacked_model(self.cell, hidden, self.layers, 2 if self.bidirectional else 1,
                                            self.lengths is not None, self.activation, self.default_state,
                                            self.layout, self.clip, self.gate_activations)
                if dtype == "float64":
                    _as_double(model)
            config = {"INFERENCE_NUM_THREADS": 1}
            if self.precision is not None:
                config["INFERENCE_PRECISION_HINT"] = self.precision
            read = self.core.read_model(model.SerializeToString())
            # build_stacked_model leaves the per-layer inputs without a rank, which the CPU plugin refuses
            # ("doesn't support Parameter operation with dynamic rank"): each gets its rank, every size dynamic
            unranked = {port: self.ov.PartialShape.dynamic(_RANKS[next(iter(port.get_names())).rstrip("0123456789")])
                        for port in read.inputs if port.get_partial_shape().rank.is_dynamic}
            if unranked:
                read.reshape(unranked)
            compiled = _Compiled(self.core.compile_model(read, "CPU", config))
            self._sessions[key] = BatchMajor(compiled) if self.layout else compiled
        return self._sessions[key]


class OpenVinoF32(OpenVino):
    """The same with ``INFERENCE_PRECISION_HINT`` f32."""

    name = "openvino-f32"
    precision = "f32"


def _as_double(model) -> None:
    """The float32 graph of ``build_stacked_model`` (which builds float32 only) typed float64: its inputs and
    outputs, the only float tensors it declares (its one initializer is the int64 target shape of a Reshape)."""
    from onnx import TensorProto

    for value in list(model.graph.input) + list(model.graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE


class OpenVinoBatchMajor(OpenVinoF32):
    """The f32 target's graphs with ``layout=1`` (batch-major X, initial states and outputs), transposed at the
    boundary (:class:`~rnnspec.spec.frameworks.onnx_operators.BatchMajor`). f32, so that a failure here is the
    layout's, not the bf16 default's."""

    name = "openvino-batch-major"
    layout = 1
