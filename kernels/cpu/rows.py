"""A batch's rows in two halves on two threads, for the gated cells and Elman at mid-sized batches.

The rows of a batch never meet in the recurrence: row r's h_t reads only row r's h_{t-1}. So a call
over rows 0..B-1 is two independent calls over the halves R_0 = 0..m-1 and R_1 = m..B-1
(m = B - B // 2), each run whole (forward, head, BPTT, the GEMMs after it) in its own thread with
OpenBLAS on one thread (:func:`blas.one_thread`), and

    h, c, dL/dx, dL/dh0, dL/dc0   = the halves' rows, joined along the batch axis
    loss, dL/dtheta (every weight) = the halves' sums, added

since the loss and every parameter gradient are sums over rows. Why it pays at B = 8-64 with small
weights: a step's product there is a (B, H) by (H, G H) GEMM of a few microseconds, where OpenBLAS's
two threads meet twice a call, and the cell's gate nonlinearities ran on one core while the other
waited; here each core keeps its own copy of W in its cache and nothing crosses between them until
the end. Where it does not: weights larger than a core's L2 (each core would stream all of W every
step; 3 MiB lost 12%, G4's 16 MB 20%, measured), and few rows or short sequences, where the GEMMs before
and after the recurrence dominate and two-thread BLAS runs them as well. The thresholds are
:mod:`tuning`'s ``rows.*``; see benchmarks/cpu_cells/rows/README.md for those measured first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from rnnspec.kernels.cpu import blas, tuning
from rnnspec.kernels.cpu.threads import counter, together
from rnnspec.kernels.cpu.tuning import cores, forced

Arrays = dict[str, np.ndarray]
#: .half is True in a thread while it runs a half: a half never splits again
_local = threading.local()
#: the environment variable that forces the choice: "always" (wherever B >= 2) or "never"
FORCE = "RNNSPEC_CPU_ROWS"
#: the gradients that belong to rows, by their batch axis; every other one (the weights', the head's c
#: too) sums over rows
GRADIENTS = {"x": 1, "h0": 0, "c0": 0}


def wanted(T: int, B: int, weight_bytes: int, flops: float) -> bool:
    """Whether a call of T steps over B rows, with ``weight_bytes`` of recurrent weights and ``flops`` of
    work (work.flops), runs its rows in two halves on two threads: at least ``rows.min_rows`` rows,
    ``rows.min_steps`` steps and ``rows.min_flops``, weights of at most ``rows.max_weight_bytes`` or at least
    ``rows.large_weight_min_rows`` rows (thresholds of :mod:`tuning`, measured on this machine or its safe ones),
    two cores free to the process, or as FORCE says."""
    if not possible(T, B):
        return False
    force = forced(FORCE)
    if force is not None:
        return force
    value = tuning.value
    return (B >= value("rows.min_rows") and T >= value("rows.min_steps") and flops >= value("rows.min_flops")
            and (weight_bytes <= value("rows.max_weight_bytes") or B >= value("rows.large_weight_min_rows"))
            and cores() >= 2)  # the syscall last


def possible(T: int, B: int) -> bool:
    """Whether a call of T steps over B rows could run in halves at all: two rows, a step, and not already in a
    half (a half never splits again). Cheaper than :func:`wanted`'s flop count, which a caller may leave out."""
    return B >= 2 and T > 0 and not getattr(_local, "half", False)


def halves(B: int) -> tuple[slice, slice]:
    """R_0 = 0..m-1 and R_1 = m..B-1, m = B - B // 2."""
    m = B - B // 2
    return slice(0, m), slice(m, B)


def run(call: Callable, arguments: Sequence[tuple]) -> list:
    """[call(*arguments[0]), call(*arguments[1])] on two threads, OpenBLAS held on one thread meanwhile."""
    def half(*args):
        _local.half = True
        try:
            return call(*args)
        finally:
            _local.half = False

    with blas.one_thread():
        return together(half, arguments, counter())


def join(results: Sequence[Arrays], batch_axes: dict[str, int]) -> Arrays:
    """The halves' arrays as one call's: those named in ``batch_axes`` joined along that axis, the rest added."""
    first, second = results
    return {key: np.concatenate([value, second[key]], axis=batch_axes[key]) if key in batch_axes
            else value + second[key] for key, value in first.items()}
