"""Elementwise functions the CPU kernels share, written so that LLVM vectorizes the loops around them.

libm's expf and tanhf are scalar calls that stop a loop from vectorizing, so float32 uses:
- ``tanh32``: a rational approximation (Eigen's float tanh): p(v)/q(v) after clamping, within
  3.4e-7 relative (measured on 2M points);
- ``exp32``: Cody-Waite reduction v = k ln2 + r, a degree-6 polynomial (Cephes' expf) for e^r, and
  2^k built from its bits; within 2 ulps on [-87, 88] (tests/test_gated_kernels.py measures it);
- ``sigmoid32`` = 1 / (1 + exp32(-v)): accurate for gates driven shut, where 0.5 + 0.5 tanh(v / 2)
  would lose every digit to cancellation.
and float64's gates (``sigmoid``, ``tanh``) likewise, from Cephes' double-precision forms (libm's exp and
tanh are scalar calls there too: the LSTM's forward step took 50 ns a hidden unit in float64 against 3.5 in
float32, benchmarks/cpu_profile_issue37.md):
- ``exp64``: Cody-Waite reduction as exp32's, then e^r = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)) (Cephes' exp),
  and 2^k from its bits; within 1 ulp of libm's on [-708, 709] (tests/test_gated_kernels.py measures it);
- ``tanh64``: below |v| = 0.625 v + v^3 P(v^2) / Q(v^2) (Cephes' tanh), above 1 - 2 / (e^{2|v|} + 1) with
  the sign of v, both computed and one selected, so that the loop stays free of branches.
``exp`` (the softmax's) keeps libm in float64. ``sigmoid``, ``tanh`` and ``exp`` pick by the argument's
type when Numba compiles, so no branch is left in the loops.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

#: the jit options of the loops that evaluate the gates (every cell's steps, forward and BPTT): the other loops',
#: and LLVM may fuse a * b + c into one FMA (fastmath's "contract" only: no reordering, no approximation). Without
#: it every step of these polynomials was a multiply and an add: the LSTM's float32 step took 4.2 against 3.05 ns a
#: hidden unit (B = 16, H = 128, benchmarks/cpu_issue37/README.md). The functions here are inlined into those loops
#: and take their options; the accuracy tests measure them so compiled.
GATE_LOOPS = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}

# Rational approximation of tanh on [-7.9053, 7.9053] (odd degree-13 / even degree-6 polynomial;
# Eigen's float tanh). Max error 3.4e-7 relative in float32 (measured on 2M points), against
# ~6e-8 for libm's tanhf, but it vectorizes where tanhf cannot.
_TANH_CLAMP = 7.90531110763549805
_TANH_NUM = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
             -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_TANH_DEN = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
A1, A3, A5, A7, A9, A11, A13 = (np.float32(v) for v in _TANH_NUM)
B0, B2, B4, B6 = (np.float32(v) for v in _TANH_DEN)
CLAMP = np.float32(_TANH_CLAMP)

# exp: e^v = 2^k e^r, k = round(v / ln2), r = v - k ln2 with ln2 split in two (Cody-Waite) so that
# r is exact to float32; e^r on |r| <= ln2 / 2 by Cephes' expf polynomial.
LOG2E = np.float32(1.44269504088896341)
LN2_HI = np.float32(0.693359375)
LN2_LO = np.float32(-2.12194440e-4)
EXP_LOW, EXP_HIGH = np.float32(-87.3), np.float32(88.7)  # e^v stays a normal float32
E0, E1, E2, E3, E4, E5 = (np.float32(v) for v in (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2,
                                                  8.3334519073e-3, 1.3981999507e-3, 1.9875691500e-4))
HALF32, ONE32 = np.float32(0.5), np.float32(1.0)


# Cephes' exp (double): e^r = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)) on |r| <= ln2 / 2, ln2 split in two.
LOG2E64 = 1.4426950408889634073599
LN2_HI64, LN2_LO64 = 6.93145751953125e-1, 1.42860682030941723212e-6
EXP64_LOW, EXP64_HIGH = -708.0, 709.0  # 2^k stays a normal float64 (k in -1022..1023)
P0, P1, P2 = 1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1
Q0, Q1, Q2, Q3 = 3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1, 2.0
# Cephes' tanh (double) below 0.625: v + v^3 P(v^2) / Q(v^2), Q monic
TP0, TP1, TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
TQ1, TQ2, TQ3 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3
#: tanh(v) rounds to 1 in float64 from |v| = 19.1; e^(2 * 20) stays far from overflow
TANH64_CLAMP = 20.0


@intrinsic
def _float64_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 ``bits`` (an LLVM bitcast, which vectorizes)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(cache=True, inline="always", error_model="numpy")
def exp64(v):
    """e^v for float64 v (e^-708 below -708, e^709 above 709)."""
    v = min(max(v, EXP64_LOW), EXP64_HIGH)
    k = np.floor(v * LOG2E64 + 0.5)
    r = v - k * LN2_HI64 - k * LN2_LO64
    rr = r * r
    p = r * ((P0 * rr + P1) * rr + P2)
    e = 1.0 + 2.0 * (p / ((((Q0 * rr + Q1) * rr + Q2) * rr + Q3) - p))
    return e * _float64_from_bits((np.int64(k) + np.int64(1023)) << np.int64(52))


# not inline="always": Numba's inliner left a variable of the selection out of scope (NumbaIRAssumptionWarning);
# LLVM inlines it into the loops all the same (the LSTM's float64 step ran as fast either way, 11-14 ns a unit)
@njit(cache=True, error_model="numpy")
def tanh64(v):
    """tanh(v) for float64 v: the series form below |v| = 0.625, 1 - 2 / (e^{2|v|} + 1) with v's sign above."""
    s = v * v
    small = v + v * s * (((TP0 * s + TP1) * s + TP2) / (((s + TQ1) * s + TQ2) * s + TQ3))
    z = min(abs(v), TANH64_CLAMP)
    large = math.copysign(1.0 - 2.0 / (exp64(2.0 * z) + 1.0), v)
    return small if abs(v) < 0.625 else large


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits`` (an LLVM bitcast, which vectorizes)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _wide_vectors(typingctx):
    """Asks LLVM to vectorize the loops of the function this is inlined into with its widest vectors: the LLVM
    function attribute "prefer-vector-width"="512". On AVX-512 CPUs LLVM otherwise prefers 256 bits (its tuning
    for Intel cores since Skylake-SP), and every float32 gate loop ran on ymm registers. The LSTM's float32 step
    took 4.65-4.82 against 5.85-5.92 us at 16 x 128 units and 157 against 191 at 64 x 1024, the reset-after GRU's
    3.3 against 3.7 and 111 against 116, with the same bits (benchmarks/cpu_issue37/README.md, "Projections by
    panels, wide vectors").
    Where the CPU has no 512-bit vectors the attribute changes nothing. exp32 and tanh32 call it, so every loop
    that inlines them (the forward steps) takes it; the BPTT steps evaluate none and are left as they were: there
    the wide loops ran no faster in float32 (146 against 152 us at 64 x 1024) and slower in float64."""
    def codegen(context, builder, signature, args):
        # llvmlite's set of function attributes names only LLVM's keyword attributes: a string attribute goes in
        # by the set's own add, printed as given
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.void(), codegen


