"""The CPU kernels' path-choosing thresholds (rnnspec.kernels.cpu.tuning): one table; a measurement cached per
machine beside Numba's cache, which the kernels read at their first choice; the safe values wherever that is
missing or another machine's; the boundaries a measurement derives; each path chosen through the cache."""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_bench_command import fake_bench  # noqa: F401 - a fixture: the CPU benchmark without its slow parts
from test_gated_kernels import _fixed, _flat, _run, assert_agree

from rnnspec.kernels import numba_cache
from rnnspec.kernels.cpu import blas, gated, panels, rows, split, tuning
from rnnspec.kernels.cpu.work import flops


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """The kernels' cache directory in tmp_path (Numba's own setting untouched), nothing forced, two cores; the
    values read afresh before and after."""
    monkeypatch.setattr(numba_cache, "cache_directory", lambda root=None: tmp_path)
    for variable in (tuning.ENVIRONMENT, split.FORCE, rows.FORCE, panels.FORCE):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(split, "cores", lambda: 2)
    monkeypatch.setattr(rows, "cores", lambda: 2)
    tuning.reload()
    yield tmp_path
    tuning.reload()


def _record(values: dict, **changes) -> dict:
    return {"schema": tuning.SCHEMA, "machine": tuning.machine(), "measured_at": "test", "values": values, **changes}


def test_every_threshold_the_choices_read_is_in_the_table_and_every_one_is_read():
    """split.py, rows.py, blas.py and panels.py read their thresholds by name from TABLE (none of its own), and
    each entry says why; the reference machine is named."""
    read = set()
    for module in (split, rows, blas, panels):
        for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "value"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                read.add(node.args[0].value)
    assert read == set(tuning.TABLE), (read ^ set(tuning.TABLE))
    assert all(t.why and t.safe >= 0 for t in tuning.TABLE.values())
    assert {"cpu", "isa", "cores", "blas_core"} <= set(tuning.REFERENCE)


def test_a_measurement_round_trips_through_the_cache_and_the_kernels_choose_by_it(cache):
    """save() writes beside the kernels' compiled code, under this machine's key; the choices read it at their
    first use: a call with too little work for the safe values runs on two threads by the measured ones."""
    small_flops = flops("train", 32, 8, 8, 16, 4, 4)
    assert small_flops < tuning.TABLE["rows.min_flops"].safe
    assert not rows.wanted(32, 8, 1000, small_flops) and not split.wanted("lstm", 128, 1, 16, 4)
    measured = {"rows.min_flops": small_flops, "split.min_row_step": 4 * 16 * 16}
    tuning.reload()
    path = tuning.save(_record(measured))
    assert path == tuning.cache_path() and path.parent == cache and tuning.machine_key(tuning.machine()) in path.name
    assert json.loads(path.read_text())["values"] == measured
    assert rows.wanted(32, 8, 1000, small_flops) and split.wanted("lstm", 128, 1, 16, 4)
    assert tuning.value("rows.min_flops") == small_flops and tuning.measured("rows.min_flops")
    assert tuning.value("rows.min_rows") == tuning.TABLE["rows.min_rows"].safe and not tuning.measured("rows.min_rows")
    assert "measured on this machine" in tuning.active().source
    path.write_text(json.dumps(_record({"rows.min_flops": 1e18})))
    assert rows.wanted(32, 8, 1000, small_flops)  # read once, at the first choice: not at every call
    tuning.reload()
    assert not rows.wanted(32, 8, 1000, small_flops)


def test_the_cache_lies_beside_numbas_cache_of_the_kernels():
    assert tuning.cache_path().parent == numba_cache.cache_directory()


