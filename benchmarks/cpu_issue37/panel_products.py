"""The step products alone: panels.product against OpenBLAS (the kernels' BLAS, through Numba) on the shapes the
benchmark's step products have, one thread each, and OpenBLAS on two threads beside them.

    python benchmarks/cpu_issue37/panel_products.py

Each rate is the best of 5 timed blocks of n products (about 2 GFLOP a block), after one untimed block; a and B
are the same arrays for every side. Shapes: (rows, K, N) of h_{t-1} W^T (K = H, N = G H) and of BPTT's d W
(K = G H, N = H) at the sizes' per-thread rows (a half of rows.py: 16 at G2, 32 at G3; 64 at G4), and the input
projection's x U^T of a G2 half (1600 rows, K = 64).
"""

from __future__ import annotations

import os
import time

import numpy as np
from numba import njit

from rnnspec.kernels.cpu import blas, panels
from rnnspec.kernels.cpu.bench import machine

SHAPES = [(16, 128, 512), (16, 512, 128), (32, 256, 1024), (32, 1024, 256), (64, 1024, 4096), (64, 4096, 1024),
          (32, 1024, 4096), (16, 128, 384), (1600, 64, 512), (3200, 256, 1024)]


@njit(nogil=True)
def _panels(a, packed, out, n):
    for _ in range(n):
        panels.product(a, packed, out)


@njit(nogil=True)
def _blas(a, b, out, n):
    for _ in range(n):
        np.dot(a, b, out)


def rate(call, flop: float) -> float:
    call()
    best = min(_timed(call) for _ in range(5))
    return flop / best / 1e9


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    described = machine()
    print(f"# {described['cpu']['cpu']} ({described['cpu']['isa']}, {described['cpu']['cores']} cores), "
          f"OpenBLAS {described['cpu']['blas_core']}; load average {os.getloadavg()[0]:.2f}")
    print("| dtype | rows x K by K x N | panels, 1 thread | OpenBLAS, 1 thread | OpenBLAS, 2 threads | "
          "panels / OpenBLAS 1 |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        for rows, inner, cols in SHAPES:
            a = rng.standard_normal((rows, inner)).astype(dtype)
            b = rng.standard_normal((inner, cols)).astype(dtype)
            packed, out = panels.pack(b), np.empty((rows, cols), dtype)
            flop = 2.0 * rows * inner * cols
            n = max(1, int(2e9 / flop))
            two = rate(lambda a=a, b=b, out=out, n=n: _blas(a, b, out, n), flop * n)
            with blas.one_thread():
                mine = rate(lambda a=a, packed=packed, out=out, n=n: _panels(a, packed, out, n), flop * n)
                one = rate(lambda a=a, b=b, out=out, n=n: _blas(a, b, out, n), flop * n)
            print(f"| {dtype} | {rows} x {inner} by {inner} x {cols} | {mine:.0f} | {one:.0f} | {two:.0f} | "
                  f"{mine / one:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
