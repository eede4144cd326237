"""The ONNX recurrent operators' attributes beyond the default graph (issue 35, item 7; docs/onnx-attributes.md).

``input_forget=1``: the cell lstm-coupled (f = 1 - i, no forget-gate parameters). ONNX Runtime computes it; OpenVINO
2026.4.1 reads the operator as a plain LSTM whose f block is the one input_forget says to ignore (a defect, pinned
here in OpenVINO's own API so the test goes stale when it is fixed); onnx2pytorch 0.6.0 refuses it.
"""

from __future__ import annotations

import numpy as np
import pytest
from optional import needs

from rnnspec import catalogue
from rnnspec.spec.conventions import from_framework, to_framework
from rnnspec.spec.conventions import onnx as onnx_layout
from rnnspec.spec.runner import check
from rnnspec.spec.worker import TargetName

OPENVINO_F32 = "rnnspec.spec.frameworks.openvino_runtime:OpenVinoF32"
FIXED = "the tool no longer has this defect: update docs/onnx-attributes.md, spec/defects.py and this test"



def _failing(report) -> list:
    return [(r.clause.id, r.status, r.message.splitlines()[:2]) for r in report.results
            if r.status not in ("passed", "not provided")]


def _params(cell: str, H: int = 3, I: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = {"H": H, "I": I}
    return {p.key: rng.standard_normal(tuple(sizes[s] for s in p.shape)) for p in catalogue.cell(cell).params}


# -- input_forget=1: the cell lstm-coupled ----------------------------------------------------------------------------

def test_the_coupled_cell_has_no_forget_gate_parameters_and_its_forget_gate_is_one_minus_input():
    from rnnspec.derivations.registry import cell

    assert not [k for k in catalogue.cell("lstm-coupled").param_keys if k.endswith("_f")]
    step = {e.target.name: e.rhs for e in cell("lstm-coupled").step}
    assert str(step["fg"]) == "1 - ig[i]", step["fg"]


def test_the_onnx_packing_fills_the_ignored_forget_blocks_with_random_values_and_reads_them_back_out():
    params = _params("lstm-coupled")
    H = params["W_i"].shape[0]
    packed = to_framework("onnx", "lstm-coupled", params)
    # ONNX's blocks i, o, f, c: the f block (the third) is what input_forget=1 ignores
    f_blocks = [packed["W"][0, 2 * H:3 * H], packed["R"][0, 2 * H:3 * H], packed["B"][0, 2 * H:3 * H]]
    assert all(np.abs(b).min() > 0 and np.unique(b).size == b.size for b in f_blocks)  # no zeros, no constant
    again = to_framework("onnx", "lstm-coupled", params)
    assert all(np.array_equal(packed[k], again[k]) for k in packed)  # deterministic
    other = to_framework("onnx", "lstm-coupled", _params("lstm-coupled", seed=1))
    assert not np.array_equal(other["W"][0, 2 * H:3 * H], f_blocks[0])  # drawn from the parameters' own seed
    back = from_framework("onnx", "lstm-coupled", packed)
    assert sorted(back) == sorted(params) and all(np.array_equal(back[k], params[k]) for k in params)


def test_the_coupled_operator_says_input_forget_1():
    needs("onnx")
    from rnnspec.spec.frameworks.onnx_operators import build_model

    (node,) = build_model("lstm-coupled", 3).graph.node
    assert node.op_type == "LSTM"
    assert {a.name: a.i for a in node.attribute}["input_forget"] == 1
    assert onnx_layout.IGNORED["lstm-coupled"] == "f"


def test_onnxruntime_is_conformant_on_the_coupled_lstm():
    needs("onnxruntime", "onnx")
    from rnnspec.spec.frameworks.onnx_operators import OnnxRuntime

    target = OnnxRuntime()
    target.cell = "lstm-coupled"
    report = check(target, target="onnxruntime", cell="lstm-coupled", examples=8)
    assert report.conformant, _failing(report)


class _InputForgetDropped:
    """A runtime that ignores input_forget: the plain LSTM operator run on the coupled cell's packing (what
    OpenVINO 2026.4.1 does), the f block's random values read as the forget gate's weights."""

    @staticmethod
    def target():
        from rnnspec.spec.frameworks import onnx_operators

        class Dropped(onnx_operators.OnnxRuntime):
            def _session(self, hidden):
                key = ("dropped", hidden)
                if key not in self._sessions:
                    model = onnx_operators.build_model(self.cell, hidden)
                    node = model.graph.node[0]
                    kept = [a for a in node.attribute if a.name != "input_forget"]
                    del node.attribute[:]
                    node.attribute.extend(kept)
                    self._sessions[key] = self.ort.InferenceSession(model.SerializeToString(),
                                                                    providers=["CPUExecutionProvider"])
                return self._sessions[key]

        made = Dropped()
        made.cell = "lstm-coupled"
        return made


def test_a_runtime_that_ignores_input_forget_is_rejected():
    needs("onnxruntime", "onnx")
    report = check(_InputForgetDropped.target(), target="mutant", cell="lstm-coupled", examples=4)
    failed = {r.clause.id for r in report.results if r.status == "failed"}
    assert {"LSTM-COUPLED-FWD-H", "LSTM-COUPLED-FWD-C"} <= failed, _failing(report)


def _one_step_coupled_model():
    """T = B = I = H = 1, x = 1, c0 = 1, W's blocks i, o, f, c = 0, 0, 3, 1, R = 0: the spec's Y_c is
    (1 - i) c0 + i tanh(1) with i = 1/2; a plain LSTM's is sigmoid(3) c0 + i tanh(1)."""
    from onnx import TensorProto, helper, numpy_helper

    W = np.array([[[0.0], [0.0], [3.0], [1.0]]], np.float32)
    inits = [numpy_helper.from_array(v, n) for n, v in
             (("W", W), ("R", np.zeros((1, 4, 1), np.float32)), ("initial_c", np.ones((1, 1, 1), np.float32)))]
    node = helper.make_node("LSTM", ["X", "W", "R", "", "", "", "initial_c"], ["Y", "Y_h", "Y_c"], hidden_size=1,
                            input_forget=1)
    graph = helper.make_graph([node], "coupled", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 1])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in
                               (("Y", [1, 1, 1, 1]), ("Y_h", [1, 1, 1]), ("Y_c", [1, 1, 1]))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


