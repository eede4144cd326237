"""The process protocol (docs/protocol.md), the suite's side: the frame codec, one program over it, and a program as
a target of ``rnnspec check`` / pytest, correct, wrong and misbehaving (tests/clients/rnn_client.py)."""

import io
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from rnnspec.derivations.oracle import Oracle
from rnnspec.spec.cases import Case
from rnnspec.spec.declared import UsageError, declarations, declared
from rnnspec.spec.expected import call_args
from rnnspec.spec.process import (
    CallError,
    CallTimeout,
    EndOfStream,
    HelloError,
    ProcessClient,
    ProcessTarget,
    ProgramDied,
    ProtocolError,
    encode_frame,
    read_frame,
    write_frame,
)
from rnnspec.spec.runner import check
from rnnspec.spec.targets import TargetError, load_target
from rnnspec.spec.worker import TargetName

pytest_plugins = ["pytester"]

CLIENT = Path(__file__).resolve().parent / "clients" / "rnn_client.py"
#: the client, answering from --cells and --activations at once (no import before its first call)
LIGHT = "--cells elman --dtypes float64 --activations tanh"
#: two smallest Elman cases (nothing to shrink): each call of a misbehaving method fails once per case
TINY = [Case(T=1, B=1, I=1, H=1, K=2, activation="tanh", dtype="float64", regime="contracting", seed=s) for s in (0, 1)]


def command(*flags: str) -> str:
    return shlex.join([sys.executable, str(CLIENT), *" ".join(flags).split()])


def frame(header: bytes, body: bytes = b"") -> io.BytesIO:
    """A frame written by hand, as a C client would write it."""
    return io.BytesIO(struct.pack("<I", len(header)) + header + body)


# -- the codec --------------------------------------------------------------------------------------------------

def test_frames_round_trip_every_dtype_and_shape():
    arrays = {"x": np.arange(24, dtype=np.float64).reshape(2, 3, 4), "h0": np.linspace(-1, 1, 6, dtype=np.float32)
              .reshape(3, 2), "targets": np.array([[3, -1]], dtype=np.int64), "value": np.float64(2.5),
              "empty": np.zeros((0, 3)), "big_endian": np.arange(3, dtype=">f8"), "strided": np.eye(3)[:, 1]}
    kept = {k: np.array(v, copy=True) for k, v in arrays.items()}
    stream = io.BytesIO()
    write_frame(stream, {"type": "result"}, arrays)
    stream.seek(0)
    header, got = read_frame(stream)
    assert header["type"] == "result" and [e["name"] for e in header["arrays"]] == list(arrays)
    for name, array in arrays.items():
        assert got[name].shape == np.shape(array) and got[name].dtype.name == np.asarray(array).dtype.name
        assert got[name].dtype.isnative and got[name].flags.writeable
        np.testing.assert_array_equal(got[name], array)
        np.testing.assert_array_equal(arrays[name], kept[name])  # the caller's arrays untouched
    assert stream.read() == b""


def test_frames_are_the_bytes_the_protocol_page_describes():
    """Read a hand-written frame (little-endian uint32 length, JSON, raw little-endian C-order arrays), and write one
    byte for byte, without the codec's help on the other side."""
    header = b'{"type":"result","arrays":[{"name":"h","dtype":"float32","shape":[2,2]},' \
             b'{"name":"n","dtype":"int64","shape":[]}]}'
    body = struct.pack("<4f", 1, 2, 3, 4) + struct.pack("<q", -7)
    parsed, arrays = read_frame(frame(header, body))
    assert parsed["type"] == "result"
    np.testing.assert_array_equal(arrays["h"], [[1, 2], [3, 4]])
    assert arrays["n"].shape == () and arrays["n"] == -7
    raw = encode_frame({"type": "call"}, {"x": np.array([[1.0, 2.0]])})
    (length,) = struct.unpack("<I", raw[:4])
    assert json.loads(raw[4:4 + length]) == {"type": "call", "arrays": [{"name": "x", "dtype": "float64",
                                                                         "shape": [1, 2]}]}
    assert raw[4 + length:] == struct.pack("<2d", 1.0, 2.0)


