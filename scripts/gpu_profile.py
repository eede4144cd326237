"""Where a warm CUDA call's host time goes, on a GPU: the forward+backward call at one size (default
(1000, 1, 64, 64), float32, device arrays), timed returning without a sync (host time alone: the GPU
runs behind) and with one, then cProfile of 20 calls, sorted by cumulative and by own time.

    python scripts/gpu_profile.py [T B I H]
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

import numpy as np


def main(argv: list[str]) -> int:
    from rnnspec.kernels import cuda as gpu
    from rnnspec.spec.bench_cuda import _device_calls

    T, B, I, H = (int(v) for v in argv) if argv else (1000, 1, 64, 64)
    forward, train = _device_calls(T, B, I, H)
    sync = gpu.cuda.synchronize
    for call, name in ((forward, "forward"), (train, "forward+backward")):
        call()
        sync()
        host, whole = [], []
        for _ in range(30):
            sync()
            start = time.perf_counter()
            call()
            host.append(time.perf_counter() - start)
            sync()
            whole.append(time.perf_counter() - start)
        print(f"({T}, {B}, {I}, {H}) {name}: host alone {np.median(host) * 1e6:.0f} us, "
              f"with the sync {np.median(whole) * 1e6:.0f} us (medians of 30)")
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(20):
        train()
        sync()
    profile.disable()
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