@njit(cache=True, inline="always", error_model="numpy")
def tanh32(v):
    """tanh(v) for float32 v, as p(v)/q(v) after clamping."""
    _wide_vectors()
    v = min(max(v, -CLAMP), CLAMP)
    v2 = v * v
    p = ((((((A13 * v2 + A11) * v2 + A9) * v2 + A7) * v2 + A5) * v2 + A3) * v2 + A1) * v
    q = ((B6 * v2 + B4) * v2 + B2) * v2 + B0
    return p / q


@njit(cache=True, inline="always", error_model="numpy")
def exp32(v):
    """e^v for float32 v (0 below -87.3, e^88.7 above 88.7)."""
    _wide_vectors()
    v = min(max(v, EXP_LOW), EXP_HIGH)
    k = np.floor(v * LOG2E + HALF32)
    r = v - k * LN2_HI - k * LN2_LO
    p = (((((E5 * r + E4) * r + E3) * r + E2) * r + E1) * r + E0) * r * r + r + ONE32
    return p * _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))


def sigmoid(v):
    """1 / (1 + e^-v): by exp32 for float32, exp64 for float64 (chosen when Numba compiles)."""
    return 1 / (1 + np.exp(-v))


def tanh(v):
    """tanh(v): tanh32 for float32, tanh64 for float64 (chosen when Numba compiles)."""
    return np.tanh(v)


def exp(v):
    """e^v: exp32 for float32, libm's for float64 (chosen when Numba compiles)."""
    return np.exp(v)


def _single(v) -> bool:
    return isinstance(v, types.Float) and v.bitwidth == 32


def _double(v) -> bool:
    return isinstance(v, types.Float) and v.bitwidth == 64


@overload(sigmoid, inline="always")
def _sigmoid(v):
    if _single(v):
        return lambda v: ONE32 / (ONE32 + exp32(-v))
    if _double(v):
        return lambda v: 1.0 / (1.0 + exp64(-v))
    return lambda v: 1.0 / (1.0 + np.exp(-v))


@overload(tanh, inline="always")
def _tanh(v):
    if _single(v):
        return lambda v: tanh32(v)
    if _double(v):
        return lambda v: tanh64(v)
    return lambda v: np.tanh(v)


@overload(exp, inline="always")
def _exp(v):
    if _single(v):
        return lambda v: exp32(v)
    return lambda v: np.exp(v)
