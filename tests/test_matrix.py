"""The compatibility matrix: rows per (target, cell, dtype), verdicts, and the reasons for what is missing."""

import pytest
from optional import needs

from rnnspec.spec import matrix
from rnnspec.spec.cli import main


def test_the_matrix_of_onnxruntime_says_what_it_runs_and_why_float64_is_missing(tmp_path):
    needs("onnxruntime")
    out = tmp_path / "m.md"
    assert main(["matrix", "--targets", "onnxruntime", "--examples", "2", "--quiet", "--out", str(out)]) == 0
    text = out.read_text()
    from rnnspec import catalogue
    from rnnspec.spec.frameworks.onnx_operators import OnnxRuntime

    rows = [line for line in text.splitlines() if line.startswith("| ONNX Runtime")]
    assert len(rows) == 2 * len(catalogue.NAMES)  # every cell of the catalogue, two dtypes
    implemented = len(OnnxRuntime.cells)
    assert sum("**conformant** (LOSS, VJP not provided)" in r for r in rows) == implemented
    assert sum("not provided [1]" in r and "float64" in r for r in rows) == implemented
    assert "1. ONNX Runtime has no double kernel for RNN" in text
    assert "rnnspec matrix --targets onnxruntime --seeds 0 --examples 2" in text


def test_a_target_that_refuses_to_run_is_a_row_with_its_reason_not_a_failed_run(tmp_path):
    """onnxruntime-batch-major refuses to be built (ONNX Runtime 1.32.0 runs no layout=1): the matrix still finishes,
    and each of its rows says why, in the runtime's words; nothing is stored, so a fixed runtime is run next time."""
    needs("onnxruntime")
    from rnnspec.spec.frameworks.onnx_operators import OnnxRuntimeBatchMajor

    try:
        OnnxRuntimeBatchMajor()
        pytest.fail("ONNX Runtime now runs layout=1: the target is no longer refused; this test has gone stale")
    except Exception as exc:  # the refusal this test needs
        assert "layout" in str(exc)
    out, results = tmp_path / "m.md", tmp_path / "results"
    assert main(["matrix", "--targets", "onnxruntime-batch-major", "--examples", "2", "--quiet", "--out", str(out),
                 "--results", str(results)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ONNX Runtime")]
    assert rows and all("not provided [" in r for r in rows), rows
    assert "the target refuses to run it:" in text and "Batchwise recurrent operations (layout == 1)" in text
    assert not list((results / "units").glob("*.json"))


def test_a_cell_a_framework_lacks_is_not_provided_with_the_reason():
    torch_row = next(r for r in matrix.ROWS if r.target == "torch")
    assert "no PyTorch layer computes W_n (r * h)" in matrix.not_provided(torch_row, "gru-reset-before", "float32")
    assert matrix.not_provided(torch_row, "lstm", "float64") == ""
    flax_row = next(r for r in matrix.ROWS if r.target == "flax")
    assert "GRUCell multiplies r" in matrix.not_provided(flax_row, "gru-reset-before", "float64")


def test_an_unknown_matrix_target_is_a_usage_error(capsys):
    assert main(["matrix", "--targets", "tensorflow"]) == 2
    assert "unknown targets ['tensorflow']" in capsys.readouterr().err
