"""A batch's rows in two halves on two threads (rnnspec.kernels.cpu.rows): the oracle's values, the one-thread
kernels' values, the choice, and the helper threads that run the halves."""

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from test_gated_kernels import (
    CELLS,
    FIRST,
    _fixed,
    _flat,
    _run,
    assert_agree,
    assert_untouched,
    compare,
    gated_cases,
    snapshot,
)

from rnnspec.kernels.cpu import rows, threads, tuning
from rnnspec.kernels.cpu.threads import counter, together
from rnnspec.kernels.cpu.work import flops


@pytest.fixture
def used(monkeypatch):
    """Forces the halves wherever B >= 2, and records the rows of every half that ran."""
    monkeypatch.setenv(rows.FORCE, "always")
    calls = []
    run = rows.run
    monkeypatch.setattr(rows, "run", lambda call, arguments: (calls.append([a[0].B for a in arguments]),
                                                               run(call, arguments))[1])
    return calls


def _rows(case):
    return case["x"].shape[1] >= 2


@pytest.mark.parametrize("dtype,examples", [("float64", 5), ("float32", 3),
                                            pytest.param("float64", 30, marks=pytest.mark.slow),
                                            pytest.param("float32", 30, marks=pytest.mark.slow)])
@pytest.mark.parametrize("cell", CELLS)
def test_halves_match_the_oracle(cell, dtype, examples, used):
    """Hypothesis cases (T up to 30, B 2-5, H up to 24, gates driven open or shut), every cell, against the
    oracle as the one-thread kernels are checked: float64 within 1e-12, float32 within the suite's tolerance.
    The halves run the one-thread kernels' compiled code, so this costs no compile of its own; but each case
    costs the oracle 1-2 s, so CI runs 5 float64 and 3 float32 cases a cell (fewer for the LSTM's relatives),
    ``-m slow`` 30 of each."""
    examples = examples if cell in FIRST or examples == 30 else max(examples - 2, 1)
    settings(max_examples=examples, deadline=None)(given(gated_cases(cell, dtype).filter(_rows))(compare))()
    assert used and all(len(b) == 2 and b[0] - b[1] in (0, 1) and b[1] >= 1 for b in used), used


@pytest.mark.parametrize("dtype,bound", [("float32", 1e-5), ("float64", 1e-13)])
@pytest.mark.parametrize("cell", FIRST)
def test_halves_agree_with_one_call_and_repeat_bit_for_bit(cell, dtype, bound, used, monkeypatch):
    """At a size the choice itself halves (T = 40, B = 9: halves of 5 and 4 rows; every output and gradient;
    rows.min_flops lowered, or a size this small would run on one thread): within ``bound`` of the one-thread
    call (their GEMMs sum in another order), bit-identical over calls and for Fortran-order inputs, and the
    caller's arrays untouched."""
    monkeypatch.delenv(rows.FORCE)
    monkeypatch.setattr(rows, "cores", lambda: 2)
    case = _fixed(cell, dtype, 40, 9, 4, 6, seed=5)
    copies = snapshot(case)
    with tuning.override({"rows.min_flops": 0}):
        two = _flat(_run(case))
        again = _flat(_run(case))
        relaid = lambda v: {k: np.asfortranarray(a) for k, a in v.items()}
        fortran = {**case, "x": np.asfortranarray(case["x"]), "params": relaid(case["params"]),
                   "state0": relaid(case["state0"]), "cot": relaid(case["cot"])}
        moved = _flat(_run(fortran))
    assert used == [[5, 4]] * 9  # forward, backward and loss each halved, three times
    monkeypatch.setenv(rows.FORCE, "never")
    one = _flat(_run(case))
    assert len(used) == 9
    assert_agree(two, one, bound)
    for key in one:
        np.testing.assert_array_equal(again[key], two[key], err_msg=str(key))
        np.testing.assert_array_equal(moved[key], two[key], err_msg=str(key))
    assert_untouched(case, copies)


