"""The built-in target ``onnxruntime``: the ONNX RNN, LSTM and GRU operators run by ONNX Runtime.

Forward only (ONNX Runtime has no training for these operators), float32 only: its CPU provider
has no double RNN kernel (session creation answers NOT_IMPLEMENTED) and its LSTM and GRU kernels
answer "operator does not support double yet" when run (1.32.0), so the target declares float32
and float64 is "not provided", not a failure. The weights,
biases and initial states are graph inputs, so one session per cell, dtype and activation serves
every case. The operators return the cell state of the last step only (``Y_c``); c_t of every step is
``Y_c`` of the prefix x[:t+1], from the same session.

Variants: ``direction="bidirectional"``, ``sequence_lens`` (ONNX Runtime writes zeros at padded steps:
the "zero" semantics), and stacked layers as a chain of operators, each layer's Y (T, D, B, H) transposed
and reshaped to (T, B, D·H) for the next; Y_h and Y_c of every layer are the final states.
``state0=default`` leaves the optional inputs initial_h and initial_c out of the operators (the ONNX default:
zeros), alone or with the other variants.

Attributes (docs/onnx-attributes.md): ``input_forget=1`` is the cell ``lstm-coupled`` (f = 1 - i; the packing fills
the ignored f blocks with random values). ``layout=1`` (batch-major X, initial states and outputs) does not change
the function: :class:`OnnxRuntimeBatchMajor` builds the same graphs with it and transposes at the boundary
(:class:`BatchMajor`); ONNX Runtime 1.32.0 refuses it, and the target says so when loaded. The variants ``clip=C``
and ``activations=f/g/h`` set the operators' ``clip`` and ``activations``.
"""

from __future__ import annotations

import numpy as np

from rnnspec import catalogue
from rnnspec.spec.conventions import to_framework
from rnnspec.spec.conventions.onnx import OPERATORS
from rnnspec.spec.frameworks import require
from rnnspec.spec.targets import TargetError

#: the cells with a cell state (initial_c, Y_c)
WITH_CELL_STATE = catalogue.with_cell_state()
OPSET = 14  # the first with the ``layout`` attribute: 0 time-major (the default), 1 batch-major
#: the inputs and outputs whose first two axes ``layout=1`` swaps (by name without the layer number): X (B, T, I),
#: initial_h and initial_c (B, D, H); Y (B, T, D, H) and the final states (B, D, H) likewise
_BATCH_MAJOR_INPUTS = ("X", "initial_h", "initial_c")
_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}
#: ONNX's names of the nonlinearities the variant activations=f/g/h names (rnnspec.derivations.variants)
_GATE_ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "hardsigmoid": "HardSigmoid"}


def _state_inputs(cell: str, default_state: bool, suffix: str = "") -> tuple[list[str], list[str]]:
    """(the operator's initial-state inputs, the graph inputs among them): "" for an omitted optional input
    (``default_state``: the operator's zeros), dropped where nothing follows it."""
    states = [f"initial_h{suffix}"] + ([f"initial_c{suffix}"] if cell in WITH_CELL_STATE else [])
    if not default_state:
        return states, states
    return (["", ""] if cell == "lstm-peephole" else []), []  # P follows initial_c: both kept as ""


def _gated_activations(cell: str, names: tuple[str, ...] | None, directions: int) -> dict:
    """The operator's ``activations`` attribute for the variant activations=f/g/h ({} when None)."""
    if not names:
        return {}
    if cell == "elman":
        raise ValueError("variant activations: the RNN's nonlinearity is the elman cell's activation option")
    return {"activations": [_GATE_ACTIVATIONS[n] for n in names] * directions}


