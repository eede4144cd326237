"""ONNX back into PyTorch: the ``onnx2pytorch`` target (onnx2pytorch's ConvertModel on the onnxruntime target's
graphs), its one defect, and what onnx2torch and onnx2pytorch refuse, each pinned so that a new release that
changes it fails here and says which document to update (docs/compilers.md)."""

import importlib.util
import sys

import numpy as np
import pytest

from rnnspec.spec.runner import check
from rnnspec.spec.targets import TargetError

if importlib.util.find_spec("onnx2pytorch") is None or importlib.util.find_spec("onnx") is None:
    pytest.skip("not installed: onnx2pytorch, onnx (pip install 'rnnspec[onnx2pytorch]')", allow_module_level=True)

from rnnspec.spec.frameworks.onnx2torch_layers import (  # noqa: E402
    ONNX2TORCH_REFUSAL,
    REFUSED,
    Onnx2PyTorch,
    _import,
    baked,
)
from rnnspec.spec.frameworks.onnx_operators import build_model  # noqa: E402

#: the operators of the converter's single-operator graphs, with what onnx2pytorch does at a length-0 sequence
LENGTH_ZERO = {"RNN": ({}, "zeros"), "LSTM": ({}, "zeros"), "GRU lbr=1": ({"linear_before_reset": 1}, "zeros"),
               "GRU lbr=0": ({"linear_before_reset": 0}, "initial state")}
STALE = "update docs/compilers.md, the Defect entry in spec/defects.py and this test"


def _failing(report) -> list:
    return [(r.clause.id, r.status, r.message.splitlines()[:1]) for r in report.results
            if r.status not in ("passed", "not provided")]


@pytest.mark.parametrize("cell", Onnx2PyTorch.cells)
def test_converted_operators_are_conformant_forward_and_through_autograd(cell):
    report = check(Onnx2PyTorch(), target="onnx2pytorch", cell=cell, examples=4)
    assert report.conformant, _failing(report)
    statuses = {r.clause.id.split("-")[-2]: r.status for r in report.results if "-VJP-" in r.clause.id}
    assert set(statuses.values()) == {"passed"}, "vjp must be checked, not 'not provided'"
    assert any("-LOSS-" in r.clause.id and r.status == "passed" for r in report.results)


def test_stacked_bidirectional_converted_layers_are_conformant():
    report = check(Onnx2PyTorch(), target="onnx2pytorch", cell="gru-reset-after", variant="layers=2,bidirectional",
                   examples=3)
    assert report.conformant, _failing(report)


def test_the_suite_reports_the_zeroed_final_state_of_a_length_zero_sequence():
    """The defect, as the suite sees it: only the final states and their initial states' gradients fail."""
    report = check(Onnx2PyTorch(), target="onnx2pytorch", cell="lstm", variant="lengths=zero", examples=4)
    failing = {r.clause.id for r in report.results if r.status == "failed"}
    assert failing == {"LSTM-LEN-ZERO-FWD-H_N", "LSTM-LEN-ZERO-FWD-C_N", "LSTM-LEN-ZERO-VJP-H0",
                       "LSTM-LEN-ZERO-VJP-C0"}, (_failing(report), STALE)


def _length_zero_graph(op: str, attributes: dict, dtype=np.float32):
    """One ONNX operator over sequence_lens = [0, T], weights and lengths constant (onnx2pytorch bakes them)."""
    from onnx import TensorProto, helper, numpy_helper

    T, B, I, H = 3, 2, 2, 2
    G = {"RNN": 1, "LSTM": 4, "GRU": 3}[op]
    rng = np.random.default_rng(0)
    states = ["initial_h", "initial_c"] if op == "LSTM" else ["initial_h"]
    outs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    node = helper.make_node(op, ["X", "W", "R", "B", "sequence_lens", *states], outs, hidden_size=H, **attributes)
    constants = [numpy_helper.from_array(rng.standard_normal((1, G * H, I)).astype(dtype), "W"),
                 numpy_helper.from_array(rng.standard_normal((1, G * H, H)).astype(dtype), "R"),
                 numpy_helper.from_array(np.zeros((1, 2 * G * H), dtype), "B"),
                 numpy_helper.from_array(np.array([0, T], np.int32), "sequence_lens")]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])]
    inputs += [helper.make_tensor_value_info(s, TensorProto.FLOAT, [1, B, H]) for s in states]
    graph = helper.make_graph([node], "length_zero", inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), (T, B, I, H), len(states)


@pytest.mark.parametrize("name", LENGTH_ZERO)
def test_defect_onnx2pytorch_zeroes_the_final_state_of_a_length_zero_sequence(name):
    """The reproducer of the defect in onnx2pytorch's own API (0.6.0): Y_h of a sequence of length 0 is zero for
    RNN, LSTM and GRU(linear_before_reset=1), where its own GRU(linear_before_reset=0) keeps initial_h, as the
    spec does. Fails when onnx2pytorch changes either."""
    import torch

    onnx2pytorch = _import("onnx2pytorch", "onnx2pytorch")
    attributes, now = LENGTH_ZERO[name]
    model, (T, B, I, H), n_states = _length_zero_graph(name.split()[0], attributes)
    h0 = torch.ones(1, B, H)
    outputs = onnx2pytorch.ConvertModel(model)(torch.randn(T, B, I), *[h0] * n_states)
    final = outputs[1][0, 0].detach().numpy()
    expected = np.zeros(H) if now == "zeros" else np.ones(H)
    assert np.array_equal(final, expected), (
        f"onnx2pytorch {onnx2pytorch.__version__} {name}: Y_h of a length-0 sequence is now {final}, no longer "
        f"{now} (initial_h is ones): {STALE}")


