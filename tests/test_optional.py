"""tests/optional.needs: an optional extra's missing package skips its tests, except under CI for what .ci/run
installs, where it fails them."""

import importlib.util

import optional
import pytest


def test_what_ci_installs_is_read_from_its_install_line_and_the_extras():
    names = optional.installed_by_ci()
    assert {"torch", "onnx", "onnxruntime", "keras", "numba_cuda", "pytest", "matplotlib"} <= names, names
    assert not {"openvino", "paddlepaddle", "mlx", "tensorflow_cpu", "onnx2pytorch"} & names, names


@pytest.mark.parametrize("ci, module, outcome", [
    ("", "onnxruntime", pytest.skip.Exception),       # not CI: a missing extra skips
    ("true", "openvino", pytest.skip.Exception),      # CI does not install openvino: skips
    ("true", "onnxruntime", pytest.fail.Exception),   # CI installs onnxruntime: its absence fails
])
def test_a_missing_module_skips_or_under_ci_fails(monkeypatch, ci, module, outcome):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=module):
        optional.needs(module, "numpy")