@pytest.mark.usefixtures("safe_table")
def test_the_choice(monkeypatch):
    monkeypatch.delenv(rows.FORCE, raising=False)
    monkeypatch.setattr(rows, "cores", lambda: 2)
    lstm_256 = 4 * 256 * 256 * 8  # the LSTM's W at H = 256 in float64: 2 MiB
    train = lambda T, B, I, H, K, gates: flops("train", T, B, I, H, K, gates)
    G2 = train(100, 32, 64, 128, 64, 4)
    assert rows.wanted(100, 32, lstm_256, G2) and rows.wanted(32, 8, 1000, 1e9)
    assert rows.wanted(100, 32, 1000, flops("forward", 100, 32, 64, 128, 64, 4))  # G2's forward alone: 6.3e8
    assert not rows.wanted(100, 7, 1000, 1e12)  # too few rows
    assert not rows.wanted(31, 32, 1000, 1e12)  # too few steps
    assert not rows.wanted(100, 32, 4 * 1024 * 1024 * 4, 1e12)  # W far beyond a core's cache, each half 16 rows
    assert rows.wanted(100, 64, 4 * 1024 * 1024 * 4, 1e12)  # G4's 64 rows: each half's many rows pay for W's trips
    assert not rows.wanted(100, 32, 3 * 512 * 512 * 4, 1e12)  # the GRUs at H = 512 in float32
    # too little work: the GRU at (100, 8, 16, 32, 16) ran 0.42-0.46x as fast in halves (2.5e7 flops)
    assert not rows.wanted(100, 8, 1000, train(100, 8, 16, 32, 16, 3))
    assert not rows.wanted(100, 16, 1000, train(100, 16, 32, 64, 32, 3))  # 2.0e8 flops: 0.55-0.99x
    assert rows.wanted(100, 32, 1000, train(100, 32, 32, 64, 32, 3))  # 3.9e8 flops: 1.19-1.26x
    monkeypatch.setattr(rows, "cores", lambda: 1)
    assert not rows.wanted(100, 32, 1000, G2)
    monkeypatch.setenv(rows.FORCE, "always")
    assert rows.wanted(1, 2, 10**9, 1) and not rows.wanted(1, 1, 10, 1e12) and not rows.wanted(0, 5, 10, 1e12)
    monkeypatch.setenv(rows.FORCE, "never")
    monkeypatch.setattr(rows, "cores", lambda: 2)
    assert not rows.wanted(100, 32, 1000, G2)
    monkeypatch.setenv(rows.FORCE, "sometimes")
    with pytest.raises(ValueError, match="RNNSPEC_CPU_ROWS='sometimes'"):
        rows.wanted(100, 32, 1000, G2)


@pytest.mark.usefixtures("safe_table")
def test_tiny_calls_run_on_one_thread(monkeypatch):
    """The choice as the kernels make it, from their own arguments: the GRU at (100, 8, 16, 32, 16) (0.42-0.46x
    in halves, sweep_small.log) runs on one thread; G2's rows, forward alone or with gradients, in halves."""
    from rnnspec.kernels.cpu import bench, gated

    monkeypatch.delenv(rows.FORCE, raising=False)
    monkeypatch.setattr(rows, "cores", lambda: 2)
    calls = []
    run = rows.run
    monkeypatch.setattr(rows, "run", lambda call, arguments: (calls.append(len(arguments)), run(call, arguments))[1])
    for T, B, I, H, K in [(100, 8, 16, 32, 16), bench.SIZES["G2"]]:
        case = bench.make_case(T, B, I, H, K, "float32", cell="gru-reset-after")
        params = {k: v for k, v in case.items() if k not in ("x", "targets", "h0")}
        gated.forward("gru-reset-after", case["x"], {"h0": case["h0"]}, params)
        gated.loss("gru-reset-after", case["x"], {"h0": case["h0"]}, params, case["targets"])
        assert calls == ([] if B == 8 else [2, 2]), (T, B, calls)


def test_halves_and_join():
    assert rows.halves(9) == (slice(0, 5), slice(5, 9)) and rows.halves(2) == (slice(0, 1), slice(1, 2))
    first = {"x": np.ones((2, 1, 3)), "h0": np.ones((1, 4)), "c": np.full(3, 2.0), "W_i": np.ones((4, 4))}
    second = {"x": np.zeros((2, 2, 3)), "h0": np.zeros((2, 4)), "c": np.full(3, 5.0), "W_i": np.ones((4, 4))}
    joined = rows.join([first, second], rows.GRADIENTS)
    assert joined["x"].shape == (2, 3, 3) and joined["x"][:, 0].all() and not joined["x"][:, 1:].any()
    assert joined["h0"].shape == (3, 4)
    np.testing.assert_array_equal(joined["c"], np.full(3, 7.0))  # the head's bias sums
    np.testing.assert_array_equal(joined["W_i"], np.full((4, 4), 2.0))


