"""Per-thread arrays the CPU kernels reuse between calls: scratch (:func:`workspace`, never returned to the
caller), on cache lines (:func:`aligned_empty`), and the block a call's results leave in (:func:`result_block`),
reused once the caller has dropped them."""

from __future__ import annotations

import math
import sys
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


def _count_held_by_the_cache_only() -> int:
    """sys.getrefcount of an array held by a dict and a local name only, asked as :func:`result_block` asks it:
    measured, not assumed, since interpreters count differently (CPython 3.14 borrows a local passed to a call,
    one reference fewer than 3.10-3.13's 3)."""
    cache = {0: np.empty(0)}
    block = cache.get(0)
    return sys.getrefcount(block)


#: what a block's count of references is when nothing but result_block's cache and its local name holds it
_HELD_BY_NOBODY_ELSE = _count_held_by_the_cache_only()


def result_block(shape: tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
    """A new array of ``shape`` (zeros where ``zero``) for a call's results, which leave as it or as views of it;
    or the block this thread handed out last for results of this dtype, where it has this many elements and nothing
    holds it any more (no view of it is alive: each view holds its base, so its count of references says so; a
    count other than the one measured for "nobody else" never reuses), its pages already mapped. A fresh block of a
    few megabytes came from the system as often as not and was faulted in page by page as the call wrote it: the
    LSTM's G5 forward (2 MB of h and c) took 900 page faults a call.

    One block a dtype is kept (a new size replaces it, the old one let go first, so a sequence of sizes keeps no
    more than the last). The block owns its memory (not :func:`aligned_empty`'s view, whose views would hold its
    allocation instead). At worst a block held somewhere is not reused; one is never handed out twice while a view
    of it lives."""
    dtype, size = np.dtype(dtype), math.prod(shape)
    cache = _local.__dict__.setdefault("results", {})
    block = cache.get(dtype)
    if block is not None and block.size == size and sys.getrefcount(block) == _HELD_BY_NOBODY_ELSE:
        if zero:
            block.fill(0)
        return block.reshape(shape)
    block = None  # the last block (the caller's now, if anyone's) let go before the new one is made
    cache.pop(dtype, None)
    block = cache[dtype] = (np.zeros if zero else np.empty)(size, dtype)
    return block.reshape(shape)
