"""The command line and the pytest plugin, as users run them."""

import json
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]


def _rnnspec(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_check_exit_codes_and_report(tmp_path):
    ok = _rnnspec("check", "oracle", "--examples", "4", "--quiet", "--report", str(tmp_path / "r.json"),
                  "--junit", str(tmp_path / "r.xml"))
    assert ok.returncode == 0, ok.stderr
    assert "CONFORMANT" in ok.stdout and json.loads((tmp_path / "r.json").read_text())["conformant"] is True
    bad = _rnnspec("check", f"{__file__.replace('test_cli_and_plugin.py', 'mutants.py')}:OffByOneInTime",
                   "--examples", "6", "--quiet")
    assert bad.returncode == 1 and "ELMAN-VJP-W" in bad.stdout and "reproduce: rnnspec check" in bad.stdout
    missing = _rnnspec("check", "no_such_module:X")
    assert missing.returncode == 2 and "importing no_such_module failed" in missing.stderr
    unknown = _rnnspec("check", "oracle", "--clause", "NOPE")
    assert unknown.returncode == 2 and "unknown clause" in unknown.stderr


def test_plugin_without_option_imports_neither_sympy_nor_numba():
    code = ("import sys, rnnspec.spec.plugin, pytest; "
            "assert 'sympy' not in sys.modules and 'numba' not in sys.modules, sorted(sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_plugin_collects_one_test_per_clause_with_xfails(pytester):
    pytester.makefile(".txt", xfails="ELMAN-LOSS-W\nELMAN-NOT-A-CLAUSE  # typo\n")
    target = __file__.replace("test_cli_and_plugin.py", "mutants.py") + ":OffByOneInTime"
    result = pytester.runpytest_subprocess(f"--rnnspec-target={target}", "--rnnspec-examples=6",
                                           "--rnnspec-xfails=xfails.txt", "-p", "no:cacheprovider", "-v")
    text = result.stdout.str()
    assert "collected 18 items" in text
    assert "rnnspec::ELMAN-VJP-W FAILED" in text and "rnnspec::ELMAN-LOSS-W XFAIL" in text
    assert "'ELMAN-NOT-A-CLAUSE' matches no clause id" in text
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes["xfailed"] == 1 and outcomes["passed"] == 16
    # a node id selects one clause, and only that clause runs
    one = pytester.runpytest_subprocess(f"--rnnspec-target={target}", "--rnnspec-examples=6", "rnnspec::ELMAN-VJP-W",
                                        "-p", "no:cacheprovider", "-v")
    assert "collected 1 item" in one.stdout.str() and one.parseoutcomes() == {"failed": 1}


def test_wrapped_functions_written_elsewhere_pass():
    from rnnspec.spec.runner import check
    from rnnspec.spec.wrap import from_functions

    import reference

    def forward(x, state0, params, activation):
        return {"h": reference.forward(x, state0["h0"], params["U"], params["W"], params["b"], activation)[0]}

    def vjp(x, state0, params, cotangents, activation):
        return reference.vjp(x, state0["h0"], params["U"], params["W"], params["b"], cotangents["h"], activation)

    def loss(x, state0, params, targets, activation):
        p = params
        return reference.loss(x, state0["h0"], p["U"], p["W"], p["b"], p["V"], p["c"], targets, activation)

    impl = from_functions(forward, vjp, loss, activations=("tanh", "sigmoid", "relu", "identity"))
    report = check(impl)
    assert report.conformant, [(r.clause.id, r.status) for r in report.results if r.status != "passed"]


def test_wrapped_torch_function_passes():
    torch = pytest.importorskip("torch")
    from rnnspec.spec.runner import check
    from rnnspec.spec.wrap import from_torch

    def my_rnn(x, h0, U, W, b):
        h, out = h0, []
        for t in range(x.shape[0]):
            h = torch.tanh(x[t] @ U.T + h @ W.T + b)
            out.append(h)
        return torch.stack(out)

    report = check(from_torch(my_rnn), examples=20)
    assert report.conformant, [(r.clause.id, r.status, r.worst.message) for r in report.results
                               if r.status != "passed"]
