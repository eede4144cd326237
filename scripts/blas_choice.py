"""What the kernels' BLAS choice buys where OpenBLAS reads an AVX-512 CPU as Haswell, emulated here.

NumPy's OpenBLAS is loaded with OPENBLAS_CORETYPE=HASWELL (as it loads by itself on a machine it
reads as Haswell), the variable is removed, and rnnspec.kernels is imported: it finds NumPy's
OpenBLAS on Haswell kernels, sees every AVX-512 feature, and loads SciPy's OpenBLAS (the kernels'
GEMM) on SkylakeX. The same float32 GEMMs then run through both, in one process, alternating (with
a pause between, for the other library's spinning threads to sleep): n = 2048, and the LSTM's
per-step product at G4 (64 x 1024 by 1024 x 4096).

    python scripts/blas_choice.py      # prints the BLAS cores and GFLOP/s (best and median of 7)
"""

import os
import time

os.environ["OPENBLAS_CORETYPE"] = "HASWELL"  # read when NumPy loads its OpenBLAS: the imports below must follow
import numpy as np  # noqa: E402

del os.environ["OPENBLAS_CORETYPE"]

from rnnspec.kernels.cpu import blas  # noqa: E402
from rnnspec.kernels.cpu.bench import timings  # noqa: E402


def rates(call, flop: float, calls: int = 7) -> tuple[float, float]:
    time.sleep(1.0)  # the other library's threads spin a while after its last call: let them sleep
    times = timings(call, calls)
    return flop / min(times) / 1e9, flop / float(np.median(times)) / 1e9


def main() -> None:
    print(blas.report())
    rng = np.random.default_rng(0)
    for name, (m, k, n) in {"GEMM n=2048": (2048, 2048, 2048), "LSTM step at G4": (64, 1024, 4096)}.items():
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        flop = 2.0 * m * k * n
        for _ in range(2):  # alternate, twice
            numpy_rate = rates(lambda a=a, b=b, out=out: np.matmul(a, b, out=out), flop)
            kernels_rate = rates(lambda a=a, b=b, out=out: blas.dot_into(a, b, out), flop)
            print(f"{name}: NumPy's BLAS ({blas.core_name('numpy')}) best {numpy_rate[0]:.0f}, median "
                  f"{numpy_rate[1]:.0f} GFLOP/s; the kernels' ({blas.core_name('scipy')}) best "
                  f"{kernels_rate[0]:.0f}, median {kernels_rate[1]:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
