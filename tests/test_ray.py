"""The Ray engine: the same units give the same report as a plain run, a target's refusal the same matrix row, and a
node lost mid-run loses no unit and doubles none (a local multi-node cluster, ray.cluster_utils.Cluster). The
multi-node tests are slow (Ray starts its daemons in ~10 s per node): run with -m slow; the log of a run is
benchmarks/ray-tests.log."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from rnnspec.spec.cli import main
from rnnspec.spec.ray_engine import resources
from rnnspec.spec.targets import TargetError

HERE = Path(__file__).resolve().parent
WRONG = f"{HERE / 'mutants.py'}:MissingTranspose"
COUNTING = f"{HERE / 'test_units.py'}:Counting"
REFUSING = f"{__file__}:Refusing"
WHY = "this runtime runs no Elman cell (the refusal of tests/test_ray.py)"

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install 'rnnspec[ray]')")


class Refusing:
    """A target that refuses to be built, as a runtime that does not run what it stands for does (ONNX Runtime 1.32.0
    and layout=1): its own TargetError. Each time it is asked, a line goes to the file $RNNSPEC_TEST_REFUSALS."""

    cell = "elman"
    cells = ("elman",)
    dtypes = ("float64",)

    def __init__(self) -> None:
        asked = os.environ.get("RNNSPEC_TEST_REFUSALS")
        if asked:
            with open(asked, "a") as f:
                f.write(f"{os.getpid()}\n")
        raise TargetError(WHY)


@pytest.fixture
def refusing_row(monkeypatch):
    """The matrix with a row for :class:`Refusing` (a matrix runs built-in rows only; its units name the target by
    file, so that every process, a Ray worker included, loads it without this patch)."""
    from rnnspec.spec import matrix

    monkeypatch.setattr(matrix, "ROWS", (*matrix.ROWS, matrix.Row(REFUSING, "Refusing", "torch", (), "CPU")))
    builtin = matrix._target_class
    monkeypatch.setattr(matrix, "_target_class", lambda name: Refusing if name == REFUSING else builtin(name))


@pytest.fixture
def one_cpu_ray(tmp_path):
    """A local Ray of one CPU for the test (the engine uses a Ray already started), and the file where
    :class:`Refusing` counts its construction, from any process."""
    import ray  # the test is marked needs_ray

    asked = tmp_path / "asked"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNSPEC_TEST_REFUSALS", str(asked))  # before Ray starts: its workers inherit the environment
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            yield asked
        finally:
            ray.shutdown()


def _report(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert isinstance(data.pop("seconds"), float)
    return data


def test_units_ask_for_their_packages_only_on_a_cluster_that_declares_packages():
    assert resources(("torch",), {"CPU", "memory"}) == {}
    assert resources(("keras", "jax"), {"CPU", "pkg:torch"}) == {"pkg:keras": 0.001, "pkg:jax": 0.001}


def test_the_ray_engine_without_ray_is_a_usage_error(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert main(["check", WRONG, "--examples", "2", "--quiet", "--engine", "ray"]) == 2
    assert "Ray is not installed here (pip install 'rnnspec[ray]')" in capsys.readouterr().err


@needs_ray
def test_a_target_s_refusal_on_ray_is_the_local_engine_s_row_asked_once_per_unit(tmp_path, refusing_row,
                                                                                  one_cpu_ray):
    """A target that raises its own TargetError: under --engine ray, as under the local engine, the matrix finishes
    (exit 0) with the row and its reason, refused.json written, no unit record (a rerun asks again), each unit's
    target asked once (a deterministic refusal is not retried), and matrix --from shows the same Markdown."""
    args = ["matrix", "--targets", REFUSING, "--examples", "4", "--unit-cases", "2", "--quiet"]  # 2 units
    texts, refused, asked = {}, {}, {}
    for engine in ("local", "ray"):
        folder, out = tmp_path / engine, tmp_path / f"{engine}.md"
        assert main([*args, "--engine", engine, "--results", str(folder), "--out", str(out)]) == 0
        texts[engine] = out.read_text().replace(str(out), "OUT")
        refused[engine] = json.loads((folder / "refused.json").read_text())
        asked[engine] = len(one_cpu_ray.read_text().split())
        one_cpu_ray.unlink()
        assert not list((folder / "units").iterdir())
        assert main(["matrix", "--from", str(folder), "--out", str(out)]) == 0
        assert out.read_text().replace(str(out), "OUT") == texts[engine]
    rows = [line for line in texts["local"].splitlines() if line.startswith("| Refusing |  | CPU | elman | float64 |")]
    assert len(rows) == 1 and rows[0].startswith("| Refusing |  | CPU | elman | float64 | not provided ["), rows
    note = rows[0].split("not provided [")[1].split("]")[0]
    assert f"\n{note}. the target refuses to run it: {WHY} (" in texts["local"]
    assert len(refused["local"]) == 2 and set(refused["local"].values()) == {WHY}
    assert asked["local"] == 2
    assert (texts["ray"], refused["ray"], asked["ray"]) == (texts["local"], refused["local"], asked["local"])
    # nothing was stored, so the same command asks the target again
    again = ["--engine", "ray", "--results", str(tmp_path / "ray"), "--out", str(tmp_path / "again.md")]
    assert main([*args, *again]) == 0
    assert len(one_cpu_ray.read_text().split()) == 2


@needs_ray
@pytest.mark.slow
def test_ray_gives_the_plain_run_s_report(tmp_path):
    args = [WRONG, "--examples", "12", "--unit-cases", "4", "--quiet"]
    plain, on_ray = tmp_path / "plain.json", tmp_path / "ray.json"
    assert main(["check", *args, "--report", str(plain)]) == 1
    assert main(["check", *args, "--engine", "ray", "--report", str(on_ray)]) == 1
    assert _report(on_ray) == _report(plain)


@needs_ray
@pytest.mark.slow
def test_a_node_killed_mid_run_loses_no_unit_and_doubles_none(tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from rnnspec.spec.runner import check
    from rnnspec.spec.worker import TargetName

    monkeypatch.setenv("RNNSPEC_TEST_DELAY", "0.1")  # a unit of 2 cases takes a second or so: time to kill a node
    calls = tmp_path / "calls"
    monkeypatch.setenv("RNNSPEC_TEST_CALLS", str(calls))  # each forward() call's case, from every node
    options = dict(target=COUNTING, examples=12, unit_cases=2, dtype="float64")
    plain = check(TargetName(COUNTING), **options).to_json()
    calls.unlink()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no unit
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        folder = tmp_path / "r"
        lines: list[str] = []
        killed = []

        def kill_when_a_unit_is_stored() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if (folder / "units").is_dir() and any((folder / "units").glob("*.json")):
                    cluster.remove_node(doomed)
                    killed.append(time.monotonic())
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_a_unit_is_stored)
        killer.start()
        report = check(TargetName(COUNTING), **options, engine="ray", address=cluster.address,
                       results=str(folder), units_progress=lines.append)
        killer.join()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    assert killed, "no node was killed"
    assert len(list((folder / "units").glob("*.json"))) == 6
    # every unit counted once: 6 done, none failed, none counted twice
    assert lines[-1].startswith("units: 6/6 done, 0 failed, 0 left")
    assert sum(" done" in line for line in lines) == 7  # the first line, then one per unit
    # forward() is called twice a case (the determinism clause); a case called more often was in a unit that ran
    # again on the other node after its node was removed (not asserted: the removal may fall between two units)
    counts = Counter(calls.read_text().split())
    print(f"node removed; cases of a retried unit: {sum(n > 2 for n in counts.values())} of {len(counts)}")
    got = report.to_json()
    got.pop("seconds"), plain.pop("seconds")
    assert got == plain
