"""Where a warm CUDA call's host time goes, on a GPU: the forward+backward call at one size (default
(1000, 1, 64, 64), float32, device arrays), timed returning without a sync (host time alone: the GPU
runs behind) and with one, then cProfile of 20 calls, sorted by cumulative and by own time; the
launches go through the lean path (rnnspec.kernels.cuda.launches), then the same through numba-cuda's
launch for comparison. Where the environment has RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH
(scripts/gpu_check.sh sets it when the lean launch failed its test), through numba-cuda's alone.

    python scripts/gpu_profile.py [T B I H]
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time

import numpy as np


def _host_times(calls, size, sync, label: str) -> None:
    for call, name in calls:
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
        print(f"{size} {name}{label}: host alone {np.median(host) * 1e6:.0f} us, "
              f"with the sync {np.median(whole) * 1e6:.0f} us (medians of 30)")


def _profile(train, sync, cumulative_lines: int) -> None:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(20):
        train()
        sync()
    profile.disable()
    stats = pstats.Stats(profile, stream=sys.stdout)
    if cumulative_lines:
        stats.sort_stats("cumulative").print_stats(cumulative_lines)
    stats.sort_stats("tottime").print_stats(12)


def main(argv: list[str]) -> int:
    from rnnspec.kernels import cuda as gpu
    from rnnspec.kernels.cuda import launches as cuda_launch
    from rnnspec.kernels.cuda.bench import _device_calls

    T, B, I, H = (int(v) for v in argv) if argv else (1000, 1, 64, 64)
    forward, train = _device_calls(T, B, I, H)
    calls = ((forward, "forward"), (train, "forward+backward"))
    sync = gpu.cuda.synchronize
    for lean in (False,) if os.environ.get("RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH") else (True, False):
        cuda_launch.LEAN_LAUNCH = lean
        _host_times(calls, (T, B, I, H), sync, " with the lean launch" if lean else " with numba-cuda's launch")
        if lean:
            print("lean launch:", cuda_launch.lean_launch_plans())
        _profile(train, sync, cumulative_lines=25 if lean else 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
