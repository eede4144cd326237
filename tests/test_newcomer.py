"""Issue "A newcomer's first hour": verdicts that say what they checked and why they failed, a missing GPU as a
usage error, failing cases a user can load, and a slow first call that is not read as a defect."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from rnnspec.spec import cli
from rnnspec.spec.judge import where
from rnnspec.spec.report import table
from rnnspec.spec.runner import check

from cli_runner import rnnspec
from mutants import Elman, OddBatchBug


class ForwardOnly(Elman):
    vjp = None
    loss = None


def test_a_forward_only_target_is_conformant_for_what_it_provides_and_the_verdict_says_so():
    report = check(ForwardOnly(), examples=4)
    assert report.verdict == "conformant"
    assert table(report).splitlines()[-1] == "CONFORMANT (forward only; VJP, LOSS not provided)"


def test_require_all_makes_a_method_not_provided_fail():
    report = check(ForwardOnly(), examples=4, require_all=True)
    assert report.verdict == "not conformant"
    assert "--require-all" in table(report).splitlines()[-1]
    assert check(Elman(), examples=4, require_all=True).verdict == "conformant"


class Float32Inside(Elman):
    """Computes float64 in float32, as Keras 3 does on its torch and jax backends."""

    dtypes = ("float64",)

    def forward(self, x, state0, params):
        low = {k: v.astype(np.float32) for k, v in params.items()}
        out = super().forward(x.astype(np.float32), {"h0": state0["h0"].astype(np.float32)}, low)
        return {"h": out["h"].astype(np.float64)}


def test_a_failure_that_a_known_defect_explains_says_so_with_distinct_digits_and_a_short_command():
    report = check(Float32Inside(), target="keras-torch", examples=6, clauses=None)
    text = table(report)
    assert report.verdict == "not conformant"
    assert "known defect of keras-torch in float64: Keras 3 computes float64 in float32" in text
    # not known for the tensorflow backend, which is exact
    assert "known defect" not in table(check(Float32Inside(), target="keras-tensorflow", examples=6))
    # the reproduce command of a block of many clauses reruns the case without a --clause flag each
    reproduce = [line for line in text.splitlines() if "reproduce:" in line]
    assert reproduce and all(len(line) < 400 for line in reproduce), reproduce
    assert "rerun the whole run: rnnspec check keras-torch --cell elman --seed 0 --examples 6" in text


def test_a_deviation_prints_enough_digits_to_tell_the_values_apart():
    expected, got = np.array([-0.20222987123]), np.array([-0.20222987091])
    line = where(got, expected)
    shown = line.split("expected ")[1].split(", got ")
    assert shown[0] != shown[1].split(" (")[0], line
    assert "difference 3.2e-10" in line


def test_rnnspec_cuda_without_a_gpu_is_a_usage_error_that_names_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}  # conftest turns the simulator on for this process
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"], env=env,
                           capture_output=True, text=True, timeout=120)
    if probe.stdout.strip() == "True":
        pytest.skip("a CUDA GPU is available here: the case this test is about cannot arise")
    run = subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", "check", "rnnspec-cuda", "--examples", "1",
                          "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "NUMBA_ENABLE_CUDASIM=1" in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_failing_case_is_saved_with_inputs_expected_and_got(tmp_path):
    from rnnspec.spec.casefile import case_inputs, read_case

    report = check(OddBatchBug(), seed=7, examples=20, save_cases=str(tmp_path))
    saved = {r.counterexample["saved"] for r in report.results if r.counterexample}
    assert saved and all(path.startswith(str(tmp_path)) for path in saved)
    arrays = read_case(saved.pop())
    case = arrays["case"]
    assert arrays["x"].shape == (case["T"], case["B"], case["I"])
    assert arrays["got.forward.h"].shape == arrays["expected.forward.h"].shape
    # the mutant is wrong on odd batches, and the saved arrays show it
    assert case["B"] % 2 == 1 and not np.allclose(arrays["got.vjp.W"], arrays["expected.vjp.W"])
    # the inputs are the case's own: the same as case_inputs gives without running a target
    again = case_inputs(case)
    assert np.array_equal(again["x"], arrays["x"]) and np.array_equal(again["expected.vjp.W"], arrays["expected.vjp.W"])
    assert "saved:" in table(report)


def test_save_cases_into_a_file_is_a_usage_error_before_the_run(capsys, tmp_path):
    file = tmp_path / "f"
    file.write_text("")
    code, _, err = rnnspec(capsys, "check", "oracle", "--save-cases", str(file), "--quiet")
    assert code == 2 and "--save-cases" in err


class SlowFirstCall(Elman):
    """A framework's first call: imports, thread pools, tracing. Correct, and then fast."""

    def forward(self, x, state0, params):
        if not getattr(self, "warmed", False):
            time.sleep(2.5)
            self.warmed = True
        return super().forward(x, state0, params)


def test_a_slow_first_call_gets_a_longer_limit_and_is_not_a_defect():
    report = check(SlowFirstCall(), examples=3, timeout=1.5)
    assert report.verdict == "conformant", [(r.clause.id, r.status, r.message) for r in report.results
                                            if r.status != "passed"]


class AlwaysHangs(Elman):
    def forward(self, x, state0, params):
        time.sleep(3600)


def test_a_call_that_times_out_twice_is_reported_as_a_timeout_never_as_a_wrong_value():
    start = time.monotonic()
    report = check(AlwaysHangs(), examples=2, timeout=0.5)
    elapsed = time.monotonic() - start
    status = {r.clause.id: r.status for r in report.results}
    assert status["ELMAN-FWD-H"] == "timeout" and "failed" not in status.values()
    assert report.verdict == "inconclusive"
    message = next(r for r in report.results if r.clause.id == "ELMAN-FWD-H").message
    assert "retried once in a fresh process" in message and "load average" in message, message
    assert "timed out" in table(report).splitlines()[-1]
    # a warm-up (3 x 0.5 s) and its retry (3 x 0.5 s), then at most one more timeout for the rest
    assert elapsed < 2 * 1.5 + 0.5 + 10, f"run took {elapsed:.1f} s"


def test_help_names_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    description = capsys.readouterr().out.split("\n\n")[1]  # after the usage line, before the arguments
    for command in ("check", "matrix", "bench", "derive"):
        assert command in description, description


def test_a_file_target_without_an_attribute_is_told_to_name_one(capsys, tmp_path):
    file = tmp_path / "my_rnn.py"
    file.write_text("X = 1\n")
    code, _, err = rnnspec(capsys, "check", str(file), "--quiet")
    assert code == 2 and f"{file}:ATTR" in err, err


def test_the_header_lists_the_accuracy_of_the_checked_dtype_only():
    from rnnspec.spec import load_target

    report = check(load_target("rnnspec-cpu"), examples=2, dtype="float32")
    header = table(report).splitlines()[0]
    assert "float32" in header and "float64" not in header, header


def test_a_case_with_a_list_for_its_cell_is_named(capsys):
    code, _, err = rnnspec(capsys, "check", "--quiet", "--case", '{"cell": ["lstm"], "T": 1, "B": 1, "I": 1, "H": 1, '
                           '"K": 2, "activation": "tanh", "dtype": "float64", "regime": "contracting", "seed": 1}')
    assert code == 2 and "case field cell must be a string" in err, err


def test_tune_is_a_command_that_shows_the_thresholds_in_use(capsys):
    code, out, _ = rnnspec(capsys, "tune", "--show")
    assert code == 0 and "safe" in out, out
