"""``rnnspec bench [--cell CELL]``: the CPU kernels against plain NumPy and PyTorch, in one process, warm.

For each size, dtype and phase, the implementations are timed in turn, call by call (A B A B ...: see
:func:`interleaved`), so that a change of the machine's load falls on both sides of a ratio; each result
is the median of ``repeats`` timed calls, with min, max and spread = (max - min) / median, and a ratio is
marked noisy where either side's spread exceeds NOISY_SPREAD. JIT compilation (the first call of each
kernel in a fresh process) is timed apart. The peak is measured in the same run: the best of NumPy's
GEMM, the GEMM the kernels call (SciPy's BLAS through Numba) and an FMA-bound microkernel on every core
(:mod:`peak`); the report names the BLAS core type each library runs (:mod:`blas`), the BLAS kernel, the
source commit and the load average before and after. Each result's rate counts the multiply-adds of its
matrix products, G gates (1 for Elman): forward 2TBHG(I+H); train 6TBHG(I+H) + 6TBHK.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnspec import catalogue
from rnnspec.kernels.cpu.baselines import RUNNERS
from rnnspec.kernels.cpu.baselines_gated import CELLS as TEXTBOOK_CELLS
from rnnspec.kernels.cpu.baselines_variants import LAYERS, PLAIN, make_variant_case, projection_size
from rnnspec.kernels.cpu.emulate import RECORDED_PREFIXES
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
#: the cells with a baseline to time against: PyTorch's layer, or the textbook NumPy loop (the reset-before GRU)
CELLS = tuple(c for c in catalogue.NAMES if c in LAYERS or c in TEXTBOOK_CELLS)
GATE_COUNT = {cell: max(len(catalogue.cell(cell).gates), 1) for cell in CELLS}
PHASES = ("forward", "train")
DTYPES = catalogue.DTYPES
#: 2: results timed interleaved, with their times, spread, noisy flags and ratios ("vs"); commit, BLAS kernel, load
SCHEMA = "rnnspec.bench/2"


def default_sizes(cell: str) -> list[str]:
    return [f"{'S' if cell == 'elman' else 'G'}{n}" for n in range(1, 6)]


def make_case(T: int, B: int, I: int, H: int, K: int, dtype: str, seed: int = 0,
              cell: str = "elman") -> dict[str, np.ndarray]:
    """One forward layer of ``cell`` over full sequences: the variant benchmark's case with no variant
    (U, W and V scaled by one over the root of the width they read, biases and h0 by 0.1)."""
    return make_variant_case(cell, PLAIN, T, B, I, H, K, dtype, seed)


WARMUP_CALLS = 3
#: seconds of quiet before an implementation's calls: the previous one's library may leave threads spinning
#: on the cores (OpenBLAS's and OpenMP's pools wait busily after a call); the kernels' G1 LSTM train, timed
#: right after PyTorch's forward, took 0.209-0.287 ms in one run and 0.111-0.220 in the next
SETTLE_S = 0.3
#: seconds of untimed calls after that quiet, before the next timed call (one call at least): one untimed call
#: left a small call cold on the 2-core VM (2026-12-07, Elman S1 forward: 24 us back to back, 55 after the quiet
#: and one call, 24 after the quiet and 20 ms of calls; PyTorch's 226, 311 and 243 us), so that the rows of small
#: sizes measured how fast a call wakes from idle, not how fast it runs
WARM_S = 0.02
#: a side whose spread, (max - min) / median of its timed calls, exceeds this makes its ratios noisy. From two
#: sets of three back-to-back runs per cell (2026-12-02, each implementation timed in one block): in the first
#: (benchmarks/cpu_cells/*_runN.json, added in 652c452, deleted in b80e217), the ratios whose two sides' spreads
#: stayed at or below 0.5 in every run moved by at most 2.15x from run to run (47 of 70), those at or below 1.0
#: (the old rule: max - min above the median) by up to 26x (Elman S1 forward); in the second
#: (cpu_cells/simd/), at or below 0.5: at most 3.1x (107 of 130), and that worst one had a spread of 0.18. So a
#: spread flags calls disturbed within a measurement, not a load that lasts all of it and slows every call
#: alike (the report's load average is for that). 0.5 marks 4-7% of those runs' results; 0.25 would mark
#: 15-21% and bound the move no better (3.1x in the second set)
NOISY_SPREAD = 0.5


def interleaved(calls: dict[str, Callable], repeats: int, pause: Callable[[float], None] | None = None,
                clock: Callable[[], float] | None = None) -> dict[str, list[float]]:
    """{name: seconds of each of ``repeats`` timed calls} for ``calls`` {name: call}, taken in turn: after
    SETTLE_S of quiet and WARMUP_CALLS untimed calls of each (a first call alone left PyTorch's later calls
    10x apart in three back-to-back runs), rounds of one timed call of each, A B A B ...

    Timed in turn, a burst of load (another process, a frequency change) falls on both sides of a ratio
    instead of on all of one side's calls. Before a timed call that follows another implementation's, SETTLE_S
    of quiet (that one's thread pool may still spin) and WARM_S of untimed calls, one at least (which wake this
    one's pool and bring the core back from idle, as the calls before it did when each implementation's calls ran
    in one block): every timed call sees its library warm and the cores to itself. With one implementation, the
    calls run back to back (no quiet between)."""
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1 timed call, got {repeats}")
    pause, clock = pause or time.sleep, clock or time.perf_counter
    for call in calls.values():
        pause(SETTLE_S)
        for _ in range(WARMUP_CALLS):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    previous = None
    for _ in range(repeats):
        for name, call in calls.items():
            if len(calls) > 1 and name != previous:
                pause(SETTLE_S)
                warm(call, clock)
            previous = name
            start = clock()
            call()
            times[name].append(clock() - start)
    return times


def warm(call: Callable, clock: Callable[[], float]) -> int:
    """Untimed calls of ``call`` until WARM_S has passed since the first began, one at least; how many."""
    end, count = clock() + WARM_S, 0
    while count == 0 or clock() < end:
        call()
        count += 1
    return count


def timings(call: Callable, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``call`` alone, back to back, after SETTLE_S of quiet and WARMUP_CALLS
    untimed calls (:func:`interleaved` with one implementation)."""
    return interleaved({"call": call}, repeats)["call"]