def test_onnx2pytorch_refuses_peepholes_in_the_words_the_target_reports():
    convert = _import("onnx2pytorch", "onnx2pytorch").ConvertModel
    H = 2
    weights = {"W": np.ones((1, 4 * H, 1), np.float32), "R": np.ones((1, 4 * H, H), np.float32),
               "B": np.zeros((1, 8 * H), np.float32), "P": np.ones((1, 3 * H), np.float32)}
    with pytest.raises(NotImplementedError) as refusal:
        convert(baked(build_model("lstm-peephole", H), weights, "float32"))
    assert str(refusal.value) in REFUSED["lstm-peephole"], (str(refusal.value), STALE)
    assert "lstm-peephole" not in Onnx2PyTorch.cells


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru-reset-after"])
def test_onnx2torch_has_no_converter_for_the_recurrent_operators(cell):
    """onnx2torch 1.5.15 converts none of RNN, LSTM, GRU: if a release does, add a target (docs/compilers.md)."""
    if importlib.util.find_spec("onnx2torch") is None:
        pytest.skip("not installed: onnx2torch")
    onnx2torch = _import("onnx2torch", "onnx2torch")
    with pytest.raises(NotImplementedError, match="Converter is not implemented") as refusal:
        onnx2torch.convert(build_model(cell, 2))
    op = build_model(cell, 2).graph.node[0].op_type
    assert f"operation_type='{op}'" in str(refusal.value)
    assert ONNX2TORCH_REFUSAL.split("NotImplementedError: ", 1)[1].split(" (")[0] in str(refusal.value)


def test_the_stand_in_torchvision_does_not_outlive_the_import():
    Onnx2PyTorch()
    module = sys.modules.get("torchvision")
    assert module is None or getattr(module, "__file__", None), "a stand-in torchvision was left in sys.modules"


def test_an_activation_the_converter_does_not_take_is_refused_by_name():
    with pytest.raises(TargetError, match="'sigmoid'"):
        Onnx2PyTorch("sigmoid")


def test_the_target_leaves_its_inputs_unmodified_and_returns_the_declared_shapes():
    rng = np.random.default_rng(1)
    T, B, I, H = 4, 3, 2, 5
    params = {f"{w}_{g}": rng.standard_normal(s) for g in "rzn" for w, s in (("U", (H, I)), ("W", (H, H)), ("b", (H,)))}
    params["b_hn"] = rng.standard_normal(H)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    copies = {k: v.copy() for k, v in params.items()}
    target = Onnx2PyTorch()
    target.cell = "gru-reset-after"
    grads = target.vjp(x, {"h0": h0}, params, {"h": np.ones((T, B, H))})
    assert all(np.array_equal(params[k], copies[k]) for k in params)
    assert {k: v.shape for k, v in grads.items()} == {**{k: v.shape for k, v in params.items()}, "x": x.shape,
                                                      "h0": h0.shape}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cell", Onnx2PyTorch.cells)
def test_onnx2pytorch_is_conformant_over_200_cases(cell, seed):
    """The long run (benchmarks/long_run_onnx2torch.log): 200 cases of each cell, both dtypes, three seeds."""
    report = check(Onnx2PyTorch(), target="onnx2pytorch", cell=cell, seed=seed, examples=200)
    assert report.conformant, _failing(report)


@pytest.mark.parametrize("method", ["forward", "vjp", "loss"])
def test_each_call_runs_on_one_torch_thread_and_sets_the_callers_setting_back(method, monkeypatch):
    """PyTorch's default (a thread per core) made the LSTM's default check cost 3x the CPU time of one thread (its
    threads spin between the many small steps of c_t's chain; over 60 s at load 12, issue 35 item 6)."""
    import torch

    target = Onnx2PyTorch()
    target.cell = "lstm"
    seen = []
    run = target._run
    monkeypatch.setattr(target, "_run", lambda *a, **k: (seen.append(torch.get_num_threads()), run(*a, **k))[1])
    rng = np.random.default_rng(2)
    T, B, I, H = 3, 2, 2, 3
    sizes = (("U", (H, I)), ("W", (H, H)), ("b", (H,)))
    params = {f"{w}_{g}": rng.standard_normal(s) for g in "ifgo" for w, s in sizes}
    x, state0 = rng.standard_normal((T, B, I)), {"h0": rng.standard_normal((B, H)), "c0": rng.standard_normal((B, H))}
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        if method == "forward":
            target.forward(x, state0, params)
        elif method == "vjp":
            target.vjp(x, state0, params, {"h": np.ones((T, B, H)), "c": np.ones((T, B, H))})
        else:
            target.loss(x, state0, {**params, "V": rng.standard_normal((3, H)), "c": np.zeros(3)},
                        rng.integers(0, 3, (T, B)))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
