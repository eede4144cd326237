"""``rnnspec bench``: its options are checked before anything is timed (exit 2, one line), the CPU benchmark
times the implementations in turn and marks the ratios of noisy sides, and its report says what it ran on.
Timers, sleeps and runners are replaced where a test is about the order or the marking: fast and exact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import pytest

from rnnspec.kernels.cpu import bench, peak
from rnnspec.spec import cli


class FakeTime:
    """A clock that only the fake calls advance, a pause that records itself, and a log of both."""

    def __init__(self):
        self.now, self.log = 0.0, []

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.log.append("pause")

    def call(self, name: str, durations: list[float]):
        """A call named ``name`` whose n-th call lasts durations[n % len(durations)] seconds."""
        count = [0]

        def call():
            self.log.append(name)
            self.now += durations[count[0] % len(durations)]
            count[0] += 1

        return call


def test_implementations_are_timed_in_turn_each_after_quiet_and_an_untimed_call():
    fake = FakeTime()
    calls = {"A": fake.call("A", [1.0]), "B": fake.call("B", [2.0, 3.0, 5.0])}
    times = bench.interleaved(calls, 3, pause=fake.pause, clock=fake.clock)
    warm = ["pause", *["A"] * bench.WARMUP_CALLS, "pause", *["B"] * bench.WARMUP_CALLS]
    # each timed call follows a pause and one untimed call of its own: A A B B, not A A A B B B
    assert fake.log == warm + ["pause", "A", "A", "pause", "B", "B"] * 3
    # B's calls last 2, 3, 5, 2, 3, 5, ...: 3 warm-up calls, then (untimed, timed) pairs: the 5th, 7th, 9th timed
    assert times == {"A": [1.0, 1.0, 1.0], "B": [3.0, 2.0, 5.0]}


def test_a_small_call_is_warmed_for_WARM_S_after_the_quiet_a_long_one_once():
    """After the quiet before a timed call, untimed calls for WARM_S (a small call woke cold from one call alone),
    one at least: a 6 ms call four times, a 1 s call once, in interleaved's rounds too."""
    fake = FakeTime()
    assert bench.warm(fake.call("short", [0.3 * bench.WARM_S]), fake.clock) == 4
    assert bench.warm(fake.call("long", [1.0]), fake.clock) == 1
    fake.log.clear()
    times = bench.interleaved({"A": fake.call("A", [0.3 * bench.WARM_S]), "B": fake.call("B", [1.0])}, 2,
                              pause=fake.pause, clock=fake.clock)
    warm = ["pause", *["A"] * bench.WARMUP_CALLS, "pause", *["B"] * bench.WARMUP_CALLS]
    assert fake.log == warm + ["pause", *["A"] * 4, "A", "pause", "B", "B"] * 2
    assert times == {"A": pytest.approx([0.3 * bench.WARM_S] * 2), "B": [1.0, 1.0]}


def test_one_implementation_is_timed_back_to_back():
    fake = FakeTime()
    times = bench.interleaved({"A": fake.call("A", [1.0, 4.0])}, 4, pause=fake.pause, clock=fake.clock)
    assert fake.log == ["pause", *["A"] * bench.WARMUP_CALLS, "A", "A", "A", "A"]
    assert times == {"A": [4.0, 1.0, 4.0, 1.0]}
    with pytest.raises(ValueError, match="repeats: expected at least 1 timed call, got 0"):
        bench.interleaved({"A": fake.call("A", [1.0])}, 0, pause=fake.pause, clock=fake.clock)