@pytest.mark.parametrize("broken,reason", [
    (lambda r: {**r, "machine": {**r["machine"], "cpu": "another CPU"}}, "another machine"),
    (lambda r: {**r, "machine": {**r["machine"], "cores": r["machine"]["cores"] + 1}}, "another machine"),
    (lambda r: {**r, "schema": "rnnspec.cpu-tuning/0"}, "not of schema"),
    (lambda r: {**r, "values": {"rows.min_flops": "fast"}}, "other than numbers"),
    (lambda r: {**r, "values": {"rows.min_rows": 2}}, "other than numbers"),  # not a measured threshold
    (lambda r: "{ not json", "unreadable"),
])
def test_another_machines_or_a_broken_measurement_falls_back_to_the_safe_values(cache, broken, reason):
    record = broken(_record({"rows.min_flops": 1.0}))
    tuning.cache_path().write_text(record if isinstance(record, str) else json.dumps(record))
    assert all(tuning.value(name) == safe for name, safe in tuning.safe_values().items())
    assert reason in tuning.active().source and not tuning.measured("rows.min_flops")


def test_nothing_measured_gives_the_safe_values_and_says_so(cache):
    assert all(tuning.value(name) == safe for name, safe in tuning.safe_values().items())
    assert "nothing measured on this machine" in tuning.active().source


def test_the_environment_asks_for_the_safe_values_whatever_was_measured(cache, monkeypatch):
    tuning.save(_record({"rows.min_flops": 1.0}))
    assert tuning.value("rows.min_flops") == 1.0
    monkeypatch.setenv(tuning.ENVIRONMENT, "safe")
    assert tuning.value("rows.min_flops") == 1.0  # read with the file, at the first choice
    tuning.reload()
    assert tuning.value("rows.min_flops") == tuning.TABLE["rows.min_flops"].safe
    assert "RNNSPEC_CPU_TUNING=safe" in tuning.active().source


def test_overrides_nest_win_and_name_what_is_unknown(cache):
    with tuning.override({"rows.min_rows": 2, "rows.min_steps": 3}):
        with tuning.override({"rows.min_rows": 4}):
            assert (tuning.value("rows.min_rows"), tuning.value("rows.min_steps")) == (4, 3)
        assert tuning.value("rows.min_rows") == 2
    assert tuning.value("rows.min_rows") == tuning.TABLE["rows.min_rows"].safe
    with pytest.raises(ValueError, match="unknown thresholds \\['rows.min_row'\\]"):
        with tuning.override({"rows.min_row": 1}):
            pass


def test_the_transposed_products_run_off_the_kernels_they_were_measured_on_only_where_measured(cache, monkeypatch):
    """Safe: only on OpenBLAS kernels with the small-matrix path (SkylakeX and successors); a measurement on
    another machine (an AVX2-only one, say) decides there."""
    f32, lstm_g4 = np.dtype(np.float32), 4 * 1024 * 1024 * 4
    monkeypatch.setattr(blas, "has_small_kernels", lambda: True)
    tuning.reload()
    assert blas.transposed_wins(f32, 16, lstm_g4)
    monkeypatch.setattr(blas, "has_small_kernels", lambda: False)
    tuning.reload()
    assert not blas.transposed_wins(f32, 16, lstm_g4) and tuning.safe_values()["blas.transposed_min_bytes"] == math.inf
    tuning.save(_record({"blas.transposed_min_bytes": 1 << 20}))
    assert blas.transposed_wins(f32, 16, lstm_g4) and not blas.transposed_wins(f32, 16, (1 << 20) - 4)
    monkeypatch.setattr(blas, "has_small_kernels", lambda: True)
    tuning.save(_record({"blas.transposed_min_bytes": math.inf}))  # measured: it never won
    assert not blas.transposed_wins(f32, 16, lstm_g4)


def test_the_boundaries_between_losses_and_wins():
    """(x, ratio): a win is a ratio of at least WIN; boundaries are geometric means of neighbours."""
    lose, win = 1.0, 2.0
    assert tuning.lower_boundary([(1, lose), (4, win), (16, win)]) == 2.0
    assert tuning.lower_boundary([(1, win), (4, lose), (9, win), (16, win)]) == 6.0  # the run that reaches the end
    assert tuning.lower_boundary([(1, win), (4, win)]) == 1  # every one won: nothing below was measured
    assert tuning.lower_boundary([(1, win), (4, lose)]) == math.inf  # the largest lost: never
    assert tuning.win_range([(1, lose), (4, win), (16, win), (64, lose)]) == (2.0, 32.0)
    assert tuning.win_range([(1, win), (4, lose), (9, win), (16, win)]) == (6.0, 16)  # the longest run
    assert tuning.win_range([(1, lose), (4, lose)]) == (math.inf, 0.0)
    assert tuning.lower_boundary([(1, lose), (4, tuning.WIN)]) == 2.0  # a ratio of exactly WIN wins


