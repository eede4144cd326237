"""A step's product by the kernels' tiles over packed panels (panels.py, loops.step_product): the product, its
independence of the other rows, the choice, and the kernels forced onto it against the oracle and against
their own BLAS path."""

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gated_kernels import _fixed, _flat, _run, assert_agree, compare, gated_cases

from rnnspec import catalogue
from rnnspec.kernels.cpu import blas, cells, gated, loops, panels, tuning
from rnnspec.kernels.cpu.emulate import AVX2_FEATURES
from rnnspec.kernels.cpu.simd import AVX512


def _bound(a, b, exact):
    """A few rounding errors of the float64 product a @ b, of a's dtype, for every element."""
    eps = np.finfo(a.dtype).eps
    return a.shape[1] * eps * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-300


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 15), inner=st.integers(0, 2 * panels.DEPTH + 3), cols=st.integers(1, 150),
       dtype=st.sampled_from(["float32", "float64"]), step=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_the_panel_product_is_the_product(rows, inner, cols, dtype, step, seed):
    """Any rows (every tile height and its tails), K across several DEPTH passes or none, N past the last whole
    panel, ``a`` a strided view: within a few rounding errors of the float64 product; nothing past out's
    columns or its rows written; panels zero past N."""
    rng = np.random.default_rng(seed)
    whole = rng.standard_normal((rows, inner * step)).astype(dtype)
    a = whole[:, ::step]
    b = rng.standard_normal((inner, cols)).astype(dtype)
    packed = panels.pack(b)
    assert packed.shape == (-(-cols // panels.columns(dtype)), inner, panels.columns(dtype))
    assert not packed[-1][:, cols - (packed.shape[0] - 1) * packed.shape[2]:].any()
    out = np.full((rows + 2, cols + 3), 7, dtype)
    panels.product(a, packed, out[:rows, :cols])
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert (np.abs(out[:rows, :cols] - exact) <= _bound(a, b, exact)).all()
    assert (out[rows:] == 7).all() and (out[:, cols:] == 7).all()
    stepped = np.full((rows, cols), 7, dtype)  # through loops.step_product (contiguous arrays, as the loops pass)
    loops.step_product(np.ascontiguousarray(a), b, np.ascontiguousarray(b.T), stepped, 1, np.empty(0, dtype), False,
                       packed)
    np.testing.assert_array_equal(stepped, out[:rows, :cols])


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 14), inner=st.integers(0, 2 * panels.DEPTH + 3), cols=st.integers(1, 150),
       dtype=st.sampled_from(["float32", "float64"]), start=st.sampled_from(["onto", "bias"]),
       seed=st.integers(0, 2**16))
def test_the_product_starts_its_sums_at_out_or_at_a_bias_row(rows, inner, cols, dtype, start, seed):
    """``onto``: out += a @ B; ``bias``: out = b + a @ B (the projections' x U^T + b): within a few rounding errors
    of float64, the partial last panel included (its columns past N neither read from b nor written), nothing
    outside out's rows and columns written, and the bias row left as it was."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, inner)).astype(dtype)
    b = rng.standard_normal((inner, cols)).astype(dtype)
    first = rng.standard_normal((rows, cols)).astype(dtype)
    bias = rng.standard_normal(cols).astype(dtype)
    kept = bias.copy()
    out = np.full((rows + 2, cols + 3), 7, dtype)
    out[:rows, :cols] = first
    if start == "onto":
        panels.product(a, panels.pack(b), out[:rows, :cols], True)
        begin = first.astype(np.float64)
    else:
        panels.product(a, panels.pack(b), out[:rows, :cols], False, bias)
        begin = np.broadcast_to(bias.astype(np.float64), (rows, cols))
    exact = begin + a.astype(np.float64) @ b.astype(np.float64)
    bound = _bound(a, b, exact) + np.finfo(dtype).eps * np.abs(begin)
    assert (np.abs(out[:rows, :cols] - exact) <= bound).all()
    assert (out[rows:] == 7).all() and (out[:, cols:] == 7).all()
    np.testing.assert_array_equal(bias, kept)


def test_a_bias_start_is_the_first_term_of_each_sum():
    """out = b + a @ B sums as fma(a_k, B_k, ... fma(a_0, B_0, b)): in float64 each element equals that sequence
    rounded as it goes (the rounding of x U^T + b the projections by panels give)."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((7, 150)), rng.standard_normal((150, 20))
    bias = rng.standard_normal(20) * 10
    out = np.empty((7, 20))
    panels.product(a, panels.pack(b), out, False, bias)
    for r, n in ((0, 0), (6, 19), (3, 7)):
        total = float(bias[n])
        for k in range(150):
            total = float(Fraction(float(a[r, k])) * Fraction(float(b[k, n])) + Fraction(total))
        assert out[r, n] == total, (r, n, out[r, n], total)