def test_a_ratio_is_noisy_when_either_side_spreads_past_the_threshold():
    steady = {"median_s": 1.0, "min_s": 0.9, "max_s": 1.1}
    limit = bench.NOISY_SPREAD
    wide = {"median_s": 2.0, "min_s": 1.0, "max_s": 1.0 + 2.0 * limit * 1.01}  # spread just past the limit
    edge = {"median_s": 2.0, "min_s": 1.0, "max_s": 1.0 + 2.0 * limit * 0.99}  # just inside it
    assert bench.versus(steady, wide) == {"ratio": 2.0, "noisy": True}
    assert bench.versus(wide, steady) == {"ratio": 0.5, "noisy": True}
    assert bench.versus(steady, edge) == {"ratio": 2.0, "noisy": False}
    assert bench.versus({"median_s": 1.0}, wide)["noisy"] is False  # an old report's row without min and max


@pytest.fixture
def fake_bench(monkeypatch):
    """The CPU benchmark with everything slow or machine-bound replaced: runners whose calls last what the test
    says on a fake clock, no sleeps, no JIT timing, no peak measurement. Returns (fake time, durations)."""
    fake = FakeTime()
    durations = {}
    real = bench.interleaved
    monkeypatch.setattr(bench, "interleaved", lambda calls, repeats: real(calls, repeats, fake.pause, fake.clock))
    monkeypatch.setattr(bench, "WARM_S", 0.0)  # one untimed call before a timed one (test_a_small_call_is_warmed...)
    monkeypatch.setattr(bench, "runner", lambda impl, cell, variant: lambda case: (
        fake.call(f"{impl} forward", durations.get((impl, "forward"), [1.0])),
        fake.call(f"{impl} train", durations.get((impl, "train"), [1.0]))))
    monkeypatch.setattr(bench, "available", lambda impls, cell, variant: (list(impls), []))
    monkeypatch.setattr(bench, "compile_seconds", lambda cell: {})
    monkeypatch.setattr(bench, "machine", lambda: {"cpus": 2})
    monkeypatch.setattr(peak, "measure", lambda dtype: {"numpy_gemm": 1.0, "peak_gflops": 1.0})
    return fake, durations


def test_bench_marks_the_ratio_of_a_noisy_side_in_the_table_and_the_json(fake_bench, tmp_path, capsys):
    """The 324x case of issue 32: the torch side's calls spread widely; the ratios against it are marked noisy,
    in the table and in the JSON, while the steady sides' ratio to each other is not."""
    fake, durations = fake_bench
    durations.update({("rnnspec-cpu", "forward"): [1e-3], ("numpy", "forward"): [4e-3],
                      ("torch", "forward"): [2e-3, 2e-3, 2e-3, 2e-3, 300e-3]})
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--cell", "lstm", "--sizes", "G1", "--dtypes", "float32", "--phases", "forward",
                     "--impls", "rnnspec-cpu,numpy,torch", "--repeats", "3", "--json", str(path)]) == 0
    timed = [name for name in fake.log if name != "pause"][3 * bench.WARMUP_CALLS:]
    assert timed == ["rnnspec-cpu forward", "rnnspec-cpu forward", "numpy forward", "numpy forward",
                     "torch forward", "torch forward"] * 3, timed  # in turn: untimed, timed; ABC ABC ABC
    report = json.loads(path.read_text())
    ours, numpy, torch = report["results"]
    # torch's timed calls: the 5th, 7th and 9th of 2, 2, 2, 2, 300 ms cycling: 300, 2, 2 ms
    assert torch["times_s"] == pytest.approx([0.3, 2e-3, 2e-3]) and torch["noisy"] is True
    assert ours["vs"]["torch"] == {"ratio": pytest.approx(2.0), "noisy": True}
    assert ours["vs"]["numpy"] == {"ratio": pytest.approx(4.0), "noisy": False}
    assert numpy["vs"]["rnnspec-cpu"] == {"ratio": pytest.approx(0.25), "noisy": False}
    out = capsys.readouterr().out
    rows = {line.split()[3]: line for line in out.splitlines() if line.startswith("G1")}
    assert rows["rnnspec-cpu"].endswith("2.00x noisy") and rows["numpy"].endswith("0.50x noisy"), rows
    assert rows["torch"].endswith("1.00x noisy"), rows
    assert f"exceeds {bench.NOISY_SPREAD}" in out and "in turn, one call each (A B A B ...)" in out, out