SPEC_Y_C = 0.5 + 0.5 * np.tanh(1.0)
PLAIN_Y_C = 1 / (1 + np.exp(-3.0)) + 0.5 * np.tanh(1.0)


def test_onnxruntime_couples_the_gates_in_its_own_api():
    needs("onnxruntime", "onnx")
    import onnxruntime

    session = onnxruntime.InferenceSession(_one_step_coupled_model().SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    (y_c,) = session.run(None, {"X": np.ones((1, 1, 1), np.float32)})[2].ravel()
    assert y_c == pytest.approx(SPEC_Y_C, rel=1e-6)


def test_openvino_ignores_input_forget_in_its_own_api():
    """OpenVINO 2026.4.1 computes the plain LSTM: its f from the block input_forget=1 says to ignore (a defect)."""
    needs("openvino", "onnx")
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(_one_step_coupled_model().SerializeToString()), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    (y_c,) = compiled({"X": np.ones((1, 1, 1), np.float32)})[compiled.outputs[2]].ravel()
    assert y_c == pytest.approx(PLAIN_Y_C, rel=1e-6), (y_c, FIXED)
    assert abs(y_c - SPEC_Y_C) > 0.4


def test_the_openvino_target_fails_the_coupled_lstm_on_its_forward_values_only():
    needs("openvino", "onnx")
    report = check(TargetName(OPENVINO_F32), target=OPENVINO_F32, cell="lstm-coupled", dtype="float32", examples=4)
    failed = {r.clause.id for r in report.results if r.status == "failed"}
    assert failed == {"LSTM-COUPLED-FWD-H", "LSTM-COUPLED-FWD-C"}, (_failing(report), FIXED)


def test_onnx2pytorch_refuses_input_forget_in_its_own_words():
    needs("onnx2pytorch", "onnx", "torch")
    from rnnspec.spec.frameworks.onnx2torch_layers import REFUSED, Onnx2PyTorch, _import, baked
    from rnnspec.spec.frameworks.onnx_operators import build_model

    convert = _import("onnx2pytorch", "onnx2pytorch").ConvertModel
    params = {k: v.astype(np.float32) for k, v in _params("lstm-coupled").items()}
    weights = to_framework("onnx", "lstm-coupled", params)
    with pytest.raises(NotImplementedError) as refusal:
        convert(baked(build_model("lstm-coupled", 3), weights, "float32"))
    assert str(refusal.value) in REFUSED["lstm-coupled"], (str(refusal.value), "update docs/onnx-attributes.md")
    assert "lstm-coupled" not in Onnx2PyTorch.cells


# -- layout=1: batch-major, the same function through another code path -----------------------------------------------

def _feed(cell: str, layers: int, directions: int, lengths: bool, T: int = 3, B: int = 2, I: int = 3, H: int = 2):
    """Random time-major operands of build_stacked_model's graph (float32)."""
    rng = np.random.default_rng(7)
    G = max(len(catalogue.cell(cell).gates), 1)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    feed = {"X": f32(T, B, I)}
    for layer in range(layers):
        width = I if layer == 0 else directions * H
        feed.update({f"W{layer}": f32(directions, G * H, width), f"R{layer}": f32(directions, G * H, H),
                     f"B{layer}": f32(directions, 2 * G * H), f"initial_h{layer}": f32(directions, B, H)})
        if "c" in catalogue.cell(cell).states:
            feed[f"initial_c{layer}"] = f32(directions, B, H)
    if lengths:
        feed["sequence_lens"] = np.array([T, 1][:B], np.int32)
    return feed


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru-reset-before"])
@pytest.mark.parametrize("layers, directions, lengths", [(1, 1, False), (2, 2, True)])
def test_a_batch_major_graph_transposed_at_the_boundary_is_the_time_major_one(cell, layers, directions, lengths):
    """The batch-major targets' graphs and their boundary (BatchMajor) against ONNX's reference evaluator, which
    implements layout=1: the same numbers as the time-major graph, every output."""
    needs("onnx")
    from onnx.reference import ReferenceEvaluator

    from rnnspec.spec.frameworks.onnx_operators import BatchMajor, build_stacked_model

    feed = _feed(cell, layers, directions, lengths)
    H = feed["R0"].shape[-1]
    time_major = ReferenceEvaluator(build_stacked_model(cell, H, layers, directions, lengths)).run(None, feed)
    batch_major = BatchMajor(ReferenceEvaluator(build_stacked_model(cell, H, layers, directions, lengths, layout=1)))
    got = batch_major.run(None, feed)
    assert [g.shape for g in got] == [t.shape for t in time_major]
    for g, t in zip(got, time_major):
        np.testing.assert_allclose(g, t, rtol=1e-5, atol=1e-6)


def test_a_boundary_that_forgets_to_transpose_back_is_caught():
    """The check of the boundary above fails on a mutant that hands back the batch-major outputs as they are."""
    needs("onnx")
    from onnx.reference import ReferenceEvaluator

    from rnnspec.spec.frameworks.onnx_operators import BatchMajor, build_stacked_model

    class NoTransposeBack(BatchMajor):
        def run(self, outputs, feed):
            swapped = {k: np.swapaxes(v, 0, 1) if k in ("X", "initial_h0") else v for k, v in feed.items()}
            return self.session.run(outputs, swapped)

    feed = _feed("elman", 1, 1, False)
    time_major = ReferenceEvaluator(build_stacked_model("elman", 2, 1, 1, False)).run(None, feed)
    got = NoTransposeBack(ReferenceEvaluator(build_stacked_model("elman", 2, 1, 1, False, layout=1))).run(None, feed)
    assert got[0].shape != time_major[0].shape


def test_onnxruntime_refuses_layout_1_and_the_target_says_so():
    needs("onnxruntime", "onnx")
    import onnxruntime

    from rnnspec.spec.frameworks.onnx_operators import OnnxRuntimeBatchMajor, layout_refusal
    from rnnspec.spec.targets import TargetError

    assert "Batchwise recurrent operations (layout == 1) are not supported" in layout_refusal(onnxruntime), \
        "ONNX Runtime now runs layout=1: the onnxruntime-batch-major target runs; update docs/onnx-attributes.md"
    with pytest.raises(TargetError, match="refuses layout=1: layout_ == 0 was false"):
        OnnxRuntimeBatchMajor()


def test_openvino_ignores_layout_1_in_its_own_api():
    """OpenVINO 2026.4.1 reads a layout=1 RNN's X (batch, seq, input) as time-major: one sequence of two steps is
    run as two sequences of one step (a defect)."""
    needs("openvino", "onnx")
    import openvino
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones((1, 1, 1), np.float32), n) for n in ("W", "R")]
    node = helper.make_node("RNN", ["X", "W", "R"], ["Y", "Y_h"], hidden_size=1, layout=1)
    graph = helper.make_graph([node], "rnn", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["B", "T", 1])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString()), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"X": np.array([[[0.5], [1.0]]], np.float32)})
    Y = got[compiled.outputs[0]]
    spec = [np.tanh(0.5), np.tanh(1.0 + np.tanh(0.5))]  # Y (B, T, D, H) = (1, 2, 1, 1)
    assert Y.shape == (1, 1, 2, 1), (Y.shape, FIXED)  # the time-major Y (T, D, B, H) of two one-step sequences
    np.testing.assert_allclose(Y.ravel(), [np.tanh(0.5), np.tanh(1.0)], rtol=1e-6, err_msg=FIXED)
    assert abs(Y.ravel()[1] - spec[1]) > 0.1