def test_the_measurement_derives_each_threshold_from_its_probes(cache, monkeypatch):
    """On a made-up machine (each probe's ratio a rule of its sizes, no timing): the batch in halves wins at
    64 <= H <= 256, the split at H >= 256 with T >= 64 and B <= 2, the transposed products at H >= 768, the
    panels everywhere on one thread and at 2-8 rows beside OpenBLAS's two threads; with W beyond L2 (2 MiB here),
    the split at B <= 4, the halves at B >= 32."""
    def probe(kind, T, B, I, H):
        split_won = (H >= 256 and T >= 64 and B <= 2) or ((T, I, H) == tuning.BEYOND_L2 and B <= 4)
        rows_won = 64 <= H <= 256 or ((T, I, H) == tuning.LARGE_WEIGHT and B >= 32)
        won = {"rows": rows_won, "split": split_won, "transposed": H >= 768,
               "panels": True, "threaded": 2 <= B <= 8}[kind]
        return {"one_s": 2.0 if won else 1.0, "two_s": 1.0, "ratio": 2.0 if won else 1.0}

    monkeypatch.setattr(tuning, "probe", probe)
    monkeypatch.setattr(tuning, "l2_bytes", lambda: 2 << 20)
    record = tuning.measure()
    T, B, I = tuning.ROWS
    train = lambda H: flops("train", T, B, I, H, 16, 4)
    lstm_bytes = lambda H: 4 * H * H * 4
    expected = {"rows.min_flops": math.sqrt(train(48) * train(64)),
                "rows.max_weight_bytes": math.sqrt(lstm_bytes(256) * lstm_bytes(384)),
                "rows.large_weight_min_rows": math.ceil(math.sqrt(16 * 32)),
                "split.min_row_step": math.sqrt(4 * 192 * 192 * 4 * 256 * 256), "split.min_steps": math.sqrt(32 * 64),
                "split.max_rows": 2, "blas.transposed_min_bytes": math.sqrt(lstm_bytes(512) * lstm_bytes(768)),
                "split.beyond_l2_max_rows": 4,
                "panels.enabled": 1.0, "panels.min_threaded_rows": 2, "panels.max_threaded_rows": 11}
    assert record["values"] == pytest.approx(expected, rel=1e-12), record["values"]
    assert record["machine"] == tuning.machine() and record["schema"] == tuning.SCHEMA
    split_probes = [(p["T"], p["B"], p["H"]) for p in record["probes"] if p["kind"] == "split"]
    T, B, I = tuning.SPLIT
    ladders = [(t, B, 256) for t in tuning.SPLIT_T if t != T] + [(T, 2, 256), (T, 3, 256)]  # stops at B = 3
    assert split_probes == [(T, B, H) for H in tuning.SPLIT_H] + ladders + [  # the shared point measured once
        (tuning.BEYOND_L2[0], b, tuning.BEYOND_L2[2]) for b in (2, 4, 8)]  # beyond L2: stops at B = 8
    assert tuning.read(tuning.save(record), tuning.machine()).values == record["values"]


@pytest.mark.parametrize("panels_win", [True, False])
def test_the_panels_are_measured_first_and_every_other_probe_runs_with_their_value(cache, monkeypatch, panels_win):
    """The halves in the rows' and the split's probes run their step products as the kernels will: measured with
    the safe value (no panels where the CPU lacks AVX-512), the halves lost to the whole batch at every H on
    emulated AVX2 and the rows were never chosen, where with the panels they win."""
    seen = []

    def probe(kind, T, B, I, H):
        seen.append((kind, tuning.value("panels.enabled")))
        ratio = 2.0 if kind == "panels" and panels_win else 1.0
        return {"one_s": ratio, "two_s": 1.0, "ratio": ratio}

    monkeypatch.setattr(tuning, "probe", probe)
    with tuning.override({"panels.enabled": 0.0 if panels_win else 1.0}):  # the opposite of what is measured
        record = tuning.measure()
    kinds = [kind for kind, _ in seen]
    assert kinds[:len(tuning.PANELS_H)] == ["panels"] * len(tuning.PANELS_H) and kinds.count("panels") == 2
    assert record["values"]["panels.enabled"] == float(panels_win)
    assert {value for kind, value in seen if kind != "panels"} == {float(panels_win)}, seen


