"""The GRU recurrence with the reset gate before the recurrent product (ONNX's default, Keras
``reset_after=False``, the 2014 paper): two sequential products per step, the second on r * h.

With a_t = x_t U^T + b (every t in one GEMM beforehand), W_rz the stacked W_r, W_z:

    [r z] = sigma(a_rz + h_{t-1} W_rz^T),  n = tanh(a_n + (r * h_{t-1}) W_n^T),
    h_t = (1 - z) * n + z * h_{t-1}

BPTT, given dh_t: dz_n = dh_t (1 - z)(1 - n^2), dz_z = dh_t (h_{t-1} - n) z (1 - z),
d(rh) = dz_n W_n, dz_r = d(rh) h_{t-1} r (1 - r), and
dh_{t-1} = dh_t z + d(rh) r + [dz_r dz_z] W_rz.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.elementwise import sigmoid, tanh
from rnnspec.kernels.cpu.loops import matmul_into

GATES = "rzn"


@njit(cache=True, error_model="numpy")
def _gates_rz(gate, product, h_prev, rh, one):
    hidden = h_prev.shape[1]
    for r in range(h_prev.shape[0]):
        for j in range(hidden):
            reset = sigmoid(gate[r, j] + product[r, j])
            gate[r, j] = reset
            gate[r, hidden + j] = sigmoid(gate[r, hidden + j] + product[r, hidden + j])
            rh[r, j] = reset * h_prev[r, j]


@njit(cache=True, error_model="numpy")
def _gate_n(gate, product, h_prev, h, one):
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        for j in range(hidden):
            update = gate[r, hidden + j]
            new = tanh(gate[r, 2 * hidden + j] + product[r, j])
            gate[r, 2 * hidden + j] = new
            h[r, j] = (one - update) * new + update * h_prev[r, j]


@njit(cache=True, error_model="numpy")
def forward(gates, hs, rhs, WT_rz, WT_n, small, one):
    """gates (T, B, 3H) hold a_t on entry and [r z n] on exit; hs (T+1, B, H) starts with h0 and
    receives h_t; rhs (T, B, H) receives r_t * h_{t-1}. WT_rz (H, 2H) and WT_n (H, H) are transposed."""
    batch, hidden = hs.shape[1], hs.shape[2]
    product_rz = np.empty((batch, 2 * hidden), gates.dtype)
    product_n = np.empty((batch, hidden), gates.dtype)
    for t in range(gates.shape[0]):
        matmul_into(hs[t], WT_rz, product_rz, small)
        _gates_rz(gates[t], product_rz, hs[t], rhs[t], one)
        matmul_into(rhs[t], WT_n, product_n, small)
        _gate_n(gates[t], product_n, hs[t], hs[t + 1], one)


@njit(cache=True, error_model="numpy")
def _back_n(delta_rz, delta_n, direct, gate, h_prev, carry, kept, bias_grad, one):
    hidden = carry.shape[1]
    for r in range(carry.shape[0]):
        for j in range(hidden):
            update, new = gate[r, hidden + j], gate[r, 2 * hidden + j]
            dh = direct[r, j] + carry[r, j]
            dzn = dh * (one - update) * (one - new * new)
            dzz = dh * (h_prev[r, j] - new) * update * (one - update)
            delta_n[r, j] = dzn
            delta_rz[r, hidden + j] = dzz
            bias_grad[hidden + j] += dzz
            bias_grad[2 * hidden + j] += dzn
            kept[r, j] = dh * update


@njit(cache=True, error_model="numpy")
def _back_r(delta_rz, d_rh, gate, h_prev, kept, bias_grad, one):
    for r in range(kept.shape[0]):
        for j in range(kept.shape[1]):
            reset = gate[r, j]
            dzr = d_rh[r, j] * h_prev[r, j] * reset * (one - reset)
            delta_rz[r, j] = dzr
            bias_grad[j] += dzr
            kept[r, j] += d_rh[r, j] * reset


@njit(cache=True, error_model="numpy")
def backward(direct, gates, hs, W_rz, W_n, small, deltas_rz, deltas_n, carry, bias_grad, one):
    """deltas_rz (T, B, 2H) and deltas_n (T, B, H) for t = T..1; carry (B, H) starts at zero and ends
    as dL/dh0; bias_grad (3H,) accumulates. W_rz (2H, H) and W_n (H, H) as the equations write them."""
    kept = np.empty_like(carry)
    d_rh = np.empty_like(carry)
    for t in range(direct.shape[0] - 1, -1, -1):
        _back_n(deltas_rz[t], deltas_n[t], direct[t], gates[t], hs[t], carry, kept, bias_grad, one)
        matmul_into(deltas_n[t], W_n, d_rh, small)
        _back_r(deltas_rz[t], d_rh, gates[t], hs[t], kept, bias_grad, one)
        matmul_into(deltas_rz[t], W_rz, carry, small)
        carry += kept
