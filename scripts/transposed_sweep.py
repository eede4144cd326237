"""A step's product h W^T (forward) and d W (BPTT) as one BLAS call, against (W h^T)^T: both through the
kernels' own loops.step_product, without and with W^T (blas.transposed_wins chooses by this).

    python scripts/transposed_sweep.py float32   # and float64

Times are the best of three blocks of n calls, in one process, SciPy's OpenBLAS on its threads.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.loops import step_product

SHAPES = [(64, 1024, 4), (64, 1024, 3), (32, 1024, 4), (16, 1024, 4), (8, 1024, 4), (64, 2048, 4), (64, 768, 4),
          (64, 768, 3), (64, 512, 4), (32, 512, 4), (128, 512, 4), (64, 256, 4), (256, 256, 4)]


@njit(nogil=True)
def _calls(a, b, b_t, out, staging, n):
    """n steps' products (b_t empty: the plain BLAS call)"""
    for _ in range(n):
        step_product(a, b, b_t, out, a.shape[0], staging)


def main(dtype: str) -> None:
    rng = np.random.default_rng(0)
    print(f"{dtype}: rows B, units H, gates G; ms a product, plain -> transposed (speedup), same bits")
    for B, H, G in SHAPES:
        line = []
        for inner, cols in ((H, G * H), (G * H, H)):  # forward: h (B, H) by W^T; BPTT: d (B, G H) by W
            a = rng.standard_normal((B, inner)).astype(dtype)
            b = rng.standard_normal((inner, cols)).astype(dtype)
            b_t, none = np.ascontiguousarray(b.T), np.empty((0, 0), dtype)
            out, staging = np.empty((B, cols), dtype), np.empty(B * cols, dtype)
            _calls(a, b, none, out, staging, 1)
            first = out.copy()
            _calls(a, b, b_t, out, staging, 1)
            n = max(5, int(2e9 / (2 * B * inner * cols)))
            plain = transposed = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                _calls(a, b, none, out, staging, n)
                plain = min(plain, (time.perf_counter() - start) / n)
                start = time.perf_counter()
                _calls(a, b, b_t, out, staging, n)
                transposed = min(transposed, (time.perf_counter() - start) / n)
            line.append(f"{plain * 1e3:.3f} -> {transposed * 1e3:.3f} ms ({plain / transposed:.2f}x, "
                        f"same bits {np.array_equal(first, out)})")
        print(f"B={B} H={H} G={G}: forward {line[0]}; BPTT {line[1]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "float32")
