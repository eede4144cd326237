"""Elementwise functions the CPU kernels share, written so that LLVM vectorizes the loops around them.

libm's expf and tanhf are scalar calls that stop a loop from vectorizing, so float32 uses:
- ``tanh32``: a rational approximation (Eigen's float tanh): p(v)/q(v) after clamping, within
  3.4e-7 relative (measured on 2M points);
- ``exp32``: Cody-Waite reduction v = k ln2 + r, a degree-6 polynomial (Cephes' expf) for e^r, and
  2^k built from its bits; within 2 ulps on [-87, 88] (tests/test_gated_kernels.py measures it);
- ``sigmoid32`` = 1 / (1 + exp32(-v)): accurate for gates driven shut, where 0.5 + 0.5 tanh(v / 2)
  would lose every digit to cancellation.
float64 keeps libm (np.tanh, np.exp). ``sigmoid`` and ``tanh`` pick by the argument's type when Numba
compiles, so no branch is left in the loops.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

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


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits`` (an LLVM bitcast, which vectorizes)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(cache=True, inline="always", error_model="numpy")
def tanh32(v):
    """tanh(v) for float32 v, as p(v)/q(v) after clamping."""
    v = min(max(v, -CLAMP), CLAMP)
    v2 = v * v
    p = ((((((A13 * v2 + A11) * v2 + A9) * v2 + A7) * v2 + A5) * v2 + A3) * v2 + A1) * v
    q = ((B6 * v2 + B4) * v2 + B2) * v2 + B0
    return p / q


@njit(cache=True, inline="always", error_model="numpy")
def exp32(v):
    """e^v for float32 v (0 below -87.3, e^88.7 above 88.7)."""
    v = min(max(v, EXP_LOW), EXP_HIGH)
    k = np.floor(v * LOG2E + HALF32)
    r = v - k * LN2_HI - k * LN2_LO
    p = (((((E5 * r + E4) * r + E3) * r + E2) * r + E1) * r + E0) * r * r + r + ONE32
    return p * _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))


def sigmoid(v):
    """1 / (1 + e^-v): by exp32 for float32, libm's exp for float64 (chosen when Numba compiles)."""
    return 1 / (1 + np.exp(-v))


def tanh(v):
    """tanh(v): tanh32 for float32, libm's for float64 (chosen when Numba compiles)."""
    return np.tanh(v)


def exp(v):
    """e^v: exp32 for float32, libm's for float64 (chosen when Numba compiles)."""
    return np.exp(v)


def _single(v) -> bool:
    return isinstance(v, types.Float) and v.bitwidth == 32


@overload(sigmoid, inline="always")
def _sigmoid(v):
    if _single(v):
        return lambda v: ONE32 / (ONE32 + exp32(-v))
    return lambda v: 1.0 / (1.0 + np.exp(-v))


@overload(tanh, inline="always")
def _tanh(v):
    if _single(v):
        return lambda v: tanh32(v)
    return lambda v: np.tanh(v)


@overload(exp, inline="always")
def _exp(v):
    if _single(v):
        return lambda v: exp32(v)
    return lambda v: np.exp(v)
