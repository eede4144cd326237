"""The keras-onnx and keras-tf2onnx targets: Keras 3's SimpleRNN, LSTM and GRU (TensorFlow backend) converted to
ONNX by tf2onnx (through Keras's ``model.export(format="onnx")`` and ``tf2onnx.convert.from_keras``), run in ONNX
Runtime (docs/exporters.md).

The tests that need TensorFlow and tf2onnx skip where they are missing, naming them (CI installs neither:
tensorflow-cpu 2.21.0 pins h5py 3.14.0); they run in an environment of their own (docs/exporters.md says how), and
that run's log is in benchmarks/long_run_keras_onnx.log. Each refusal test fails when the tool starts to accept
what it refused, saying what to update; each conformance test fails on a wrong number.
"""

import importlib.util
import sys

import numpy as np
import pytest

from rnnspec.spec.conventions import keras as layout
from rnnspec.spec.declared import VARIANT_FEATURES
from rnnspec.spec.runner import check
from rnnspec.spec.targets import TargetError
from rnnspec.spec.worker import TargetName

KERAS_ONNX = "rnnspec.spec.frameworks.keras_onnx:KerasOnnx"
KERAS_TF2ONNX = "rnnspec.spec.frameworks.keras_onnx:KerasTf2onnx"
NEEDED = ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime")
ACCEPTED = "the tool now accepts what it refused: declare it in spec/frameworks/keras_onnx.py, update docs/exporters.md"
CHANGED = "Keras changed: update spec/frameworks/keras_onnx.py (its model for this variant) and docs/exporters.md"
#: seconds per call: a conversion takes 0.5 to 3 s on a quiet machine, the first in a process imports TensorFlow
SLOW_CALL = 600


def needs_tensorflow():
    """Skip, naming what is missing, unless TensorFlow, tf2onnx and ONNX Runtime are installed."""
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {missing} (pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0, in an "
                    "environment of its own: docs/exporters.md)")


def keras_tensorflow():
    """Keras on the TensorFlow backend in this process (the tests that build models here)."""
    needs_tensorflow()
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "tensorflow":
        pytest.skip(f"this process imported Keras with the {sys.modules['keras'].backend.backend()!r} backend: "
                    "run this file alone (python -m pytest tests/test_keras_onnx.py)")
    from rnnspec.spec.frameworks.keras_onnx import _require

    return _require("keras-onnx")


def _failing(report) -> list:
    return [(r.clause.id, r.status, r.message.splitlines()[:3]) for r in report.results
            if r.status not in ("passed", "not provided")]


# -- what runs everywhere -----------------------------------------------------------------------------------------

def test_a_missing_converter_is_named_with_its_install_line(monkeypatch):
    from rnnspec.spec.frameworks.keras_onnx import KerasOnnx, KerasTf2onnx

    for module in ("tensorflow", "tf2onnx"):
        monkeypatch.setitem(sys.modules, module, None)  # find_spec answers None: not installed
    for cls, name in ((KerasOnnx, "keras-onnx"), (KerasTf2onnx, "keras-tf2onnx")):
        with pytest.raises(TargetError, match=rf"^target '{name}': tensorflow-cpu, tf2onnx not installed; "
                                              r"pip install .*tensorflow-cpu==2\.21\.0 tf2onnx==1\.17\.0"):
            cls()


def test_the_targets_declare_keras_s_cells_float32_and_their_variants_with_the_reasons_for_the_rest():
    from rnnspec.spec.frameworks.keras_onnx import KerasOnnx, KerasTf2onnx

    for cls in (KerasOnnx, KerasTf2onnx):
        assert cls.cells == tuple(layout.LAYERS)  # every Keras layer converts; the rest Keras has not (CANNOT)
        assert cls.dtypes == ("float32",) and "LSTM operator does not support double" in cls.not_provided["float64"]
        # Keras masking has both semantics (zero_output_for_mask); ONNX's clip and activations list are operator
        # attributes the conversion sets from the layer, not features of a Keras layer rnnspec can ask for
        assert set(cls.variants) == set(VARIANT_FEATURES) - {"clip", "activations"}
        assert cls.shapes is None  # the weights are folded into the graph: a conversion per case in any case


# -- conformance (needs TensorFlow and tf2onnx) ---------------------------------------------------------------------

@pytest.mark.parametrize("cell", tuple(layout.LAYERS))
def test_keras_s_onnx_export_is_conformant_forward(cell):
    needs_tensorflow()
    report = check(TargetName(KERAS_ONNX), target="keras-onnx", cell=cell, examples=8, seed=3, timeout=SLOW_CALL)
    assert report.verdict == "conformant", _failing(report)


def test_tf2onnx_from_keras_is_conformant_forward_on_the_lstm():
    needs_tensorflow()
    report = check(TargetName(KERAS_TF2ONNX), target="keras-tf2onnx", cell="lstm", examples=8, seed=4,
                   timeout=SLOW_CALL)
    assert report.verdict == "conformant", _failing(report)


