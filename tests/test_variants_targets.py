"""Variants through the suite's front doors: the built-in targets, the CLI, declarations and conventions."""

import json
import subprocess
import sys

import numpy as np
import pytest
from test_framework_targets import needs

from rnnspec.derivations.variants import Variant
from rnnspec.spec.cases import Case
from rnnspec.spec.contract import contract
from rnnspec.spec.conventions import pytorch
from rnnspec.spec.conventions._layout import add
from rnnspec.spec.runner import UsageError, check
from rnnspec.spec.worker import TargetName

ALL = "layers=2,bidirectional,lengths=zero"


@pytest.mark.parametrize("cell", ["lstm", "lstm-proj", pytest.param("gru-reset-after", marks=pytest.mark.slow),
                                  pytest.param("elman", marks=pytest.mark.slow)])
def test_torch_stacked_bidirectional_packed_is_conformant(cell):
    """A few cases in CI (nn.RNN and nn.GRU under -m slow); tests/test_long_run.py runs 200 per dtype on three
    seeds for all four."""
    needs("torch")
    report = check(TargetName("torch"), target="torch", cell=cell, variant=ALL, examples=8)
    assert report.variant == ALL
    assert report.conformant, [(r.clause.id, r.status, r.message[:200]) for r in report.results if r.status != "passed"]


@pytest.mark.parametrize("cell,variant", [("lstm", ALL), ("gru-reset-before", "layers=2,bidirectional,lengths=carry")])
def test_the_cpu_kernels_are_conformant_on_variants(cell, variant):
    """A few cases in CI, float32 included (tests/test_variant_kernels.py compares float64 to the oracle);
    tests/test_long_run.py runs 200 per dtype on three seeds for every cell and both paddings."""
    report = check(TargetName("rnnspec-cpu"), target="rnnspec-cpu", cell=cell, variant=variant, examples=6)
    assert report.variant == variant
    assert report.conformant, [(r.clause.id, r.status, r.message[:200]) for r in report.results if r.status != "passed"]


def test_the_oracle_target_runs_the_carry_semantics():
    report = check(TargetName("oracle"), target="oracle", cell="gru-reset-before",
                   variant="bidirectional,lengths=carry", examples=4)
    assert report.conformant and report.results[0].clause.id == "GRU-RESET-BEFORE-BIDIR-LEN-CARRY-FWD-H"


def test_a_variant_the_target_does_not_declare_is_a_usage_error():
    needs("torch")
    with pytest.raises(UsageError, match=r"lengths=carry.*does not declare"):
        check(TargetName("torch"), cell="lstm", variant="lengths=carry", examples=1)
    with pytest.raises(UsageError, match="cannot read 'both'"):
        check(TargetName("oracle"), variant="layers=2,both", examples=1)


def test_a_clause_of_another_variant_is_unknown():
    with pytest.raises(UsageError, match="unknown clause ids"):
        check(TargetName("oracle"), cell="lstm", variant="bidirectional", clauses=["LSTM-FWD-H"], examples=1)


def test_cli_checks_a_variant_and_reports_it(tmp_path):
    out = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", "check", "oracle", "--cell", "lstm", "--variant",
                          "lengths=zero,layers=2", "--examples", "2", "--report", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode in (0, 3), run.stderr
    report = json.loads(out.read_text())
    assert report["variant"] == "layers=2,lengths=zero"
    assert "LSTM-L2-LEN-ZERO-FWD-C_N" in run.stdout


def test_variant_cases_round_trip_through_describe_and_draw_lengths_with_0_and_T():
    case = Case(7, 5, 2, 3, 2, "tanh", "float64", "contracting", 3, "lstm", "lengths=zero,bidirectional")
    assert case.variant == "bidirectional,lengths=zero"
    again = Case(**json.loads(case.describe()))
    assert again == case
    lengths = case.arrays()["lengths"]
    assert {0, 7} <= set(lengths.tolist()) and lengths.min() >= 0 and lengths.max() <= 7
    shapes = contract("lstm", case.variant).shapes(7, 5, 2, 3, 2)
    assert shapes[("forward", "h")] == (7, 5, 6) and shapes[("forward", "c_n")] == (2, 5, 3)
    assert shapes[("vjp", "U_i_l0_reverse")] == (3, 2)


def test_a_plain_case_is_unchanged_by_the_variants():
    case = Case(4, 2, 2, 3, 2, "tanh", "float64", "chaotic", 1, "gru-reset-after")
    assert "variant" not in case.describe()
    assert sorted(case.arrays()) == sorted(["x", "h0", *contract("gru-reset-after").step_params, "V", "c", "targets",
                                            "cot_h"])


def test_torch_conventions_for_stacked_modules_match_pytorchs_names_and_round_trip():
    needs("torch")
    import torch

    variant = Variant(2, True)
    case = Case(3, 2, 4, 5, 2, "tanh", "float64", "contracting", 0, "gru-reset-after", variant.name)
    params = {k: v for k, v in case.arrays().items() if k in contract("gru-reset-after", variant.name).step_params}
    weights = pytorch.to_runs("gru-reset-after", params, variant)
    module = torch.nn.GRU(4, 5, num_layers=2, bidirectional=True)
    assert sorted(weights) == sorted(module.state_dict())
    assert all(tuple(weights[k].shape) == tuple(v.shape) for k, v in module.state_dict().items())
    back = pytorch.from_runs("gru-reset-after", weights, add, variant)
    assert sorted(back) == sorted(params)
    assert all(np.array_equal(back[k], params[k]) for k in params)


