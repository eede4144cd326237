"""A step's product as (W a^T)^T (loops.step_product, blas.transposed_wins): the product, the choice, and the
kernels forced onto it against the oracle and against their own plain path."""

import numpy as np
import pytest
from hypothesis import given, settings
from test_gated_kernels import _fixed, _flat, _run, assert_agree, compare, gated_cases

from rnnspec.kernels.cpu import blas, gated, loops, tuning


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 4096), (4096, 1), (64, 64), (64, 65), (33, 17), (127, 129)])
def test_a_transposed_copy_is_the_transpose_new_and_writable_on_either_side_of_the_small_size(dtype, shape):
    """loops.transposed by NumPy's copy (up to SMALL_TRANSPOSE elements) and by the tiles: source^T exactly, in new,
    C-contiguous, writable memory, also from a read-only source (a kernel's argument type must not change)."""
    source = np.random.default_rng(shape[0]).standard_normal(shape).astype(dtype)
    source.flags.writeable = False
    out = loops.transposed(source)
    assert (source.size <= loops.SMALL_TRANSPOSE) == (shape[0] * shape[1] <= 4096)
    assert out.shape == shape[::-1] and (out == source.T).all()
    assert out.flags.c_contiguous and out.flags.writeable and not np.shares_memory(out, source)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("count,rows,cols", [(1, 1, 1), (1, 32, 16), (4, 32, 32), (3, 5, 7), (2, 1, 9)])
def test_parameters_stacked_inside_one_compiled_call_are_numpys_stack(dtype, count, rows, cols):
    """loops.stacked and loops.stacked_transposed (what a small call's one compiled call makes from the per-gate
    parameters): np.concatenate of the parts, and its transpose, exactly, C-contiguous, in new memory."""
    rng = np.random.default_rng(count * 100 + rows)
    parts = tuple(rng.standard_normal((rows, cols)).astype(dtype) for _ in range(count))
    want = np.concatenate(parts)
    for got, expected in ((loops.stacked(parts), want), (loops.stacked_transposed(parts), want.T),
                          (loops.stacked(tuple(p[0] for p in parts)), np.concatenate([p[0] for p in parts]))):
        assert got.shape == expected.shape and got.dtype == dtype and (got == expected).all()
        assert got.flags.c_contiguous and not any(np.shares_memory(got, p) for p in parts)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,inner,cols", [(1, 1, 1), (5, 7, 19), (16, 33, 48), (64, 40, 17)])
def test_the_transposed_product_is_the_product(dtype, rows, inner, cols):
    """step_product through b^T, for every row count 0..rows (the rows still running at a step): within a
    few rounding errors of the float64 product, and equal to it for rows = 0 (nothing written)."""
    rng = np.random.default_rng(rows * 1000 + cols)
    a = rng.standard_normal((rows, inner)).astype(dtype)
    b = rng.standard_normal((inner, cols)).astype(dtype)
    staging = np.full(rows * cols, np.nan, dtype)
    eps = np.finfo(dtype).eps
    for n in range(rows + 1):
        out = np.full((rows, cols), 7, dtype)
        loops.step_product(a[:n], b, np.ascontiguousarray(b.T), out[:n], n, staging)
        exact = a[:n].astype(np.float64) @ b.astype(np.float64)
        bound = inner * eps * (np.abs(a[:n]).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-300
        assert (np.abs(out[:n] - exact) <= bound).all(), f"rows {n}: worst {np.max(np.abs(out[:n] - exact))}"
        assert (out[n:] == 7).all(), f"rows {n}: rows past n were written"


@pytest.mark.usefixtures("safe_table")
def test_the_choice(monkeypatch):
    """The safe table's choice (whatever this machine measured): float32 only, 8-64 rows, a W of 6 MiB and up,
    and only on the kernels it was measured on."""
    monkeypatch.setattr(blas, "has_small_kernels", lambda: True)
    tuning.reload()  # the safe values follow the BLAS kernels
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    lstm_g4 = 4 * 1024 * 1024 * 4  # G4's stacked W, float32: 16 MiB
    assert blas.transposed_wins(f32, 64, lstm_g4)
    assert blas.transposed_wins(f32, 8, 3 * 768 * 768 * 4)  # 6.75 MiB
    assert not blas.transposed_wins(f32, 64, 4 * 512 * 512 * 4)  # 4 MiB: 0.95-1.09x measured
    assert not blas.transposed_wins(f64, 64, lstm_g4)  # float64 lost at every size
    assert not blas.transposed_wins(f32, 4, lstm_g4) and not blas.transposed_wins(f32, 65, lstm_g4)  # not measured
    monkeypatch.setattr(blas, "has_small_kernels", lambda: False)
    tuning.reload()
    assert not blas.transposed_wins(f32, 64, lstm_g4)  # other BLAS kernels: not measured


@pytest.fixture
def forced(monkeypatch):
    """Every step's product through b^T, BLAS at any size; records the _Run objects that took it."""
    monkeypatch.setattr(gated, "SMALL_STEP", -1)
    monkeypatch.setattr(blas, "threads", lambda: 2)  # one BLAS call a step, as rows_per_call gives two threads
    monkeypatch.setattr(blas, "transposed_wins", lambda *_: True)
    took = []
    init = gated._Run.__init__

    def record(self, *args, **kwargs):
        init(self, *args, **kwargs)
        took.append((self.cell, self.transposed))

    monkeypatch.setattr(gated._Run, "__init__", record)
    return took


@pytest.mark.parametrize("cell", ["lstm", "lstm-proj", "gru-reset-after"])
def test_kernels_on_the_transposed_product_match_the_oracle(cell, forced):
    """Hypothesis cases (T up to 30, B up to 5, variable lengths not among them) of each cell that takes it,
    against the oracle as the plain kernels are checked (float64 within 1e-12)."""
    settings(max_examples=4, deadline=None)(given(gated_cases(cell, "float64"))(compare))()
    assert forced and all(transposed for _, transposed in forced), forced


@pytest.mark.parametrize("cell", ["lstm", "gru-reset-after"])
def test_kernels_on_the_transposed_product_agree_with_the_plain_path(cell, forced, monkeypatch):
    """At T = 20, B = 9 (float32; every output and gradient): within 1e-6 of the plain step products, the
    rows past their length included (variants with lengths go through the same loops; lengths hold rows)."""
    case = _fixed(cell, "float32", 20, 9, 4, 12, seed=8)
    transposed = _flat(_run(case))
    assert forced and all(t for _, t in forced)
    monkeypatch.setattr(blas, "transposed_wins", lambda *_: False)
    plain = _flat(_run(case))
    assert_agree(transposed, plain, 1e-6)
    lengths = np.array([20, 3, 0, 17, 20, 9, 1, 12, 5])
    args = (cell, case["x"], case["state0"], case["params"], case["y"])
    held = gated.loss(*args, lengths=lengths)
    monkeypatch.setattr(blas, "transposed_wins", lambda *_: True)
    moved = gated.loss(*args, lengths=lengths)
    assert abs(moved[0] - held[0]) <= 1e-6 * abs(held[0]), (moved[0], held[0])
    assert_agree(moved[1], held[1], 1e-6)
    assert forced[-1] == (cell, True)
