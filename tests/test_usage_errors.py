"""Usage errors are usage errors: exit 2, one clear message, no traceback of ours, within 3x the timeout;
and the kernels' edge cases found by fuzzing (issue "Verdicts you can trust and act on", items 4 and 5)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnspec.kernels import elman_backward, elman_forward, elman_loss

from cli_runner import rnnspec

pytest_plugins = ["pytester"]
HERE = Path(__file__).parent
CASE = {"T": 2, "B": 1, "I": 2, "H": 2, "K": 2, "activation": "tanh", "dtype": "float64", "regime": "contracting",
        "seed": 0}


def target_file(tmp_path, text: str, name: str = "mine.py") -> str:
    file = tmp_path / name
    file.write_text(text)
    return str(file)


ELMAN = f"import sys\nsys.path.insert(0, {str(HERE)!r})\nfrom mutants import Elman\n"


@pytest.mark.parametrize("args,says", [
    (("--examples", "-3"), "--examples: expected a positive integer, got -3"),
    (("--examples", "0"), "--examples: expected a positive integer, got 0"),
    (("--timeout", "-1"), "--timeout: expected a positive, finite number of seconds"),
    (("--timeout", "inf"), "--timeout: expected a positive, finite number of seconds"),
    (("--timeout", "nan"), "--timeout: expected a positive, finite number of seconds"),
    (("--case", json.dumps({**CASE, "regime": "nope"})), "regime must be one of"),
    (("--case", json.dumps({**CASE, "dtype": "float16"})), "dtype must be one of"),
    (("--case", json.dumps({**CASE, "T": 10**9})), "case too large"),
    (("--case", json.dumps({**CASE, "dtype": "float32"})), "dtype 'float32' is not among the target's dtypes"),
    (("--case", "{not json"), "--case is not JSON"),
    (("--case", json.dumps({**CASE, "Q": 1})), "unexpected keyword argument 'Q'"),
])
def test_bad_options_are_usage_errors_naming_the_option(capsys, args, says):
    code, _, err = rnnspec(capsys, "check", "oracle", "--quiet", *args)
    assert code == 2 and says in err, err


@pytest.mark.parametrize("body,says", [
    ("class T:\n    cell = 'elman'\n    def vjp(self, *a):\n        pass\n", "has no forward()"),
    ("class T:\n    pass\n", "has none of the contract's methods"),
    ("def T(x, state0, params):\n    return {}\n", "it is a function"),
    (ELMAN + "class T(Elman):\n    dtypes = None\n", "dtypes = None"),
    (ELMAN + "class T(Elman):\n    @property\n    def activation(self):\n        raise KeyError('nope')\n",
     "reading the target's 'activation' raised KeyError"),
    (ELMAN + "class T(Elman):\n    accuracy = 'sloppy'\n", "accuracy must be one of"),
    ("import numpy as np\ndef f(:\n    pass\n", "line 2"),
])
def test_targets_that_cannot_be_checked_are_loading_errors(capsys, tmp_path, body, says):
    code, out, err = rnnspec(capsys, "check", target_file(tmp_path, body) + ":T", "--quiet")
    assert code == 2 and says in err and not out, err
    if "def f(:" in body:
        assert "^" in err and "SyntaxError" in err  # as Python prints it: file, line, caret


@pytest.mark.parametrize("body,says", [
    ("import time\ntime.sleep(60)\n", "did not finish within 2 s"),
    ("import time\nclass T:\n    def __init__(self):\n        time.sleep(60)\n", "did not finish within 2 s"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "ended its process (signal 11)"),
    ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
])
def test_a_target_that_hangs_crashes_or_exits_while_loading_is_reported_within_the_timeout(capsys, tmp_path, body,
                                                                                             says):
    start = time.monotonic()
    code, _, err = rnnspec(capsys, "check", target_file(tmp_path, body) + ":T", "--timeout", "2", "--quiet")
    assert code == 2 and says in err, err
    assert time.monotonic() - start < 3 * 2


def test_reports_into_missing_folders_or_onto_folders_are_usage_errors(capsys, tmp_path):
    for option, path, says in (("--report", tmp_path / "no" / "r.json", "does not exist"),
                               ("--report", tmp_path, "is a folder"),
                               ("--junit", tmp_path / "no" / "r.xml", "does not exist")):
        code, _, err = rnnspec(capsys, "check", "oracle", "--quiet", "--examples", "1", option, str(path))
        assert code == 2 and says in err, err
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_result_that_cannot_be_read_back_is_an_error_of_the_target(capsys, tmp_path):
    body = ELMAN + ("def _explode():\n    raise RuntimeError('cannot rebuild')\n"
                    "class Bad:\n    def __reduce__(self):\n        return (_explode, ())\n"
                    "class T(Elman):\n    def vjp(self, *args):\n        return {'x': Bad()}\n")
    code, out, _ = rnnspec(capsys, "check", target_file(tmp_path, body) + ":T", "--quiet", "--examples", "2")
    assert code == 1 and "could not be read back" in out and "ELMAN-VJP-X" in out


def test_version_help_and_singular(capsys):
    code, out, _ = rnnspec(capsys, "--version")
    assert code == 0 and out.startswith("rnnspec ")
    code, out, _ = rnnspec(capsys, "check", "--help")
    assert code == 0 and all(name in out for name in ("oracle", "rnnspec-cpu", "rnnspec-cuda", "torch"))
    code, out, _ = rnnspec(capsys, "check", "oracle", "--quiet", "--case", json.dumps(CASE))
    assert code == 0 and ", 1 case, " in out


def test_no_hypothesis_folder_is_left_in_the_working_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = target_file(tmp_path, ELMAN + "class T(Elman):\n    pass\n")
    code, _, _ = rnnspec(capsys, "check", f"{target}:T", "--quiet", "--examples", "2")
    assert code == 0 and not (tmp_path / ".hypothesis").exists()


def test_the_plugin_reports_a_bad_target_as_one_usage_error(pytester):
    result = pytester.runpytest_subprocess("--rnnspec-target=nosuch", "-p", "no:cacheprovider")
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "unknown target 'nosuch'" in text
    assert "Traceback" not in text and len(text.splitlines()) < 10, text


def test_derive_shows_progress_and_names_the_docs_extra_without_matplotlib(capsys, monkeypatch, tmp_path):
    from rnnspec.derivations import generate

    def render(workers, progress):
        progress("proved tanh (1/1)")
        return {"elman.md": b"doc"}

    monkeypatch.setattr(generate, "can_draw", lambda: False)
    monkeypatch.setattr(generate, "render", render)
    code, out, err = rnnspec(capsys, "derive", "--out", str(tmp_path))
    assert code == 0 and "proved tanh (1/1)" in err and "pip install 'rnnspec[docs]'" in err
    assert (tmp_path / "elman.md").read_bytes() == b"doc"


def test_a_cli_run_of_a_bad_target_prints_no_traceback_in_a_fresh_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", "check",
                             target_file(tmp_path, "class T:\n    pass\n") + ":T"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1


# -- kernel arguments -------------------------------------------------------------------------------

def zeros(*shape, dtype=np.float64):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("U,says", [
    (zeros(6, 4), "U: expected shape (H, I)=(5, 4), got (6, 4) (H=5 from W, h0, b; I=4 from x)"),
    (zeros(4, 5), "U: expected shape (H, I)=(5, 4), got (4, 5) (transposed?)"),
])
def test_kernel_shape_errors_blame_the_odd_argument_out(U, says):
    with pytest.raises(ValueError) as info:
        elman_forward(zeros(3, 2, 4), zeros(2, 5), U, zeros(5, 5), zeros(5))
    assert says in str(info.value)


@pytest.mark.parametrize("shape", [(0, 1, 0), (1, 0, 0), (0, 0, 0)])
def test_empty_sequences_with_no_inputs_give_zero_gradients(shape):
    T, B, _ = shape
    grads = elman_backward(zeros(*shape), zeros(B, 2), zeros(2, 0), zeros(2, 2), None, zeros(T, B, 2))
    assert grads["x"].shape == shape and not np.any(grads["W"])
    value, grads = elman_loss(zeros(*shape), zeros(B, 2), zeros(2, 0), zeros(2, 2), None, zeros(3, 2), zeros(3),
                              np.zeros((T, B), np.int64))
    assert value == 0 and grads["x"].shape == shape


def test_masked_arrays_and_non_integer_targets_are_rejected_by_name():
    x, h0, U, W, b = zeros(2, 1, 3), zeros(1, 2), zeros(2, 3), zeros(2, 2), zeros(2)
    with pytest.raises(TypeError, match="x: masked arrays are not accepted"):
        elman_forward(np.ma.array(x, mask=True), h0, U, W, b)
    for targets in (np.ma.array(np.zeros((2, 1), int), mask=True), np.zeros((2, 1), "m8")):
        with pytest.raises(TypeError, match="^targets: "):
            elman_loss(x, h0, U, W, b, zeros(3, 2), zeros(3), targets)