def spread(result: dict) -> float:
    """(max - min) / median of a result's timed calls."""
    return (result["max_s"] - result["min_s"]) / result["median_s"]


def noisy(result: dict) -> bool:
    """A result whose spread exceeds NOISY_SPREAD: its ratios mean little."""
    return spread(result) > NOISY_SPREAD


def versus(result: dict, reference: dict) -> dict:
    """How many times faster ``result`` ran than ``reference`` (the reference's median / the result's), and
    whether that ratio is noisy (either side is; results without min and max, from old reports, are not)."""
    unknown = "min_s" not in result or "min_s" not in reference
    return {"ratio": reference["median_s"] / result["median_s"],
            "noisy": not unknown and (noisy(result) or noisy(reference))}


def summary(times: list[float]) -> dict:
    """A result's timing fields from the seconds of its timed calls."""
    median = float(np.median(times))
    return {"median_s": median, "min_s": min(times), "max_s": max(times),
            "spread": (max(times) - min(times)) / median, "times_s": list(times)}


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
    if impl == "torch":
        import torch

        torch.set_num_threads(2)
    if variant:
        from rnnspec.kernels.cpu.baselines_variants import RUNNERS as VARIANTS

        return lambda case: VARIANTS[impl](case, cell, variant)
    if cell == "elman":
        return RUNNERS[impl]
    from rnnspec.kernels.cpu.baselines_gated import RUNNERS as GATED

    return lambda case: GATED[impl](case, cell)


