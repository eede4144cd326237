"""Host-side helpers that every cell's CUDA kernels share: the device's size, the call wrapper, and
matrix products split where the GPU would otherwise sit idle."""

from __future__ import annotations

import functools
import math
from functools import cache

from rnnspec.kernels.cuda.arrays import scratch
from rnnspec.kernels.cuda.elman import column_sums
from rnnspec.kernels.cuda.gemm import matmul_into, splits_for
from rnnspec.kernels.cuda.launches import launch
from rnnspec.kernels.numpy_compat import cuda_module

cuda = cuda_module()


@cache
def multiprocessors() -> int:
    """The current device's multiprocessors (1 under the simulator)."""
    return int(getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1))


def one_context_no_release_midway(function):
    """Two costs of numba-cuda's host side, kept out of a call:

    - numba-cuda frees released device memory in batches, and cuMemFree waits for the device: not
      inside a call, where it would stop the host from queueing launches while a kernel runs;
    - every numba-cuda operation (an allocation, a view, a launch) looks the active CUDA context up
      through the driver unless one is attached to the thread: attached once for the whole call.
    """

    @functools.wraps(function)
    def call(*args, **kwargs):
        with cuda.defer_cleanup():
            return function(*args, **kwargs)

    from numba.cuda.cudadrv.devices import require_context  # the simulator's is a no-op

    return require_context(call)


def product_into(A, B, C, trans_a: bool = False, trans_b: bool = False, role: str = "") -> None:
    """C = op(A) @ op(B), the inner dimension split over blocks when that fills the GPU; ``role``
    names the scratch that holds the partial products."""
    inner = A.shape[0] if trans_a else A.shape[1]
    splits = splits_for((C.shape,), inner, multiprocessors())
    matmul_into(A, B, C, trans_a, trans_b, splits, parts_for(role, splits, C))


def parts_for(role: str, splits: int, C):
    """Scratch for the partial products of a split product, None when unsplit."""
    return scratch(f"{role} parts", (splits, *C.shape), C.dtype) if splits > 1 else None


def column_sums_into(rows, out) -> None:
    """out[j] = sum_i rows[i, j], in order of i."""
    launch(column_sums, math.ceil(rows.shape[1] / 128), 128, rows, out)
