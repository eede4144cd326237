"""The LSTM with a projection (PyTorch's ``proj_size``) on the CPU: the sequential part only.

The LSTM's step (:func:`lstm._step`, gates i, f, g, o) computes r_t = o tanh(c_t) (H); the state the
gates read back is its projection h_t = r_t W_hr^T (P), a second product per step:

    [i f g o] = ... of a_t + h_{t-1} W^T  (W (4H, P)),   c_t = f c_{t-1} + i g,
    r_t = o tanh(c_t),   h_t = r_t W_hr^T  (W_hr (P, H))

BPTT: the cotangent of h_t (from outside plus the carry) is q_t, written to ``douts`` for
dW_hr = sum_t q_t^T r_t (one GEMM afterwards); dr_t = q_t W_hr enters the LSTM's backward step in
place of dh_t, and dh_{t-1} receives dz_t W.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.loops import clear, hold, matmul_into, pass_back
from rnnspec.kernels.cpu.lstm import _back_step, _step

GATES = "ifgo"


@njit(cache=True, error_model="numpy")
def forward(a, gates, hs, cs, tcs, rs, WT, W_hrT, small, small_projection, active):
    """As lstm.forward, with hs (T+1, B, P), rs (T, B, H) receiving r_t, W_hrT (H, P) the projection
    transposed and WT (P, 4H). Rows r >= active[t] hold their states (and have r = 0)."""
    product = np.empty(gates.shape[1:], gates.dtype)
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            matmul_into(hs[t][:n], WT, product[:n], small)
            _step(a[t][:n], product[:n], gates[t][:n], rs[t][:n], cs[t][:n], cs[t + 1][:n], tcs[t][:n])
            matmul_into(rs[t][:n], W_hrT, hs[t + 1][:n], small_projection)
        hold(hs[t], hs[t + 1], n)
        hold(cs[t], cs[t + 1], n)
        clear(rs[t], n)


@njit(cache=True, error_model="numpy")
def _total(out, direct, carry):
    """out = direct + carry: the whole cotangent of h_t."""
    for r in range(out.shape[0]):
        o, d, c = out[r], direct[r], carry[r]
        for j in range(out.shape[1]):
            o[j] = d[j] + c[j]


@njit(cache=True, error_model="numpy")
def backward(direct, gc, has_gc, gates, cs, tcs, W, W_hr, small, small_projection, deltas, douts, carry_h, carry_c,
             bias_grad, one, active):
    """deltas (T, B, 4H) and douts (T, B, P) (the cotangents q_t of h_t) for t = T..1; carry_h (B, P) ends as
    dL/dh0, carry_c (B, H) as dL/dc0; bias_grad (4H,) accumulates. W (4H, P), W_hr (P, H)."""
    batch, hidden = carry_c.shape
    d_r = np.empty((batch, hidden), carry_c.dtype)
    none = np.zeros((batch, hidden), carry_c.dtype)  # _back_step's dh carry: all of it is in d_r already
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        pass_back(carry_h, direct[t], n)
        if has_gc:
            pass_back(carry_c, gc[t], n)
        clear(deltas[t], n)
        clear(douts[t], n)
        if n > 0:
            _total(douts[t][:n], direct[t][:n], carry_h[:n])
            matmul_into(douts[t][:n], W_hr, d_r[:n], small_projection)
            _back_step(deltas[t][:n], d_r[:n], gc[t][:n], has_gc, gates[t][:n], cs[t][:n], tcs[t][:n], none[:n],
                       carry_c[:n], bias_grad, one)
            matmul_into(deltas[t][:n], W, carry_h[:n], small)