def available(impls: list[str], cell: str = "elman", variant: dict | None = None) -> tuple[list[str], list[str]]:
    """(the implementations of ``impls`` that can run ``cell`` as ``variant`` here, a phrase for each other one
    saying why not). Imports nothing: PyTorch is looked up, not loaded."""
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
        if impl == "torch" and importlib.util.find_spec("torch") is None:
            missing.append("torch (not installed)")
            continue
        have.append(impl)
    return have, missing


def parallel(impl: str, cell: str, variant: dict | None, phase: str, T: int, B: int, I: int, H: int, K: int,
             dtype: str) -> str | None:
    """How the kernels spread a call of ``phase`` at this size over two threads: "units" (the recurrence
    itself, kernels/cpu/split.py; plain gated calls only), "rows" (the batch's two halves,
    kernels/cpu/rows.py; every cell, Elman's plain calls too) or None (one thread and threaded BLAS; every other
    implementation)."""
    if impl != "rnnspec-cpu":
        return None
    from rnnspec.kernels.cpu import rows, split

    weights = GATE_COUNT[cell] * H * projection_size(cell, H) * np.dtype(dtype).itemsize
    if not variant and split.wanted(cell, T, B, H, GATE_COUNT[cell], weights):
        return "units"
    work = flops(phase, T, B, I, H, K, GATE_COUNT[cell], variant, projection_size(cell, H))
    return "rows" if rows.wanted(T, B, weights, work) else None


def machine() -> dict:
    """The software, and the CPU as the thresholds' cache describes it (tuning.machine: model, family and model
    number, AVX-512 or AVX2, cores, L2, the kernels' OpenBLAS core type), so that a report names its machine."""
    from rnnspec.kernels.cpu import tuning

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "cpu": tuning.machine(), "python": platform.python_version(),
            "numpy": np.__version__}
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        # PyTorch's own kernels' instruction set (ATEN_CPU_CAPABILITY can hold it below the CPU's); from 2.1
        info["torch_cpu_capability"] = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    except ImportError:
        pass
    info["env"] = {k: v for k, v in os.environ.items() if k.startswith(RECORDED_PREFIXES)}
    return info


#: the source tree: kernels/cpu/bench.py is three folders down (a checkout, or an editable install of one)
SOURCE = Path(__file__).resolve().parents[2]


