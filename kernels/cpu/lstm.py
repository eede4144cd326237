"""The LSTM recurrence on the CPU: the sequential part only, fused with the gate nonlinearities.

Gates are stacked in the order i, f, g, o (blocks of H columns). With a_t = x_t U^T + b (computed for
every t in one GEMM beforehand) and the recurrent product h_{t-1} W^T:

    [i f g o] = [sigma tanh sigma sigma]... of a_t + h_{t-1} W^T   (sigma for i, f, o; tanh for g)
    c_t = f * c_{t-1} + i * g,     h_t = o * tanh(c_t)

BPTT, given dh_t (cotangent from outside plus the carry W^T-product of step t+1) and dc_{t+1}'s carry:

    dc_t  = dh_t * o * (1 - tanh(c_t)^2) + gc_t + f_{t+1} * dc_{t+1}
    dz_i = dc_t g i (1 - i),  dz_f = dc_t c_{t-1} f (1 - f),  dz_g = dc_t i (1 - g^2),
    dz_o = dh_t tanh(c_t) o (1 - o),   and dh_{t-1} receives dz_t W (the stacked W of every gate).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.elementwise import sigmoid, tanh
from rnnspec.kernels.cpu.loops import matmul_into

GATES = "ifgo"


@njit(cache=True, error_model="numpy")
def _step(gate, product, h, c_prev, c, tc, one):
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        for j in range(hidden):
            i = sigmoid(gate[r, j] + product[r, j])
            f = sigmoid(gate[r, hidden + j] + product[r, hidden + j])
            g = tanh(gate[r, 2 * hidden + j] + product[r, 2 * hidden + j])
            o = sigmoid(gate[r, 3 * hidden + j] + product[r, 3 * hidden + j])
            cell = f * c_prev[r, j] + i * g
            squashed = tanh(cell)
            gate[r, j], gate[r, hidden + j], gate[r, 2 * hidden + j], gate[r, 3 * hidden + j] = i, f, g, o
            c[r, j], tc[r, j], h[r, j] = cell, squashed, o * squashed


@njit(cache=True, error_model="numpy")
def forward(gates, hs, cs, tcs, WT, small, one):
    """gates (T, B, 4H) hold a_t on entry and [i f g o] on exit; hs, cs (T+1, B, H) start with h0, c0
    and receive h_t, c_t; tcs (T, B, H) receives tanh(c_t). WT is the stacked W transposed, (H, 4H)."""
    product = np.empty(gates.shape[1:], gates.dtype)
    for t in range(gates.shape[0]):
        matmul_into(hs[t], WT, product, small)
        _step(gates[t], product, hs[t + 1], cs[t], cs[t + 1], tcs[t], one)


@njit(cache=True, error_model="numpy")
def _back_step(delta, direct, gc, has_gc, gate, c_prev, tc, carry_h, carry_c, bias_grad, one):
    hidden = carry_h.shape[1]
    for r in range(carry_h.shape[0]):
        for j in range(hidden):
            i, f = gate[r, j], gate[r, hidden + j]
            g, o = gate[r, 2 * hidden + j], gate[r, 3 * hidden + j]
            dh = direct[r, j] + carry_h[r, j]
            squashed = tc[r, j]
            dc = dh * o * (one - squashed * squashed) + carry_c[r, j]
            if has_gc:
                dc += gc[r, j]
            dzi = dc * g * i * (one - i)
            dzf = dc * c_prev[r, j] * f * (one - f)
            dzg = dc * i * (one - g * g)
            dzo = dh * squashed * o * (one - o)
            delta[r, j], delta[r, hidden + j], delta[r, 2 * hidden + j], delta[r, 3 * hidden + j] = dzi, dzf, dzg, dzo
            bias_grad[j] += dzi
            bias_grad[hidden + j] += dzf
            bias_grad[2 * hidden + j] += dzg
            bias_grad[3 * hidden + j] += dzo
            carry_c[r, j] = dc * f


@njit(cache=True, error_model="numpy")
def backward(direct, gc, has_gc, gates, cs, tcs, W, small, deltas, carry_h, carry_c, bias_grad, one):
    """dz_t for t = T..1 into deltas (T, B, 4H); carry_h ends as dL/dh0, carry_c as dL/dc0 (both start
    at zero); bias_grad (4H,) accumulates. W is the stacked W, (4H, H). gc is read only if has_gc."""
    for t in range(direct.shape[0] - 1, -1, -1):
        _back_step(deltas[t], direct[t], gc[t], has_gc, gates[t], cs[t], tcs[t], carry_h, carry_c, bias_grad, one)
        matmul_into(deltas[t], W, carry_h, small)
