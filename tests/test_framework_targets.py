"""The built-in framework targets: conformant where the framework is, its defects reported as what they are.

Each test skips only when its framework is not installed (CI installs onnxruntime and Keras on the
torch backend; JAX's targets compile every new shape, so their runs are behind ``-m slow``).
"""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from optional import needs

from rnnspec.spec.cases import Case
from rnnspec.spec.runner import check
from rnnspec.spec.targets import TargetError, load_target
from rnnspec.spec.worker import TargetName

CELLS = ("elman", "lstm", "gru-reset-after", "gru-reset-before")



def _failing(report) -> list:
    return [(r.clause.id, r.status, r.message.splitlines()[:1]) for r in report.results
            if r.status not in ("passed", "not provided")]


@pytest.mark.parametrize("cell", CELLS)
def test_onnxruntime_operators_are_conformant_forward(cell):
    pytest.importorskip("onnxruntime")
    report = check(TargetName("onnxruntime"), target="onnxruntime", cell=cell, examples=6)
    assert report.conformant, _failing(report)
    assert {r.status for r in report.results if "-VJP-" in r.clause.id or "-LOSS-" in r.clause.id} == {"not provided"}


def test_onnxruntime_really_has_no_float64_recurrent_kernel():
    """What the target says instead of declaring float64: if ONNX Runtime gains the kernels, this fails."""
    ort = pytest.importorskip("onnxruntime")
    from rnnspec.spec.frameworks.onnx_operators import build_model

    for cell in ("elman", "lstm", "gru-reset-after"):
        model = build_model(cell, 2, dtype="float64").SerializeToString()
        gates = {"elman": 1, "lstm": 4, "gru-reset-after": 3}[cell]
        feed = {"X": np.zeros((1, 1, 1)), "W": np.zeros((1, 2 * gates, 1)), "R": np.zeros((1, 2 * gates, 2)),
                "B": np.zeros((1, 4 * gates)), "initial_h": np.zeros((1, 1, 2))}
        if cell == "lstm":
            feed["initial_c"] = np.zeros((1, 1, 2))
        with pytest.raises(Exception, match="NOT_IMPLEMENTED|does not support double"):
            options = ort.SessionOptions()
            options.log_severity_level = 4
            ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, feed)


class OnnxGatesReadAsTorch:
    """ONNX's LSTM weights filled in PyTorch's gate order (i, f, g, o where ONNX wants i, o, f, c): the slip
    of CrispASR#106 and opencv#29931."""

    cells = ("lstm",)
    cell = "lstm"
    dtypes = ("float32",)

    def __init__(self):
        from rnnspec.spec.frameworks.onnx_operators import OnnxRuntime

        self.inner = OnnxRuntime()
        self.inner.cell = "lstm"

    def forward(self, x, state0, params):
        onnx_order = dict(zip("iofg", "ifgo"))  # the block ONNX reads as gate k holds PyTorch's k-th gate
        moved = dict(params)
        for what in "UWb":
            moved.update({f"{what}_{k}": params[f"{what}_{v}"] for k, v in onnx_order.items()})
        return self.inner.forward(x, state0, moved)


def test_onnx_gates_read_in_pytorch_order_fail():
    pytest.importorskip("onnxruntime")
    report = check(OnnxGatesReadAsTorch(), examples=4)
    assert not report.conformant and {r.status for r in report.results if "FWD" in r.clause.id} == {"failed"}


@pytest.mark.parametrize("cell", CELLS)
def test_keras_layers_on_the_torch_backend_are_conformant_in_float32(cell):
    needs("keras", "torch")
    report = check(TargetName("keras-torch"), target="keras-torch", cell=cell, dtype="float32", examples=4)
    assert report.conformant, _failing(report)


