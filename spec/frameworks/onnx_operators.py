"""The built-in target ``onnxruntime``: the ONNX RNN, LSTM and GRU operators run by ONNX Runtime.

Forward only (ONNX Runtime has no training for these operators), float32 only: its CPU provider
has no double RNN kernel (session creation answers NOT_IMPLEMENTED) and its LSTM and GRU kernels
answer "operator does not support double yet" when run (1.32.0), so the target declares float32
and float64 is "not provided", not a failure. The weights,
biases and initial states are graph inputs, so one session per cell, dtype and activation serves
every case. The operators return the cell state of the last step only (``Y_c``); c_t of every step is
``Y_c`` of the prefix x[:t+1], from the same session.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions import to_framework
from rnnspec.spec.conventions.onnx import OPERATORS
from rnnspec.spec.frameworks import require

OPSET = 14  # the first with the ``layout`` attribute; rnnspec uses layout 0 (time-major)
_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


def build_model(cell: str, hidden: int, activation: str = "tanh", dtype: str = "float32"):
    """The one-operator ONNX model of ``cell``: inputs X, W, R, B, initial_h (and initial_c)."""
    from onnx import TensorProto, helper

    op, attributes = OPERATORS[cell]
    if cell == "elman":
        attributes = {**attributes, "activations": [_ACTIVATIONS[activation]]}
    states = ["initial_h", "initial_c"] if cell == "lstm" else ["initial_h"]
    outputs = ["Y", "Y_h", "Y_c"] if cell == "lstm" else ["Y", "Y_h"]
    node = helper.make_node(op, ["X", "W", "R", "B", "", *states], outputs, hidden_size=hidden, **attributes)
    floats = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
    shapes = {"X": ["T", "B", "I"], "W": [1, "G", "I"], "R": [1, "G", hidden], "B": [1, "G2"],
              "initial_h": [1, "B", hidden], "initial_c": [1, "B", hidden]}
    inputs = [helper.make_tensor_value_info(n, floats, shapes[n]) for n in ["X", "W", "R", "B", *states]]
    outs = [helper.make_tensor_value_info(n, floats, None) for n in outputs]
    graph = helper.make_graph([node], f"rnnspec_{cell}", inputs, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


class OnnxRuntime:
    """ONNX Runtime's CPU provider running the ONNX RNN / LSTM / GRU operator."""

    cells = ("elman", "lstm", "gru-reset-after", "gru-reset-before")
    cell = "elman"
    dtypes = ("float32",)
    activations = ("tanh", "relu")
    #: why a dtype it does not declare is missing (the compatibility matrix prints it)
    not_provided = {"float64": "ONNX Runtime has no double kernel for RNN (NOT_IMPLEMENTED); its LSTM and GRU answer "
                               "'operator does not support double yet'"}

    def __init__(self, activation: str = "tanh") -> None:
        self.ort = require("onnxruntime", "onnxruntime", "onnx")
        require("onnxruntime", "onnx", "onnx")
        self.activation = activation
        self._sessions: dict = {}

    def _session(self, hidden: int):
        key = (self.cell, self.activation, hidden)
        if key not in self._sessions:
            model = build_model(self.cell, hidden, self.activation)
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            self._sessions[key] = self.ort.InferenceSession(model.SerializeToString(), options,
                                                            providers=["CPUExecutionProvider"])
        return self._sessions[key]

    def forward(self, x, state0, params):
        H = state0["h0"].shape[-1]
        session = self._session(H)
        feed = {k: np.ascontiguousarray(v) for k, v in to_framework("onnx", self.cell, params).items()}
        feed["initial_h"] = np.ascontiguousarray(state0["h0"][None])
        if self.cell == "lstm":
            feed["initial_c"] = np.ascontiguousarray(state0["c0"][None])
        run = lambda xs: session.run(None, {**feed, "X": np.ascontiguousarray(xs)})
        outputs = run(x)
        out = {"h": outputs[0][:, 0]}
        if self.cell == "lstm":
            T, B = x.shape[:2]
            out["c"] = np.stack([run(x[: t + 1])[2][0] for t in range(T)]) if T else np.zeros((0, B, H), x.dtype)
        return out
