"""``rnnspec bench [--cell CELL]``: the CPU kernels against plain NumPy and PyTorch, in one process, warm.

Each result is the median of ``repeats`` timed calls after WARMUP_CALLS untimed ones, with min and max.
JIT compilation (the first call of each kernel in a fresh process) is timed apart. The peak is
measured in the same run: the best of NumPy's GEMM, the GEMM the kernels call (SciPy's BLAS through
Numba) and an FMA-bound microkernel on every core (:mod:`peak`); the report names the BLAS core type
each library runs (:mod:`blas`). Each result's rate counts the multiply-adds of its matrix
products, G gates (1 for Elman): forward 2TBHG(I+H); train 6TBHG(I+H) + 6TBHK.
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
from rnnspec.kernels.cpu.baselines_variants import PLAIN, make_variant_case, projection_size
from rnnspec.kernels.cpu.work import flops

SIZES = {
    "S1": (50, 1, 16, 32, 16),
    "S2": (100, 32, 64, 128, 64),
    "S3": (100, 64, 256, 256, 256),
    "S4": (50, 64, 512, 1024, 512),
    "S5": (1000, 1, 64, 256, 64),
}
#: the gated cells' sizes are the Elman ones, named as issue "Numba CPU kernels for LSTM and both GRUs" names them
SIZES.update({f"G{n}": SIZES[f"S{n}"] for n in range(1, 6)})
CELLS = ("elman", "lstm", "gru-reset-after", "gru-reset-before", "lstm-proj")
GATE_COUNT = {"elman": 1, "lstm": 4, "gru-reset-after": 3, "gru-reset-before": 3, "lstm-proj": 4}



def default_sizes(cell: str) -> list[str]:
    return [f"{'S' if cell == 'elman' else 'G'}{n}" for n in range(1, 6)]
PHASES = ("forward", "train")
DTYPES = ("float32", "float64")
SCHEMA = "rnnspec.bench/1"


def make_case(T: int, B: int, I: int, H: int, K: int, dtype: str, seed: int = 0,
              cell: str = "elman") -> dict[str, np.ndarray]:
    """One forward layer of ``cell`` over full sequences: the variant benchmark's case with no variant
    (U, W and V scaled by one over the root of the width they read, biases and h0 by 0.1)."""
    return make_variant_case(cell, PLAIN, T, B, I, H, K, dtype, seed)


WARMUP_CALLS = 3
#: seconds of quiet before each result's calls: the previous result's library may leave threads spinning
#: on the cores (OpenBLAS's and OpenMP's pools wait busily after a call); the kernels' G1 LSTM train, timed
#: right after PyTorch's forward, took 0.209-0.287 ms in one run and 0.111-0.220 in the next
SETTLE_S = 0.3


def timings(call: Callable, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls, after SETTLE_S of quiet and WARMUP_CALLS untimed calls (a first call
    alone left PyTorch's later calls 10x apart in three back-to-back runs)."""
    time.sleep(SETTLE_S)
    for _ in range(WARMUP_CALLS):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def noisy(result: dict) -> bool:
    """A row whose spread (max - min) exceeds its median: its ratios mean little."""
    return result["max_s"] - result["min_s"] > result["median_s"]


def compile_seconds(cell: str = "elman") -> dict[str, float]:
    """First-call time of each CPU kernel of ``cell`` on a tiny case, per dtype: loading (or compiling)
    the JIT code."""
    from rnnspec.kernels import backward, forward, loss

    out = {}
    for dtype in DTYPES:
        case = make_case(2, 1, 2, 3, 2, dtype, cell=cell)
        state_keys = ("h0", "c0") if cell.startswith("lstm") else ("h0",)
        state0 = {k: case[k] for k in state_keys}
        params = {k: v for k, v in case.items() if k not in ("x", "targets", "V", "c", *state_keys)}
        start = time.perf_counter()
        forward(cell, case["x"], state0, params)
        backward(cell, case["x"], state0, params, {"h": np.ones((2, 1, case["h0"].shape[1]), dtype)})
        loss(cell, case["x"], state0, {**params, "V": case["V"], "c": case["c"]}, case["targets"])
        out[dtype] = time.perf_counter() - start
    return out


