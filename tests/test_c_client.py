"""The C client of clients/c/ (issue 34): built with the system's C compiler, checked through the process
protocol (``exec:``) and through the case corpus (``rnnspec cases`` -> the C program -> ``rnnspec judge``).

The expected verdicts come from the spec (the oracle, through the runner and the judge), never from the C code:
the correct build must be conformant, each build with a deliberate bug (``-DRNN_BUG=N``, rnn.c's header says
which) must be rejected on the clause its bug breaks, and the reproduce command the report prints must fail
that clause again, through the protocol.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from rnnspec.spec.process import CallError, ProcessClient

from cli_runner import rnnspec

CLIENT = Path(__file__).resolve().parents[1] / "clients" / "c"
#: small runs for CI: every clause of both cells gets decisive cases in both dtypes at this size
EXAMPLES = "10"


def _inprocess():
    """clients/c/inprocess.py (not a package: loaded from its file, as `rnnspec check file.py:attr` does)."""
    spec = importlib.util.spec_from_file_location("rnnspec_c_inprocess", CLIENT / "inprocess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def c_builds(tmp_path_factory) -> dict[str, Path]:
    """The program built correct ("rnn") and with each deliberate bug ("rnn-bug1", "rnn-bug2"), and the shared
    library, with ``cc -std=c99 -O2 -Wall -Werror ... -lm``: a warning fails the build."""
    if shutil.which("cc") is None:
        # CI has a C compiler: there a missing one is a broken environment, not a reason to skip the C client
        if os.environ.get("CI"):
            pytest.fail("no C compiler: `cc` is not on PATH, and CI must build the C client")
        pytest.skip("no C compiler: `cc` is not on PATH (the C client's tests build it)")
    out = tmp_path_factory.mktemp("c_client")
    build = _inprocess().build
    jobs = {"rnn": {}, "librnn.so": {"library": True}, "rnn-bug1": {"bug": 1}, "rnn-bug2": {"bug": 2}}
    # the four compilations at once (each is one cc process): half the fixture's time on two cores
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(build, out / name, **options) for name, options in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def _statuses(report: Path) -> dict[str, str]:
    return {c["id"]: c["status"] for c in json.loads(report.read_text())["clauses"]}


# -- (a) the correct client is conformant ------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["elman", "lstm"])
def test_the_c_client_is_conformant_through_the_protocol(capsys, c_builds, cell, tmp_path):
    report = tmp_path / "report.json"
    code, out, err = rnnspec(capsys, "check", f"exec:{c_builds['rnn']}", "--cell", cell, "--examples", EXAMPLES,
                             "--quiet", "--report", str(report))
    assert code == 0, out + err
    assert out.splitlines()[-1] == "CONFORMANT"
    data = json.loads(report.read_text())
    assert data["not_provided"] == []  # forward, vjp and loss all checked
    assert set(data["environment"]["target_class"].split(": ", 1)[1].split()) >= {"rnnspec", "C", "client"}
    statuses = _statuses(report)
    prefix = cell.upper()
    for method in ("FWD", "VJP", "LOSS"):
        assert any(k.startswith(f"{prefix}-{method}-") for k in statuses), statuses
    assert set(statuses.values()) == {"passed"}, statuses
    # both dtypes were checked: the report names the accuracy each was judged under
    assert "float64" in data["accuracy"] and "float32" in data["accuracy"]


#: a float64 case whose input gate saturates (b_i near 6, i near 0.998): dL/db_i through sigma' = i (1 - i)
SATURATED = ('{"T":20,"B":3,"I":1,"H":1,"K":2,"activation":"tanh","dtype":"float64","regime":"input-open",'
             '"seed":1857,"cell":"lstm"}')


def test_a_saturated_gate_keeps_its_derivative_far_inside_the_tolerance(capsys, c_builds, tmp_path):
    """With 1 - i by subtraction this case's dL/db_i sat at 0.70 of its tolerance (the long run's worst, seed 2);
    rnn_cell.h keeps 1 - i = sigma(-z) from forward, which puts it at about 0.004."""
    report = tmp_path / "report.json"
    code, out, err = rnnspec(capsys, "check", f"exec:{c_builds['rnn']}", "--case", SATURATED,
                             "--clause", "LSTM-VJP-B_I", "--quiet", "--report", str(report))
    assert code == 0, out + err
    (clause,) = json.loads(report.read_text())["clauses"]
    assert clause["decisive"] == 1
    assert clause["worst_error"] < 0.1 * clause["tolerance"], clause


# -- (b) a deliberate bug is rejected, shrunk, and reproduced through the protocol ----------------------------------

@pytest.mark.parametrize(("bug", "cell", "broken", "intact"), [
    # the input gate reads b_f: forward is wrong from the first step
    (1, "lstm", "LSTM-FWD-H", None),
    # BPTT drops dL/dh_{T-1}: forward is right, every gradient of a one-step case is zero
    (2, "elman", "ELMAN-VJP-W", "ELMAN-FWD-H"),
    (2, "lstm", "LSTM-VJP-W_F", "LSTM-FWD-C"),
])
def test_a_buggy_build_is_rejected_with_a_shrunk_case_that_reproduces(capsys, c_builds, bug, cell, broken, intact,
                                                                       tmp_path):
    report = tmp_path / "report.json"
    code, out, err = rnnspec(capsys, "check", f"exec:{c_builds[f'rnn-bug{bug}']}", "--cell", cell,
                             "--examples", EXAMPLES, "--quiet", "--report", str(report))
    assert code == 1, out + err
    assert out.splitlines()[-1] == "NOT CONFORMANT"
    statuses = _statuses(report)
    assert statuses[broken] == "failed"
    if intact:
        assert statuses[intact] == "passed"
    clause = next(c for c in json.loads(report.read_text())["clauses"] if c["id"] == broken)
    shrunk = clause["counterexample"]["case"]
    # shrinking reached the smallest sizes the bug still shows at (both bugs show on one step of one row)
    assert (shrunk["T"], shrunk["B"], shrunk["I"], shrunk["H"]) == (1, 1, 1, 1), shrunk
    assert "smallest case found" in out
    command = clause["counterexample"]["reproduce"]
    argv = shlex.split(command)
    assert argv[:2] == ["rnnspec", "check"] and argv[2] == f"exec:{c_builds[f'rnn-bug{bug}']}", command
    code, again, err = rnnspec(capsys, *argv[1:], "--quiet", "--report", str(tmp_path / "again.json"))
    assert code == 1, again + err
    assert _statuses(tmp_path / "again.json")[broken] == "failed"


# -- what the program answers to calls it cannot compute --------------------------------------------------------------

def _frame(header: dict) -> bytes:
    """A frame without arrays, written by hand (docs/protocol.md): the header's length, then the header."""
    text = json.dumps(header).encode()
    return struct.pack("<I", len(text)) + text