def test_torch_proj_size_is_the_projected_lstm_and_its_weights_round_trip():
    needs("torch")
    import torch

    report = check(TargetName("torch"), target="torch", cell="lstm-proj", examples=6)
    assert report.conformant, [(r.clause.id, r.status) for r in report.results if r.status != "passed"]
    case = Case(3, 2, 4, 5, 2, "tanh", "float64", "contracting", 0, "lstm-proj", P=3)
    params = {k: v for k, v in case.arrays().items() if k in contract("lstm-proj").step_params}
    weights = pytorch.to("lstm-proj", params)
    module = torch.nn.LSTM(4, 5, proj_size=3)
    assert sorted(weights) == sorted(module.state_dict())
    assert all(tuple(weights[k].shape) == tuple(v.shape) for k, v in module.state_dict().items())
    back = pytorch.from_("lstm-proj", weights, add)
    assert all(np.array_equal(back[k], params[k]) for k in params)


def test_the_projected_lstm_case_keeps_its_projection_below_h():
    with pytest.raises(ValueError, match=r"P \(projection size\) must be an integer in \[1, H=2\)"):
        Case(3, 1, 1, 2, 2, "tanh", "float64", "contracting", 0, "lstm-proj", P=2)
    with pytest.raises(ValueError, match="takes P = 0"):
        Case(3, 1, 1, 2, 2, "tanh", "float64", "contracting", 0, "lstm", P=1)
    case = Case(9, 3, 2, 6, 3, "tanh", "float64", "chaotic", 0, "lstm-proj", P=4)
    assert all(1 <= c.P < c.H for c in case.smaller()) and case.smaller()


@pytest.mark.slow  # 20 s in CI for the LSTM alone
@pytest.mark.parametrize("cell", ["lstm", "gru-reset-before"])
def test_keras_masking_is_the_carry_semantics(cell):
    """Keras 3's layers under a mask, the reverse direction a go_backwards layer (torch backend, float32: Keras
    computes float64 in float32 there)."""
    needs("keras", "torch")
    report = check(TargetName("keras-torch"), target="keras-torch", cell=cell, variant="bidirectional,lengths=carry",
                   dtype="float32", examples=6)
    assert report.conformant, [(r.clause.id, r.status, r.message[:200]) for r in report.results if r.status != "passed"]
    zero = check(TargetName("oracle"), target="oracle", cell=cell, variant="lengths=zero", examples=1)
    assert zero.conformant  # the oracle runs both; Keras declares only carry:
    with pytest.raises(UsageError, match="does not declare"):
        check(TargetName("keras-torch"), cell=cell, variant="lengths=zero", examples=1)


@pytest.mark.parametrize("cell", ["lstm", "gru-reset-before"])
def test_onnxruntime_stacked_bidirectional_sequence_lens_agree_but_an_empty_sequence_ends_at_zero(cell):
    """ONNX Runtime's operators chained into two bidirectional layers with sequence_lens compute the "zero"
    semantics, except one thing: a sequence of length 0 gets final states 0, not its initial states."""
    needs("onnx", "onnxruntime")
    from rnnspec.derivations.composed import Composed
    from rnnspec.spec.frameworks.onnx_operators import OnnxRuntime

    variant = ALL
    case = Case(7, 4, 3, 5, 2, "tanh", "float32", "contracting", 5, cell, variant)
    x, state0, params, _ = contract(cell, variant).call_args("forward", case.arrays())
    target = OnnxRuntime()
    target.cell, target.layers, target.bidirectional, target.lengths = cell, 2, True, "zero"
    wide = lambda d: {k: v.astype(np.float64) for k, v in d.items()}
    for lengths, agree in ((np.array([7, 1, 3, 5]), ("h", "h_n", "c_n")), (np.array([7, 0, 3, 5]), ("h",))):
        got = target.forward(x, state0, params, lengths=lengths)
        want = Composed(cell, variant).forward(x.astype(np.float64), wide(state0), wide(params), lengths=lengths)
        for key in want:
            error = float(np.max(np.abs(got[key] - want[key])))
            assert (error < 1e-5) == (key in agree), (lengths, key, error)
    assert np.all(got["h_n"][:, 1] == 0) and np.any(state0["h0"][:, 1] != 0)


def test_onnxruntime_peepholes_are_the_lstm_peephole_cell():
    """ONNX's P (order i, o, f): i and f read c_{t-1}, o reads c_t, as the cell's equations say."""
    needs("onnx", "onnxruntime")
    from rnnspec.spec.conventions import onnx

    report = check(TargetName("onnxruntime"), target="onnxruntime", cell="lstm-peephole", examples=8)
    assert report.conformant, [(r.clause.id, r.status) for r in report.results if r.status not in ("passed",
                                                                                                   "not provided")]
    case = Case(3, 2, 2, 4, 2, "tanh", "float32", "contracting", 0, "lstm-peephole")
    params = {k: v for k, v in case.arrays().items() if k in contract("lstm-peephole").step_params}
    weights = onnx.to("lstm-peephole", params)
    assert weights["P"].shape == (1, 12)
    np.testing.assert_array_equal(weights["P"][0, 4:8], params["P_o"])
    back = onnx.from_("lstm-peephole", weights, add)
    assert all(np.array_equal(back[k], params[k]) for k in params)
