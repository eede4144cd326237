"""GEMM rates of the kernels' BLAS (OpenBLAS: NumPy's np.dot, the same SkylakeX build as SciPy's) against PyTorch's
(torch.mm: MKL), two threads each, at the shapes of G4's step products and input projections (gemm_rates.txt).

    python benchmarks/cpu_issue37/blas_bound/gemm_rates.py
"""

import time

import numpy as np
import torch

#: (rows, inner, columns): a G4 step's product (LSTM, GRU, Elman), G4's input projection (LSTM, GRU, Elman), lstm-proj's
SHAPES = [(64, 1024, 4096), (64, 1024, 3072), (64, 1024, 1024), (3200, 512, 4096), (3200, 512, 3072),
          (3200, 512, 1024), (64, 512, 1024)]


def best_seconds(call, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def _calls(dtype: np.dtype, M: int, K: int, N: int) -> list:
    """The four products: np.dot with B contiguous and as a transposed view, torch.mm likewise."""
    a = np.random.rand(M, K).astype(dtype)
    bT = np.random.rand(N, K).astype(dtype)  # B as the transposed view of an (N, K) array, as W^T is
    b = np.ascontiguousarray(bT.T)
    out = np.empty((M, N), dtype)
    ta, tb, tbT, tout = (torch.from_numpy(v) for v in (a, b, bT, out))
    return [lambda: np.dot(a, b, out=out), lambda: np.dot(a, bT.T, out=out),
            lambda: torch.mm(ta, tb, out=tout), lambda: torch.mm(ta, tbT.t(), out=tout)]


def main() -> None:
    torch.set_num_threads(2)
    for dtype in (np.float32, np.float64):
        for M, K, N in SHAPES:
            rates = [2 * M * K * N / best_seconds(call, max(2, int(3e8 / (2 * M * K * N)))) / 1e9
                     for call in _calls(np.dtype(dtype), M, K, N)]
            print(f"{np.dtype(dtype).name} {M}x{K}x{N}: openblas {rates[0]:.0f} (bT view {rates[1]:.0f})  "
                  f"torch {rates[2]:.0f} (bT view {rates[3]:.0f})", flush=True)


if __name__ == "__main__":
    main()