def test_bench_json_records_the_commit_the_blas_kernel_and_the_load(fake_bench, tmp_path):
    _, durations = fake_bench
    durations.update({("rnnspec-cpu", "train"): [1e-3]})
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--sizes", "S1", "--dtypes", "float64", "--phases", "train", "--impls", "rnnspec-cpu",
                     "--repeats", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["schema"] == "rnnspec.bench/2"
    assert set(report) >= {"machine", "commit", "commit_modified", "blas_kernel", "load_before", "load_after"}, report
    assert report["blas_kernel"] and all("architecture" in b for b in report["blas_kernel"]), report["blas_kernel"]
    assert report["commit"] == bench.commit()["commit"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git program")
def test_the_commit_is_the_checkouts_own_or_unknown(tmp_path):
    git = lambda *words: subprocess.run(["git", "-C", str(tmp_path / "repo"), *words], check=True,
                                        capture_output=True, text=True).stdout.strip()
    (tmp_path / "repo" / "inner").mkdir(parents=True)
    (tmp_path / "plain").mkdir()
    git("init", "-q")
    (tmp_path / "repo" / "f.txt").write_text("one")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    assert bench.commit(tmp_path / "repo") == {"commit": head, "commit_modified": False}
    (tmp_path / "repo" / "f.txt").write_text("two")
    assert bench.commit(tmp_path / "repo") == {"commit": head, "commit_modified": True}
    # an installed copy inside someone's checkout is not that checkout's commit
    assert bench.commit(tmp_path / "repo" / "inner") == {"commit": "unknown", "commit_modified": None}
    assert bench.commit(tmp_path / "plain") == {"commit": "unknown", "commit_modified": None}


@pytest.fixture
def nothing_timed(monkeypatch):
    """Fails the test if the benchmark starts: its run, its timer, its peak measurement, the GPU benchmarks."""
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.kernels.cuda import bench_gated

    started = lambda *args, **kwargs: pytest.fail("the benchmark started")
    for module, name in ((bench, "run"), (bench, "interleaved"), (bench, "compile_seconds"), (peak, "measure"),
                         (bench_cuda, "run"), (bench_gated, "run")):
        monkeypatch.setattr(module, name, started, raising=False)  # raising: on the base, to see it fail, not error


def refused(capsys, argv: list[str]) -> str:
    """The one line ``rnnspec bench ARGV`` prints before exiting 2 (with nothing on stdout)."""
    assert cli.main(["bench", *argv]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("rnnspec bench: "), (out, err)
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["--repeats", "0"], "--repeats: expected a whole number of timed calls, at least 1; got 0"),
    (["--repeats", "-1"], "got -1"),
    (["--repeats", "two"], "got 'two'"),
    (["--sizes", ","], "--sizes: expected comma-separated names of S1,"),
    (["--sizes", "G1,G9"], "--sizes: unknown G9; choose from S1,"),
    (["--sizes", "G1,G1"], "--sizes: G1 given twice"),
    (["--phases", ""], "--phases: expected comma-separated names of forward, train; got ''"),
    (["--dtypes", "float16"], "--dtypes: unknown float16; choose from float32, float64"),
    (["--impls", ",,"], "--impls: expected comma-separated names of rnnspec-cpu"),
    (["--cell", "gru"], "--cell: unknown 'gru'"),
    (["--cell", "gru-reset-before", "--impls", "torch"], "--impls: none of torch can run here: torch (PyTorch has no"),
    (["--variant", "layers=two"], "--variant: "),
    (["--variant", "layers=2,state0=default"], "state0=default is a conformance variant"),
    (["--variants"], "--variants: times other GPU layouts, with --device cuda only"),
    (["--json", "/no/such/folder/b.json"], "--json /no/such/folder/b.json: folder /no/such/folder does not exist"),
    (["--device", "cuda", "--sizes", "S1", "--dtypes", "float32"], "--sizes, --dtypes: --device cpu only"),
    (["--device", "cuda", "--variant", "layers=2"], "--variant: --device cpu only"),
    (["--device", "cuda", "--cell", ","], "--cell: no cell in ','; choose elman alone, or any of lstm"),
    (["--device", "cuda", "--cell", "elman,lstm"], "--cell: unknown elman; choose elman alone"),
    (["--device", "cuda", "--cell", "lstm,lstm"], "--cell: lstm given twice"),
    (["--device", "cuda", "--repeats", "0"], "--repeats: expected a whole number"),
])
def test_a_bad_option_is_refused_in_one_line_before_anything_is_timed(nothing_timed, capsys, argv, words):
    assert words in refused(capsys, argv)