def commit(source: Path = SOURCE) -> dict:
    """{"commit": git rev-parse HEAD of ``source``, or "unknown" when it is not the top of a git checkout (an
    installed copy: a checkout around the site-packages folder is not this code's), "commit_modified":
    whether tracked files differ from that commit (None when unknown)}."""
    def git(*words: str) -> str:
        return subprocess.run(["git", "-C", str(source), *words], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != source:
            return {"commit": "unknown", "commit_modified": None}
        return {"commit": git("rev-parse", "HEAD"),
                "commit_modified": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):  # no git, not a checkout, or git too slow
        return {"commit": "unknown", "commit_modified": None}


def blas_kernel() -> list[dict]:
    """The BLAS libraries loaded in this process and the kernels they run: threadpoolctl's view where it is
    installed (internal_api, architecture, version, threads, per library: NumPy's and SciPy's, which the
    kernels call), else NumPy's build configuration with the core its OpenBLAS runs (:func:`blas.core_name`)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        from rnnspec.kernels.cpu import blas

        config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return [{"source": "numpy.show_config", "name": config.get("name"), "version": config.get("version"),
                 "configuration": config.get("openblas configuration"),
                 "architecture": blas.core_name("numpy")}]
    keys = ("internal_api", "architecture", "version", "num_threads", "threading_layer", "filepath")
    return [{"source": "threadpoolctl", **{k: pool[k] for k in keys if k in pool}}
            for pool in threadpool_info() if pool.get("user_api") == "blas"]


def load() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run(sizes: list[str], phases: list[str], dtypes: list[str], impls: list[str], repeats: int,
        progress=None, cell: str = "elman", variant: dict | None = None) -> dict:
    """``variant``: {"layers", "bidirectional", "lengths" (None, "zero", "carry"), "name"} or None. Progress goes
    to ``progress`` (sys.stderr as it is at the call: a default bound at import outlives a replaced stream).
    Each size, dtype and phase times ``impls`` in turn (:func:`interleaved`); each result records, against
    each other implementation of its size, dtype and phase, :func:`versus` under "vs"."""
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1 timed call, got {repeats}")
    progress = progress or sys.stderr
    load_before = load()
    from rnnspec.kernels.cpu import blas, peak, tuning

    impls, missing = available(impls, cell, variant)
    report = {"schema": SCHEMA, "cell": cell, "variant": variant["name"] if variant else "", "machine": machine(),
              **commit(), "blas": blas.report(), "blas_kernel": blas_kernel(), "load_before": load_before,
              "tuning": {"source": tuning.active().source, "values": {k: tuning.value(k) for k in tuning.TABLE}},
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
            calls = {impl: dict(zip(PHASES, runner(impl, cell, variant)(case))) for impl in impls}
            for phase in phases:
                times = interleaved({impl: calls[impl][phase] for impl in impls}, repeats)
                work = flops(phase, T, B, I, H, K, GATE_COUNT[cell], variant, projection_size(cell, H))
                group = []
                for impl in impls:
                    done += 1
                    result = {"impl": impl, "cell": cell, "size": size, "T": T, "B": B, "I": I, "H": H, "K": K,
                              "dtype": dtype, "phase": phase, **summary(times[impl])}
                    result.update(gflops=work / result["median_s"] / 1e9, noisy=noisy(result),
                                  parallel=parallel(impl, cell, variant, phase, T, B, I, H, K, dtype))
                    group.append(result)
                    print(f"[{done}/{total}] {size} {dtype} {phase:7s} {impl:12s} {result['median_s'] * 1e3:10.3f} ms"
                          f" spread {result['spread']:.2f}", file=progress, flush=True)
                for result in group:
                    result["vs"] = {other["impl"]: versus(result, other) for other in group if other is not result}
                report["results"].extend(group)
            del calls
    # measured before and after the rows, the better of each: a neighbour's load during one
    # measurement must not pass for the machine's peak
    print("measuring the peak again ...", file=progress, flush=True)
    report["peak"] = {d: peak.best(before[d], peak.measure(d)) for d in dtypes}
    report["load_after"] = load()
    return report


def table(report: dict) -> str:
    peaks = report.get("peak", {})
    variant = f", variant {report['variant']}" if report.get("variant") else ""
    lines = [f"cell: {report.get('cell', 'elman')}{variant}"]
    if "commit" in report:
        lines.append(f"source: commit {report['commit']}" + (" with modified files" if report.get("commit_modified")
                                                              else ""))
    if "blas" in report:
        b = report["blas"]
        lines.append(f"BLAS: NumPy runs OpenBLAS {b['numpy_blas_core']} kernels; the kernels' GEMM (SciPy's "
                     f"OpenBLAS) runs {b['kernels_blas_core']} ({b['why']})")
    if "tuning" in report:
        lines.append(f"path-choosing thresholds: {report['tuning']['source']}")
    cpus = report.get("machine", {}).get("cpus")
    cpu = report.get("machine", {}).get("cpu")
    if cpu:
        l2 = f"L2 {cpu['l2_bytes'] // 1024} KiB a core" if cpu["l2_bytes"] else "L2 size not found"
        isa = (f"{cpu['isa']} emulated on an {cpu['cpu_isa']} CPU (python -m rnnspec.kernels.cpu.emulate: the "
               f"kernels, OpenBLAS and PyTorch held to {cpu['isa']}'s code, on this CPU's cores and caches)"
               if cpu.get("cpu_isa") else cpu["isa"])
        lines.append(f"CPU: {cpu['cpu']} (family {cpu['family']}, model {cpu['model']}), {isa}, {cpu['cores']} "
                     f"cores for this process, {l2}")
    if report.get("load_before") is not None:
        after = f", {report['load_after']:.2f} after" if report.get("load_after") is not None else ""
        # taken before the run starts, the load is other processes': 1 or more is a core's worth, on average,
        # taken from code that runs two threads (the kernels' split paths, PyTorch) for the whole last minute
        busy = (": other processes had the cores, and a ratio of code on several threads may be far off"
                if cpus and report["load_before"] >= 1 else "")
        lines.append(f"load average (1 min): {report['load_before']:.2f} before the run{after}, on {cpus} CPUs{busy}")
    for dtype, p in peaks.items():
        gemm = max((v for k, v in p.items() if k.endswith("_gemm")), default=None)
        chains = p.get("fma_microkernel")
        # the peak is a rate the FMA units reached in this run; where the chains fell short of a GEMM (load, or a
        # CPU whose pipes they do not fill), a GEMM's rate is the better lower bound of it, so that one is quoted
        why = (": the FMA chains ran below a GEMM, so the GEMM's rate is the peak"
               if gemm is not None and chains is not None and chains < gemm else "")
        lines.append(f"peak {dtype}: {p['peak_gflops']:.0f} GFLOP/s = best of " + ", ".join(
            f"{k} {v:.0f}" for k, v in p.items() if k != "peak_gflops") + why)
    lines.append("JIT first call (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report["compile_s"].items()))
    if report["skipped"]:
        lines.append("skipped: " + ", ".join(report["skipped"]))
    lines.append(f"{'size':4s} {'dtype':7s} {'phase':7s} {'impl':12s} {'min ms':>10s} {'median ms':>10s} "
                 f"{'max ms':>10s} {'GFLOP/s':>8s} {'% peak':>6s} {'vs torch':>8s}")
    by_key = {(r["size"], r["dtype"], r["phase"], r["impl"]): r for r in report["results"]}
    for r in report["results"]:
        ref = by_key.get((r["size"], r["dtype"], r["phase"], "torch"))
        against = versus(r, ref) if ref else None
        ratio = f"{against['ratio']:7.2f}x" if ref else "       -"
        peak = peaks[r["dtype"]]["peak_gflops"] if r["dtype"] in peaks else float("nan")
        spread = (f"{r['min_s'] * 1e3:10.3f} {r['median_s'] * 1e3:10.3f} {r['max_s'] * 1e3:10.3f}" if "min_s" in r
                  else f"{'-':>10s} {r['median_s'] * 1e3:10.3f} {'-':>10s}")
        mark = " noisy" if "min_s" in r and (noisy(r) or (against and against["noisy"])) else ""
        threads = {"units": " recurrence on 2 threads", "rows": " batch halves on 2 threads"}.get(
            r.get("parallel") or ("units" if r.get("threads") == 2 else ""), "")
        lines.append(f"{r['size']:4s} {r['dtype']:7s} {r['phase']:7s} {r['impl']:12s} {spread} "
                     f"{r['gflops']:8.1f} {100 * r['gflops'] / peak:5.0f}% {ratio}{mark}{threads}")
    lines.append(f"noisy: (max - min) / median of the row's timed calls, or of its torch row's, exceeds "
                 f"{NOISY_SPREAD}; its ratio means little (rerun on a quiet machine)")
    if report.get("schema") == SCHEMA:
        lines.append("each size, dtype and phase timed its implementations in turn, one call each (A B A B ...), so "
                     "that a change of load falls on both sides of a ratio")
    return "\n".join(lines)


def write_json(path: str, report: dict) -> None:
    """``report`` as JSON at ``path``, whole or not at all: written beside it, then moved over it; the
    temporary file is removed when either step fails (and the error raised)."""
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_text(json.dumps(report, indent=2))
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
