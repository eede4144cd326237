"""``rnnspec bench``: the CPU kernels against plain NumPy and PyTorch, in one process, warm.

Each result is the median of ``repeats`` timed calls after one warm-up call. JIT compilation
(the first call of each kernel in a fresh process) is timed apart. The roofline is this machine's
GEMM rate measured in the same run (n = 1024, NumPy's BLAS); each result's rate counts the
multiply-adds of its matrix products: forward 2TBH(I+H); train 6TBH(I+H+K).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnspec.kernels.cpu.baselines import RUNNERS

SIZES = {
    "S1": (50, 1, 16, 32, 16),
    "S2": (100, 32, 64, 128, 64),
    "S3": (100, 64, 256, 256, 256),
    "S4": (50, 64, 512, 1024, 512),
    "S5": (1000, 1, 64, 256, 64),
}
PHASES = ("forward", "train")
DTYPES = ("float32", "float64")
SCHEMA = "rnnspec.bench/1"


def flops(phase: str, T: int, B: int, I: int, H: int, K: int) -> float:
    return 2.0 * T * B * H * (I + H) if phase == "forward" else 6.0 * T * B * H * (I + H + K)


def make_case(T: int, B: int, I: int, H: int, K: int, dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)
    return {
        "x": cast(rng.standard_normal((T, B, I))), "h0": cast(rng.standard_normal((B, H)) * 0.1),
        "U": cast(rng.standard_normal((H, I)) / np.sqrt(I)), "W": cast(rng.standard_normal((H, H)) / np.sqrt(H)),
        "b": cast(rng.standard_normal(H) * 0.1), "V": cast(rng.standard_normal((K, H)) / np.sqrt(H)),
        "c": cast(rng.standard_normal(K) * 0.1), "targets": rng.integers(0, K, (T, B)),
    }


WARMUP_CALLS = 3


def timings(call: Callable, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls, after WARMUP_CALLS untimed ones (a first call alone left PyTorch's
    later calls 10x apart in three back-to-back runs)."""
    for _ in range(WARMUP_CALLS):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def median_time(call: Callable, repeats: int) -> float:
    return float(np.median(timings(call, repeats)))


def noisy(result: dict) -> bool:
    """A row whose spread (max - min) exceeds its median: its ratios mean little."""
    return result["max_s"] - result["min_s"] > result["median_s"]


def roofline(dtype: str, n: int = 1024, repeats: int = 5) -> float:
    a = np.random.default_rng(1).standard_normal((n, n)).astype(dtype)
    return 2.0 * n**3 / median_time(lambda: a @ a, repeats) / 1e9


def compile_seconds() -> dict[str, float]:
    """First-call time of each CPU kernel on a tiny case, per dtype: loading (or compiling) the JIT code."""
    from rnnspec.kernels import elman_backward, elman_forward, elman_loss

    out = {}
    for dtype in DTYPES:
        case = make_case(2, 1, 2, 3, 2, dtype)
        args = (case["x"], case["h0"], case["U"], case["W"], case["b"])
        start = time.perf_counter()
        elman_forward(*args)
        elman_backward(*args, np.ones((2, 1, 3), dtype))
        elman_loss(*args, case["V"], case["c"], case["targets"])
        out[dtype] = time.perf_counter() - start
    return out


def available(impls: list[str]) -> tuple[list[str], list[str]]:
    have, missing = [], []
    for impl in impls:
        if impl == "torch":
            try:
                import torch

                torch.set_num_threads(2)
            except ImportError:
                missing.append("torch (not installed)")
                continue
        have.append(impl)
    return have, missing


def machine() -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__}
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["env"] = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    return info


def run(sizes: list[str], phases: list[str], dtypes: list[str], impls: list[str], repeats: int,
        progress=sys.stderr) -> dict:
    impls, missing = available(impls)
    report = {"schema": SCHEMA, "machine": machine(), "compile_s": compile_seconds(),
              "roofline": {f"{d}_gemm_gflops": roofline(d) for d in dtypes}, "skipped": missing, "results": []}
    total = len(sizes) * len(dtypes) * len(phases) * len(impls)
    done = 0
    for size in sizes:
        T, B, I, H, K = SIZES[size]
        for dtype in dtypes:
            case = make_case(T, B, I, H, K, dtype)
            for phase in phases:
                for impl in impls:
                    done += 1
                    forward, train = RUNNERS[impl](case)
                    times = timings(forward if phase == "forward" else train, repeats)
                    seconds = float(np.median(times))
                    rate = flops(phase, T, B, I, H, K) / seconds / 1e9
                    report["results"].append({"impl": impl, "cell": "elman", "size": size, "T": T, "B": B, "I": I,
                                              "H": H, "K": K, "dtype": dtype, "phase": phase,
                                              "median_s": seconds, "min_s": min(times), "max_s": max(times),
                                              "gflops": rate})
                    print(f"[{done}/{total}] {size} {dtype} {phase:7s} {impl:12s} {seconds * 1e3:10.3f} ms",
                          file=progress, flush=True)
    return report


def table(report: dict) -> str:
    roof = report["roofline"]
    lines = ["roofline (GEMM, n=1024): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in roof.items()),
             "JIT first call (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report["compile_s"].items())]
    if report["skipped"]:
        lines.append("skipped: " + ", ".join(report["skipped"]))
    lines.append(f"{'size':4s} {'dtype':7s} {'phase':7s} {'impl':12s} {'min ms':>10s} {'median ms':>10s} "
                 f"{'max ms':>10s} {'GFLOP/s':>8s} {'% roof':>6s} {'vs torch':>8s}")
    by_key = {(r["size"], r["dtype"], r["phase"], r["impl"]): r for r in report["results"]}
    for r in report["results"]:
        ref = by_key.get((r["size"], r["dtype"], r["phase"], "torch"))
        ratio = f"{ref['median_s'] / r['median_s']:7.2f}x" if ref else "       -"
        peak = roof.get(f"{r['dtype']}_gemm_gflops", float("nan"))
        spread = (f"{r['min_s'] * 1e3:10.3f} {r['median_s'] * 1e3:10.3f} {r['max_s'] * 1e3:10.3f}" if "min_s" in r
                  else f"{'-':>10s} {r['median_s'] * 1e3:10.3f} {'-':>10s}")
        mark = " noisy" if "min_s" in r and (noisy(r) or (ref and "min_s" in ref and noisy(ref))) else ""
        lines.append(f"{r['size']:4s} {r['dtype']:7s} {r['phase']:7s} {r['impl']:12s} {spread} "
                     f"{r['gflops']:8.1f} {100 * r['gflops'] / peak:5.0f}% {ratio}{mark}")
    lines.append("noisy: the row's (or its torch row's) spread, max - min, exceeds its median; its ratio means little")
    return "\n".join(lines)


def write_json(path: str, report: dict) -> None:
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2))
    os.replace(temporary, target)