def test_a_measurement_where_the_split_never_won_leaves_its_other_thresholds_safe(cache, monkeypatch):
    monkeypatch.setattr(tuning, "probe", lambda kind, T, B, I, H: {"one_s": 1.0, "two_s": 1.0, "ratio": 1.0})
    monkeypatch.setattr(tuning, "l2_bytes", lambda: 2 << 20)
    values = tuning.measure()["values"]
    assert values == {"rows.min_flops": math.inf, "rows.max_weight_bytes": 0.0, "rows.large_weight_min_rows": math.inf,
                      "split.min_row_step": math.inf,
                      "split.beyond_l2_max_rows": 0, "blas.transposed_min_bytes": math.inf, "panels.enabled": 0.0}
    tuning.save(tuning.measure())
    assert not rows.wanted(100, 32, 1000, 1e12) and not split.wanted("lstm", 1000, 1, 1024, 4)
    assert not split.wanted("lstm", 50, 2, 1024, 4, 4 * 1024 * 1024 * 4)
    assert tuning.value("split.min_steps") == tuning.TABLE["split.min_steps"].safe


def test_measuring_forces_each_path_and_puts_the_environment_back(cache, monkeypatch):
    """Each probe's two sides, as the kernels' choices see them: the plain path (no split, no halves, no
    transposed products; the panels as they are), then the probe's own path alone (the panels on the halves,
    against the halves on BLAS); the FORCE variables as they were after."""
    choices = lambda: (split.wanted("lstm", 256, 1, 256, 4), rows.wanted(64, 16, 1, 1.0),
                       blas.transposed_wins(np.dtype(np.float32), 16, 1 << 30), panels.wanted(16, True, 16),
                       panels.wanted(16, False, 4))
    monkeypatch.setenv(split.FORCE, "never")
    seen = {}
    for kind, sides in tuning.PATHS.items():
        for side in sides:
            with tuning._paths(*side):
                seen.setdefault(kind, []).append(choices())
    # the panels as they are in force (the safe table's), on one thread and beside OpenBLAS's two: only their own
    # probes set them
    on, beside = panels.wanted(16, True, 16), panels.wanted(16, False, 4)
    plain = (False, False, False, on, beside)
    assert seen == {"rows": [plain, (False, True, False, on, beside)],
                    "split": [plain, (True, False, False, on, beside)],
                    "transposed": [plain, (False, False, True, on, beside)],
                    "panels": [(False, True, False, False, False), (False, True, False, True, True)],
                    "threaded": [(False, False, False, on, False), (False, False, False, on, on)]}
    assert os.environ[split.FORCE] == "never" and rows.FORCE not in os.environ


@pytest.mark.parametrize("path", ["rows", "split", "transposed"])
def test_each_path_runs_where_a_measurement_chooses_it_and_agrees_with_the_plain_path(cache, path, monkeypatch):
    """A small LSTM training call (float32) that the safe values keep on the plain path: with a measurement that
    chooses the path, the kernels take it and agree with the plain path within the paths' stated bounds."""
    T, B, H = {"rows": (34, 8, 16), "split": (130, 1, 16), "transposed": (5, 8, 64)}[path]
    case = _fixed("lstm", "float32", T, B, 4, H, seed=5)
    took = []
    if path == "rows":
        monkeypatch.setattr(rows, "run", lambda call, args, run=rows.run: (took.append(1), run(call, args))[1])
        measured = {"rows.min_flops": 1.0}
    elif path == "split":
        monkeypatch.setattr(split.Parts, "forward", lambda self, f=split.Parts.forward: (took.append(1), f(self))[1])
        measured = {"split.min_row_step": 1.0}
    else:
        monkeypatch.setattr(gated, "SMALL_STEP", -1)  # a BLAS call a step (at this size a loop, otherwise)
        init = gated._Run.__init__
        monkeypatch.setattr(gated._Run, "__init__", lambda self, *a, **k: (init(self, *a, **k),
                                                                          took.append(self.transposed))[0])
        measured = {"blas.transposed_min_bytes": 1.0}
    plain = _flat(_run(case))
    assert not any(took), took
    tuning.save(_record(measured))
    chosen = _flat(_run(case))
    assert any(took), path
    assert_agree(chosen, plain, 1e-5)


