"""The machine's peak floating-point rate, measured in the run that quotes a percentage of it
(``rnnspec bench`` measures it before and after its rows and keeps the better of each).

The best of three measurements, each the best of a few calls (a peak, so the fastest call counts):
- ``numpy_gemm``: NumPy's matmul at n = 2048;
- ``kernels_gemm``: the GEMM the kernels call (Numba's np.dot, SciPy's OpenBLAS) at n = 2048;
- ``fma_microkernel``: CHAINS independent chains of v = v a + b in vector registers (llvm.fma on
  VECTOR_BYTES vectors; :mod:`simd`), on every core at once: the FMA units' own rate. The loop it
  replaced left the vectors' width to LLVM, which chose 32 bytes on the Zen 4 VM: 110 GFLOP/s float32
  against 219 for these chains and 195-205 for the GEMMs, measured side by side.
"""

from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnspec.kernels.cpu.bench import timings
from rnnspec.kernels.cpu.blas import dot_into
from rnnspec.kernels.cpu.simd import REGISTER_BYTES, REGISTERS, VECTOR_BYTES, WIDEST, fma_function, spread
from rnnspec.kernels.cpu.tuning import cores
from rnnspec.kernels.numba_cache import keyed_by_source

GEMM_N = 2048
CALLS = 5


#: chains per core: twice the registers row_times sums in, to cover the FMA's latency on every pipe, but no more
#: than the registers hold beside a, b and two spare: 16 on AVX-512; 6 on AVX2, where each 64-byte vector takes
#: two of its 16 registers. 8 there took 17 registers and spilled in the loop, which halved the rate (seen on an
#: AVX2-only Zen 3: 130 GFLOP/s float32 against 160-177 for the GEMMs; see tests/test_simd.py)
CHAINS = min(2 * WIDEST, (REGISTERS - 4) * REGISTER_BYTES // VECTOR_BYTES)


@intrinsic
def _fma_chains(typingctx, x, repeats):
    """x (CHAINS L,) C-contiguous, L = VECTOR_BYTES / itemsize: every entry through ``repeats`` steps of
    v = v a + b (a = 0.999, b = 0.001: 1 is the fixed point, so the values stay normal), held in CHAINS
    vector registers."""
    if not (isinstance(x, types.Array) and x.layout == "C" and x.dtype in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        size = x.dtype.bitwidth // 8
        scalar = context.get_data_type(x.dtype)
        vector = ir.VectorType(scalar, VECTOR_BYTES // size)
        fma = fma_function(builder, vector)
        data = builder.bitcast(context.make_array(x)(context, builder, args[0]).data, vector.as_pointer())
        slots = [builder.gep(data, [ir.Constant(ir.IntType(64), i)]) for i in range(CHAINS)]
        values = [cgutils.alloca_once_value(builder, builder.load(slot, align=size)) for slot in slots]
        a, b = (spread(builder, ir.Constant(scalar, v), vector) for v in (0.999, 0.001))
        with cgutils.for_range(builder, args[1]):
            for value in values:
                builder.store(builder.call(fma, [builder.load(value), a, b]), value)
        for value, slot in zip(values, slots):
            builder.store(builder.load(value), slot, align=size)
        return context.get_dummy_value()

    return types.void(x, repeats), codegen


# loaded by the benchmark alone, after the kernels: its cache is keyed as theirs is (numba_cache), so that an edit
# of simd.py, whose intrinsics it compiles in, is never run from a stale cache
with keyed_by_source():
    @njit(cache=True, nogil=True)
    def _chains(x, repeats):
        _fma_chains(x, repeats)


def _best_rate(call, flop: float) -> float:
    return flop / min(timings(call, CALLS)) / 1e9


def fma_rate(dtype: str, repeats: int = 2_000_000) -> float:
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    blocks = [np.ones(CHAINS * lanes, dtype) for _ in range(cores())]
    _chains(blocks[0], 1)

    def call():
        threads = [threading.Thread(target=_chains, args=(b, repeats)) for b in blocks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return _best_rate(call, 2.0 * CHAINS * lanes * repeats * len(blocks))


def measure(dtype: str) -> dict[str, float]:
    """GFLOP/s of each measurement, and their best as ``peak_gflops``."""
    a = np.random.default_rng(1).standard_normal((GEMM_N, GEMM_N)).astype(dtype)
    out = np.empty_like(a)
    flop = 2.0 * GEMM_N**3
    rates = {"numpy_gemm": _best_rate(lambda: np.matmul(a, a, out=out), flop),
             "kernels_gemm": _best_rate(lambda: dot_into(a, a, out), flop),
             "fma_microkernel": fma_rate(dtype)}
    return {**rates, "peak_gflops": max(rates.values())}


def best(*measurements: dict[str, float]) -> dict[str, float]:
    """Each rate's best over several measurements (say, before and after a benchmark)."""
    return {key: max(m[key] for m in measurements) for key in measurements[0]}
