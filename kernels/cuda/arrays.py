"""Device memory for the CUDA kernels: the caller's arrays in, scratch arrays reused across calls.

Arguments arrive as NumPy arrays (copied to the device), numba device arrays, or any object with
``__cuda_array_interface__`` (a CuPy array, a CUDA torch tensor: viewed, not copied). The kernels
index C-contiguous arrays and reshape them, which a strided device array cannot do without a copy,
so a strided one is copied on the device into a contiguous array; the caller's array is only read.

Scratch: an allocation (cuMemAlloc) costs host time on every call, and numba-cuda releases freed
arrays in batches with cuMemFree, which waits for the device to go idle: a release that falls in
the middle of a call stops the host from queueing the next launches while a recurrence kernel runs.
The arrays that never leave a call (the states kept for the backward pass, the deltas, the partial
products of split matrix products, the loss's residuals) are therefore kept, one per role, per
thread and per device, and reallocated only when the shape or dtype changes; ``release_scratch``
gives them back. All launches go to the default stream, so a later call cannot overwrite scratch
that an earlier one still reads.

Arrays returned to the caller are always fresh: all of one call's come out of one new allocation
(``fresh_arrays``), as views, and go back to the host in one transfer (``copied_to_host``).
"""

from __future__ import annotations

import math
import threading
from functools import cache

import numpy as np

from rnnspec.kernels.checks import on_device
from rnnspec.kernels.cuda.launches import configured
from rnnspec.kernels.numpy_compat import SIMULATED, cuda_module

cuda = cuda_module()
if not SIMULATED:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

#: reuse scratch arrays across calls; the GPU benchmark turns this off to measure what reuse saves
REUSE_SCRATCH = True
_THREAD = threading.local()
_BLOCK = 128
_ALIGN = 256  # bytes: what cuMemAlloc gives each allocation, kept for each array carved out of one


def imported(value):
    """A numba device array viewing a ``__cuda_array_interface__`` object; anything else unchanged.
    (numba device arrays are returned as they are; the simulator has no other kind of device array.)"""
    if not hasattr(value, "copy_to_host") and hasattr(value, "__cuda_array_interface__"):
        return cuda.as_cuda_array(value)  # (a numba array builds its interface dict on every access)
    return value


@cache
def _strided_copy(ndim: int):
    """kernel(src, dst): dst[i] = src[i] for every index, src of any strides, one thread per entry."""
    if ndim == 1:
        @cuda.jit
        def copy1(src, dst):
            i = cuda.grid(1)
            if i < dst.shape[0]:
                dst[i] = src[i]
        return copy1
    if ndim == 2:
        @cuda.jit
        def copy2(src, dst):
            n = cuda.grid(1)
            if n < dst.size:
                i, j = n // dst.shape[1], n % dst.shape[1]
                dst[i, j] = src[i, j]
        return copy2

    @cuda.jit
    def copy3(src, dst):
        n = cuda.grid(1)
        if n < dst.size:
            plane = dst.shape[1] * dst.shape[2]
            i, rest = n // plane, n % plane
            j, k = rest // dst.shape[2], rest % dst.shape[2]
            dst[i, j, k] = src[i, j, k]
    return copy3


def contiguous(value):
    """The value as a C-contiguous device array: a NumPy array is copied to the device, a strided
    device array is copied on the device, a contiguous device array is returned as it is."""
    if not on_device(value):
        return cuda.to_device(np.ascontiguousarray(value))
    if value.is_c_contiguous():
        return value
    out = cuda.device_array(value.shape, value.dtype)
    if out.size:
        configured(_strided_copy(value.ndim), math.ceil(out.size / _BLOCK), _BLOCK)(value, out)
    return out


def _device_key() -> int:
    return int(getattr(cuda.get_current_device(), "id", 0))


def scratch(role: str, shape: tuple[int, ...], dtype) -> object:
    """An uninitialised device array for ``role`` that stays this call's own until the next call
    on this thread and device asks for the same role (which gets it again if the shape and dtype
    are the same and REUSE_SCRATCH is on, else a fresh one); never return it to the caller."""
    shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
    arrays = _THREAD.__dict__.setdefault("arrays", {})
    key = (_device_key(), role)
    array = arrays.get(key)
    if not REUSE_SCRATCH or array is None or array.shape != shape or array.dtype != dtype:
        arrays.pop(key, None)  # release the old one before allocating its replacement
        array = arrays[key] = cuda.device_array(shape, dtype)
    return array


def scratch_view(role: str, name: str, make):
    """``make(scratch array of role)``, a view of it (a reshape, a slice), made once per scratch
    array: a numba device array view costs host time on every call (tens of microseconds, against
    a recurrence step of under one). ``name`` tells the views of one role apart; the shape a view
    has is fixed by the array it views, so a reallocated scratch array gets new views."""
    key = (_device_key(), role)
    base = _THREAD.arrays[key]
    views = _THREAD.__dict__.setdefault("views", {})
    kept = views.get((key, name))
    if kept is None or kept[0] is not base:
        kept = views[(key, name)] = (base, make(base))
    return kept[1]


def scratch_bytes() -> int:
    """Bytes of scratch this thread holds, over all devices."""
    return sum(a.size * a.dtype.itemsize for a in getattr(_THREAD, "arrays", {}).values())


def release_scratch() -> None:
    """Give back this thread's scratch arrays (numba-cuda frees them at its next cleanup)."""
    for kept in ("arrays", "views"):
        getattr(_THREAD, kept, {}).clear()


class FreshArrays(dict):
    """name -> a new C-contiguous device array, all carved out of ``buffer`` (bytes on the device)."""

    buffer: object
    offsets: dict


def fresh_arrays(shapes: dict[str, tuple[int, ...]], dtype) -> FreshArrays:
    """New device arrays of these shapes and one dtype for the caller, carved out of one allocation
    at 256-byte boundaries: a call's results cost one allocation (and later one release), not one
    each. Each array keeps the whole allocation alive, as any numba-cuda view of an array does."""
    dtype = np.dtype(dtype)
    arrays, offsets, end = FreshArrays(), {}, 0
    for name, shape in shapes.items():
        offsets[name] = end
        end += -(-math.prod(shape) * dtype.itemsize // _ALIGN) * _ALIGN
    arrays.buffer = buffer = cuda.device_array(max(end, 1), np.uint8)
    arrays.offsets = offsets
    for name, shape in shapes.items():
        start, size = offsets[name], math.prod(shape)
        if SIMULATED:  # its device arrays wrap NumPy arrays: a view of the buffer's
            arrays[name] = type(buffer)(buffer._ary[start:start + size * dtype.itemsize].view(dtype).reshape(shape))
        else:  # as numba-cuda's own slicing of a device array makes one
            strides = tuple(math.prod(shape[k + 1:]) * dtype.itemsize for k in range(len(shape)))
            data = buffer.gpu_data.view(start, start + size * dtype.itemsize)
            arrays[name] = DeviceNDArray(shape, strides, dtype, gpu_data=data)
    return arrays


def copied_to_host(arrays: FreshArrays, shapes: dict[str, tuple[int, ...]] | None = None) -> dict:
    """The arrays of one ``fresh_arrays`` call as NumPy arrays, in one transfer, each reshaped to
    ``shapes[name]`` where given."""
    host = arrays.buffer.copy_to_host()
    shapes = shapes or {}
    out = {}
    for name, array in arrays.items():
        start = arrays.offsets[name]
        values = host[start:start + array.size * array.dtype.itemsize].view(array.dtype)
        out[name] = values.reshape(shapes.get(name, array.shape))
    return out
