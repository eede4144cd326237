"""Where the time of one CPU kernel call goes (issue 37): the gated cells' training call (loss and every
gradient) and forward call, timed by phase in-process.

    python benchmarks/cpu_profile_issue37/profile_calls.py --cells lstm,gru-reset-after --sizes G2,G3,G4 \
        --dtypes float32,float64 --repeats 7 --json out.json

How: the Python-level functions of rnnspec.kernels.cpu.gated that a call goes through are wrapped by timers
that count each phase's exclusive time per thread (a nested timed phase is taken out of its parent's):
argument checks, the stacking and copies of the parameters, the input GEMM (x U^T + b for every step), the
forward recurrence, the head, the BPTT recurrence, the gradients' GEMMs, the join of the rows path's halves.
What no timer covers is "python": the code between them. On the rows path (the batch's halves on two
threads, rows.py) each half's phases are timed in its own thread; the table gives their mean, and
"handover" is the wall time of rows.run less the slower half's own total (starting, waking, joining).

The recurrences are split further by a second call, its recurrence followed, in the same thread, by the same
number of its step products alone (loops.step_product on the run's own arrays and path: blas_rows,
transposed) timed apart: product share = products alone / recurrence, gate math (and the holds, the
loop) = the rest. That call's own times are not used otherwise.

PyTorch's call of the same case is timed alternately with ours (A B A B), for the ratio.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import threading
import time

import numpy as np
from numba import njit

from rnnspec.kernels.cpu import bench, cells, gated, rows
from rnnspec.kernels.cpu.baselines_gated import RUNNERS
from rnnspec.kernels.cpu.loops import step_product

_acc: dict = collections.defaultdict(float)  # (thread id, phase) -> seconds
_cpu: dict = collections.defaultdict(float)  # (thread id, phase) -> CPU seconds of that thread
_stack = threading.local()
REPLAY = {"on": False}
_replayed: dict = collections.defaultdict(float)  # (thread id, "fwd"/"bwd") -> seconds of products alone


def _timed(function, phase: str):
    def wrapper(*args, **kwargs):
        stack = getattr(_stack, "s", None)
        if stack is None:
            stack = _stack.s = []
        stack.append([0.0, 0.0])  # children's wall and CPU time
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent, spent_cpu = time.perf_counter() - start, time.thread_time() - cpu
            children = stack.pop()
            _acc[(threading.get_ident(), phase)] += spent - children[0]
            _cpu[(threading.get_ident(), phase)] += spent_cpu - children[1]
            if stack:
                stack[-1][0] += spent
                stack[-1][1] += spent_cpu
    return wrapper


@njit(nogil=True)
def _products(lhs, b, b_transposed, out, blas_rows, staging, transposed):
    for t in range(lhs.shape[0]):
        step_product(lhs[t], b, b_transposed, out, blas_rows, staging, transposed)


def _replay(run, backward: bool) -> float:
    """Seconds of run.T step products alone, as the recurrence runs them (forward h W^T, BPTT d W)."""
    G = len(run.order)
    if backward:
        lhs = np.random.default_rng(0).standard_normal((run.T, run.B, G * run.H)).astype(run.dtype) * 0.01
        b, bT, out = run.W, run.WT, np.empty((run.B, run.P), run.dtype)
    else:
        lhs = run.hs[:run.T].copy()
        b, bT, out = run.WT, run.W, np.empty((run.B, G * run.H), run.dtype)
    staging = np.empty(out.size if run.transposed else 0, run.dtype)
    _products(lhs[:1], b, bT, out, run.blas_rows, staging, run.transposed)  # compile / warm
    start, cpu = time.perf_counter(), time.thread_time()
    _products(lhs, b, bT, out, run.blas_rows, staging, run.transposed)
    return time.perf_counter() - start, time.thread_time() - cpu


def _recur_wrapper(function, backward: bool):
    phase = "bptt recurrence" if backward else "forward recurrence"
    timed = _timed(function, phase)

    def wrapper(run, *args):
        result = timed(run, *args)
        if REPLAY["on"]:
            tid, key = threading.get_ident(), "bwd" if backward else "fwd"
            # wall and CPU seconds of the products alone, and of the recurrence they were part of
            _replayed[(tid, key)] = _replay(run, backward)
            _replayed[(tid, "recur_" + key)] = (_acc[(tid, phase)], _cpu[(tid, phase)])
        return result
    return wrapper


def instrument(cell: str) -> None:
    kernel = cells.kernel(cell)
    for name, phase in (("project", "input GEMM"), ("head_kernel", "head"), ("input_side", "gradient GEMMs"),
                        ("recurrent_side", "gradient GEMMs")):
        setattr(gated, name, _timed(getattr(gated, name), phase))
    if not getattr(gated.checks, "_profiled", False):
        gated.checks.gated_inputs = _timed(gated.checks.gated_inputs, "checks")
        gated.checks.gated_cotangents = _timed(gated.checks.gated_cotangents, "checks")
        gated.checks.targets_arg = _timed(gated.checks.targets_arg, "checks")
        gated.checks.contiguous = _timed(gated.checks.contiguous, "copies (stack, contiguous, W^T)")
        gated._Run.stack = _timed(gated._Run.stack, "copies (stack, contiguous, W^T)")
        gated._Run.scratch = _timed(gated._Run.scratch, "copies (stack, contiguous, W^T)")
        rows.join = _timed(rows.join, "join halves")
        gated.rows = rows
        gated.checks._profiled = True
    kernel.recur = _recur_wrapper(type(kernel).recur.__get__(kernel), False)
    kernel.recur_back = _recur_wrapper(type(kernel).recur_back.__get__(kernel), True)


_halves: dict = {}


def _wrap_rows_run():
    original = rows.run

    def run(call, arguments):
        def half(*args):
            start = time.perf_counter()
            try:
                return call(*args)
            finally:
                _halves[threading.get_ident()] = time.perf_counter() - start
        start = time.perf_counter()
        result = original(half, arguments)
        _halves["wall"] = time.perf_counter() - start
        return result
    rows.run = run


def one_call(call) -> tuple[float, dict, dict, float, dict]:
    """(wall seconds, wall by (thread, phase), the rows path's halves, process CPU seconds, thread CPU by
    (thread, phase)) of one call."""
    _acc.clear()
    _cpu.clear()
    _halves.clear()
    _replayed.clear()
    start, cpu = time.perf_counter(), time.process_time()
    call()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall, dict(_acc), dict(_halves), cpu, dict(_cpu)


def summarize(wall: float, acc: dict, halves: dict, *_) -> dict:
    threads = {tid for tid, _ in acc}
    n = len(threads)
    phases = collections.defaultdict(float)
    for (_tid, phase), s in acc.items():
        phases[phase] += s / n  # mean over the threads that ran halves (1 on one thread)
    out = dict(phases)
    if "wall" in halves:
        slowest = max(v for k, v in halves.items() if k != "wall")
        out["handover (rows.run wall - slower half)"] = halves["wall"] - slowest
        # the halves' phases are means; the slower half's own rest is its untimed python
        covered = sum(phases.values())
        out["python"] = max(wall - covered - out["handover (rows.run wall - slower half)"], 0.0)
    else:
        out["python"] = max(wall - sum(phases.values()), 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", default="lstm,gru-reset-after")
    parser.add_argument("--sizes", default="G2,G3,G4")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--phases", default="train,forward")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json")
    parser.add_argument("--no-torch", action="store_true", help="time ours only (a loaded machine's PyTorch "
                                                                   "wall times mean nothing: its threads spin)")
    args = parser.parse_args()
    _wrap_rows_run()
    report = {"load_before": os.getloadavg(), "results": []}
    for cell in args.cells.split(","):
        instrument(cell)
        for size in args.sizes.split(","):
            T, B, I, H, K = bench.SIZES[size]
            for dtype in args.dtypes.split(","):
                case = bench.make_case(T, B, I, H, K, dtype, cell=cell)
                ours = dict(zip(bench.PHASES, RUNNERS["rnnspec-cpu"](case, cell)))
                torch_calls = ({phase: (lambda: None) for phase in bench.PHASES} if args.no_torch
                               else dict(zip(bench.PHASES, bench.runner("torch", cell)(case))))
                for phase in args.phases.split(","):
                    for _ in range(3):
                        ours[phase]()
                        torch_calls[phase]()
                    rounds, torch_times, shares = [], [], []
                    for _ in range(args.repeats):
                        REPLAY["on"] = False
                        rounds.append(one_call(ours[phase]))
                        time.sleep(0.05)
                        start = time.perf_counter()
                        torch_calls[phase]()
                        torch_times.append(time.perf_counter() - start)
                        REPLAY["on"] = True
                        one_call(ours[phase])
                        rep = dict(_replayed)
                        tids = {k[0] for k in rep}
                        # on the rows path (OpenBLAS on one thread) the CPU seconds of the thread, which a
                        # loaded machine's preemption does not inflate; else wall (OpenBLAS's threads)
                        k = 1 if rounds[-1][2] else 0
                        fr = [rep[(t, "fwd")][k] / rep[(t, "recur_fwd")][k] for t in tids if (t, "fwd") in rep]
                        br = [rep[(t, "bwd")][k] / rep[(t, "recur_bwd")][k] for t in tids if (t, "bwd") in rep]
                        shares.append((float(np.mean(fr)) if fr else None, float(np.mean(br)) if br else None))
                        REPLAY["on"] = False
                        time.sleep(0.05)
                    walls = [r[0] for r in rounds]
                    med = int(np.argsort(walls)[len(walls) // 2])
                    summary = summarize(*rounds[med])
                    # phases: the median over rounds of each phase
                    per = [summarize(*r) for r in rounds]
                    keys = sorted({k for p in per for k in p})
                    phases = {k: float(np.median([p.get(k, 0.0) for p in per])) for k in keys}
                    cpus = [summarize(r[0], r[4], {}) for r in rounds]  # thread CPU seconds, mean over halves
                    ckeys = sorted({k for p in cpus for k in p if k != "python"})
                    cpu_phases = {k: float(np.median([p.get(k, 0.0) for p in cpus])) for k in ckeys}
                    fwd_share = np.median([s[0] for s in shares if s[0] is not None])
                    bwd = [s[1] for s in shares if s[1] is not None]
                    bwd_share = float(np.median(bwd)) if bwd else None
                    result = {"cell": cell, "size": size, "dtype": dtype, "phase": phase,
                              "parallel": bench.parallel("rnnspec-cpu", cell, None, phase, T, B, I, H, K, dtype),
                              "wall_ms": [w * 1e3 for w in walls], "median_ms": float(np.median(walls)) * 1e3,
                              "process_cpu_ms": float(np.median([r[3] for r in rounds])) * 1e3,
                              "thread_cpu_phases_ms": {k: v * 1e3 for k, v in cpu_phases.items()},
                              "torch_ms": [t * 1e3 for t in torch_times],
                              "torch_median_ms": float(np.median(torch_times)) * 1e3,
                              "phases_ms": {k: v * 1e3 for k, v in phases.items()},
                              "median_call_phases_ms": {k: v * 1e3 for k, v in summary.items()},
                              "forward_product_share": float(fwd_share), "bptt_product_share": bwd_share,
                              "load": os.getloadavg()[0]}
                    report["results"].append(result)
                    print(format_result(result), flush=True)
                    if args.json:  # after every result: a long run stopped halfway keeps what it measured
                        with open(args.json, "w") as f:
                            json.dump(report, f, indent=1)
    report["load_after"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


def format_result(r: dict) -> str:
    p = r["phases_ms"]
    total = r["median_ms"]
    lines = [f"{r['cell']} {r['size']} {r['dtype']} {r['phase']} ({r['parallel'] or 'one thread'}): ours "
             f"{total:.2f} ms [{min(r['wall_ms']):.2f}-{max(r['wall_ms']):.2f}] (process CPU "
             f"{r['process_cpu_ms']:.2f} ms), torch {r['torch_median_ms']:.2f} ms "
             f"[{min(r['torch_ms']):.2f}-{max(r['torch_ms']):.2f}], torch/ours {r['torch_median_ms'] / total:.2f}x, "
             f"load {r['load']:.1f}"]
    c = r["thread_cpu_phases_ms"]
    for k, v in sorted(p.items(), key=lambda kv: -kv[1]):
        extra = f"  (thread CPU {c[k]:.3f})" if k in c else ""
        if k == "forward recurrence":
            s = r["forward_product_share"]
            extra += f"  = products {v * s:.2f} + gate math/loop {v * (1 - s):.2f}"
        if k == "bptt recurrence" and r["bptt_product_share"] is not None:
            s = r["bptt_product_share"]
            extra += f"  = products {v * s:.2f} + gate math/loop {v * (1 - s):.2f}"
        lines.append(f"    {k:40s} {v:9.3f} ms {100 * v / total:5.1f}%{extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