def test_the_openvino_batch_major_target_fails_where_batch_and_time_differ():
    needs("openvino", "onnx")
    target = "rnnspec.spec.frameworks.openvino_runtime:OpenVinoBatchMajor"
    report = check(TargetName(target), target=target, cell="gru-reset-before", dtype="float32", examples=4)
    assert not report.conformant
    assert {"GRU-RESET-BEFORE-FWD-H", "GRU-RESET-BEFORE-SHAPE"} & {r.clause.id for r in report.results
                                                                  if r.status in ("failed", "error")}, FIXED


# -- clip=C: every gate's pre-activation clipped to [-C, C] ------------------------------------------------------

def _sigmoid(u):
    return 1 / (1 + np.exp(-u))


class LstmClipModel:
    """A NumPy LSTM under the variant clip=C (contract of a variant: h, h_n, c_n), written here from ONNX Runtime's
    and OpenVINO's measured behaviour: ``clipped`` gates' pre-activations clipped, the cell state never."""

    cell = "lstm"
    dtypes = ("float32", "float64")
    variants = ("clip",)
    clip = None
    layers, bidirectional, lengths, default_state = 1, False, None, False
    clipped = "ifgo"
    clip_cell = False

    def forward(self, x, state0, params):
        h, c, hs = state0["h0"], state0["c0"], []
        C = self.clip
        for t in range(x.shape[0]):
            z = {g: x[t] @ params[f"U_{g}"].T + h @ params[f"W_{g}"].T + params[f"b_{g}"] for g in "ifgo"}
            z = {g: np.clip(v, -C, C) if g in self.clipped else v for g, v in z.items()}
            c = _sigmoid(z["f"]) * c + _sigmoid(z["i"]) * np.tanh(z["g"])
            h = _sigmoid(z["o"]) * np.tanh(np.clip(c, -C, C) if self.clip_cell else c)
            hs.append(h)
        return {"h": np.stack(hs), "h_n": h, "c_n": c}