def runner(impl: str, cell: str, variant: dict | None = None):
    """The runner of ``impl`` for ``cell`` (run as ``variant``): case -> (forward, train)."""
    if variant:
        from rnnspec.kernels.cpu.baselines_variants import RUNNERS as VARIANTS

        return lambda case: VARIANTS[impl](case, cell, variant)
    if cell == "elman":
        return RUNNERS[impl]
    from rnnspec.kernels.cpu.baselines_gated import RUNNERS as GATED

    return lambda case: GATED[impl](case, cell)


def available(impls: list[str], cell: str = "elman", variant: dict | None = None) -> tuple[list[str], list[str]]:
    have, missing = [], []
    for impl in impls:
        if variant and impl == "numpy":
            missing.append("numpy (the textbook loop runs one forward layer over full sequences)")
            continue
        if cell == "lstm-proj" and impl == "numpy":
            missing.append("numpy (the textbook loop has no projection)")
            continue
        if variant and impl == "torch" and variant["lengths"] == "carry":
            missing.append("torch (its packed sequences output zeros past a sequence's end: lengths=zero only)")
            continue
        if impl == "torch" and cell == "gru-reset-before":
            missing.append("torch (PyTorch has no GRU with the reset gate before the recurrent product)")
            continue
        if impl == "torch":
            try:
                import torch

                torch.set_num_threads(2)
            except ImportError:
                missing.append("torch (not installed)")
                continue
        have.append(impl)
    return have, missing


def parallel(impl: str, cell: str, variant: dict | None, phase: str, T: int, B: int, I: int, H: int, K: int,
             dtype: str) -> str | None:
    """How the kernels spread a call of ``phase`` at this size over two threads: "units" (the recurrence
    itself, kernels/cpu/split.py; plain gated calls only), "rows" (the batch's two halves,
    kernels/cpu/rows.py; the gated cells, and every cell as a variant) or None (one thread and threaded BLAS;
    every other implementation)."""
    if impl != "rnnspec-cpu" or (cell == "elman" and not variant):
        return None
    from rnnspec.kernels.cpu import rows, split

    if not variant and split.wanted(cell, T, B, H, GATE_COUNT[cell]):
        return "units"
    weights = GATE_COUNT[cell] * H * projection_size(cell, H) * np.dtype(dtype).itemsize
    work = flops(phase, T, B, I, H, K, GATE_COUNT[cell], variant, projection_size(cell, H))
    return "rows" if rows.wanted(T, B, weights, work) else None


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
        progress=None, cell: str = "elman", variant: dict | None = None) -> dict:
    """``variant``: {"layers", "bidirectional", "lengths" (None, "zero", "carry"), "name"} or None. Progress goes
    to ``progress`` (sys.stderr as it is at the call: a default bound at import outlives a replaced stream)."""
    progress = progress or sys.stderr
    from rnnspec.kernels.cpu import blas, peak

    impls, missing = available(impls, cell, variant)
    report = {"schema": SCHEMA, "cell": cell, "variant": variant["name"] if variant else "", "machine": machine(),
              "blas": blas.report(),
              "compile_s": compile_seconds(cell), "skipped": missing, "results": []}
    print(f"measuring the peak ({', '.join(dtypes)}) ...", file=progress, flush=True)
    before = {d: peak.measure(d) for d in dtypes}
    total = len(sizes) * len(dtypes) * len(phases) * len(impls)
    done = 0
    for size in sizes:
        T, B, I, H, K = SIZES[size]
        for dtype in dtypes:
            case = (make_variant_case(cell, variant, T, B, I, H, K, dtype) if variant
                    else make_case(T, B, I, H, K, dtype, cell=cell))
            for phase in phases:
                for impl in impls:
                    done += 1
                    forward, train = runner(impl, cell, variant)(case)
                    times = timings(forward if phase == "forward" else train, repeats)
                    seconds = float(np.median(times))
                    work = flops(phase, T, B, I, H, K, GATE_COUNT[cell], variant, projection_size(cell, H))
                    rate = work / seconds / 1e9
                    report["results"].append({"impl": impl, "cell": cell, "size": size, "T": T, "B": B, "I": I,
                                              "H": H, "K": K, "dtype": dtype, "phase": phase,
                                              "median_s": seconds, "min_s": min(times), "max_s": max(times),
                                              "gflops": rate,
                                              "parallel": parallel(impl, cell, variant, phase, T, B, I, H, K,
                                                                       dtype)})
                    print(f"[{done}/{total}] {size} {dtype} {phase:7s} {impl:12s} {seconds * 1e3:10.3f} ms",
                          file=progress, flush=True)
    # measured before and after the rows, the better of each: a neighbour's load during one
    # measurement must not pass for the machine's peak
    print("measuring the peak again ...", file=progress, flush=True)
    report["peak"] = {d: peak.best(before[d], peak.measure(d)) for d in dtypes}
    return report


