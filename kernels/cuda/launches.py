"""Kernel launches for the CUDA kernels, through a leaner path than numba-cuda's (LEAN_LAUNCH).

numba-cuda prepares every argument in Python at every launch: it types the arguments to pick the
compiled overload, wraps each array and builds its parameters, and makes a launch configuration (its
own issue: NVIDIA/numba-cuda#477). On the H200 machine of benchmarks/gpu_run_3.txt a warm
forward+backward call at (1000, 1, 64, 64) spent 1.4 ms of host time, about half of it in its six
launches, against 0.9 ms of GPU work.

The lean path does that work once per (kernel, launch shape, kinds of arguments): the compiled
overload that numba-cuda picked at the first launch, its CUfunction, the launch configuration. Each
later launch only lays the arrays out as numba-cuda's ``_Kernel._prepare_args`` does (meminfo,
parent, size, itemsize, data, shape..., strides... per array; a bool as it is) and calls cuda.core's
``launch``, as numba-cuda does. Timed on an H100 (benchmarks/gpu_run_4.txt, same run as cuDNN): a
warm forward+backward call at (1000, 1, 64, 64) took 1.24 ms through it against 1.41 ms through
numba-cuda, and 0.61 ms against 1.28 ms at (100, 32, 64, 128); on the GPU its results are tested
against the CPU kernels (tests/test_cuda.py) and the bench checks every size. A launch it cannot
plan goes through numba-cuda, and under the simulator every launch does.
"""

from __future__ import annotations

import functools

from rnnspec.kernels.numpy_compat import SIMULATED, cuda_module

cuda = cuda_module()

#: launch through the lean path rather than numba-cuda's configured launch (a GPU only)
LEAN_LAUNCH = True
#: launch key -> its plan (a tuple), or why it could not be planned (a str: it goes through numba-cuda)
_PLANS: dict = {}


def lean_launch_plans() -> dict:
    """What the lean path has made of the launches so far: how many kinds of launch it planned,
    and why it left any to numba-cuda (each reason once)."""
    return {"planned": sum(isinstance(p, tuple) for p in _PLANS.values()),
            "fell_back": sorted({p for p in _PLANS.values() if isinstance(p, str)})}


def configured(kernel, grid, block):
    """``kernel[grid, block]``, made once per configuration on a GPU: numba-cuda's launch
    configuration object checks the grid's size and warns on every creation, which costs host time
    per launch. (The simulator's ``kernel[grid, block]`` configures and returns the kernel itself,
    so there a kept configuration would change under its keeper: made anew every time.)"""
    if SIMULATED:
        return kernel[grid, block]
    return _kept_configuration(kernel, grid, block)


@functools.lru_cache(maxsize=512)
def _kept_configuration(kernel, grid, block):
    return kernel[grid, block]


def launch(kernel, grid, block, *args) -> None:
    """kernel[grid, block](*args): through the lean path where LEAN_LAUNCH is on and a plan for
    these kinds of arguments exists, else through numba-cuda (which compiles at the first launch)."""
    if not LEAN_LAUNCH or SIMULATED:
        configured(kernel, grid, block)(*args)
        return
    key = (kernel, grid, block, tuple(_kind(a) for a in args))
    plan = _PLANS.get(key)
    if not isinstance(plan, tuple):  # not planned yet (None), or not plannable (why): numba-cuda's launch
        configured(kernel, grid, block)(*args)
        if plan is None:
            try:
                _PLANS[key] = _plan(kernel, grid, block, args)
            except (KeyError, AttributeError) as exc:  # an overload or an attribute this numba-cuda lacks
                _PLANS[key] = f"{getattr(kernel, '__name__', kernel)}: {type(exc).__name__}: {exc}"
        return
    function, config, stream, core_launch = plan
    core_launch(stream, config, function, *parameters(args))


def _kind(value) -> tuple | str:
    """What selects the compiled overload: a bool, or an array's dtype, dimensions and contiguity."""
    if isinstance(value, bool):
        return "bool"
    return value.dtype.str, value.ndim, value.is_c_contiguous()


def parameters(args) -> list:
    """The kernel parameters of ``args`` (device arrays and bools), laid out as numba-cuda's
    ``_Kernel._prepare_args`` lays them out for the same argument types."""
    out = []
    for value in args:
        if isinstance(value, bool):
            out.append(value)
            continue
        view = value._strided_memory_view_shim  # numba-cuda's own view of a device array (cached on it)
        out += (0, 0, view.size, view.dtype.itemsize, view.ptr, *view.shape, *view._layout.strides_in_bytes)
    return out


def _plan(kernel, grid, block, args):
    """(CUfunction, LaunchConfig, stream, cuda.core launch) for launches like this one, from the
    overload numba-cuda compiled for these argument types."""
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import driver
    from numba.cuda.errors import normalize_kernel_dimensions

    compiled = kernel.overloads[tuple(kernel.typeof_pyval(a) for a in args)]
    griddim, blockdim = normalize_kernel_dimensions(grid, block)
    cooperative = {"is_cooperative" if dispatcher.CUDA_CORE_GE_1_0 else "cooperative_launch": compiled.cooperative}
    config = dispatcher.LaunchConfig(grid=griddim, block=blockdim, shmem_size=0, **cooperative)
    return compiled._codelibrary.get_cufunc().kernel, config, driver._to_core_stream(0), dispatcher.launch