class LstmClipSkipsCandidate(LstmClipModel):
    """Clips i, f, o but not the candidate g's pre-activation."""

    clipped = "ifo"


class LstmClipAlsoCellState(LstmClipModel):
    """Clips the cell state too before tanh reads it (the operator text's 'input of activations', read literally)."""

    clip_cell = True


class LstmClipIgnored(LstmClipModel):
    """Ignores clip (as onnx's reference evaluator does)."""

    clipped = ""


def test_the_clip_variant_is_read_named_and_refused_when_wrong():
    from rnnspec.derivations.variants import Variant, parse_variant

    variant = parse_variant("clip=1.5")
    assert (variant.clip, variant.name, variant.features, variant.tag) == (1.5, "clip=1.5", ("clip",), "-CLIP")
    assert parse_variant("layers=2,clip=1").name == "layers=2,clip=1"
    for wrong in ("clip=0", "clip=-1", "clip=abc", "clip=inf"):
        with pytest.raises(ValueError, match="clip must be a positive"):
            parse_variant(wrong)
    with pytest.raises(ValueError, match="clip must be None or a positive"):
        Variant(clip=True)


def test_the_clip_derivative_is_one_on_the_closed_interval_and_zero_outside():
    import sympy as sp

    from rnnspec.derivations.variants import clip_function

    u = sp.Symbol("u", real=True)
    slope = sp.diff(clip_function(u, sp.Integer(2)), u)
    assert [slope.subs(u, v) for v in (-3, -2, 0, 2, 3)] == [0, 1, 1, 1, 0]