def _lstm_arrays(T=2, B=1, I=3, H=2):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((T, B, I)), "h0": np.zeros((B, H)), "c0": np.zeros((B, H))}
    for gate in "ifgo":
        arrays.update({f"U_{gate}": rng.standard_normal((H, I)), f"W_{gate}": rng.standard_normal((H, H)),
                       f"b_{gate}": rng.standard_normal(H)})
    return arrays


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(W_f=np.zeros((2, 3))), "array 'W_f' has shape (2, 3), expected (2, 2)"),
    (lambda a: a.pop("b_o"), "needs the array 'b_o', which was not sent"),
    (lambda a: a.update(U_g=a["U_g"].astype(np.float32)), "array 'U_g' is float32, expected float64"),
    (lambda a: a.update(lengths=np.ones(1, dtype=np.int64)), "unexpected array 'lengths'"),
])
def test_a_call_it_cannot_compute_is_an_error_naming_the_array_and_the_program_stays(c_builds, change, message):
    client = ProcessClient([str(c_builds["rnn"])], timeout=10)
    client.start()
    try:
        header = {"method": "forward", "cell": "lstm", "activation": "tanh", "variant": "", "dtype": "float64"}
        arrays = _lstm_arrays()
        change(arrays)
        with pytest.raises(CallError, match=message.replace("(", r"\(").replace(")", r"\)")):
            client.call(header, arrays)
        # the same program answers the next, well-formed call: an error frame keeps the stream in step
        pid = client.pid
        got = client.call(header, _lstm_arrays())
        assert client.pid == pid
        assert got["h"].shape == (2, 1, 2) and got["c"].shape == (2, 1, 2)
    finally:
        client.close()