def table(report: dict) -> str:
    peaks = report.get("peak", {})
    variant = f", variant {report['variant']}" if report.get("variant") else ""
    lines = [f"cell: {report.get('cell', 'elman')}{variant}"]
    if "blas" in report:
        b = report["blas"]
        lines.append(f"BLAS: NumPy runs OpenBLAS {b['numpy_blas_core']} kernels; the kernels' GEMM (SciPy's "
                     f"OpenBLAS) runs {b['kernels_blas_core']} ({b['why']})")
    for dtype, p in peaks.items():
        lines.append(f"peak {dtype}: {p['peak_gflops']:.0f} GFLOP/s = best of " + ", ".join(
            f"{k} {v:.0f}" for k, v in p.items() if k != "peak_gflops"))
    lines.append("JIT first call (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report["compile_s"].items()))
    if report["skipped"]:
        lines.append("skipped: " + ", ".join(report["skipped"]))
    lines.append(f"{'size':4s} {'dtype':7s} {'phase':7s} {'impl':12s} {'min ms':>10s} {'median ms':>10s} "
                 f"{'max ms':>10s} {'GFLOP/s':>8s} {'% peak':>6s} {'vs torch':>8s}")
    by_key = {(r["size"], r["dtype"], r["phase"], r["impl"]): r for r in report["results"]}
    for r in report["results"]:
        ref = by_key.get((r["size"], r["dtype"], r["phase"], "torch"))
        ratio = f"{ref['median_s'] / r['median_s']:7.2f}x" if ref else "       -"
        peak = peaks[r["dtype"]]["peak_gflops"] if r["dtype"] in peaks else float("nan")
        spread = (f"{r['min_s'] * 1e3:10.3f} {r['median_s'] * 1e3:10.3f} {r['max_s'] * 1e3:10.3f}" if "min_s" in r
                  else f"{'-':>10s} {r['median_s'] * 1e3:10.3f} {'-':>10s}")
        mark = " noisy" if "min_s" in r and (noisy(r) or (ref and "min_s" in ref and noisy(ref))) else ""
        threads = {"units": " recurrence on 2 threads", "rows": " batch halves on 2 threads"}.get(
            r.get("parallel") or ("units" if r.get("threads") == 2 else ""), "")
        lines.append(f"{r['size']:4s} {r['dtype']:7s} {r['phase']:7s} {r['impl']:12s} {spread} "
                     f"{r['gflops']:8.1f} {100 * r['gflops'] / peak:5.0f}% {ratio}{mark}{threads}")
    lines.append("noisy: the row's (or its torch row's) spread, max - min, exceeds its median; its ratio means little")
    return "\n".join(lines)


def write_json(path: str, report: dict) -> None:
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2))
    os.replace(temporary, target)