@pytest.mark.parametrize("cell,variant", [
    ("gru-reset-before", "layers=2,bidirectional,lengths=carry"),
    ("lstm", "layers=2,bidirectional,lengths=zero,state0=default"),
    ("elman", "bidirectional,lengths=carry,state0=default"),
    ("gru-reset-after", "lengths=zero"),
])
def test_keras_s_onnx_export_is_conformant_on_the_variants(cell, variant):
    needs_tensorflow()
    report = check(TargetName(KERAS_ONNX), target="keras-onnx", cell=cell, variant=variant, examples=6, seed=5,
                   timeout=SLOW_CALL)
    assert report.verdict == "conformant", _failing(report)


class BidirectionalLayerUnderCarry:
    """keras-onnx with keras.layers.Bidirectional also under lengths=carry (what the target avoids, below)."""

    def __new__(cls):
        from rnnspec.spec.frameworks.keras_onnx import KerasOnnx

        class WithBidirectional(KerasOnnx):
            def _model(self, I, H, weights):
                lengths = self.lengths
                try:  # the model is built as for "zero" (keras.layers.Bidirectional), then judged as "carry"
                    self.lengths = "zero" if lengths else None
                    return super()._model(I, H, weights)
                finally:
                    self.lengths = lengths

        return WithBidirectional()


def test_the_suite_rejects_keras_bidirectional_layer_as_carry_masking():
    """The reason the target builds a carry-masked bidirectional run as two layers: keras.layers.Bidirectional's
    outputs are zero at padded steps, and the suite tells the semantics apart."""
    needs_tensorflow()
    report = check(TargetName("tests/test_keras_onnx.py:BidirectionalLayerUnderCarry"), target="bidirectional",
                   cell="elman", variant="bidirectional,lengths=carry", examples=10, seed=0, timeout=SLOW_CALL)
    assert report.verdict == "not conformant"
    assert [c for c, status, _ in _failing(report)] == ["ELMAN-BIDIR-LEN-CARRY-FWD-H"]


# -- what the tools do, pinned (needs TensorFlow and tf2onnx) ---------------------------------------------------------

def test_keras_bidirectional_still_forces_zero_outputs_at_masked_steps():
    keras = keras_tensorflow()
    for kind in (keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU):
        both = keras.layers.Bidirectional(kind(2, return_sequences=True))
        assert both.forward_layer.zero_output_for_mask and both.backward_layer.zero_output_for_mask, CHANGED
        assert not kind(2, return_sequences=True).zero_output_for_mask, CHANGED  # carry is the layers' default


def _model(keras, kind: str, dtype: str = "float32", masked: bool = False):
    x = keras.Input((None, 2), name="x", dtype=dtype)
    inputs = [x] + ([keras.Input((None,), name="mask", dtype="bool")] if masked else [])
    layer = {"elman": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
    out = layer(3, return_sequences=True, dtype=dtype)(x, **({"mask": inputs[1]} if masked else {}))
    return keras.Model(inputs, out)


def _convert(model) -> bytes:
    from rnnspec.spec.frameworks.keras_onnx import KerasOnnx

    return KerasOnnx._convert(type("Converter", (), {"converter": "keras"})(), model)


def test_tf2onnx_writes_the_plain_lstm_as_onnx_s_lstm_and_the_others_as_a_loop():
    """What the targets' graphs are made of (docs/exporters.md): an ONNX LSTM operator where tf2onnx's rewriter
    matches Keras's LSTM loop, a Loop over the TensorFlow while loop's body elsewhere."""
    keras = keras_tensorflow()
    import onnx

    recurrent = {"LSTM", "GRU", "RNN", "Loop", "Scan"}
    for kind, masked, want in [("lstm", False, {"LSTM"}), ("lstm", True, {"Loop"}), ("elman", False, {"Loop"}),
                               ("gru", False, {"Loop"})]:
        graph = onnx.load_from_string(_convert(_model(keras, kind, masked=masked))).graph
        assert {n.op_type for n in graph.node} & recurrent == want, (kind, masked)


def test_onnx_runtime_still_refuses_the_float64_lstm_tf2onnx_writes():
    keras = keras_tensorflow()
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 4, 2))
    graph = _convert(_model(keras, "lstm", "float64"))
    with pytest.raises(Exception, match="LSTM operator does not support double yet"):
        ort.InferenceSession(graph).run(None, {"x": x})
    # the float64 SimpleRNN converts to a Loop that runs, to float64's rounding
    model = _model(keras, "elman", "float64")
    got = ort.InferenceSession(_convert(model)).run(None, {"x": x})[0]
    assert got.dtype == np.float64 and np.max(np.abs(got - np.asarray(model(x)))) < 1e-12, ACCEPTED