def test_targets_outside_the_classes_are_an_error_not_a_read_past_the_head(c_builds):
    client = ProcessClient([str(c_builds["rnn"])], timeout=10)
    client.start()
    try:
        arrays = _lstm_arrays()
        arrays.update(V=np.ones((3, 2)), c=np.zeros(3), targets=np.array([[0], [3]], dtype=np.int64))
        header = {"method": "loss", "cell": "lstm", "activation": "tanh", "variant": "", "dtype": "float64"}
        with pytest.raises(CallError, match=r"targets\[1\]\[0\] = 3, expected a class in \[0, K\) = \[0, 3\)"):
            client.call(header, arrays)
    finally:
        client.close()


@pytest.mark.parametrize(("stream", "message"), [
    (struct.pack("<I", 8) + b"not json", "the header is not a JSON object"),
    (struct.pack("<I", 2**31), "a header of 2147483648 bytes"),
    (struct.pack("<I", 30) + b'{"type": "call"', "the input ended inside a header of 30 bytes"),
    (_frame({"type": "call", "arrays": [{"name": "x", "dtype": "float64", "shape": [2]}]}) + b"\0" * 8,
     "the input ended inside array 'x'"),
    (_frame({"type": "call", "arrays": [{"name": "x", "dtype": "float16", "shape": [2]}]}),
     "array 'x' has dtype float16, expected float64, float32 or int64"),
])
def test_a_malformed_frame_ends_the_program_with_a_reason_on_stderr(c_builds, stream, message):
    """After a malformed frame the stream cannot be trusted: the program stops (the suite restarts it) and says why."""
    hello = _frame({"type": "hello", "protocol": 1})
    done = subprocess.run([str(c_builds["rnn"])], input=hello + stream, capture_output=True, timeout=10)
    assert done.returncode == 1
    assert message in done.stderr.decode(), done.stderr
    # the hello before it was answered in full: one frame whose header declares the client
    (length,) = struct.unpack("<I", done.stdout[:4])
    assert len(done.stdout) == 4 + length and json.loads(done.stdout[4:])["cells"] == ["elman", "lstm"]


# -- the same arithmetic in process -----------------------------------------------------------------------------------

def test_the_shared_library_answers_bit_for_bit_as_the_program(c_builds, monkeypatch):
    """inprocess.py (the protocol-overhead baseline) must run exactly the program's arithmetic, or the comparison
    measures something else."""
    monkeypatch.setenv("RNNSPEC_C_LIBRARY", str(c_builds["librnn.so"]))
    target = _inprocess().CInProcess()
    target.cell = "lstm"
    arrays = _lstm_arrays(T=3, B=2)
    x, state0 = arrays.pop("x"), {"h0": arrays.pop("h0"), "c0": arrays.pop("c0")}
    cot = {"h": np.ones((3, 2, 2)), "c": np.full((3, 2, 2), 0.5)}
    client = ProcessClient([str(c_builds["rnn"])], timeout=10)
    client.start()
    try:
        header = {"method": "vjp", "cell": "lstm", "activation": "tanh", "variant": "", "dtype": "float64"}
        over_pipes = client.call(header, {"x": x, **state0, **arrays, "cot_h": cot["h"], "cot_c": cot["c"]})
    finally:
        client.close()
    in_process = target.vjp(x, state0, arrays, cot)
    assert set(in_process) == set(over_pipes) == {"x", "h0", "c0", *arrays}
    for name, value in in_process.items():
        np.testing.assert_array_equal(value, over_pipes[name], err_msg=name)


