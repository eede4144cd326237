"""Runs as work units: stored results, resuming, shards merged, workers, progress (issue "Runs that outgrow one
machine"). The targets are small NumPy ones (tests/mutants.py), run by file name as on the command line."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnspec.spec.cases import Case
from rnnspec.spec.cli import main
from rnnspec.spec.progress import UnitProgress

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from mutants import Elman, MissingTranspose  # noqa: E402

#: a target that fails some clauses (so counterexamples and shrinking are part of what must agree)
WRONG = f"{HERE / 'mutants.py'}:MissingTranspose"
COUNTING = f"{__file__}:Counting"
RUN = ["--examples", "12", "--unit-cases", "4", "--quiet"]


class Counting(Elman):
    """A correct Elman target that appends the digest of each forward() call's x, and a time, to the file named by
    $RNNSPEC_TEST_CALLS; slowed by $RNNSPEC_TEST_DELAY seconds a call (so that a run can be killed midway)."""

    def forward(self, x, state0, params):
        path = os.environ.get("RNNSPEC_TEST_CALLS")
        if path:
            with open(path, "a") as f:
                f.write(_digest(self.activation, x, state0, params) + "\n")
        time.sleep(float(os.environ.get("RNNSPEC_TEST_DELAY", "0")))
        return super().forward(x, state0, params)


def _digest(activation, x, state0, params) -> str:
    """A call's activation and arguments, digested: a case's identity (cases of different regimes may share x, and
    of different activations every array)."""
    h = hashlib.sha256(activation.encode() + np.ascontiguousarray(x).tobytes())
    for arrays in (state0, params):
        for name in sorted(arrays):
            h.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()[:16]


def _case_digest(fields: dict) -> str:
    """What :meth:`Counting.forward` writes for the case ``fields``."""
    from rnnspec.spec.expected import call_args

    case = Case(**fields)
    x, state0, params = call_args("forward", case.arrays(), case.cell, case.variant)[:3]
    return _digest(case.activation, x, state0, params)


def _report(path: Path) -> dict:
    """A JSON report without its timing (the one field two runs of the same units may differ in)."""
    data = json.loads(path.read_text())
    assert isinstance(data.pop("seconds"), float)
    return data


def _check(*args: str) -> int:
    return main(["check", *args])


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict:
    """The report of a plain run (one process, no results folder) of the failing target."""
    out = tmp_path_factory.mktemp("plain") / "r.json"
    assert _check(WRONG, *RUN, "--report", str(out)) == 1
    return _report(out)


def test_a_plain_run_reports_failures_with_counterexamples(plain):
    assert plain["verdict"] == "not conformant" and plain["cases"] == 12
    failed = [c for c in plain["clauses"] if c["status"] == "failed"]
    assert failed and all(c["counterexample"]["case"]["dtype"] in ("float32", "float64") for c in failed)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_n_shards_merged_give_the_plain_run_s_report(tmp_path, plain, n):
    folders = [str(tmp_path / f"shard{k}") for k in range(1, n + 1)]
    for k, folder in enumerate(folders, 1):
        code = _check(WRONG, *RUN, "--results", folder, "--shard", f"{k}/{n}")
        assert code == (1 if n == 1 else 0)  # a shard with units elsewhere has no verdict yet
    units = [f for folder in folders for f in Path(folder, "units").iterdir()]
    assert len(units) == 3 and len({f.name for f in units}) == 3  # 12 cases / 4: each unit in one shard only
    out = tmp_path / "merged.json"
    assert main(["merge", *folders, "--report", str(out)]) == 1
    assert _report(out) == plain


def test_two_workers_give_the_plain_run_s_report(tmp_path, plain):
    out = tmp_path / "r.json"
    assert _check(WRONG, *RUN, "--workers", "2", "--report", str(out)) == 1
    assert _report(out) == plain


def test_the_python_api_with_an_object_gives_the_same_verdicts_as_by_name(plain):
    from rnnspec.spec.runner import check

    report = check(MissingTranspose(), target=WRONG, examples=12, unit_cases=4)
    data = report.to_json()
    data.pop("seconds")
    # the object's class is this test module's import of mutants, not the file target's: all else is the same
    data["environment"]["target_class"] = plain["environment"]["target_class"]
    assert data == plain


def test_merge_names_the_units_no_folder_has(tmp_path, capsys):
    folder = str(tmp_path / "one")
    assert _check(WRONG, *RUN, "--results", folder, "--shard", "1/3") == 0
    assert main(["merge", folder]) == 2
    err = capsys.readouterr().err
    assert "2 of the run's 3 units are in none of the folders" in err and "cases 4-7" in err


def test_a_folder_of_other_parameters_is_refused_before_running(tmp_path, capsys):
    folder = str(tmp_path / "r")
    assert _check(WRONG, *RUN, "--results", folder, "--shard", "1/3") == 0
    assert _check(WRONG, "--examples", "13", "--unit-cases", "4", "--quiet", "--results", folder) == 2
    err = capsys.readouterr().err
    assert "--results" in err and "other parameters (differing: examples)" in err
    assert len(list(Path(folder, "units").iterdir())) == 1


def test_merge_refuses_shards_of_different_runs(tmp_path, capsys):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert _check(WRONG, *RUN, "--results", a, "--shard", "1/2") == 0
    assert _check(WRONG, *RUN, "--seed", "1", "--results", b, "--shard", "2/2") == 0
    capsys.readouterr()
    assert main(["merge", a, b]) == 2
    err = capsys.readouterr().err
    assert "other parameters" in err and "(differing: seed)" in err


def test_a_bad_shard_is_a_usage_error_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        _check(WRONG, "--shard", "3/2")
    assert "--shard: expected K/N with 1 <= K <= N, got '3/2'" in capsys.readouterr().err
    assert _check(WRONG, "--shard", "1/2") == 2  # its results would be kept nowhere
    assert "--shard 1/2: give --results DIR too" in capsys.readouterr().err


def _calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_run_killed_at_a_random_point_resumes_with_every_unit_done_once(tmp_path):
    """SIGKILL after a random number of finished units (1 to 3 of 5), rerun: each unit's record once, the report
    a clean run's, and no case of a unit finished before the kill called again."""
    folder = tmp_path / "r"
    args = ["rnnspec", "check", COUNTING, "--examples", "10", "--unit-cases", "2", "--dtype", "float64", "--quiet",
            "--results", str(folder)]
    first, second = tmp_path / "first.calls", tmp_path / "second.calls"
    stop_after = random.Random().randint(1, 3)
    env = {**os.environ, "RNNSPEC_TEST_CALLS": str(first), "RNNSPEC_TEST_DELAY": "0.05"}
    cli = [sys.executable, "-c", "import sys; from rnnspec.spec.cli import main; sys.exit(main(sys.argv[1:]))"]
    run = subprocess.Popen(cli + args[1:], env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((folder / "units").glob("*.json")) if (folder / "units").is_dir() else []) < stop_after:
        assert run.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)  # the run and its worker processes, at once
    run.wait()
    finished = {p.name: json.loads(p.read_text()) for p in (folder / "units").glob("*.json")}
    assert stop_after <= len(finished) < 5
    env["RNNSPEC_TEST_CALLS"] = str(second)
    report = tmp_path / "resumed.json"
    assert subprocess.run(cli + args[1:] + ["--report", str(report)], env=env, stdout=subprocess.DEVNULL).returncode \
        == 0
    # a kill between a record's write and its rename leaves a hidden .tmp file, which nothing reads
    names = sorted(p.name for p in (folder / "units").iterdir() if not p.name.endswith(".tmp"))
    assert len(names) == 5 and all(n.endswith(".json") and not n.startswith(".") for n in names)
    for name, record in finished.items():  # the records written before the kill are kept as they were
        assert json.loads((folder / "units" / name).read_text()) == record
    done_before = {_case_digest(c) for r in finished.values() for c in r["cases"]}
    assert done_before and done_before <= set(_calls(first))
    assert not done_before & set(_calls(second))
    clean = tmp_path / "clean.json"
    assert main(["check", COUNTING, *args[3:-2], "--report", str(clean)]) == 0
    assert _report(report) == _report(clean)


def test_the_progress_line_counts_units_and_estimates_the_time_left():
    now = [0.0]
    lines: list[str] = []
    progress = UnitProgress(10, resumed=2, parallel=2, stream=lines.append, clock=lambda: now[0])
    assert progress.eta() is None
    now[0] = 8.0
    progress.finished(4.0)
    progress.finished(6.0)
    progress.finished(1.0, ok=False)
    # 10 units, 2 resumed, 2 done here (5 s each), 1 failed: 5 left at 5 s a unit on 2 workers
    assert progress.left == 5 and progress.eta() == 12.5
    assert lines[-1].startswith("units: 4/10 done (2 resumed), 1 failed, 5 left; ETA 12 s [8 s]")
