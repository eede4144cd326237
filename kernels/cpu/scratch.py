"""Per-thread scratch arrays the CPU kernels reuse between calls (never returned to the caller)."""

from __future__ import annotations

import math
import threading

import numpy as np

_local = threading.local()

#: bytes: a cache line. A vector load of a row that starts on one never straddles two lines; NumPy's own
#: allocations start 16 bytes past one as often as not, and the B = 1 step product over the split's packed W^T
#: (LSTM, H = 256, float32: 1000 steps of 1 x 256 by 256 x 512) took 5.5-5.8 ms from there against 4.1 aligned
#: (benchmarks/cpu_issue37/README.md)
ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A new uninitialized C-contiguous array whose first element starts on an ALIGNMENT-byte boundary: a view
    into a slightly larger allocation, which it keeps alive."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def workspace(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread scratch array, reused while the shape stays the same; it starts on a cache line
    (:func:`aligned_empty`).

    Fresh allocations of tens of megabytes cost their page faults on every call (measured ~10% of
    a large training step).
    """
    cache = _local.__dict__.setdefault("arrays", {})
    array = cache.get(name)
    if array is None or array.shape != shape or array.dtype != dtype:
        array = cache[name] = aligned_empty(shape, dtype)
    return array