def build_model(cell: str, hidden: int, activation: str = "tanh", dtype: str = "float32",
                default_state: bool = False, layout: int = 0, clip: float | None = None,
                gate_activations: tuple[str, ...] | None = None):
    """The one-operator ONNX model of ``cell``: inputs X, W, R, B, initial_h (and initial_c; neither when
    ``default_state``); with ``layout=1`` X, the initial states and the outputs are batch-major; ``clip`` is the
    operator's clip threshold (absent when None); ``gate_activations`` its activations list, (f, g(, h))."""
    from onnx import TensorProto, helper

    op, attributes = OPERATORS[cell]
    if cell == "elman":
        attributes = {**attributes, "activations": [_ACTIVATIONS[activation]]}
    operands, states = _state_inputs(cell, default_state)
    outputs = ["Y", "Y_h", "Y_c"] if cell in WITH_CELL_STATE else ["Y", "Y_h"]
    peepholes = ["P"] if cell == "lstm-peephole" else []
    sequence_lens = [""] if operands or peepholes else []
    if layout:
        attributes = {**attributes, "layout": layout}
    if clip is not None:
        attributes = {**attributes, "clip": float(clip)}
    attributes = {**attributes, **_gated_activations(cell, gate_activations, 1)}
    node = helper.make_node(op, ["X", "W", "R", "B", *sequence_lens, *operands, *peepholes], outputs,
                            hidden_size=hidden, **attributes)
    floats = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
    state = ["B", 1, hidden] if layout else [1, "B", hidden]
    shapes = {"X": ["B", "T", "I"] if layout else ["T", "B", "I"], "W": [1, "G", "I"], "R": [1, "G", hidden],
              "B": [1, "G2"], "initial_h": state, "initial_c": state, "P": [1, 3 * hidden]}
    inputs = [helper.make_tensor_value_info(n, floats, shapes[n]) for n in ["X", "W", "R", "B", *states, *peepholes]]
    outs = [helper.make_tensor_value_info(n, floats, None) for n in outputs]
    graph = helper.make_graph([node], f"rnnspec_{cell}", inputs, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def build_stacked_model(cell: str, hidden: int, layers: int, directions: int, lengths: bool,
                        activation: str = "tanh", default_state: bool = False, layout: int = 0,
                        clip: float | None = None, gate_activations: tuple[str, ...] | None = None):
    """A chain of ``layers`` operators, each ``directions`` ways, with sequence_lens when ``lengths``: inputs X,
    and per layer l W{l}, R{l}, B{l}, initial_h{l} (initial_c{l}; neither when ``default_state``); outputs
    Y{L-1} and every Y_h{l} (Y_c{l}); with ``layout=1`` every operator's X, initial states and outputs are
    batch-major; ``clip``, every operator's clip threshold; ``gate_activations``, their activations lists."""
    from onnx import TensorProto, helper

    op, attributes = OPERATORS[cell]
    if cell == "elman":
        attributes = {**attributes, "activations": [_ACTIVATIONS[activation]] * directions}
    attributes = {**attributes, "direction": "bidirectional" if directions == 2 else "forward"}
    if layout:
        attributes = {**attributes, "layout": layout}
    if clip is not None:
        attributes = {**attributes, "clip": float(clip)}
    attributes = {**attributes, **_gated_activations(cell, gate_activations, directions)}
    floats = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", floats, ["B", "T", "I"] if layout else ["T", "B", "I"])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
    nodes, outputs, previous = [], [], "X"
    flatten = helper.make_tensor("flat", TensorProto.INT64, [3], [0, 0, -1])
    for layer in range(layers):
        names = [f"{n}{layer}" for n in ("W", "R", "B")]
        operands, states = _state_inputs(cell, default_state, str(layer))
        peepholes = [f"P{layer}"] if cell == "lstm-peephole" else []
        inputs += [helper.make_tensor_value_info(n, floats, None) for n in names + states + peepholes]
        outs = [f"Y{layer}", f"Y_h{layer}"] + ([f"Y_c{layer}"] if cell in WITH_CELL_STATE else [])
        nodes.append(helper.make_node(op, [previous, *names, "sequence_lens" if lengths else "", *operands,
                                           *peepholes], outs, hidden_size=hidden, **attributes))
        outputs += outs[1:]
        if layer < layers - 1:  # (T, D, B, H) -> (T, B, D * H), the next layer's input; batch-major (B, T, D, H)
            if layout:  # is in order already: -> (B, T, D * H)
                nodes.append(helper.make_node("Reshape", [f"Y{layer}", "flat"], [f"X{layer + 1}"]))
            else:
                nodes.append(helper.make_node("Transpose", [f"Y{layer}"], [f"Yt{layer}"], perm=[0, 2, 1, 3]))
                nodes.append(helper.make_node("Reshape", [f"Yt{layer}", "flat"], [f"X{layer + 1}"]))
            previous = f"X{layer + 1}"
    outputs.insert(0, f"Y{layers - 1}")
    graph = helper.make_graph(nodes, f"rnnspec_{cell}_stacked", inputs,
                              [helper.make_tensor_value_info(n, floats, None) for n in outputs], [flatten])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


class BatchMajor:
    """A session of a ``layout=1`` graph answering ``run(None, feed)`` as the ``layout=0`` graph's would: the
    time-major feed's X and initial states swapped to batch-major on the way in, and the outputs back on the way
    out (Y (B, T, D, H) -> (T, D, B, H), a final state (B, D, H) -> (D, B, H)): the transposes at the boundary."""

    def __init__(self, session) -> None:
        self.session = session

    def run(self, outputs, feed: dict) -> list:
        swapped = {k: np.ascontiguousarray(np.swapaxes(v, 0, 1)) if k.rstrip("0123456789") in _BATCH_MAJOR_INPUTS
                   else v for k, v in feed.items()}
        back = {4: (1, 2, 0, 3), 3: (1, 0, 2)}  # by rank: Y, or a final state
        return [np.ascontiguousarray(np.transpose(y, back[y.ndim])) for y in self.session.run(outputs, swapped)]


class OnnxRuntime:
    """ONNX Runtime's CPU provider running the ONNX RNN / LSTM / GRU operator."""

    cells = ("elman", "lstm", "gru-reset-after", "gru-reset-before", "lstm-peephole", "lstm-coupled")
    cell = "elman"
    dtypes = ("float32",)
    activations = ("tanh", "relu")
    #: clip=C and activations=f/g/h are ONNX's clip and activations attributes (docs/onnx-attributes.md)
    variants = ("layers", "bidirectional", "lengths=zero", "state0=default", "clip", "activations")
    layers, bidirectional, lengths = 1, False, None
    #: True (state0=default): state0 is {} and the operators get no initial_h / initial_c
    default_state = False
    #: the operators' ``layout``: 0 time-major; 1 batch-major, transposed at the boundary (:class:`BatchMajor`)
    layout = 0
    #: the variant clip=C (the suite sets it): the operators' ``clip`` attribute, None for none
    clip: float | None = None
    #: the variant activations=f/g/h (the suite sets it): the operators' ``activations``, None for the defaults
    gate_activations: tuple[str, ...] | None = None
    #: why a dtype it does not declare is missing (the compatibility matrix prints it)
    not_provided = {"float64": "ONNX Runtime has no double kernel for RNN (NOT_IMPLEMENTED); its LSTM and GRU answer "
                               "'operator does not support double yet'"}

    def __init__(self, activation: str = "tanh") -> None:
        self.ort = require("onnxruntime", "onnxruntime", "onnx")
        require("onnxruntime", "onnx", "onnx")
        self.activation = activation
        self._sessions: dict = {}

    @property
    def _plain(self) -> bool:
        return (self.layers == 1 and not self.bidirectional and self.lengths is None and self.clip is None
                and not self.gate_activations)

    def _session(self, hidden: int):
        key = (self.cell, self.activation, hidden, self.layers, self.bidirectional, self.lengths, self.default_state,
               self.layout, self.clip, self.gate_activations)
        if key not in self._sessions:
            if self._plain:
                model = build_model(self.cell, hidden, self.activation, default_state=self.default_state,
                                    layout=self.layout)
            else:
                model = build_stacked_model(self.cell, hidden, self.layers, 2 if self.bidirectional else 1,
                                            self.lengths is not None, self.activation, self.default_state,
                                            self.layout, self.clip, self.gate_activations)
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            session = self.ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            self._sessions[key] = BatchMajor(session) if self.layout else session
        return self._sessions[key]

    def _forward_variant(self, x, state0, params, lengths):
        from rnnspec.derivations.variants import Variant, run_params
        from rnnspec.spec.contract import contract

        variant = Variant(self.layers, self.bidirectional, self.lengths, self.default_state, self.clip,
                          self.gate_activations)
        D = variant.directions
        stacked = (lambda v: v) if variant.stacked else (lambda v: v[None])
        feed = {"X": np.ascontiguousarray(x)}
        if lengths is not None:
            feed["sequence_lens"] = np.asarray(lengths, dtype=np.int32)
        for layer in range(variant.layers):
            names = contract(self.cell).step_params
            per_direction = [to_framework("onnx", self.cell, run_params(params, names, variant, layer, d))
                             for d in range(D)]
            for k in ("W", "R", "B", "P")[:4 if self.cell == "lstm-peephole" else 3]:
                feed[f"{k}{layer}"] = np.ascontiguousarray(np.concatenate([w[k] for w in per_direction]))
            for k, v in state0.items():  # none under state0=default
                feed[f"initial_{k[0]}{layer}"] = np.ascontiguousarray(stacked(v)[layer * D:(layer + 1) * D])
        H = feed["R0"].shape[-1]  # R (D, G * H, H)
        outputs = self._session(H).run(None, feed)
        Y = outputs[0]  # (T, D, B, H)
        T, B = x.shape[:2]
        out = {"h": np.ascontiguousarray(np.transpose(Y, (0, 2, 1, 3)).reshape(T, B, D * H))}
        finals = outputs[1:]
        per = 2 if self.cell in WITH_CELL_STATE else 1
        unstack = (lambda v: v) if variant.stacked else (lambda v: v[0])
        out["h_n"] = unstack(np.concatenate(finals[0::per]))
        if self.cell in WITH_CELL_STATE:
            out["c_n"] = unstack(np.concatenate(finals[1::per]))
        return out

    def forward(self, x, state0, params, lengths=None):
        if not self._plain:
            return self._forward_variant(x, state0, params, lengths)
        feed = {k: np.ascontiguousarray(v) for k, v in to_framework("onnx", self.cell, params).items()}
        H = feed["R"].shape[-1]  # R (1, G * H, H)
        session = self._session(H)
        for k, v in state0.items():  # none under state0=default: the operator's zeros
            feed[f"initial_{k[0]}"] = np.ascontiguousarray(v[None])
        run = lambda xs: session.run(None, {**feed, "X": np.ascontiguousarray(xs)})
        outputs = run(x)
        out = {"h": outputs[0][:, 0]}
        if self.cell in WITH_CELL_STATE:
            T, B = x.shape[:2]
            out["c"] = np.stack([run(x[: t + 1])[2][0] for t in range(T)]) if T else np.zeros((0, B, H), x.dtype)
        return out


class OnnxRuntimeBatchMajor(OnnxRuntime):
    """The same operators with ``layout=1`` (batch-major X, initial states and outputs), transposed at the boundary:
    the function is the same, the runtime's code path is not.

    ONNX Runtime 1.32.0's CPU provider refuses the attribute when a session is created ("Batchwise recurrent
    operations (layout == 1) are not supported", lstm_base.h, rnn.h and the GRU alike): the target says so when
    loaded, in ONNX Runtime's words, and runs as soon as a release accepts a layout-1 graph."""

    layout = 1

    def __init__(self, activation: str = "tanh") -> None:
        super().__init__(activation)
        refusal = layout_refusal(self.ort)
        if refusal:
            raise TargetError(f"target 'onnxruntime-batch-major': ONNX Runtime {self.ort.__version__} refuses "
                              f"layout=1: {refusal}")


def layout_refusal(ort) -> str:
    """ONNX Runtime's message refusing a one-step ``layout=1`` RNN session, or "" when it accepts one."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the refusal is returned, not logged as well
    try:
        ort.InferenceSession(build_model("elman", 1, layout=1).SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
    except Exception as exc:  # its own error type (a Fail / NotImplemented from the C++ side)
        said = str(exc)
        return said[said.find("layout_ == 0"):].strip() if "layout_ == 0" in said else said.strip()
    return ""