def test_the_helper_threads_are_reused_and_return_results():
    names = lambda k: (k, threading.get_ident())
    first = together(names, [(0,), (1,)], counter())
    second = together(names, [(0,), (1,)], counter())
    assert [k for k, _ in first] == [0, 1] and first[0][1] == threading.get_ident()
    assert first[1][1] == second[1][1] != threading.get_ident()  # the same helper, not this thread


def test_callers_on_two_threads_at_once_both_finish(monkeypatch):
    """A call that finds the helpers busy runs its part on a fresh thread instead of waiting for them."""
    release, inside = threading.Event(), threading.Event()

    def slow(k):
        if k == 1:
            inside.set()
            assert release.wait(10)
        return k

    outer = threading.Thread(target=lambda: together(slow, [(0,), (1,)], counter()))
    outer.start()
    assert inside.wait(10)  # the outer call holds the helpers now
    assert together(lambda k: k * 10, [(1,), (2,)], counter()) == [10, 20]
    release.set()
    outer.join(10)
    assert not outer.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_its_own_helpers():
    together(lambda k: k, [(0,), (1,)], counter())  # the parent has a helper now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its inherited helper thread is gone; a call must still finish
        try:
            ok = threads._helpers == [] and together(lambda k: k + 1, [(0,), (1,)], counter()) == [1, 2]
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and status == 0


def test_rows_per_call(monkeypatch):
    from rnnspec.kernels.cpu import blas

    monkeypatch.setattr(blas, "small_kernel_mnk", lambda: 1_000_000)
    assert blas.rows_per_call(16, 128, 512, True) == 8  # 16 x 128 x 512 > 1e6: two calls of 8 rows
    assert blas.rows_per_call(32, 128, 384, True) == 16
    assert blas.rows_per_call(30, 128, 384, True) == 16  # 15 a call, rounded up to a multiple of 4
    assert blas.rows_per_call(5, 128, 512, True) == 5  # all of them fit
    assert blas.rows_per_call(32, 256, 1024, True) == 32  # not even 4 rows fit: one call
    monkeypatch.setattr(blas, "threads", lambda: 2)
    assert blas.rows_per_call(16, 128, 512, False) == 16  # OpenBLAS may thread: one call
    monkeypatch.setattr(blas, "threads", lambda: 1)
    assert blas.rows_per_call(16, 128, 512, False) == 8
    monkeypatch.setattr(blas, "small_kernel_mnk", lambda: 0)
    assert blas.rows_per_call(16, 128, 512, True) == 16  # no small-matrix kernels


@pytest.mark.parametrize("cell", FIRST)
def test_step_products_in_several_blas_calls_match_the_oracle(cell, used, monkeypatch):
    """The halves' step products in calls of 4 rows (the limit of the small-matrix kernels made small
    enough for that at H = 6), BLAS forced at this size: against the oracle, halves of 5 rows (4 + 1) and 4."""
    from rnnspec.kernels.checks import GATED_CELLS
    from rnnspec.kernels.cpu import blas, gated

    recurrent = 6 * 6 * len(GATED_CELLS[cell][0])  # inner x cols of the step's product
    monkeypatch.setattr(gated, "SMALL_STEP", -1)
    monkeypatch.setattr(blas, "small_kernel_mnk", lambda: 4 * recurrent + 1)
    chosen = []
    rows_per_call = blas.rows_per_call
    monkeypatch.setattr(blas, "rows_per_call", lambda *a: (chosen.append((a[0], a[1] * a[2], rows_per_call(*a))),
                                                           chosen[-1][2])[1])
    compare(_fixed(cell, "float64", 7, 9, 3, 6, seed=2))
    assert (5, recurrent, 4) in chosen, chosen