@pytest.mark.parametrize("model, agrees", [(LstmClipModel, True), (LstmClipSkipsCandidate, False),
                                           (LstmClipAlsoCellState, False), (LstmClipIgnored, False)])
def test_the_clipped_oracle_clips_every_gate_pre_activation_and_not_the_cell_state(model, agrees):
    from rnnspec.derivations.composed import Composed

    rng = np.random.default_rng(3)
    T, B, I, H = 6, 3, 4, 5
    params = {k: 2 * v for k, v in _params("lstm", H, I, seed=3).items()}
    state0 = {"h0": rng.standard_normal((B, H)), "c0": 3 * rng.standard_normal((B, H))}
    x = rng.standard_normal((T, B, I))
    expected = Composed("lstm", "clip=1").forward(x, state0, params)
    target = model()
    target.clip = 1.0
    got = target.forward(x, state0, params)
    close = all(np.allclose(got[k], expected[k], rtol=1e-12, atol=1e-12) for k in expected)
    assert close == agrees, {k: np.abs(got[k] - expected[k]).max() for k in expected}


@pytest.mark.parametrize("model, conformant", [(LstmClipModel, True), (LstmClipSkipsCandidate, False),
                                               (LstmClipAlsoCellState, False), (LstmClipIgnored, False)])
def test_the_suite_passes_a_correct_clip_and_rejects_wrong_ones(model, conformant):
    report = check(model(), target=model.__name__, cell="lstm", variant="clip=1", examples=6)
    assert report.conformant == conformant, _failing(report)
    if not conformant:
        assert "LSTM-CLIP-FWD-H" in {r.clause.id for r in report.results if r.status == "failed"}


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru-reset-after", "gru-reset-before", "lstm-coupled"])
def test_onnxruntime_is_conformant_under_clip(cell):
    needs("onnxruntime", "onnx")
    from rnnspec.spec.frameworks.onnx_operators import OnnxRuntime

    class Clipped(OnnxRuntime):
        variants = tuple(dict.fromkeys(OnnxRuntime.variants + ("clip",)))

    target = Clipped()
    target.cell = cell
    report = check(target, target="onnxruntime", cell=cell, variant="clip=1", examples=6)
    assert report.conformant, _failing(report)


def test_openvino_is_conformant_under_clip():
    needs("openvino", "onnx")
    from rnnspec.spec.frameworks.openvino_runtime import OpenVinoF32

    class Clipped(OpenVinoF32):
        variants = tuple(dict.fromkeys(OpenVinoF32.variants + ("clip",)))

    target = Clipped()
    target.cell = "gru-reset-after"
    report = check(target, target="openvino-f32", cell="gru-reset-after", variant="clip=1", dtype="float32",
                   examples=6)
    assert report.conformant, _failing(report)