@pytest.mark.parametrize("stream, message", [
    (io.BytesIO(b""), "ended where a frame should start"),
    (io.BytesIO(b"\x05\x00"), "ended after 2 of the 4 bytes of a frame's length"),
    (io.BytesIO(b"Traceback (most recent call last)"), "past the limit of 1048576 (they look like text"),
    (frame(b'{"type": "res'), "is not UTF-8 JSON"),
    (frame(b'\xff\xfe{}'), "is not UTF-8 JSON"),
    (frame(b"[1, 2]"), "is a JSON list, expected an object"),
    (io.BytesIO(struct.pack("<I", 40) + b'{"type": "result"}'), "ended after 18 of the 40 bytes of the header"),
    (frame(b'{"arrays": {"h": 1}}'), "'arrays' is dict, expected a list"),
    (frame(b'{"arrays": [{"dtype": "float64", "shape": [1]}]}'), "arrays[0] ({\"dtype\": \"float64\", "
                                                                 "\"shape\": [1]}) has no 'name'"),
    (frame(b'{"arrays": [{"name": "h", "shape": [1]}]}'), "has no 'dtype'"),
    (frame(b'{"arrays": [{"name": "h", "dtype": "float64"}]}'), "has no 'shape'"),
    (frame(b'{"arrays": [{"name": "h", "dtype": "float16", "shape": [1]}]}'),
     "dtype 'float16' is not one of float32, float64, int64"),
    (frame(b'{"arrays": [{"name": "h", "dtype": "float64", "shape": [2, -1]}]}'), "non-negative integers"),
    (frame(b'{"arrays": [{"name": "h", "dtype": "float64", "shape": [2.5]}]}'), "non-negative integers"),
    (frame(b'{"arrays": [{"name": "h", "dtype": "float64", "shape": [1]}, {"name": "h", "dtype": "float64", '
           b'"shape": [1]}]}', struct.pack("<2d", 1, 2)), "array 'h' is listed twice"),
    (frame(b'{"arrays": [{"name": "h", "dtype": "float64", "shape": [1000000000, 1000]}]}'),
     "the arrays would hold more than"),
    (frame(b'{"arrays": [{"name": "h", "dtype": "float64", "shape": [3]}]}', b"\0" * 20),
     "ended after 20 of the 24 bytes of array 'h' (float64, shape [3])"),
])
def test_a_malformed_frame_is_a_protocol_error_that_says_what_is_wrong(stream, message):
    with pytest.raises(ProtocolError) as error:
        read_frame(stream)
    assert message in str(error.value)


def test_the_end_of_the_stream_between_frames_is_its_own_error():
    with pytest.raises(EndOfStream):
        read_frame(io.BytesIO(b""))