@pytest.mark.usefixtures("safe_table")
def test_the_benchmark_says_which_rows_ran_in_halves(monkeypatch):
    from rnnspec.kernels.cpu import bench, split

    monkeypatch.delenv(rows.FORCE, raising=False)
    monkeypatch.delenv(split.FORCE, raising=False)
    monkeypatch.setattr(rows, "cores", lambda: 2)
    monkeypatch.setattr(split, "cores", lambda: 2)
    size = lambda name: ("train", *bench.SIZES[name])
    assert bench.parallel("rnnspec-cpu", "lstm", None, *size("G2"), "float32") == "rows"
    assert bench.parallel("rnnspec-cpu", "gru-reset-after", None, *size("G5"), "float32") == "units"
    assert bench.parallel("rnnspec-cpu", "lstm", None, *size("G4"), "float32") == "rows"  # rows.large_weight_min_rows
    assert bench.parallel("rnnspec-cpu", "lstm", None, "train", 50, 32, 512, 1024, 512, "float32") == "units"  # W > L2
    assert bench.parallel("torch", "lstm", None, *size("G2"), "float32") is None
    assert bench.parallel("rnnspec-cpu", "lstm", {"layers": 2}, *size("G2"), "float32") == "rows"
    assert bench.parallel("rnnspec-cpu", "elman", {"layers": 2}, *size("G2"), "float32") == "rows"
    assert bench.parallel("rnnspec-cpu", "elman", None, *size("G2"), "float32") == "rows"  # as elman._Step.by_rows
    assert bench.parallel("rnnspec-cpu", "elman", None, *size("G5"), "float32") is None  # B = 1: no halves, no split
    assert bench.parallel("rnnspec-cpu", "lstm", {"layers": 2}, *size("G5"), "float32") is None  # B = 1
    result = {"impl": "rnnspec-cpu", "size": "G2", "dtype": "float32", "phase": "train", "median_s": 1.0,
              "gflops": 1.0, "parallel": "rows"}
    line = bench.table({"results": [result], "compile_s": {}, "skipped": []})
    assert "batch halves on 2 threads" in line


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru-reset-after"])
def test_variant_halves_match_the_oracles_composition(cell, monkeypatch):
    """Stacked, bidirectional and variable-length runs (Hypothesis, B 2-5, lengths in the caller's order)
    with the halves forced, against the oracle's composition within 1e-12 (float64); a half never halves
    again."""
    from test_variant_kernels import agree, variant_cases

    monkeypatch.setenv(rows.FORCE, "always")
    calls, run = [], rows.run
    record = lambda arguments: calls.append((getattr(rows._local, "half", False), [a[0].shape[1] for a in arguments]))
    monkeypatch.setattr(rows, "run", lambda call, arguments: (record(arguments), run(call, arguments))[1])
    settings(max_examples=10, deadline=None)(given(variant_cases(cell).filter(lambda c: c["x"].shape[1] >= 2))(
        agree))()
    assert calls and all(not nested and len(b) == 2 and b[0] - b[1] in (0, 1) for nested, b in calls), calls


@pytest.mark.usefixtures("safe_table")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_benchmark_s_label_of_plain_elman_calls_is_their_choice(dtype, monkeypatch):
    """bench.parallel says "rows" for a plain Elman call exactly where elman._Step.by_rows runs it in halves, at
    every bench size and phase (it said None for every plain Elman call, which run in halves from S2 on)."""
    from rnnspec.kernels.cpu import bench
    from rnnspec.kernels.cpu.elman import _Step

    monkeypatch.delenv(rows.FORCE, raising=False)
    monkeypatch.setattr(rows, "cores", lambda: 2)
    labels = []
    for size in ("S1", "S2", "S3", "S4", "S5"):
        T, B, I, H, K = bench.SIZES[size]
        case = bench.make_case(T, B, I, H, K, dtype, cell="elman")
        step = _Step(case["x"], case["h0"], case["U"], case["W"], case.get("b"), "tanh", "h0")
        for phase, classes in (("forward", 0), ("train", K)):
            label = bench.parallel("rnnspec-cpu", "elman", None, phase, T, B, I, H, K, dtype)
            assert (label == "rows") == step.by_rows(phase, classes), (size, phase, label)
            labels.append(label)
    assert "rows" in labels and None in labels
