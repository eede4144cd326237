"""The recurrence on two threads (rnnspec.kernels.cpu.split): the oracle's values, the one-thread kernels'
values, and the machinery around it (the choice, the barrier's abort, OpenBLAS's thread count)."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from numba import njit
from test_gated_kernels import _fixed, _flat, _run, assert_agree, assert_untouched, compare, gated_cases, snapshot

from rnnspec.kernels.cpu import blas, panels, split, tuning
from rnnspec.kernels.cpu.threads import arrive_and_wait, counter, together


@pytest.fixture
def used(monkeypatch):
    """Forces the split wherever H is even, and counts the calls that ran it."""
    monkeypatch.setenv(split.FORCE, "always")
    calls = []
    forward = split.Parts.forward
    monkeypatch.setattr(split.Parts, "forward", lambda self: (calls.append(self.run.H), forward(self))[1])
    return calls


def _even(case):
    return case["params"]["V"].shape[1] % 2 == 0


@pytest.mark.parametrize("dtype,examples", [("float32", 8), pytest.param("float32", 30, marks=pytest.mark.slow),
                                            pytest.param("float64", 30, marks=pytest.mark.slow)])
@pytest.mark.parametrize("cell", split.CELLS)
def test_two_threads_match_the_oracle(cell, dtype, examples, used):
    """Hypothesis cases (T up to 30, B up to 5, H even up to 24, gates driven open or shut) against the
    oracle, as the one-thread kernels are checked: float64 within 1e-12, float32 within the suite's
    tolerance. CI runs 8 float32 cases a cell (float64 is checked below against the one-thread kernels);
    ``-m slow`` 30 of each dtype."""
    settings(max_examples=examples, deadline=None)(given(gated_cases(cell, dtype).filter(_even))(compare))()
    assert used and all(H % 2 == 0 for H in used)


@pytest.mark.parametrize("dtype,bound", [("float32", 1e-5), pytest.param("float64", 1e-13, marks=pytest.mark.slow)])
@pytest.mark.parametrize("cell", ["lstm", pytest.param("gru-reset-after", marks=pytest.mark.slow)])
@pytest.mark.parametrize("inputs", [4, panels.DEPTH + 2])
def test_two_threads_agree_with_one_and_repeat_bit_for_bit(cell, dtype, bound, inputs, used, monkeypatch):
    """At a size the choice itself splits (T = 130, B = 1, H = 256; every output and gradient): within 1e-5 of
    the one-thread kernels in float32 (their products sum in another order), bit-identical over calls and
    for Fortran-order inputs, and the caller's arrays untouched; I = 4 (each part's projection by panels) and
    I = DEPTH + 2 (by BLAS). float32 in CI, sharing the compiled code of the oracle test above; float64 (within
    1e-13) with ``-m slow``."""
    case = _fixed(cell, dtype, 130, 1, inputs, 256, seed=3)
    for key in [k for k in case["params"] if k.startswith("W_")]:  # a contracting recurrence (radius ~0.5): a
        case["params"][key] /= np.asarray(16, dtype)  # chaotic one would amplify any change of rounding
    copies = snapshot(case)
    two = _flat(_run(case))
    assert len(used) == 3  # forward, backward and loss each split
    again = _flat(_run(case))
    fortran = {**case, "x": np.asfortranarray(case["x"]),
               "params": {k: np.asfortranarray(v) for k, v in case["params"].items()}}
    relaid = _flat(_run(fortran))
    monkeypatch.setenv(split.FORCE, "never")
    one = _flat(_run(case))
    assert len(used) == 9
    assert_agree(two, one, bound)
    for key in one:
        np.testing.assert_array_equal(again[key], two[key], err_msg=str(key))
        np.testing.assert_array_equal(relaid[key], two[key], err_msg=str(key))
    assert_untouched(case, copies)


@pytest.mark.usefixtures("safe_table")
def test_the_choice(monkeypatch):
    """The safe table's choice (whatever this machine measured), the environment's forcing."""
    monkeypatch.delenv(split.FORCE, raising=False)
    monkeypatch.setattr(split, "cores", lambda: 2)
    assert split.wanted("lstm", 1000, 1, 256, 4) and split.wanted("gru-reset-after", 1000, 1, 256, 3)
    assert split.wanted("lstm", 1000, 2, 256, 4)
    assert not split.wanted("lstm", 1000, 3, 256, 4)  # rows: the loop streams W once per row
    assert not split.wanted("lstm", 100, 1, 256, 4)  # too few steps
    assert not split.wanted("lstm", 1000, 1, 128, 4)  # too little work a step
    assert not split.wanted("lstm", 1000, 1, 255, 4)  # H odd
    assert not split.wanted("gru-reset-before", 1000, 1, 256, 3)
    assert not split.wanted("lstm-peephole", 1000, 1, 256, 4)
    # W beyond a core's L2 (16 MB against 2 MiB): 2 to split.beyond_l2_max_rows rows at any T
    monkeypatch.setattr(tuning, "l2_bytes", lambda: 2 << 20)
    most, big = int(tuning.value("split.beyond_l2_max_rows")), 4 * 1024 * 1024 * 4
    assert split.wanted("lstm", 5, 2, 1024, 4, big) and split.wanted("lstm", 5, most, 1024, 4, big)
    assert not split.wanted("lstm", 5, most + 1, 1024, 4, big)
    assert not split.wanted("lstm", 5, 1, 1024, 4, big)  # one row: the latency rule alone (too few steps here)
    assert not split.wanted("lstm", 5, 2, 1024, 4, 1 << 20)  # W within L2
    assert not split.wanted("lstm", 5, 2, 1024, 4)  # W's size not given
    monkeypatch.setattr(split, "cores", lambda: 1)
    assert not split.wanted("lstm", 1000, 1, 256, 4) and not split.wanted("lstm", 5, 2, 1024, 4, big)
    monkeypatch.setenv(split.FORCE, "always")
    assert split.wanted("lstm", 3, 5, 2, 4) and not split.wanted("lstm", 3, 5, 3, 4)
    monkeypatch.setenv(split.FORCE, "never")
    monkeypatch.setattr(split, "cores", lambda: 2)
    assert not split.wanted("lstm", 1000, 1, 256, 4)
    monkeypatch.setenv(split.FORCE, "sometimes")
    with pytest.raises(ValueError, match="RNNSPEC_CPU_SPLIT='sometimes'"):
        split.wanted("lstm", 1000, 1, 256, 4)


@njit(nogil=True)
def _wait_for_a_partner(barrier):
    return arrive_and_wait(barrier, 2)


def test_a_part_that_fails_raises_instead_of_leaving_its_partner_waiting():
    """Part 1 raises before reaching the barrier; part 0, waiting there, sees the abort flag and returns."""
    def part(k, barrier):
        if k == 1:
            raise RuntimeError("part 1 failed")
        assert not _wait_for_a_partner(barrier)

    barrier = counter()
    with pytest.raises(RuntimeError, match="part 1 failed"):
        together(part, [(0, barrier), (1, barrier)], barrier)
    assert barrier[1] == 1


def test_one_thread_holds_openblas_on_one_thread_and_restores_the_count():
    setter, getter, shutdown = blas._thread_count_functions()
    # the SciPy wheels this project installs bundle OpenBLAS: without these, one_thread would do nothing
    assert setter is not None and shutdown is not None, "SciPy's OpenBLAS exports no thread count or shutdown"
    before = getter()
    with blas.one_thread():
        assert getter() == 1
        with blas.one_thread():
            assert getter() == 1
        assert getter() == 1
    assert getter() == before


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a way to set CPU affinity and two CPUs (Linux, this project's machines)")
def test_the_two_threads_run_on_two_cpus_and_the_caller_s_cpus_come_back():
    """During together: the caller held on one CPU, the helper on another (each reads its own affinity); after:
    the caller's affinity as it was, and a call from a thread allowed one CPU only leaves both unpinned."""
    before = os.sched_getaffinity(0)
    seen = together(lambda k: os.sched_getaffinity(0), [(0,), (1,)], counter())
    assert len(seen[0]) == len(seen[1]) == 1 and seen[0] != seen[1] and seen[0] | seen[1] <= before, seen
    assert os.sched_getaffinity(0) == before
    one = {min(before)}
    os.sched_setaffinity(0, one)
    try:
        assert together(lambda k: os.sched_getaffinity(0), [(0,), (1,)], counter())[0] == one
        assert os.sched_getaffinity(0) == one
    finally:
        os.sched_setaffinity(0, before)