def test_the_command_measures_nothing_on_a_busy_machine_unless_told(cache, monkeypatch, capsys):
    monkeypatch.setattr(os, "getloadavg", lambda: (10.0 * tuning.cores(), 0.0, 0.0))
    monkeypatch.setattr(tuning, "probe", lambda kind, T, B, I, H: {"one_s": 1.0, "two_s": 1.0, "ratio": 1.0})
    assert tuning.main([]) == 3
    assert "not measured: run again when it is idle" in capsys.readouterr().err
    assert not tuning.cache_path().exists()
    assert tuning.main(["--busy-ok"]) == 0 and tuning.cache_path().exists()
    assert "measured on this machine" in capsys.readouterr().out


def test_the_command_shows_the_values_in_use_and_refuses_other_arguments():
    run = subprocess.run([sys.executable, "-m", "rnnspec.kernels.cpu.tune", "--show"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, tuning.ENVIRONMENT: "safe"})
    assert run.returncode == 0 and "Warning" not in run.stderr, run.stdout + run.stderr
    assert all(name in run.stdout for name in tuning.TABLE) and "the safe values" in run.stdout, run.stdout
    bad = subprocess.run([sys.executable, "-m", "rnnspec.kernels.cpu.tune", "--fast"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "usage: python -m rnnspec.kernels.cpu.tune [--show]" in bad.stderr, bad.stderr


@pytest.mark.usefixtures("fake_bench")
def test_the_benchmark_records_the_thresholds_it_ran_with(cache, capsys):
    from rnnspec.spec import cli

    tuning.save(_record({"rows.min_flops": 123.0}))
    path = cache / "bench.json"
    assert cli.main(["bench", "--cell", "lstm", "--sizes", "G1", "--dtypes", "float32", "--phases", "train",
                     "--impls", "rnnspec-cpu", "--repeats", "1", "--json", str(path)]) == 0
    recorded = json.loads(path.read_text())["tuning"]
    assert recorded["values"]["rows.min_flops"] == 123.0 and set(recorded["values"]) == set(tuning.TABLE)
    assert "measured on this machine" in recorded["source"]
    assert f"path-choosing thresholds: {recorded['source']}" in capsys.readouterr().out


def test_the_environment_is_read_as_os_environ_reads_it(monkeypatch):
    """tuning.environment reads os.environ's own dict (an unset variable through os.environ.get raises and catches a
    KeyError inside): unset, set, changed and deleted through os.environ, it answers as os.environ.get does, and a
    forced path follows at once."""
    name = "RNNSPEC_TEST_ENVIRONMENT_READ"
    monkeypatch.delenv(name, raising=False)
    assert tuning.environment(name) == os.environ.get(name, "") == ""
    for value in ("always", "never", "x y é"):
        monkeypatch.setenv(name, value)
        assert tuning.environment(name) == os.environ.get(name, "") == value
    monkeypatch.delenv(name)
    assert tuning.environment(name) == ""
    monkeypatch.setenv(panels.FORCE, "always")
    assert tuning.forced(panels.FORCE) is True
    monkeypatch.setenv(panels.FORCE, "never")
    assert tuning.forced(panels.FORCE) is False
    monkeypatch.setenv(panels.FORCE, "sometimes")
    with pytest.raises(ValueError, match="sometimes"):
        tuning.forced(panels.FORCE)
