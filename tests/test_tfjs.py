"""The built-in target ``tfjs``: TensorFlow.js's own layers on Node, conformant where TF.js can compute.

The npm packages are installed once per session (``tfjs_layers.install``, a no-op when they are there); the
tests skip only where ``node`` or ``npm`` is not on PATH. What TF.js cannot do is pinned in TF.js's own
JavaScript, so each of those tests fails the day TF.js changes: the reset-after GRU it refuses, the float64
it lacks, and the gradient over a sequence of one step that it cannot take (tensorflow/tfjs#1529).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rnnspec.derivations.registry import cell as registered
from rnnspec.spec import conventions
from rnnspec.spec.cases import generate
from rnnspec.spec.contract import contract
from rnnspec.spec.conventions import keras as keras_layout
from rnnspec.spec.conventions import tfjs as layout
from rnnspec.spec.frameworks import tfjs_layers
from rnnspec.spec.frameworks.tfjs_layers import ONE_STEP_DEFECT, TfjsRNN
from rnnspec.spec.runner import check
from rnnspec.spec.targets import TargetError, load_target
from rnnspec.spec.worker import TargetName

CELLS = TfjsRNN.cells


@pytest.fixture(scope="session")
def tfjs_home():
    """The installed npm packages' folder (installed now if they are not there)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node and npm are not on PATH; install Node.js 18+, then {tfjs_layers.INSTALL_COMMAND}")
    return tfjs_layers.install(quiet=True)