def test_a_folder_as_json_is_refused_before_the_run_and_leaves_nothing(nothing_timed, capsys, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    for device in ("cpu", "cuda"):
        assert f"--json {folder}: is a folder; give a file name" in refused(capsys, ["--device", device, "--json",
                                                                                      str(folder)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_report_that_cannot_be_written_after_the_run_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    report = {"schema": bench.SCHEMA, "cell": "elman", "compile_s": {}, "skipped": [], "results": []}
    monkeypatch.setattr(bench, "run", lambda *args, **kwargs: report)

    def full(path, report):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bench, "write_json", full)
    assert cli.main(["bench", "--json", str(tmp_path / "b.json")]) == 2
    out, err = capsys.readouterr()
    assert "size dtype" in out  # the table came out before the write failed
    assert err.splitlines() == [f"rnnspec bench: could not write --json {tmp_path / 'b.json'}: "
                                "[Errno 28] No space left on device"], err


def test_write_json_leaves_no_temporary_file_when_it_fails(tmp_path):
    (tmp_path / "taken").mkdir()
    for path in (tmp_path / "taken", tmp_path / "missing" / "b.json"):
        with pytest.raises(OSError):
            bench.write_json(str(path), {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and not any((tmp_path / "taken").iterdir())
    bench.write_json(str(tmp_path / "b.json"), {"a": 1})
    assert json.loads((tmp_path / "b.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "taken"]


def test_without_a_gpu_the_cuda_bench_is_one_line_naming_the_simulator(tmp_path):
    """A real process without the simulator and with no device visible (CUDA_VISIBLE_DEVICES empty): whether or
    not this machine has a GPU, numba-cuda finds none."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", "bench", "--device", "cuda"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == "", (run.stdout, run.stderr)
    assert run.stderr.splitlines() == ["rnnspec bench: --device cuda: no CUDA GPU here (numba-cuda finds no usable "
                                       "driver or device); set NUMBA_ENABLE_CUDASIM=1 to run on numba-cuda's "
                                       "simulator"], run.stderr


def test_pytorch_runs_on_the_cpu_beside_the_simulator_and_is_needed_on_a_gpu(monkeypatch):
    from numba import config

    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.spec import bench_command

    monkeypatch.setattr(bench_cuda, "TORCH_DEVICE", "cuda")
    monkeypatch.setitem(sys.modules, "torch", None)  # not installed
    with pytest.raises(bench_command.Refused, match="the cuDNN baseline needs PyTorch"):
        bench_command._torch_device(bench_cuda)
    cpu_only = types.SimpleNamespace(__version__="9.9+cpu", cuda=types.SimpleNamespace(is_available=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", cpu_only)
    monkeypatch.setattr(config, "ENABLE_CUDASIM", 1)
    assert bench_command._torch_device(bench_cuda) == "cpu (no CUDA in PyTorch)"
    monkeypatch.setattr(config, "ENABLE_CUDASIM", 0)
    with pytest.raises(bench_command.Refused, match=r"PyTorch 9\.9\+cpu has no CUDA"):
        bench_command._torch_device(bench_cuda)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=bool)))
    monkeypatch.setattr(bench_cuda, "TORCH_DEVICE", "cpu")  # as the tests set it: asked for, whatever is there
    assert bench_command._torch_device(bench_cuda) == "cpu"


def test_bench_help_names_what_each_list_option_takes(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping: argparse breaks lines after a name's hyphens
    with pytest.raises(SystemExit) as stop:
        cli.main(["bench", "--help"])
    assert stop.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for option, names in (("--phases", bench.PHASES), ("--dtypes", bench.DTYPES), ("--impls", bench.RUNNERS),
                          ("--sizes", bench.SIZES), ("--cell", bench.CELLS)):
        described = help_text.split(f"{option} {option.strip('-').upper()} ", 1)[1].split(" --", 1)[0]
        assert all(name in described for name in names), (option, described)


def test_building_the_cli_parser_does_not_import_the_kernels():
    """The bench help's lists are read from the kernels only when help is printed: ``rnnspec check`` and the
    others do not pay for importing Numba's kernels to build the parser."""
    run = subprocess.run([sys.executable, "-c", "import sys; from rnnspec.spec import cli; cli.parser(); "
                          "print(sorted(m for m in sys.modules if m.startswith('rnnspec.kernels')))"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr


def test_the_table_says_when_other_processes_had_the_cores_before_the_run():
    head = {"cell": "elman", "compile_s": {}, "skipped": [], "results": [], "machine": {"cpus": 2}, "load_after": 2.5}
    busy, quiet = bench.table({**head, "load_before": 1.2}), bench.table({**head, "load_before": 0.3})
    assert "load average (1 min): 1.20 before the run, 2.50 after, on 2 CPUs: other processes had the cores" in busy
    assert "load average (1 min): 0.30 before the run, 2.50 after, on 2 CPUs" in quiet
    assert "other processes" not in quiet


def test_the_report_names_the_cpu_its_vector_instructions_and_cores():
    described = bench.machine()["cpu"]
    assert set(described) >= {"cpu", "family", "model", "isa", "cores", "l2_bytes", "blas_core"}, described
    assert described["isa"] in ("avx512", "avx2", "other")
    head = {"cell": "lstm", "compile_s": {}, "skipped": [], "results": [],
            "machine": {"cpus": 2, "cpu": {**described, "cpu": "Some CPU", "family": "6", "model": "167",
                                           "isa": "avx512", "cores": 2, "l2_bytes": 2 << 20}}}
    assert "CPU: Some CPU (family 6, model 167), avx512, 2 cores for this process, L2 2048 KiB a core" in \
        bench.table(head)


def test_the_goals_table_judges_each_goal_per_run():
    """scripts/bench_goals.py (issue 37's goals): a row meets a goal in every run, some runs or none."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_goals", Path(__file__).parents[1] / "scripts/bench_goals.py")
    goals = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(goals)
    # (PyTorch / ours, our GFLOP/s, GEMM GFLOP/s) of three runs
    slower = goals.goals("lstm", "", "G4", "train", [(0.9, 170, 200), (0.95, 150, 200), (0.8, 160, 200)])
    assert slower == {"no loss": [False] * 3, "compute-bound": [True, False, False]}
    assert goals._verdict(slower["compute-bound"]) == "some runs" and goals._verdict(slower["no loss"]) == "**not met**"
    assert goals.goals("gru-reset-after", "", "G1", "forward", [(25, 1, 200), (19, 1, 200)]) == {
        "no loss": [True, True], "latency 20x": [True, False]}
    assert goals.goals("lstm", "layers=2,bidirectional,lengths=zero", "G5", "train", [(0.5, 1, 200)]) == {}
    assert goals.goals("lstm", "layers=2", "G3", "train", [(1.0, 1, 200)]) == {"variant no slower": [True]}