# -- (c) the corpus: rnnspec cases -> the C program -> rnnspec judge ---------------------------------------------------

@pytest.mark.parametrize("cell", ["elman", "lstm"])
def test_a_corpus_answered_by_the_c_program_is_judged_conformant_and_a_perturbed_array_is_not(capsys, c_builds,
                                                                                               cell, tmp_path):
    corpus, results = tmp_path / "corpus", tmp_path / "results"
    activations = ("--activations", "tanh") if cell == "elman" else ()
    code, _, err = rnnspec(capsys, "cases", "--cell", cell, *activations, "--examples", "6", "--seed", "0",
                           "--out", str(corpus), "--quiet")
    assert code == 0, err
    done = subprocess.run([str(c_builds["rnn"]), "--corpus", str(corpus), "--results", str(results)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "6 cases answered, 0 failed" in done.stderr
    code, out, err = rnnspec(capsys, "judge", str(corpus), str(results), "--quiet", "--json", str(tmp_path / "a.json"))
    assert code == 0, out + err
    assert out.splitlines()[-1] == "CONFORMANT"
    statuses = _statuses(tmp_path / "a.json")
    assert {s for k, s in statuses.items() if "-FWD-" in k or "-VJP-" in k or "-LOSS-" in k} == {"passed"}

    # one gradient of one case moved 20 tolerances away: that clause fails, on that case
    clause, key = (("ELMAN-VJP-W", "vjp.W") if cell == "elman" else ("LSTM-VJP-W_F", "vjp.W_f"))
    case_id, tolerance = next(
        (i, json.loads((corpus / i / "case.json").read_text())["tolerances"][key])
        for i in (corpus / "cases.txt").read_text().split()
        if json.loads((corpus / i / "case.json").read_text())["tolerances"][key] < 1e-3)
    path = results / case_id / f"{key}.npy"
    good = np.load(path)
    bad = good.copy()
    bad.flat[0] += 20 * tolerance * np.max(np.abs(good))
    np.save(path, bad)
    code, out, err = rnnspec(capsys, "judge", str(corpus), str(results), "--quiet", "--json", str(tmp_path / "b.json"))
    assert code == 1, out + err
    assert _statuses(tmp_path / "b.json")[clause] == "failed"
    assert f"case {case_id}:" in out


def test_corpus_mode_writes_npy_files_numpy_reads_in_the_cases_dtype(capsys, c_builds, tmp_path):
    """The .npy writer by hand: NumPy reads every result back with the shape case.json's expected value has."""
    corpus, results = tmp_path / "corpus", tmp_path / "results"
    assert rnnspec(capsys, "cases", "--cell", "lstm", "--examples", "3", "--seed", "1", "--out", str(corpus),
                   "--quiet")[0] == 0
    subprocess.run([str(c_builds["rnn"]), "--corpus", str(corpus), "--results", str(results)], check=True,
                   capture_output=True, timeout=60)
    for case_id in (corpus / "cases.txt").read_text().split():
        dtype = json.loads((corpus / case_id / "case.json").read_text())["dtype"]
        expected = sorted(p.name for p in (corpus / case_id / "expected").iterdir())
        assert sorted(p.name for p in (results / case_id).iterdir()) == expected
        for name in expected:
            got = np.load(results / case_id / name)
            assert got.dtype == np.dtype(dtype) and got.shape == np.load(corpus / case_id / "expected" / name).shape


# -- the long run (benchmarks/long_run_c_client.log) ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cell", ["elman", "lstm"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_long_run(capsys, c_builds, cell, dtype, seed):
    code, out, err = rnnspec(capsys, "check", f"exec:{c_builds['rnn']}", "--cell", cell, "--dtype", dtype,
                             "--seed", str(seed), "--examples", "200", "--quiet")
    assert code == 0, out + err