def _node(home, script: str) -> str:
    """What ``script`` prints, run by Node with ``tf`` bound to the installed @tensorflow/tfjs."""
    prelude = (f"const tf = require('module').createRequire({json.dumps(str(home / 'package.json'))})"
               "('@tensorflow/tfjs');\n")
    done = subprocess.run(["node", "-e", prelude + script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _failing(report) -> list:
    return [(r.clause.id, r.status, r.message.splitlines()[:1]) for r in report.results if r.status != "passed"]


def _cases(cell: str, count: int, seed: int = 0, one_step: bool = False) -> list:
    """The generated cases of ``rnnspec check tfjs`` with T == 1 (``one_step``) or T >= 2."""
    activations = TfjsRNN.activations if cell == "elman" else registered(cell).activations
    cases = generate(count, seed, TfjsRNN.dtypes, activations, cell)
    return [c for c in cases if (c.T == 1) == one_step]


@pytest.mark.parametrize("cell", CELLS)
def test_tfjs_layers_are_conformant_on_sequences_of_two_steps_or_more(tfjs_home, cell):
    cases = _cases(cell, 6)
    assert cases, "no case with T >= 2 among the generated ones"
    report = check(TargetName("tfjs"), target="tfjs", cases=cases)
    assert report.conformant, _failing(report)


@pytest.mark.parametrize("cell", CELLS)
def test_over_one_step_only_the_gradients_break_and_with_tf_js_own_error(tfjs_home, cell):
    cases = _cases(cell, 40, one_step=True)[:2]
    assert cases, "no case with T == 1 among the generated ones"
    report = check(TargetName("tfjs"), target="tfjs", cases=cases)
    assert {r.status for r in report.results if "-FWD-" in r.clause.id} == {"passed"}
    gradients = [r for r in report.results if "-VJP-" in r.clause.id or "-LOSS-" in r.clause.id]
    assert gradients and {r.status for r in gradients} == {"error"}
    for r in report.results:
        if r.status != "passed":  # the gradients, and the clauses that read their calls (shape, purity, ...)
            assert r.status == "error" and ONE_STEP_DEFECT in r.message and "tensorflow/tfjs#1529" in r.message, \
                r.message


def test_tf_js_still_cannot_differentiate_a_layer_by_its_input_over_one_step(tfjs_home):
    """The defect, in TF.js's own code: when this fails, TF.js 4.22's successor differentiates a one-piece
    tf.unstack; the T == 1 cases should then pass: drop ONE_STEP_DEFECT and the defect's entry."""
    script = """
const layer = tf.layers.simpleRNN({units: 2});
const out = [];
for (const T of [2, 1]) {
  try { out.push(`${T}: ${tf.grad((x) => tf.sum(layer.apply(x)))(tf.ones([1, T, 1])).shape}`); }
  catch (e) { out.push(`${T}: ${e.message}`); }
}
try { tf.grad((x) => tf.sum(tf.unstack(x)[0]))(tf.ones([1, 3])); out.push('unstack: ok'); }
catch (e) { out.push(`unstack: ${e.message}`); }
// the weights' gradients alone, the input a constant: the unstack is off the path, and TF.js computes them
layer.apply(tf.ones([1, 1, 1]));
out.push(`weights: ${Object.keys(tf.variableGrads(() => tf.sum(layer.apply(tf.ones([1, 1, 1])))).grads).length}`);
console.log(out.join('\\n'));
"""
    assert _node(tfjs_home, script).splitlines() == ["2: 1,2,1", f"1: {ONE_STEP_DEFECT}",
                                                     f"unstack: {ONE_STEP_DEFECT}", "weights: 3"]


def test_tf_js_softmax_cross_entropy_still_loses_accuracy_on_large_logits(tfjs_home):
    """The second defect, in TF.js's own code: the gradient of tf.losses.softmaxCrossEntropy at the logits [a, a - 1]
    is [-1, 1] / (1 + e) whatever a; TF.js's is off by |a| * 2^-24 relative, where tf.softmax(logits) - labels is
    exact to float32. When this fails, TF.js fixed it: the target's LOSS clauses should then pass on large logits."""
    script = """
const labels = tf.tensor2d([[1, 0]]);
const out = [];
for (const a of [1, 720, 7200]) {
  const logits = tf.tensor2d([[a, a - 1]]);
  const g = tf.grad((l) => tf.losses.softmaxCrossEntropy(labels, l, undefined, 0, tf.Reduction.SUM))(logits);
  const s = tf.sub(tf.softmax(logits), labels);
  out.push([g.dataSync()[1], s.dataSync()[1]]);
}
console.log(JSON.stringify(out));
"""
    exact = 1 / (1 + np.e)
    relative = np.abs(np.array(json.loads(_node(tfjs_home, script))) - exact) / exact
    assert (relative[:, 1] < 1e-7).all(), relative  # tf.softmax: float32-exact
    assert relative[0, 0] < 1e-7 and 1e-5 < relative[1, 0] < 1e-4 and 1e-4 < relative[2, 0] < 1e-3, relative


def test_a_loss_failure_on_large_logits_is_that_of_tf_losses_softmax_cross_entropy(tfjs_home):
    """A case of seed 2's long run (logits up to 720): the LOSS gradients fail through TF.js's loss function and
    pass, on the same layers, through tf.logSoftmax."""
    from rnnspec.spec.cases import Case
    from rnnspec.spec.frameworks.tfjs_layers import TfjsLogSoftmaxHead

    case = Case(T=7, B=4, I=7, H=1, K=5, activation="relu", dtype="float32", regime="chaotic", seed=3798)
    plain = check(TfjsRNN(), cases=[case])
    assert {r.clause.id for r in plain.results if r.status != "passed"} == \
        {"ELMAN-LOSS-X", "ELMAN-LOSS-H0", "ELMAN-LOSS-U", "ELMAN-LOSS-W"}, _failing(plain)
    assert all(r.status == "failed" for r in plain.results if r.status != "passed")
    located = check(TfjsLogSoftmaxHead(), cases=[case])
    assert located.conformant, _failing(located)


def test_tf_js_has_no_reset_after_gru_and_says_so(tfjs_home):
    """When this fails, TF.js builds a reset-after GRU: add gru-reset-after to spec/conventions/tfjs.py."""
    out = _node(tfjs_home, "try { tf.layers.gru({units: 2, resetAfter: true}); console.log('built'); }"
                           " catch (e) { console.log(e.message); }")
    assert out == "GRUCell does not support reset_after parameter set to true."
    assert out in layout.CANNOT["gru-reset-after"] and "tensorflow/tfjs#5728" in layout.CANNOT["gru-reset-after"]


def test_the_server_answers_a_reset_after_gru_with_tf_js_refusal(tfjs_home):
    from rnnspec.spec.process import CallError, ProcessClient

    client = ProcessClient(["node", str(tfjs_layers.SERVER), str(tfjs_home)], timeout=60)
    try:
        assert client.start()["tfjs"] == tfjs_layers.pinned_version()
        f32 = lambda *shape: np.zeros(shape, np.float32)
        arrays = {"kernel": f32(1, 6), "recurrent_kernel": f32(2, 6), "bias": f32(2, 3), "x": f32(1, 2, 1),
                  "h0": f32(1, 2)}
        with pytest.raises(CallError, match="GRUCell does not support reset_after parameter set to true"):
            client.call({"method": "forward", "cell": "gru-reset-after", "activation": "tanh", "dtype": "float32"},
                        arrays)
        with pytest.raises(CallError, match="dtype float64: TF.js tensors are float32"):
            client.call({"method": "forward", "cell": "elman", "activation": "tanh", "dtype": "float64"},
                        {**arrays, "bias": f32(2)})
        assert client.starts == 1  # an error answer leaves the program running
    finally:
        client.close()


def test_the_conventions_refuse_a_reset_after_gru_for_tf_js_with_the_reason():
    assert "gru-reset-after" not in TfjsRNN.cells
    params = {f"{w}_{g}": np.zeros((2, 1) if w == "U" else (2, 2) if w == "W" else 2) for w in "UWb" for g in "rzn"}
    params["b_hn"] = np.zeros(2)
    with pytest.raises(conventions.ConversionError, match=r"TensorFlow.js has no gru-reset-after layer: .*#5728"):
        conventions.to_framework("tfjs", "gru-reset-after", params)


def test_the_matrix_row_of_tf_js_gives_the_reasons_of_what_it_lacks():
    from rnnspec.spec import matrix

    row = next(r for r in matrix.ROWS if r.target == "tfjs")
    assert matrix.not_provided(row, "gru-reset-after", "float32") == layout.CANNOT["gru-reset-after"]
    assert "float64" in matrix.not_provided(row, "lstm", "float64")


def test_tf_js_really_has_no_float64(tfjs_home):
    """What the target says instead of declaring float64: when this fails, TF.js has a float64 dtype."""
    out = _node(tfjs_home, "try { tf.tensor([0.5], [1], 'float64'); console.log('made'); }"
                           " catch (e) { console.log(e.message); }")
    assert out == "Unknown data type float64"
    assert TfjsRNN.dtypes == ("float32",) and "no float64" in TfjsRNN.not_provided["float64"]


def test_a_float64_argument_is_refused_by_name_before_node_sees_it(tfjs_home):
    target = TfjsRNN()
    x = np.zeros((2, 1, 1))
    params = {"U": np.zeros((2, 1), np.float32), "W": np.zeros((2, 2), np.float32), "b": np.zeros(2, np.float32)}
    with pytest.raises(TypeError, match=r"^x: TensorFlow.js computes in float32 only .* got float64"):
        target.forward(x, {"h0": np.zeros((1, 2), np.float32)}, params)
    assert target.client.starts == 0


class GruGatesInPyTorchOrder(TfjsRNN):
    """TF.js's GRU weights filled in PyTorch's gate order (r, z, n where TF.js's columns are z, r, h)."""

    cells = ("gru-reset-before",)
    cell = "gru-reset-before"

    def _arrays(self, x, state0, params):
        swapped = dict(params)
        for what in "UWb":
            swapped[f"{what}_z"], swapped[f"{what}_r"] = params[f"{what}_r"], params[f"{what}_z"]
        return super()._arrays(x, state0, swapped)


class RecurrentKernelNotTransposed(TfjsRNN):
    """The recurrent kernel given as W instead of W^T (TF.js's rows are h_{t-1}'s components)."""

    cells = ("elman",)

    def _arrays(self, x, state0, params):
        arrays = super()._arrays(x, state0, params)
        arrays["recurrent_kernel"] = np.ascontiguousarray(arrays["recurrent_kernel"].T)
        return arrays


@pytest.mark.parametrize("wrong", [GruGatesInPyTorchOrder, RecurrentKernelNotTransposed])
def test_a_wrong_packing_is_rejected(tfjs_home, wrong):
    cell = wrong.cells[0]
    report = check(wrong(), cases=_cases(cell, 6), clauses=[f"{contract(cell).prefix}-FWD-H"])
    assert not report.conformant and [r.status for r in report.results] == ["failed"]


def test_a_gate_order_mutant_of_the_conventions_is_rejected(tfjs_home, monkeypatch):
    """The LSTM's columns read in ONNX's order (i, o, f, c) by the layout both ways: forward fails."""
    monkeypatch.setitem(keras_layout.ORDER, "lstm", "iofg")  # conventions.tfjs packs with Keras's orders
    report = check(TfjsRNN(), cases=_cases("lstm", 6), clauses=["LSTM-FWD-H", "LSTM-FWD-C"])
    assert not report.conformant and [r.status for r in report.results] == ["failed", "failed"]


def test_one_node_process_serves_every_call(tfjs_home):
    target = TfjsRNN()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 1)).astype(np.float32)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in (("U", (2, 1)), ("W", (2, 2)), ("b", (2,)))}
    state0 = {"h0": np.zeros((2, 2), np.float32)}
    try:
        first = target.forward(x, state0, params)["h"]
        pid = target.client.pid
        for _ in range(3):
            np.testing.assert_array_equal(target.forward(x, state0, params)["h"], first)
        assert target.client.starts == 1 and target.client.pid == pid
    finally:
        target.close()