def test_keras_float64_is_reported_as_computed_in_float32():
    """Keras 3 maps float64 products to float32 on its torch backend: SimpleRNN's forward and every loss
    (the head is keras.ops) fail; the LSTM layer's fused torch loop does not, so its forward passes."""
    needs("keras", "torch")
    elman = check(TargetName("keras-torch"), target="keras-torch", cell="elman", dtype="float64", examples=3)
    lstm = check(TargetName("keras-torch"), target="keras-torch", cell="lstm", dtype="float64", examples=3)
    status = lambda report, clause: next(r.status for r in report.results if r.clause.id == clause)
    assert status(elman, "ELMAN-FWD-H") == "failed" and status(elman, "ELMAN-LOSS-VALUE") == "failed"
    assert status(lstm, "LSTM-FWD-H") == "passed" and status(lstm, "LSTM-VJP-W_F") == "passed"
    assert status(lstm, "LSTM-LOSS-V") == "failed"
    worst = next(r for r in elman.results if r.clause.id == "ELMAN-FWD-H").worst
    assert 1e-9 < worst.error < 1e-3, worst  # float32's rounding (amplified on a chaotic case), not a wrong formula
    probe = ("import os; os.environ['KERAS_BACKEND'] = 'torch'; import numpy as np, keras; "
             "print(keras.ops.matmul(np.ones((2, 2)), np.ones((2, 2))).dtype)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == \
        "torch.float32"


def test_a_keras_target_refuses_a_backend_other_than_the_one_keras_was_imported_with():
    needs("keras", "torch")  # the refusal comes before the jax backend is looked for
    probe = ("import os; os.environ['KERAS_BACKEND'] = 'torch'; import keras\n"
             "from rnnspec.spec.targets import load_target, TargetError\n"
             "try:\n    load_target('keras-jax')\nexcept TargetError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    assert "imported Keras with the 'torch' backend" in out and "cannot switch to 'jax'" in out


def test_torch_cuda_without_a_gpu_says_so():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the refusal cannot be shown here (rnnspec matrix runs the torch-cuda rows)")
    with pytest.raises(TargetError, match="sees no CUDA device"):
        load_target("torch-cuda")


def test_a_missing_framework_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(TargetError, match=r"pip install 'rnnspec\[onnx\]'"):
        load_target("onnxruntime")


@pytest.mark.slow
@pytest.mark.parametrize("target, cell", [("flax", c) for c in CELLS[:3]] + [("keras-jax", c) for c in CELLS])
def test_jax_targets_are_conformant_in_float32(target, cell):
    needs("flax" if target == "flax" else "keras", "jax")
    report = check(TargetName(target), target=target, cell=cell, dtype="float32", examples=20)
    assert report.conformant, _failing(report)


@pytest.mark.slow
def test_flax_is_conformant_in_float64():
    needs("flax", "jax")
    for cell in CELLS[:3]:
        report = check(TargetName("flax"), target="flax", cell=cell, dtype="float64", examples=10)
        assert report.conformant, _failing(report)


@pytest.mark.slow
def test_keras_jax_float64_simple_rnn_raises_the_frameworks_own_error():
    needs("keras", "jax")
    case = Case(T=3, B=2, I=2, H=3, K=2, activation="tanh", dtype="float64", regime="contracting", seed=1)
    report = check(TargetName("keras-jax"), target="keras-jax", cases=[case])
    forward = next(r for r in report.results if r.clause.id == "ELMAN-FWD-H")
    assert forward.status == "error" and "carry input and carry output must have equal types" in forward.message


MISREAD_KERAS_GRU = '''
from rnnspec.spec.frameworks.keras_layers import KerasTorch


class TorchOrderIntoKeras(KerasTorch):
    """PyTorch's GRU weights (r, z, n) copied into Keras's (z, r, h) blocks as they are (keras-team/keras#15915)."""

    cells = ("gru-reset-after",)

    def _function(self, x, state0, params, targets=None):
        swapped = dict(params)
        for what in "UWb":
            swapped[what + "_r"], swapped[what + "_z"] = params[what + "_z"], params[what + "_r"]
        return super()._function(x, state0, swapped, targets)
'''


def test_pytorch_gru_weights_read_in_keras_order_fail(tmp_path):
    needs("keras", "torch")
    (tmp_path / "misread.py").write_text(MISREAD_KERAS_GRU)
    target = f"{tmp_path / 'misread.py'}:TorchOrderIntoKeras"
    report = check(TargetName(target), target=target, dtype="float32", examples=3)
    assert {r.status for r in report.results if "-FWD-" in r.clause.id} == {"failed"}


def test_device_cuda_picks_the_gpu_variant_or_says_there_is_none(capsys):
    from rnnspec.spec.cli import main

    assert main(["check", "onnxruntime", "--device", "cuda"]) == 2
    assert "no CUDA variant" in capsys.readouterr().err
    if importlib.util.find_spec("torch") is None:
        return
    import torch

    if not torch.cuda.is_available():
        assert main(["check", "torch", "--device", "cuda"]) == 2
        assert "'torch-cuda': PyTorch sees no CUDA device" in capsys.readouterr().err


COMPILED_ONCE = """
import numpy as np
from rnnspec.spec.frameworks import _PROGRAMS, _VJP_PROGRAMS
from rnnspec.spec.frameworks.flax_cells import FlaxRNN

rng = np.random.default_rng(0)
I, H, K, B = 3, 4, 5, 2
params = {f"{k}_{g}": rng.standard_normal((H, I) if k == "U" else (H, H) if k == "W" else (H,)) * 0.3
          for k in "UWb" for g in "rzn"}
params.update(b_hn=rng.standard_normal(H) * 0.3, V=rng.standard_normal((K, H)), c=rng.standard_normal(K))
target = FlaxRNN()
target.cell = "gru-reset-after"
plain = {k: v for k, v in params.items() if k not in ("V", "c")}
for T in (3, 3, 5, 5):  # each call twice, as the determinism clause makes it, on two lengths
    x, h0 = rng.standard_normal((T, B, I)), {"h0": rng.standard_normal((B, H))}
    target.forward(x, h0, plain)
    target.vjp(x, h0, plain, {"h": np.ones((T, B, H))})
    target.loss(x, h0, params, rng.integers(0, K, (T, B)))
assert len(target._programs) == 2, target._programs  # outputs, and the loss
compiled = [p._cache_size() for p in _PROGRAMS.values()] + [p._cache_size() for p in _VJP_PROGRAMS.values()]
assert compiled == [2, 2, 2], compiled  # one compilation per length for each of forward, vjp and loss
print("compiled once per shape")
"""


def test_jax_targets_compile_each_method_once_per_shape():
    """The determinism clause calls every method twice per case: the second call must reuse the first's
    compiled program (a function made anew per call was compiled anew, doubling a JAX check's time)."""
    needs("flax", "jax")
    run = subprocess.run([sys.executable, "-c", COMPILED_ONCE], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "compiled once per shape" in run.stdout, run.stdout + run.stderr


KERAS_MASKED_START = """
import os, sys
os.environ["KERAS_BACKEND"] = sys.argv[1]
import numpy as np, keras
x = np.random.default_rng(0).standard_normal((2, 2, 2)).astype("float32")
h0 = np.array([[0.5, -0.25], [0.5, -0.25]], "float32")
layer = keras.layers.GRU(2, return_sequences=True)
y = np.asarray(keras.ops.convert_to_numpy(layer(x, mask=np.array([[False, False], [True, False]]), initial_state=[h0])))
print("length 0 outputs", y[0].tolist())
"""


def test_keras_on_jax_outputs_the_initial_state_where_a_mask_hides_the_first_steps():
    """Keras 3.15.1: a masked sequence of length 0 outputs h0 on JAX, where torch and tensorflow output zeros
    (keras-torch is conformant under lengths=carry: test_keras_masking_is_the_carry_semantics), so keras-jax
    fails the carry semantics' FWD-H. Goes stale loudly when Keras changes it."""
    needs("keras", "jax")
    run = subprocess.run([sys.executable, "-c", KERAS_MASKED_START, "jax"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "length 0 outputs [[0.5, -0.25], [0.5, -0.25]]" in run.stdout, run.stdout