def test_onnx2pytorch_refuses_clip_in_its_own_words():
    needs("onnx2pytorch", "onnx", "torch")
    from rnnspec.spec.frameworks.onnx2torch_layers import CLIP_REFUSAL, Onnx2PyTorch, _import, baked
    from rnnspec.spec.frameworks.onnx_operators import build_model

    convert = _import("onnx2pytorch", "onnx2pytorch").ConvertModel
    params = {k: v.astype(np.float32) for k, v in _params("lstm").items()}
    with pytest.raises(NotImplementedError) as refusal:
        convert(baked(build_model("lstm", 3, clip=1.0), to_framework("onnx", "lstm", params), "float32"))
    assert str(refusal.value) in CLIP_REFUSAL, (str(refusal.value), "update docs/onnx-attributes.md")
    assert "clip" not in Onnx2PyTorch.variants


def test_the_openvino_targets_run_state0_default():
    """state0=default graphs have no initial-state inputs: the OpenVINO targets built them with, and fed nothing
    (every case raised); their sessions now follow the variant as ONNX Runtime's do."""
    needs("openvino", "onnx")
    report = check(TargetName(OPENVINO_F32), target=OPENVINO_F32, cell="lstm", variant="state0=default",
                   dtype="float32", examples=4)
    assert report.conformant, _failing(report)



# -- activations=f/g/h: ONNX's activations list for the gated cells ---------------------------------------------------

def _hard_sigmoid(u):
    return np.clip(0.2 * u + 0.5, 0, 1)


class LstmActivationsModel(LstmClipModel):
    """A NumPy LSTM under the variant activations=hardsigmoid/relu/tanh, from the operator's text: f for i, f, o;
    g for the candidate; h for the cell state read by h_t."""

    variants = ("activations",)
    gate_activations = None
    f, g, h = staticmethod(_hard_sigmoid), staticmethod(lambda u: np.maximum(u, 0)), staticmethod(np.tanh)

    def forward(self, x, state0, params):
        h, c, hs = state0["h0"], state0["c0"], []
        for t in range(x.shape[0]):
            z = {k: x[t] @ params[f"U_{k}"].T + h @ params[f"W_{k}"].T + params[f"b_{k}"] for k in "ifgo"}
            c = self.f(z["f"]) * c + self.f(z["i"]) * self.g(z["g"])
            h = self.f(z["o"]) * self.h(c)
            hs.append(h)
        return {"h": np.stack(hs), "h_n": h, "c_n": c}


class LstmActivationsIgnored(LstmActivationsModel):
    """Ignores the activations list: sigma and tanh (as onnx's reference evaluator does)."""

    f, g, h = staticmethod(_sigmoid), staticmethod(np.tanh), staticmethod(np.tanh)


class LstmActivationsGAndHSwapped(LstmActivationsModel):
    """Reads the list's g and h the other way round: ReLU on the cell state, tanh on the candidate."""

    g, h = staticmethod(np.tanh), staticmethod(lambda u: np.maximum(u, 0))


class LstmActivationsLogisticForHard(LstmActivationsModel):
    """HardSigmoid read as the logistic function's slope-matched line without its clamp (0.2 u + 0.5)."""

    f = staticmethod(lambda u: 0.2 * u + 0.5)


def test_the_activations_variant_is_read_named_and_refused_when_wrong():
    from rnnspec.derivations.registry import cell
    from rnnspec.derivations.variants import parse_variant, reactivated

    variant = parse_variant("activations=HardSigmoid/Relu/Tanh")
    assert variant.gate_activations == ("hardsigmoid", "relu", "tanh")
    assert (variant.name, variant.features) == ("activations=hardsigmoid/relu/tanh", ("activations",))
    with pytest.raises(ValueError, match="each one of sigmoid/tanh/relu/hardsigmoid"):
        parse_variant("activations=softsign/tanh")
    with pytest.raises(ValueError, match="takes 3 .f, g, h., got 2"):
        reactivated(cell("lstm", "tanh", None), ("sigmoid", "relu"))
    with pytest.raises(ValueError, match="has no gates"):
        reactivated(cell("elman", "tanh", None), ("sigmoid", "relu"))


