"""Choosing a cell: on the command line, in the plugin, in a target's declarations; and what is refused."""

import subprocess
import sys
from pathlib import Path

import pytest

from rnnspec.spec.declared import UsageError
from rnnspec.spec.runner import check

pytest_plugins = ["pytester"]
TESTS = Path(__file__).parent


def _rnnspec(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_bare_gru_is_refused_naming_both_forms_and_who_uses_which():
    run = _rnnspec("check", "oracle", "--cell", "gru")
    assert run.returncode == 2
    for words in ("gru-reset-after", "gru-reset-before", "PyTorch", "ONNX", "Keras"):
        assert words in run.stderr, run.stderr


def test_the_cuda_kernels_name_the_cells_they_implement():
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed (pip install .[cuda])")
    run = _rnnspec("check", "rnnspec-cuda", "--cell", "lstm-proj")
    implemented = "('elman', 'lstm', 'gru-reset-after', 'gru-reset-before')"
    assert run.returncode == 2 and f"implements cells {implemented}, not 'lstm-proj'" in run.stderr, run.stderr


def test_a_clause_of_another_cell_is_named_as_such():
    run = _rnnspec("check", "oracle", "--clause", "LSTM-VJP-W_F")
    assert run.returncode == 2 and "is a clause of cell 'lstm' (--cell lstm)" in run.stderr, run.stderr


def test_a_case_of_another_cell_is_refused():
    case = '{"T":2,"B":1,"I":1,"H":1,"K":2,"activation":"tanh","dtype":"float64","regime":"contracting","seed":1}'
    run = _rnnspec("check", "oracle", "--cell", "lstm", "--case", case.replace("}", ',"cell":"elman"}'))
    assert run.returncode == 2 and "--case is a case of cell 'elman', --cell says 'lstm'" in run.stderr


def test_one_case_of_a_gated_cell_runs_from_the_command_line():
    case = ('{"T":3,"B":2,"I":2,"H":3,"K":2,"activation":"tanh","dtype":"float64","regime":"forget-open","seed":1,'
            '"cell":"lstm"}')
    run = _rnnspec("check", "oracle", "--case", case, "--quiet")
    assert run.returncode == 0 and "cell lstm" in run.stdout and "LSTM-VJP-C0" in run.stdout, run.stdout + run.stderr


class DeclaresGru:
    cell = "gru"

    def forward(self, x, state0, params):
        return {}


def test_a_target_declaring_gru_is_a_usage_error():
    with pytest.raises(UsageError, match="ambiguous"):
        check(DeclaresGru(), examples=1)


def test_a_multi_cell_target_is_told_which_cell_each_call_is_for():
    """The oracle starts as an Elman (it would raise on params without U); the suite sets its cell."""
    from rnnspec.derivations.oracle import Oracle

    oracle = Oracle()
    assert oracle.cell == "elman" and "gru-reset-before" in oracle.cells
    report = check(oracle, cell="gru-reset-before", examples=2)
    assert report.conformant and report.cell == "gru-reset-before"
    assert {r.clause.id for r in report.results} >= {"GRU-RESET-BEFORE-FWD-H", "GRU-RESET-BEFORE-LOSS-W_N"}


def test_plugin_checks_the_cell_it_is_given(pytester):
    result = pytester.runpytest_subprocess("--rnnspec-target=oracle", "--rnnspec-cell=gru-reset-after",
                                           "--rnnspec-examples=3", "rnnspec::GRU-RESET-AFTER-VJP-B_HN",
                                           "-p", "no:cacheprovider", "-v")
    text = result.stdout.str()
    assert "rnnspec::GRU-RESET-AFTER-VJP-B_HN PASSED" in text, text
    assert result.parseoutcomes() == {"passed": 1}
    bad = pytester.runpytest_subprocess("--rnnspec-target=oracle", "--rnnspec-cell=gru", "-p", "no:cacheprovider")
    assert bad.ret != 0 and "ambiguous" in bad.stderr.str() + bad.stdout.str()


def test_a_file_target_may_import_the_modules_beside_it():
    run = _rnnspec("check", f"{TESTS / 'mutants_gated.py'}:LstmNoTanhOnCell", "--examples", "2", "--quiet")
    assert run.returncode == 1 and "LSTM-FWD-H" in run.stdout, run.stdout + run.stderr


def test_the_kernels_know_the_activations_the_cells_define():
    """kernels/ may not import derivations/ (nor SymPy): its own list must be the same names, in one order."""
    from rnnspec.derivations.cells import ACTIVATIONS
    from rnnspec.kernels.checks import ACTIVATIONS as KERNEL_ACTIVATIONS

    assert KERNEL_ACTIVATIONS == tuple(ACTIVATIONS)


def test_a_torch_layer_that_drops_its_second_bias_fails():
    """The canonical biases reach PyTorch split at random between bias_ih and bias_hh."""
    pytest.importorskip("torch")
    from rnnspec.spec.frameworks.torch_layers import TorchRNN

    class DropsRecurrentBias(TorchRNN):
        def _module(self, params, dtype):
            module = super()._module(params, dtype)
            with self.torch.no_grad():
                module.bias_hh_l0.zero_()
            return module

    for cell in ("lstm", "gru-reset-after", "elman"):
        report = check(DropsRecurrentBias(), cell=cell, examples=4)
        assert not report.conformant, cell
        assert any(r.status == "failed" for r in report.results if r.clause.id.endswith("FWD-H")), cell