def test_the_projection_runs_by_panels_where_the_steps_do_and_one_pass_covers_its_inner_size():
    assert panels.projection_wanted(True, True, panels.DEPTH)
    assert not panels.projection_wanted(True, True, panels.DEPTH + 1)  # G3's I = 256: OpenBLAS was ahead there
    assert not panels.projection_wanted(False, True, 16)  # the steps' products on BLAS: so is the projection


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_rows_values_do_not_depend_on_the_other_rows(dtype):
    """Each element sums over k in order, one FMA each, whatever tile its row falls in: a row alone, in a tile
    of six, or in a tail gives the same bits (so the halves of rows.py and a whole call agree bit for bit on
    the products), and a float64 row equals the sequential FMA sum."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((13, 300)).astype(dtype)
    b = rng.standard_normal((300, 200)).astype(dtype)
    packed = panels.pack(b)
    together = np.empty((13, 200), dtype)
    panels.product(a, packed, together)
    for r in range(13):
        alone = np.empty((1, 200), dtype)
        panels.product(a[r:r + 1], packed, alone)
        np.testing.assert_array_equal(alone[0], together[r])
    if dtype == "float64":
        for n in (0, 63, 199):  # fma(a, b, s) = a b + s rounded once: exact in fractions, then one rounding
            total = 0.0
            for k in range(300):
                total = float(Fraction(float(a[5, k])) * Fraction(float(b[k, n])) + Fraction(total))
            assert together[5, n] == total, (n, together[5, n], total)


@pytest.mark.usefixtures("safe_table")
def test_the_choice(monkeypatch):
    """Products large enough for BLAS calls, where ``panels.enabled`` (1 on AVX-512 in the safe table, 0 elsewhere:
    unmeasured): on one thread, or beside OpenBLAS's two threads up to ``panels.max_threaded_rows`` rows."""
    assert panels.wanted(16, True, 64) == AVX512
    assert not panels.wanted(0, True, 1)  # small products run as loops (simd.row_times)
    low, limit = int(tuning.value("panels.min_threaded_rows")), int(tuning.value("panels.max_threaded_rows"))
    # few rows: the calling thread beats OpenBLAS's two
    assert panels.wanted(16, False, low) == panels.wanted(16, False, limit) == AVX512
    assert not panels.wanted(16, False, limit + 1)  # where OpenBLAS's two threads share the product
    assert not panels.wanted(16, False, low - 1)  # one row: OpenBLAS runs it on one thread
    assert not panels.wanted(16, False)  # no rows given (Elman's products): on one thread only
    with tuning.override({"panels.max_threaded_rows": 0}):
        assert not panels.wanted(16, False, low) and panels.wanted(16, True, 1) == AVX512
    with tuning.override({"panels.enabled": 0}):
        assert not panels.wanted(16, True, 1) and not panels.wanted(16, False, 1)
    with tuning.override({"panels.enabled": 1}):
        assert panels.wanted(16, True, 64) and panels.wanted(16, False, limit)
    assert low >= 2, "one row beside OpenBLAS's threads lost to its one-thread kernel"


def test_the_projection_stays_on_openblas_s_threads_where_it_has_two(monkeypatch):
    """The steps' products by panels beside OpenBLAS's two threads (few rows) leave the projection's T B rows to
    those threads, unless the panels are forced."""
    monkeypatch.delenv(panels.FORCE, raising=False)
    assert not panels.projection_wanted(True, False, 16)
    monkeypatch.setenv(panels.FORCE, "always")
    assert panels.projection_wanted(True, False, 16)


#: the cells whose kernels take the panels: one stacked product a step (cells.Gated.transposable)
TAKERS = [name for name in catalogue.NAMES if getattr(cells.kernel(name), "transposable", False)]


@pytest.fixture
def forced(monkeypatch):
    """Every step's product by panels, at any size, on one thread; records (cell, by_panels) of each _Run."""
    monkeypatch.setattr(gated, "SMALL_STEP", -1)
    monkeypatch.setattr(blas, "threads", lambda: 1)
    took = []
    init = gated._Run.__init__

    def record(self, *args, **kwargs):
        init(self, *args, **kwargs)
        took.append((self.cell, self.by_panels))
        # the generated cases' inputs (I <= DEPTH) are projected by panels wherever the steps' products run by them
        assert self.projection_by_panels == (self.by_panels and self.I <= panels.DEPTH)

    monkeypatch.setattr(gated._Run, "__init__", record)
    with tuning.override({"panels.enabled": 1}):
        yield took