def test_without_the_packages_the_target_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNSPEC_TFJS_HOME", str(tmp_path / "empty"))
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH (its own message is tested below)")
    with pytest.raises(TargetError) as caught:
        load_target("tfjs")
    message = str(caught.value)
    assert "\n" not in message and tfjs_layers.INSTALL_COMMAND in message and str(tmp_path / "empty") in message


def test_without_node_the_target_says_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node there
    with pytest.raises(TargetError, match=r"^target 'tfjs': node is not on PATH: install Node.js 18 or later"):
        TfjsRNN()
    with pytest.raises(TargetError) as caught:
        TfjsRNN()
    assert "\n" not in str(caught.value) and str(caught.value).endswith(tfjs_layers.INSTALL_COMMAND)


def test_the_install_lives_outside_the_source_tree_and_is_keyed_by_the_lock(tfjs_home, monkeypatch):
    assert tfjs_layers.version().startswith(tfjs_layers.pinned_version() + " (Node v")
    assert not (tfjs_layers.SOURCE / "node_modules").exists()
    monkeypatch.delenv("RNNSPEC_TFJS_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert tfjs_layers.home() == Path("/somewhere/rnnspec-tfjs") / tfjs_layers._lock_digest()


def test_the_install_command_without_node_says_so_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tfjs_layers.main(["--install"]) == 1
    assert capsys.readouterr().err == "error: node and npm are not both on PATH: install Node.js 18 or later " \
                                      "(it comes with npm)\n"
    assert tfjs_layers.main(["--where"]) == 1 and "node is not on PATH" in capsys.readouterr().out
