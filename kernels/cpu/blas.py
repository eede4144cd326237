"""Which BLAS kernels the CPU kernels' matrix products run, and choosing the best one safely.

Numba's ``np.dot`` calls SciPy's OpenBLAS (``scipy.linalg.cython_blas``), a library apart from
NumPy's. OpenBLAS picks its kernels once, when it loads, from the CPU it detects, or from
``OPENBLAS_CORETYPE``. On some AVX-512 machines it detects an AVX2 core (an AMD EPYC read as
"Haswell") and runs kernels at about half the float32 rate (227-238 against 434-455 GFLOP/s measured
on one such machine). So, when this module loads SciPy's BLAS and

- the user has not set ``OPENBLAS_CORETYPE`` (their choice wins) nor ``RNNSPEC_OPENBLAS=default``,
- SciPy's BLAS is not loaded yet (it cannot be changed once loaded),
- NumPy's OpenBLAS reports an AVX2 core (Haswell, Zen) while the CPU reports every AVX-512 feature
  OpenBLAS's SkylakeX kernels use (avx512f, avx512cd, avx512bw, avx512dq, avx512vl),

it sets ``OPENBLAS_CORETYPE=SKYLAKEX`` for the moment SciPy's BLAS loads, then restores the
environment. NumPy's own BLAS is never touched, whichever was imported first. ``report()`` says what
each library runs, for every benchmark.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import importlib
import os
import sys
import threading
from collections.abc import Iterator

import numpy as np
from numba import njit

from rnnspec.kernels.cpu import tuning

AVX512_NEEDED = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")
AVX2_CORES = ("haswell", "zen")
FORCED = "SKYLAKEX"

#: what prepare() did, for report()
_decision = {"forced": None, "why": "not prepared"}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux), read once: prepare() and simd.WIDEST both ask at import."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _library(package: str):
    """The OpenBLAS shared library bundled with ``package`` (numpy or scipy), loaded, or None."""
    module = sys.modules.get(package)
    if module is None or not getattr(module, "__file__", None):
        return None
    site = os.path.dirname(os.path.dirname(module.__file__))
    for path in sorted(glob.glob(os.path.join(site, f"{package}.libs", "*openblas*.so*"))):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def core_name(package: str) -> str | None:
    """The core type whose kernels ``package``'s OpenBLAS runs ("SkylakeX", "Haswell"), or None when
    that library is not a loaded OpenBLAS that says."""
    library = _library(package)
    for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                   "openblas_get_corename"):
        function = getattr(library, symbol, None) if library is not None else None
        if function is not None:
            function.restype = ctypes.c_char_p
            return function().decode()
    return None


def decide(numpy_core: str | None, flags: set[str], environ: dict, scipy_loaded: bool) -> tuple[str | None, str]:
    """(the core type to force on SciPy's BLAS or None, why)."""
    if "OPENBLAS_CORETYPE" in environ:
        return None, f"OPENBLAS_CORETYPE={environ['OPENBLAS_CORETYPE']} set by the user"
    if environ.get("RNNSPEC_OPENBLAS") == "default":
        return None, "RNNSPEC_OPENBLAS=default"
    if scipy_loaded:
        return None, "SciPy's BLAS was loaded before rnnspec.kernels: its detection stands"
    missing = [f for f in AVX512_NEEDED if f not in flags]
    if missing:
        return None, f"the CPU lacks {', '.join(missing)}"
    if numpy_core is None or numpy_core.lower() not in AVX2_CORES:
        return None, f"OpenBLAS detects {numpy_core or 'an unknown core'}: nothing better to choose"
    return FORCED, f"OpenBLAS detects {numpy_core} on a CPU with AVX-512"


def prepare() -> None:
    """Load SciPy's BLAS (what Numba's np.dot calls) with the best safe core type; idempotent."""
    if _decision["why"] != "not prepared":
        return
    # NumPy's BLAS has loaded (this module imports NumPy), with the environment as the user left it
    loaded = "scipy.linalg.cython_blas" in sys.modules
    forced, why = decide(core_name("numpy"), cpu_flags(), dict(os.environ), loaded)
    _decision.update(forced=forced, why=why)
    if forced is None:
        importlib.import_module("scipy.linalg.cython_blas")
        return
    os.environ["OPENBLAS_CORETYPE"] = forced
    try:
        importlib.import_module("scipy.linalg.cython_blas")
    finally:
        del os.environ["OPENBLAS_CORETYPE"]


def report() -> dict:
    """What each BLAS runs and why: for the head of every benchmark report."""
    return {"numpy_blas_core": core_name("numpy"), "kernels_blas_core": core_name("scipy"),
            "kernels_blas_forced": _decision["forced"], "why": _decision["why"]}


@njit(cache=True)
def dot_into(a, b, out):
    """out = a @ b through the kernels' BLAS (SciPy's OpenBLAS, as Numba's np.dot calls it)."""
    np.dot(a, b, out)


@njit(cache=True)
def _dot(a, b):
    return np.dot(a, b)


def kernels_blas_is_better() -> bool:
    """True where prepare() gave SciPy's BLAS (the kernels') better kernels than NumPy's."""
    return _decision["forced"] is not None


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b (into ``out``) through the better of the two BLAS libraries: NumPy's unless prepare()
    gave the kernels' better kernels. For loops that run in Python around the products (the Elman
    kernels' large regime), which keep to one library per call: the two keep separate spinning
    thread pools, and alternating between them was measured 2.5x slower on 2 cores."""
    if not kernels_blas_is_better():
        return np.matmul(a, b, out=out)
    if out is None:
        return _dot(a, b)
    dot_into(a, b, out)
    return out


#: OpenBLAS's GEMM for these core types (SkylakeX and its successors) sends a product of M N K up to
#: ``blas.small_kernel_mnk`` (:mod:`tuning`) to its "small matrix" kernels, which skip the packing of A and B.
#: A step's product (few rows, B = the recurrent weights) packs all of W at every call otherwise.
SMALL_KERNEL_CORES = ("skylakex", "cooperlake", "sapphirerapids")


@functools.cache
def has_small_kernels() -> bool:
    """Whether the kernels' BLAS runs kernels that have the small-matrix path (read once: it loads once)."""
    prepare()
    core = core_name("scipy")
    return core is not None and core.lower() in SMALL_KERNEL_CORES


def small_kernel_mnk() -> int:
    """``blas.small_kernel_mnk`` where the kernels' BLAS runs kernels that have the small-matrix path, else 0."""
    return int(tuning.value("blas.small_kernel_mnk")) if has_small_kernels() else 0


def rows_per_call(rows: int, inner: int, cols: int, one_thread: bool) -> int:
    """How many rows of a (rows, inner) by (inner, cols) product each BLAS call takes (loops.matmul_into).

    On one thread (``one_thread``, or SciPy's OpenBLAS set to one): as many as keep a call on the
    small-matrix kernels, in multiples of ``blas.row_multiple`` and spread evenly over the calls. All of them
    in one call where even that many rows would not fit, where the BLAS has no such kernels, or where
    OpenBLAS may use its threads: the small-matrix kernels run on one, and at 32-64 rows two threads on
    the packed path ran as fast or faster (64 x 128 by 128 x 384: 42-45 us against 56 us in calls of 16
    rows, 75 us in one call on one thread)."""
    if not one_thread and threads() != 1:
        return max(rows, 1)
    limit = small_kernel_mnk()
    multiple = int(tuning.value("blas.row_multiple"))
    most = (limit // max(inner * cols, 1)) // multiple * multiple
    if most == 0 or rows <= most:
        return max(rows, 1)
    calls = -(-rows // most)
    even = -(-rows // calls)
    return -(-even // multiple) * multiple


def transposed_wins(dtype: np.dtype, rows: int, weight_bytes: int) -> bool:
    """Whether a step's product of ``rows`` rows by a W of ``weight_bytes`` runs as (W a^T)^T
    (loops.step_product; the same bits either way): float32 (float64 lost nearly everywhere), between
    ``blas.transposed_min_rows`` and ``blas.transposed_max_rows`` rows, a W of ``blas.transposed_min_bytes``
    or more (:mod:`tuning`; never, unmeasured, off the BLAS kernels it was measured on)."""
    value = tuning.value
    return (dtype == np.float32 and value("blas.transposed_min_rows") <= rows <= value("blas.transposed_max_rows")
            and weight_bytes >= value("blas.transposed_min_bytes"))


#: (set, get) thread-count functions, by the names OpenBLAS builds export them under
_THREAD_COUNT = (("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                 ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                 ("openblas_set_num_threads", "openblas_get_num_threads"),
                 ("openblas_set_num_threads64_", "openblas_get_num_threads64_"))
_one_thread = {"lock": threading.Lock(), "depth": 0, "before": None}


@functools.cache
def _thread_count_functions():
    """(set, get, shutdown) of SciPy's OpenBLAS; (None, None, None) where it exports no thread count."""
    library = _library("scipy")
    for set_name, get_name in _THREAD_COUNT:
        setter, getter = getattr(library, set_name, None), getattr(library, get_name, None)
        if setter is not None and getter is not None:
            setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
            shutdown = getattr(library, "blas_thread_shutdown_", None)
            if shutdown is not None:
                shutdown.restype = ctypes.c_int
            return setter, getter, shutdown
    return None, None, None


def threads() -> int:
    """The threads SciPy's OpenBLAS may use now (0 where it does not say)."""
    getter = _thread_count_functions()[1]
    return getter() if getter is not None else 0


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """SciPy's OpenBLAS (the kernels' BLAS) on one thread while inside, its count restored after.

    For the two-thread recurrences (:mod:`split`), which call BLAS from both of their threads: a
    multi-threaded call would wake OpenBLAS's own workers, and those spin for a while after each call,
    on the cores the recurrence's two threads are using (measured: 164 against 51 ms a training call);
    so on entry the pool's workers are also ended (OpenBLAS starts them again at its next threaded
    call, as it does after a fork). The count is process-wide in OpenBLAS, so other threads' BLAS calls
    meanwhile run on one thread too.
    Nested and concurrent uses restore the count once, when the last leaves."""
    setter, getter, shutdown = _thread_count_functions()
    if setter is None:
        yield
        return
    state = _one_thread
    with state["lock"]:
        if state["depth"] == 0:
            state["before"] = getter()
            setter(1)
            if shutdown is not None:
                shutdown()  # ends the pool's workers, which would otherwise spin on, after an earlier call
        state["depth"] += 1
    try:
        yield
    finally:
        with state["lock"]:
            state["depth"] -= 1
            if state["depth"] == 0:
                setter(state["before"])