def test_the_takers_are_the_lstms_and_the_reset_after_cells():
    assert set(TAKERS) >= {"lstm", "lstm-proj", "lstm-peephole", "lstm-coupled", "gru-reset-after", "mgu-flax"}


@pytest.mark.parametrize("cell", TAKERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_on_panels_match_the_oracle(cell, dtype, forced):
    """Hypothesis cases (T up to 30, B up to 5) of each cell that takes the panels, against the oracle as the
    plain kernels are checked."""
    settings(max_examples=4, deadline=None)(given(gated_cases(cell, dtype))(compare))()
    assert forced and all(by_panels for _, by_panels in forced), forced


#: H = 70: G H past the last whole panel (float32 and float64), K = H or G H across a DEPTH pass or not
AGREE = ["lstm", "lstm-proj", "gru-reset-after"]


@pytest.mark.parametrize("cell", AGREE)
def test_kernels_on_panels_agree_with_the_blas_path(cell, forced):
    """At T = 20, B = 9, H = 70 (float32; every output and gradient): within 1e-5 of the BLAS step products and
    projection (relative to each array's largest entry: the sums run in another order), also with lengths (the
    variants' held rows; every variant runs the same loops). The recurrent weights are scaled to contract (0.3 of
    _fixed's): at full scale rounding grows along the sequence, and the projected LSTM's float32 outputs were 1.3e-2
    (H = 40) and 3.3 (H = 70) from float64 on either path, so that two roundings of one product could not be told
    from a defect. Contracting, both paths are within 7.3e-7 of float64 and 7.5e-7 of each other (measured)."""
    case = _fixed(cell, "float32", 20, 9, 4, 70, seed=8)
    case["params"] = {k: v * np.float32(0.3) if k.startswith("W_") else v for k, v in case["params"].items()}
    by_panels = _flat(_run(case))
    assert forced and all(t for _, t in forced)
    with tuning.override({"panels.enabled": 0}):
        by_blas = _flat(_run(case))
    assert not forced[-1][1]
    assert_agree(by_panels, by_blas, 1e-5)
    lengths = np.array([20, 3, 0, 17, 20, 9, 1, 12, 5])
    args = (cell, case["x"], case["state0"], case["params"], case["y"])
    variant = {"lengths": lengths}
    with tuning.override({"panels.enabled": 0}):
        held = gated.loss(*args, **variant)
    moved = gated.loss(*args, **variant)
    assert forced[-1] == (cell, True)
    assert abs(moved[0] - held[0]) <= 1e-5 * abs(held[0]), (moved[0], held[0])
    assert_agree(moved[1], held[1], 1e-5)


@pytest.mark.parametrize("cell", AGREE)
def test_few_rows_run_by_panels_beside_openblas_s_two_threads_and_agree_with_it(cell, monkeypatch):
    """The whole batch of 4 rows with OpenBLAS on two threads: the steps' products by panels on the calling thread
    (``panels.max_threaded_rows``), the projection's T B rows left to OpenBLAS; within 1e-5 of the products on
    OpenBLAS's threads (the case of the test above), and not taken above the measured rows or where not given."""
    monkeypatch.setattr(gated, "SMALL_STEP", -1)
    monkeypatch.setattr(blas, "threads", lambda: 2)
    monkeypatch.delenv(panels.FORCE, raising=False)
    took = []
    init = gated._Run.__init__
    monkeypatch.setattr(gated._Run, "__init__", lambda self, *a, **k: (init(self, *a, **k), took.append(
        (self.by_panels, self.projection_by_panels)))[0])
    case = _fixed(cell, "float32", 20, 4, 4, 70, seed=8)
    case["params"] = {k: v * np.float32(0.3) if k.startswith("W_") else v for k, v in case["params"].items()}
    beside = {"panels.enabled": 1, "panels.min_threaded_rows": 2, "panels.max_threaded_rows": 4}
    with tuning.override(beside):
        by_panels = _flat(_run(case))
    assert took and set(took) == {(True, False)}, took
    took.clear()
    with tuning.override({**beside, "panels.max_threaded_rows": 3}):
        on_threads = _flat(_run(case))
    assert took and set(took) == {(False, False)}, took
    assert_agree(by_panels, on_threads, 1e-5)


_AVX2_SCRIPT = r"""
import re
import numpy as np
from rnnspec.kernels.cpu import panels
assert (panels.ROWS, panels.VECTORS) == (6, 1), (panels.ROWS, panels.VECTORS)
rng = np.random.default_rng(0)
for dtype in ("float32", "float64"):
    for R, K, N in ((13, 300, 70), (6, 5, 16), (1, 129, 3)):
        a = rng.standard_normal((R, K)).astype(dtype)
        b = rng.standard_normal((K, N)).astype(dtype)
        out = np.empty((R, N), dtype)
        panels.product(a, panels.pack(b), out)
        exact = a.astype(np.float64) @ b.astype(np.float64)
        bound = K * np.finfo(dtype).eps * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
        assert (np.abs(out - exact) <= bound).all(), (dtype, R, K, N)
for signature, asm in panels.product.inspect_asm().items():
    # the basic blocks that jump back to their own label: the tiles' loops over k
    blocks = re.findall(r"^(\.LBB\d+_\d+):\n((?:(?!^\.LBB).*\n)*?)^\s+j\w+\s+\1\n", asm, re.M)
    tiles = [body for _, body in blocks if body.count("vfmadd") == 2 * panels.ROWS]
    assert tiles and "zmm" not in asm, (signature, sorted(body.count("vfmadd") for _, body in blocks))
    assert all("rsp" not in body for body in tiles), (signature, tiles)
print("ok")
"""


def test_an_avx2_only_build_sums_right_and_keeps_its_tiles_in_registers(tmp_path):
    """Built as for an AVX2-only CPU (emulate.AVX2_FEATURES; the code runs on this one too): tiles of 6 rows by one
    64-byte vector (two of AVX2's 16 registers), products within their bound, and each tile's loop over k
    holds its 12 sums in registers (12 ymm FMAs, no stack access): 6 rows by two vectors spill there."""
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": AVX2_FEATURES,
           "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _AVX2_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


@pytest.mark.parametrize("shape", [(0,), (1,), (3, 5), (7, 33, 2), (1000, 1, 512)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_kernels_arrays_start_on_a_cache_line(shape, dtype):
    """scratch.aligned_empty, what the per-thread scratch, the packed panels and the transposed copies of W are
    made by: C-contiguous, writable, of the shape and dtype asked for, the first element on a 64-byte boundary
    (NumPy's own start 16 bytes past one as often as not, and the split's B = 1 products ran a third slower
    from there); the view keeps its allocation alive."""
    from rnnspec.kernels.cpu import scratch

    made = [scratch.aligned_empty(shape, dtype) for _ in range(8)]
    for array in made:
        assert array.shape == shape and array.dtype == np.dtype(dtype)
        assert array.flags.c_contiguous and array.flags.writeable
        assert array.ctypes.data % scratch.ALIGNMENT == 0 or array.size == 0
        array[...] = 1.5
    assert all(float(array.sum()) == 1.5 * array.size for array in made)
    assert scratch.workspace(f"aligned test {shape}", shape, np.dtype(dtype)).ctypes.data % 64 == 0 or not all(shape)
    if len(shape) == 2 and all(shape):
        b = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
        assert panels.pack(b).ctypes.data % 64 == 0
        assert loops.transposed(np.ones((64, 128), dtype)).ctypes.data % 64 == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_small_calls_compiled_arrays_start_on_a_cache_line(dtype):
    """loops.on_a_line, what a small call's one compiled call makes its W^T, input projection and states in (Numba's
    own allocations start 32 bytes past a line): each on a 64-byte boundary, of the size and dtype asked, the same
    values as the stacking and the projection give."""
    from rnnspec.kernels.cpu import loops, scratch

    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 3, 5)).astype(dtype)
    Us = tuple(rng.standard_normal((6, 5)).astype(dtype) for _ in range(4))
    bs = tuple(rng.standard_normal(6).astype(dtype) for _ in range(4))
    Ws = tuple(rng.standard_normal((6, 6)).astype(dtype) for _ in range(4))
    a, WT, block = loops.at_once_inputs(x, Us, bs, Ws, 2)
    for array in (a, WT, block):
        assert array.ctypes.data % scratch.ALIGNMENT == 0 and array.dtype == np.dtype(dtype)
    assert block.shape == (2, 8, 3, 6)
    np.testing.assert_array_equal(WT, np.concatenate(Ws).T)
    want = x.reshape(21, 5) @ np.concatenate(Us).T + np.concatenate(bs)
    np.testing.assert_allclose(a.reshape(21, 24), want, rtol=1e-5 if dtype == "float32" else 1e-12)
