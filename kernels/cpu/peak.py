"""The machine's peak floating-point rate, measured in the run that quotes a percentage of it
(``rnnspec bench`` measures it before and after its rows and keeps the better of each).

The best of three measurements, each the best of a few calls (a peak, so the fastest call counts):
- ``numpy_gemm``: NumPy's matmul at n = 2048;
- ``kernels_gemm``: the GEMM the kernels call (Numba's np.dot, SciPy's OpenBLAS) at n = 2048;
- ``fma_microkernel``: eight independent chains of v = v a + b per element on every core at once,
  vectorized by LLVM (it stays below the GEMMs on an AVX-512 machine whose LLVM prefers 256-bit
  vectors, and is there for machines whose BLAS is the weaker of the two).
"""

from __future__ import annotations

import os
import threading

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.bench import timings
from rnnspec.kernels.cpu.blas import dot_into

GEMM_N = 2048
CALLS = 5
CHAIN_STEPS = 32


@njit(cache=True, fastmath=True, nogil=True)
def _fma_chains(x, repeats):
    """x (8, n): every entry through CHAIN_STEPS multiply-adds per repeat, eight rows as eight chains."""
    a, b = x.dtype.type(0.999), x.dtype.type(0.001)
    for _ in range(repeats):
        for k in range(x.shape[1]):
            p0, p1, p2, p3 = x[0, k], x[1, k], x[2, k], x[3, k]
            p4, p5, p6, p7 = x[4, k], x[5, k], x[6, k], x[7, k]
            for _ in range(CHAIN_STEPS):
                p0, p1, p2, p3 = p0 * a + b, p1 * a + b, p2 * a + b, p3 * a + b
                p4, p5, p6, p7 = p4 * a + b, p5 * a + b, p6 * a + b, p7 * a + b
            x[0, k], x[1, k], x[2, k], x[3, k] = p0, p1, p2, p3
            x[4, k], x[5, k], x[6, k], x[7, k] = p4, p5, p6, p7


def _best_rate(call, flop: float) -> float:
    return flop / min(timings(call, CALLS)) / 1e9


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fma_rate(dtype: str, repeats: int = 20000) -> float:
    blocks = [np.ones((8, 256), dtype) for _ in range(cores())]
    _fma_chains(blocks[0], 1)

    def call():
        threads = [threading.Thread(target=_fma_chains, args=(b, repeats)) for b in blocks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return _best_rate(call, 2.0 * CHAIN_STEPS * 8 * 256 * repeats * len(blocks))


def measure(dtype: str) -> dict[str, float]:
    """GFLOP/s of each measurement, and their best as ``peak_gflops``."""
    a = np.random.default_rng(1).standard_normal((GEMM_N, GEMM_N)).astype(dtype)
    out = np.empty_like(a)
    flop = 2.0 * GEMM_N**3
    rates = {"numpy_gemm": _best_rate(lambda: np.matmul(a, a, out=out), flop),
             "kernels_gemm": _best_rate(lambda: dot_into(a, a, out), flop),
             "fma_microkernel": fma_rate(dtype)}
    return {**rates, "peak_gflops": max(rates.values())}


def best(*measurements: dict[str, float]) -> dict[str, float]:
    """Each rate's best over several measurements (say, before and after a benchmark)."""
    return {key: max(m[key] for m in measurements) for key in measurements[0]}