@pytest.mark.parametrize("model, agrees", [(LstmActivationsModel, True), (LstmActivationsIgnored, False),
                                           (LstmActivationsGAndHSwapped, False),
                                           (LstmActivationsLogisticForHard, False)])
def test_the_reactivated_oracle_is_the_operators_text(model, agrees):
    from rnnspec.derivations.composed import Composed

    rng = np.random.default_rng(5)
    T, B, I, H = 6, 3, 4, 5
    params = {k: 2 * v for k, v in _params("lstm", H, I, seed=5).items()}
    state0 = {"h0": rng.standard_normal((B, H)), "c0": 3 * rng.standard_normal((B, H))}
    x = rng.standard_normal((T, B, I))
    expected = Composed("lstm", "activations=hardsigmoid/relu/tanh").forward(x, state0, params)
    got = model().forward(x, state0, params)
    close = all(np.allclose(got[k], expected[k], rtol=1e-12, atol=1e-12) for k in expected)
    assert close == agrees, {k: np.abs(got[k] - expected[k]).max() for k in expected}


@pytest.mark.parametrize("model, conformant", [(LstmActivationsModel, True), (LstmActivationsIgnored, False),
                                               (LstmActivationsGAndHSwapped, False)])
def test_the_suite_passes_the_right_activations_and_rejects_wrong_ones(model, conformant):
    report = check(model(), target=model.__name__, cell="lstm", variant="activations=hardsigmoid/relu/tanh",
                   examples=6)
    assert report.conformant == conformant, _failing(report)


@pytest.mark.parametrize("cell, variant", [("lstm", "activations=hardsigmoid/relu/tanh"),
                                           ("gru-reset-before", "activations=hardsigmoid/relu"),
                                           ("lstm-coupled", "activations=sigmoid/tanh/relu,clip=1")])
def test_onnxruntime_is_conformant_under_other_activations(cell, variant):
    needs("onnxruntime", "onnx")
    from rnnspec.spec.frameworks.onnx_operators import OnnxRuntime

    class Attributed(OnnxRuntime):
        variants = tuple(dict.fromkeys(OnnxRuntime.variants + ("clip", "activations")))

    target = Attributed()
    target.cell = cell
    report = check(target, target="onnxruntime", cell=cell, variant=variant, examples=6)
    assert report.conformant, _failing(report)


def test_openvino_runs_sigmoid_tanh_relu_and_refuses_hardsigmoid():
    needs("openvino", "onnx")
    from rnnspec.spec.frameworks.openvino_runtime import OpenVinoF32

    class Attributed(OpenVinoF32):
        variants = tuple(dict.fromkeys(OpenVinoF32.variants + ("clip", "activations")))

    target = Attributed()
    target.cell = "lstm"
    report = check(target, target="openvino-f32", cell="lstm", variant="activations=sigmoid/relu/tanh",
                   dtype="float32", examples=4)
    assert report.conformant, _failing(report)
    refused = check(target, target="openvino-f32", cell="lstm", variant="activations=hardsigmoid/tanh/tanh",
                    dtype="float32", examples=2)
    assert {r.status for r in refused.results if r.clause.id == "LSTM-ACT-HARDSIGMOID-TANH-TANH-FWD-H"} == {"error"}
    assert "Unsupported activation function" in str([r.message for r in refused.results]), \
        "OpenVINO now runs HardSigmoid: update docs/onnx-attributes.md"


def test_onnx2pytorch_refuses_an_activations_list_in_its_own_words():
    needs("onnx2pytorch", "onnx", "torch")
    from rnnspec.spec.frameworks.onnx2torch_layers import _import, baked
    from rnnspec.spec.frameworks.onnx_operators import build_model

    convert = _import("onnx2pytorch", "onnx2pytorch").ConvertModel
    params = {k: v.astype(np.float32) for k, v in _params("lstm").items()}
    model = build_model("lstm", 3, gate_activations=("sigmoid", "relu", "tanh"))
    with pytest.raises(NotImplementedError, match=r"LSTM activations \('Sigmoid', 'Relu', 'Tanh'\)"):
        convert(baked(model, to_framework("onnx", "lstm", params), "float32"))
