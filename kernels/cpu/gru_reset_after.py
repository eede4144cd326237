"""The GRU recurrence with the reset gate after the recurrent product (PyTorch, cuDNN, Keras 3, Flax).

Gates stacked r, z, n. With a_t = x_t U^T + b (every t in one GEMM beforehand; b_n in the n block)
and the recurrent product p_t = h_{t-1} W^T (all three gates in one GEMM per step):

    r = sigma(a_r + p_r),  z = sigma(a_z + p_z),  m = p_n + b_hn,  n = tanh(a_n + r * m),
    h_t = (1 - z) * n + z * h_{t-1}

BPTT, given dh_t: dz_n = dh_t (1 - z)(1 - n^2), dz_r = dz_n m r (1 - r), dz_z = dh_t (h_{t-1} - n) z (1 - z),
dm = dz_n r. The input side's deltas are [dz_r dz_z dz_n] (for U, b, x); the recurrent side's are
[dz_r dz_z dm] (for W, b_hn and dh_{t-1} = dh_t z + [dz_r dz_z dm] W).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.elementwise import sigmoid, tanh
from rnnspec.kernels.cpu.loops import matmul_into

GATES = "rzn"


@njit(cache=True, error_model="numpy")
def _step(gate, product, h_prev, h, m, b_hn, one):
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        for j in range(hidden):
            reset = sigmoid(gate[r, j] + product[r, j])
            update = sigmoid(gate[r, hidden + j] + product[r, hidden + j])
            recurrent = product[r, 2 * hidden + j] + b_hn[j]
            new = tanh(gate[r, 2 * hidden + j] + reset * recurrent)
            gate[r, j], gate[r, hidden + j], gate[r, 2 * hidden + j] = reset, update, new
            m[r, j] = recurrent
            h[r, j] = (one - update) * new + update * h_prev[r, j]


@njit(cache=True, error_model="numpy")
def forward(gates, hs, ms, WT, b_hn, small, one):
    """gates (T, B, 3H) hold a_t on entry and [r z n] on exit; hs (T+1, B, H) starts with h0 and
    receives h_t; ms (T, B, H) receives m_t. WT is the stacked W transposed, (H, 3H)."""
    product = np.empty(gates.shape[1:], gates.dtype)
    for t in range(gates.shape[0]):
        matmul_into(hs[t], WT, product, small)
        _step(gates[t], product, hs[t], hs[t + 1], ms[t], b_hn, one)


@njit(cache=True, error_model="numpy")
def _back_step(delta_in, delta_rec, direct, gate, h_prev, m, carry, kept, bias_grad, b_hn_grad, one):
    hidden = carry.shape[1]
    for r in range(carry.shape[0]):
        for j in range(hidden):
            reset, update, new = gate[r, j], gate[r, hidden + j], gate[r, 2 * hidden + j]
            dh = direct[r, j] + carry[r, j]
            dzn = dh * (one - update) * (one - new * new)
            dzr = dzn * m[r, j] * reset * (one - reset)
            dzz = dh * (h_prev[r, j] - new) * update * (one - update)
            dm = dzn * reset
            delta_in[r, j], delta_in[r, hidden + j], delta_in[r, 2 * hidden + j] = dzr, dzz, dzn
            delta_rec[r, j], delta_rec[r, hidden + j], delta_rec[r, 2 * hidden + j] = dzr, dzz, dm
            bias_grad[j] += dzr
            bias_grad[hidden + j] += dzz
            bias_grad[2 * hidden + j] += dzn
            b_hn_grad[j] += dm
            kept[r, j] = dh * update


@njit(cache=True, error_model="numpy")
def backward(direct, gates, hs, ms, W, small, deltas_in, deltas_rec, carry, bias_grad, b_hn_grad, one):
    """Both deltas (T, B, 3H) for t = T..1; carry (B, H) starts at zero and ends as dL/dh0;
    bias_grad (3H,) and b_hn_grad (H,) accumulate. W is the stacked W, (3H, H)."""
    kept = np.empty_like(carry)
    for t in range(direct.shape[0] - 1, -1, -1):
        _back_step(deltas_in[t], deltas_rec[t], direct[t], gates[t], hs[t], ms[t], carry, kept, bias_grad,
                   b_hn_grad, one)
        matmul_into(deltas_rec[t], W, carry, small)
        carry += kept