@pytest.mark.parametrize("header, arrays, message", [
    ({"type": "call"}, {"x": np.zeros(2, np.float16)}, "arrays['x'] has dtype float16; the protocol carries"),
    ({"type": "call"}, {"x": np.zeros(2, bool)}, "arrays['x'] has dtype bool"),
    ({"type": "call", "arrays": []}, {}, "leave 'arrays' out"),
    ({"type": "call"}, {"": np.zeros(2)}, "non-empty string"),
])
def test_writing_refuses_what_the_protocol_cannot_carry(header, arrays, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        encode_frame(header, arrays)


# -- one program ------------------------------------------------------------------------------------------------

def _forward_call(case: Case) -> tuple[dict, dict]:
    x, state0, params = call_args("forward", case.arrays())
    header = {"method": "forward", "cell": "elman", "activation": "tanh", "variant": "", "dtype": "float64"}
    return header, {"x": x, **state0, **params}


def _exists(pid: int) -> bool:
    """Whether a process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


#: each misbehaviour of the client, the exception the call raises, and what its message must say
MISBEHAVIOURS = {
    "crash": (ProgramDied, "without answering forward; it died with signal 11 (SIGSEGV)"),
    "exit": (ProgramDied, "closed its stdout without answering forward; it exited with code 3"),
    "not-json": (ProtocolError, "is not UTF-8 JSON"),
    "short-length": (ProtocolError, "is not UTF-8 JSON"),
    "text": (ProtocolError, "past the limit of 1048576 (they look like text"),
    "short-array": (ProtocolError, "the stream ended after 4 of the 8 bytes of array 'U' (float64, shape [1, 1])"),
    "bad-dtype": (ProtocolError, "dtype 'float16' is not one of float32, float64, int64"),
    "no-entry-name": (ProtocolError, "has no 'name'"),
    "unknown-type": (ProtocolError, "answered forward with a header of type 'answer'"),
    "hang": (CallTimeout, "did not answer forward within 2 s; killed it"),
}


@pytest.mark.parametrize("kind", MISBEHAVIOURS)
def test_a_misbehaving_call_is_one_error_with_its_stderr_and_the_next_call_restarts_the_program(kind):
    error, message = MISBEHAVIOURS[kind]
    client = ProcessClient(command(LIGHT, "--misbehave", kind), timeout=2.0 if kind == "hang" else 30.0)
    try:
        header, arrays = _forward_call(TINY[0])
        pids = []
        for starts in (1, 2):  # each call fails on its own, in a program started for it
            with pytest.raises(error) as raised:
                client.call(header, arrays)
            text = str(raised.value)
            assert message in text and f"rnn_client: misbehaving ({kind}) on forward" in text, text
            assert client.starts == starts and not client.running()
            pids.append(int(text.split("(pid ")[1].split(")")[0]))
        assert pids[0] != pids[1] and not any(map(_exists, pids))  # killed or exited, and reaped: no zombie of ours
    finally:
        client.close()


def test_an_error_answer_is_the_call_s_error_and_the_program_keeps_running():
    client = ProcessClient(command(LIGHT, "--misbehave error-reply"), timeout=30)
    try:
        header, arrays = _forward_call(TINY[0])
        for _ in range(2):
            with pytest.raises(CallError, match="answered forward with an error: rnn_client cannot compute this call"):
                client.call(header, arrays)
        assert client.starts == 1 and client.running()
    finally:
        client.close()


def test_a_correct_program_answers_what_the_oracle_computes_and_says_bye():
    case = TINY[1]
    client = ProcessClient(command(LIGHT), timeout=30)
    hello = client.start()
    pid = client.pid
    assert hello["type"] == "hello" and hello["cells"] == ["elman"]
    header, arrays = _forward_call(case)
    got = client.call(header, arrays)
    np.testing.assert_allclose(got["h"], Oracle().forward(*call_args("forward", case.arrays()))["h"], rtol=1e-15)
    client.close()
    assert not _exists(pid) and client.process is None


def test_a_program_that_cannot_start_is_named():
    with pytest.raises(TargetError, match="no program './no-such-rnn'"):
        load_target("exec:./no-such-rnn --flag")
    with pytest.raises(TargetError, match="name the program after 'exec:'"):
        load_target("exec:  ")
    with pytest.raises(TargetError, match="cannot split the command"):
        load_target("exec:./prog 'unclosed")
    with pytest.raises(TargetError, match="is not executable"):
        load_target(f"exec:{CLIENT.parent}")


@pytest.mark.parametrize("kind, error, message", [
    ("not-hello", TargetError, 'answered hello with {"type": "greetings"'),
    ("wrong-protocol", TargetError, '"protocol": 7'),
    ("exit-before-hello", TargetError, "it exited with code 4\nits stderr:\n  | rnn_client: cannot find my weights"),
    ("no-forward", TargetError, "its hello declares methods ['vjp']; expected 'forward'"),
    ("unknown-field", TargetError, "its hello has unknown fields ['cels']"),
    ("cells-not-list", TargetError, "its hello's cells is 42, expected a JSON array of strings"),
    ("unknown-cell", UsageError, "unknown ['transformer']"),
    ("bad-accuracy", UsageError, "accuracy must be one of ['accurate', 'fast'] or a number of ulps, got 'faithful'"),
])
def test_a_bad_hello_is_a_loading_or_usage_error(kind, error, message):
    with pytest.raises(error) as raised:
        declared(declarations(load_target(f"exec:{command(LIGHT, '--hello', kind)}")))
    assert message in str(raised.value)


def test_the_client_alone_refuses_a_hello_of_another_protocol():
    client = ProcessClient(command(LIGHT, "--hello wrong-protocol"), timeout=30)
    with pytest.raises(HelloError, match='expected {"type": "hello", "protocol": 1, ...}'):
        client.start()
    assert client.process is None


def test_the_hello_declares_what_the_suite_reads():
    target = load_target(f"exec:{command('--cells lstm,elman --dtypes float32 --activations relu,tanh')}")
    try:
        raw = declarations(target)
        decl = declared(raw)
        assert decl.cells == ("lstm", "elman") and decl.dtypes == ("float32",) and decl.activations == ("relu", "tanh")
        assert decl.methods == ("forward", "vjp", "loss") and target.cell == "lstm"
        assert "ProcessTarget[" in raw["target_class"] and "rnn_client oracle" in raw["target_class"]
    finally:
        target.close()


# -- a program as a target of the suite -------------------------------------------------------------------------

def _statuses(report) -> dict:
    return {r.clause.id: r for r in report.results}


def test_a_correct_program_is_conformant_for_every_cell_it_declares():
    for cell in ("elman", "lstm"):
        report = check(TargetName(f"exec:{command()}"), target="exec", cell=cell, examples=3, seed=1, timeout=60)
        assert report.verdict == "conformant", [(r.clause.id, r.status, r.message) for r in report.results]
        assert {r.status for r in report.results} == {"passed"}


@pytest.mark.parametrize("cell, variant", [("elman", "layers=2,bidirectional,lengths=zero"),
                                           ("gru-reset-before", "lengths=carry,state0=default")])
def test_a_correct_program_is_conformant_on_variants(cell, variant):
    """Per-layer and per-direction names, lengths (int64), final states, and no initial states under state0=default."""
    report = check(TargetName(f"exec:{command('--dtypes float64')}"), target="exec", cell=cell, variant=variant,
                   examples=2, seed=2, timeout=60)
    assert report.verdict == "conformant", [(r.clause.id, r.status, r.message) for r in report.results]
    assert any(r.clause.id.endswith("-FWD-H_N") for r in report.results)


def test_a_target_object_checked_from_python_works_across_the_worker_s_fork():
    """The parent holds the program; the forked worker starts its own and leaves the parent's alone."""
    target = ProcessTarget(command(LIGHT))
    try:
        report = check(target, examples=2, timeout=60)
        assert report.verdict == "conformant"
        header, arrays = _forward_call(TINY[0])
        x, state0, params = call_args("forward", TINY[0].arrays())
        np.testing.assert_allclose(target.forward(x, state0, params)["h"], Oracle().forward(x, state0, params)["h"])
        assert target.client.starts == 1
    finally:
        target.close()


@pytest.mark.parametrize("kind, status, message", [
    ("crash", "error", "died with signal 11 (SIGSEGV)"),
    ("short-array", "error", "the stream ended after 0 of the 8 bytes of array 'W' (float64, shape [1, 1])"),
    ("wrong-shape", "error", "vjp()['W'] has shape (1, 2), expected (1, 1)"),
    ("wrong-name", "error", "vjp() result lacks key 'W' (has ['dU', 'dW', 'db', 'dh0', 'dx'])"),
    ("error-reply", "error", "answered vjp with an error: rnn_client cannot compute this call"),
])
def test_a_misbehaving_program_fails_vjp_on_every_case_and_the_run_goes_on(kind, status, message):
    report = check(TargetName(f"exec:{command(LIGHT, '--misbehave', kind, '--on vjp')}"), target="exec",
                   cases=list(TINY), timeout=30)
    results = _statuses(report)
    vjp = results["ELMAN-VJP-W"]
    assert vjp.status == status and vjp.counts[status] == len(TINY), (vjp.status, vjp.counts)
    assert message in vjp.message, vjp.message
    if kind in ("crash", "short-array"):
        assert "rnn_client: misbehaving" in vjp.message
    assert results["ELMAN-FWD-H"].status == results["ELMAN-LOSS-W"].status == "passed"
    assert report.verdict == "not conformant"


def test_a_program_that_floods_stderr_is_conformant_and_is_told_bye_at_the_end(tmp_path):
    log = tmp_path / "log"
    report = check(TargetName(f"exec:{command(LIGHT, '--misbehave stderr --log', str(log))}"), target="exec",
                   cases=list(TINY), timeout=30)
    assert report.verdict == "conformant", [(r.clause.id, r.status, r.message[:200]) for r in report.results]
    assert log.read_text() == "bye\n"  # one program served the whole run, and the worker's exit said bye


def _programs(tag: str) -> list[tuple[int, str]]:
    """(pid, state) of every process whose command line carries ``tag``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if tag.encode() in (entry / "cmdline").read_bytes():
                found.append((int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_hanging_program_times_out_and_leaves_no_process_behind():
    tag = uuid.uuid4().hex
    report = check(TargetName(f"exec:{command(LIGHT, '--misbehave hang --on loss --tag', tag)}"), target="exec",
                   cases=TINY[:1], timeout=1.5)
    results = _statuses(report)
    assert results["ELMAN-LOSS-W"].status == "timeout" and "did not return within" in results["ELMAN-LOSS-W"].message
    assert results["ELMAN-VJP-W"].status == "passed" and report.verdict == "inconclusive"
    deadline = time.monotonic() + 5
    while _programs(tag) and time.monotonic() < deadline:  # SIGKILL from the parent's death is asynchronous
        time.sleep(0.1)
    left = _programs(tag)
    assert all(state == "Z" for _, state in left), left  # none alive
    ours = [pid for pid, _ in left if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            == os.getpid()]
    assert not ours, f"zombies of this process: {ours}"


def test_a_wrong_program_is_rejected_with_a_shrunk_case_and_a_reproduce_command_that_works(tmp_path):
    """tests/mutants.py's OddBatchBug behind the protocol: wrong only for an odd batch of 3 or more."""
    target = f"exec:{command(LIGHT, '--mutant OddBatchBug')}"
    report = check(TargetName(target), target=target, examples=8, seed=0, timeout=60)
    results = _statuses(report)
    assert report.verdict == "not conformant" and results["ELMAN-FWD-H"].status == "failed"
    counterexample = results["ELMAN-FWD-H"].counterexample
    case = counterexample["case"]
    assert (case["T"], case["B"], case["I"], case["H"]) == (1, 3, 1, 1) and counterexample["shrink_steps"] > 0
    argv = shlex.split(counterexample["reproduce"])  # as a shell splits it
    assert argv[:3] == ["rnnspec", "check", target]
    out = tmp_path / "report.json"
    again = subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", *argv[1:], "--quiet", "--report", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1, again.stdout + again.stderr
    rerun = json.loads(out.read_text())
    assert [(c["id"], c["status"]) for c in rerun["clauses"]] == [("ELMAN-FWD-H", "failed")]
    assert shlex.split(report.rerun)[:3] == ["rnnspec", "check", target]


def test_the_cli_and_the_pytest_plugin_take_exec_targets(pytester):
    bad = subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", "check",
                          f"exec:{command(LIGHT, '--hello no-forward')}"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "its hello declares methods ['vjp']" in bad.stderr
    result = pytester.runpytest_subprocess(f"--rnnspec-target=exec:{command(LIGHT)}", "--rnnspec-examples=1",
                                           "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=18)


def test_the_program_dies_with_the_process_that_started_it():
    """A worker killed for a timeout must take its program along (PR_SET_PDEATHSIG on Linux)."""
    tag = uuid.uuid4().hex
    code = ("import sys, time; from rnnspec.spec.process import ProcessClient; "
            f"c = ProcessClient({command(LIGHT, '--tag', tag)!r}); c.start(); print(c.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert _exists(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _exists(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _exists(pid)
    finally:
        parent.kill()
        parent.wait()


def test_the_matrix_takes_a_program_as_a_row_of_its_own():
    from rnnspec import catalogue
    from rnnspec.spec import matrix

    target = f"exec:{command(LIGHT)}"
    entries = matrix.build((target,), (0,), 2)
    assert {(e.cell, e.dtype) for e in entries} == {(c, d) for c in catalogue.NAMES for d in catalogue.DTYPES}
    run = [e for e in entries if not e.reason]
    assert [(e.cell, e.dtype, e.verdict, e.cases) for e in run] == [("elman", "float64", "conformant", 2)]
    text = matrix.markdown(entries, "rnnspec matrix")
    assert "| rnn_client oracle | - | a program over docs/protocol.md | elman | float64 | **conformant** |" in text
    assert "the program declares cells elman" in text and "the program declares float64 only" in text
