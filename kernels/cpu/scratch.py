"""Per-thread scratch arrays the CPU kernels reuse between calls (never returned to the caller)."""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def workspace(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread scratch array, reused while the shape stays the same.

    Fresh allocations of tens of megabytes cost their page faults on every call (measured ~10% of
    a large training step).
    """
    cache = _local.__dict__.setdefault("arrays", {})
    array = cache.get(name)
    if array is None or array.shape != shape or array.dtype != dtype:
        array = cache[name] = np.empty(shape, dtype)
    return array
