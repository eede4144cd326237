"""simd.row_times, the step products' loop: every block width, the scalar columns, any inner length."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnspec.kernels.cpu import simd
from rnnspec.kernels.cpu.emulate import AVX2_FEATURES


def _check(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """row_times(a, b) within the bound of any order of K fused multiply-adds of each column's exact sum:
    |error| <= K u sum_k |a_k b_kn| (u the dtype's unit roundoff), the sum taken exactly by math.fsum."""
    out = np.full(b.shape[1], np.nan, b.dtype)
    simd.row_times(a, b, out)
    u = np.finfo(b.dtype).eps / 2
    for n in range(b.shape[1]):
        products = [float(a[k]) * float(b[k, n]) for k in range(a.shape[0])]  # exact in float64 for float32
        exact = math.fsum(products)
        bound = a.shape[0] * u * math.fsum(abs(p) for p in products) * (1 + 1e-6)
        if b.dtype == np.float64:  # the products themselves round in float64 here: allow for them too
            bound += a.shape[0] * np.finfo(np.float64).eps * math.fsum(abs(p) for p in products)
        assert abs(float(out[n]) - exact) <= bound, (
            f"row_times column {n} of {b.shape}: {out[n]!r} against the exact {exact!r}, error "
            f"{abs(float(out[n]) - exact):.3e} > bound {bound:.3e} (K = {a.shape[0]}, dtype {b.dtype})")
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_block_width_and_the_scalar_columns(dtype):
    """Columns of 1 to 2 WIDEST + 1 vectors plus 0-3 scalar columns, at inner lengths that leave every
    remainder of the interleaved chains (0 to WIDEST), and K = 0 (a zero row)."""
    rng = np.random.default_rng(7)
    lanes = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    for vectors in range(2 * simd.WIDEST + 2):
        for extra in (0, 1, 3):
            for K in (0, 1, 5, 8, 9, 33):
                a = rng.standard_normal(K).astype(dtype)
                b = rng.standard_normal((K, vectors * lanes + extra)).astype(dtype)
                out = _check(a, b)
                if K == 0:
                    assert not out.any()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 70), st.integers(1, 300), st.sampled_from(["float32", "float64"]), st.integers(1, 3),
       st.integers(0, 2**32 - 1))
def test_any_shape_and_a_strided_row(K, N, dtype, step, seed):
    """Hypothesis shapes; ``a`` a strided view (every step-th element) gives the same bits as its copy."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(K * step).astype(dtype)[::step]
    b = rng.standard_normal((K, N)).astype(dtype)
    strided = _check(a, b)
    copied = np.empty(N, dtype)
    simd.row_times(np.ascontiguousarray(a), b, copied)
    np.testing.assert_array_equal(strided, copied)


def test_the_products_are_fused():
    """x = 1 + 2^-12: -(1 + 2^-11) + x x is 2^-24 with one rounding (x x = 1 + 2^-11 + 2^-24 exactly), 0
    with two (x x rounds to 1 + 2^-11), in every column, vector and scalar alike."""
    x = np.float32(1 + 2.0**-12)
    lanes = simd.VECTOR_BYTES // 4
    a = np.array([1, x], np.float32)
    b = np.array([[-(1 + 2.0**-11)] * (lanes + 1), [x] * (lanes + 1)], np.float32)
    out = np.empty(lanes + 1, np.float32)
    simd.row_times(a, b, out)
    assert (out == np.float32(2.0**-24)).all(), f"got {out}, expected 2^-24 in every column (unfused: 0)"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_peak_s_fma_chains_take_one_step_per_repeat(dtype):
    """peak.fma_rate counts 2 flops per entry and repeat: after n repeats from 2, every entry is
    1 + 0.999^n (the map v -> 0.999 v + 0.001 moves v - 1 by a factor 0.999); two steps a repeat would
    give 1 + 0.999^(2n), none 2."""
    from rnnspec.kernels.cpu import peak

    lanes = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    x = np.full(peak.CHAINS * lanes, 2, dtype)
    peak._chains(x, 1000)
    expected = 1 + 0.999**1000
    assert np.allclose(x, expected, rtol=1e-4), f"entries {np.unique(x)} after 1000 repeats, expected {expected}"


_AVX2_SCRIPT = r"""
import importlib.util, re, sys
import numpy as np
from rnnspec.kernels.cpu import peak, simd
assert (simd.AVX512, simd.WIDEST, peak.CHAINS) == (False, 4, 6), (simd.AVX512, simd.WIDEST, peak.CHAINS)
spec = importlib.util.spec_from_file_location("test_simd", sys.argv[1])
tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tests)
for dtype in ("float32", "float64"):
    lanes = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    x = np.full(peak.CHAINS * lanes, 2, dtype)
    peak._chains(x, 1000)
    assert np.allclose(x, 1 + 0.999**1000, rtol=1e-4), np.unique(x)
    rng = np.random.default_rng(0)
    for K, N in ((37, 2 * simd.WIDEST * lanes + 3), (5, lanes - 1), (64, 3 * lanes)):
        tests._check(rng.standard_normal(K).astype(dtype), rng.standard_normal((K, N)).astype(dtype))
for signature, asm in peak._chains.inspect_asm().items():
    # the repeat loop: a label and the backward jump to it, around the FMAs
    loops = [body for _, body in re.findall(r"^(\.LBB0_\d+):\n(.*?)^\s+j\w+\s+\1\n", asm, re.S | re.M)
             if "vfmadd" in body]
    assert len(loops) == 1 and "zmm" not in asm, (signature, asm)
    assert "rsp" not in loops[0] and loops[0].count("vfmadd") == 2 * peak.CHAINS, (signature, loops[0])
print("ok")
"""


def test_an_avx2_only_build_sums_right_and_keeps_the_peak_s_chains_in_registers(tmp_path):
    """Built as for an AVX2-only CPU (Numba's target features; the code runs on this one too): the block widths and
    the peak's chain count follow AVX2's 16 registers, row_times still meets its bound, and the chains' loop holds
    every chain in a register (2 CHAINS ymm FMAs, no stack access): 8 chains spilled there and halved the rate."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": AVX2_FEATURES,
           "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _AVX2_SCRIPT, __file__], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
