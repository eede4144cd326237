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

from rnnspec.kernels import checks
from rnnspec.kernels.cpu.cells import Block, Deltas, Gated
from rnnspec.kernels.cpu.elementwise import GATE_LOOPS, sigmoid, tanh
from rnnspec.kernels.cpu.loops import clear, hold, matmul_into, pass_back
from rnnspec.kernels.cpu.scratch import workspace

# 1D rows and gate blocks, and gate values apart from their inputs, as in lstm.py: so LLVM vectorizes.


@njit(**GATE_LOOPS)
def _gates_rz(a, product, gate, h_prev, rh):
    hidden = h_prev.shape[1]
    for r in range(h_prev.shape[0]):
        ar, pr, gr = a[r], product[r], gate[r]
        ar_, az, pr_, pz = ar[:hidden], ar[hidden:2 * hidden], pr[:hidden], pr[hidden:]
        gr_, gz = gr[:hidden], gr[hidden:2 * hidden]
        hp, rr = h_prev[r], rh[r]
        for j in range(hidden):
            reset = sigmoid(ar_[j] + pr_[j])
            gr_[j] = reset
            gz[j] = sigmoid(az[j] + pz[j])
            rr[j] = reset * hp[j]


@njit(**GATE_LOOPS)
def _gate_n(a, product, gate, h_prev, h, one):
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        an, gr = a[r][2 * hidden:], gate[r]
        gz, gn = gr[hidden:2 * hidden], gr[2 * hidden:]
        pr, hp, hr = product[r], h_prev[r], h[r]
        for j in range(hidden):
            update = gz[j]
            new = tanh(an[j] + pr[j])
            gn[j] = new
            hr[j] = (one - update) * new + update * hp[j]


@njit(cache=True, nogil=True, error_model="numpy")
def forward(a, gates, hs, rhs, WT_rz, WT_n, blas_rows, one, active):
    """a (T, B, 3H) = x_t U^T + b; gates (T, B, 3H) receives [r z n]; hs (T+1, B, H) starts with h0 and
    receives h_t; rhs (T, B, H) receives r_t * h_{t-1}. WT_rz (H, 2H) and WT_n (H, H) are transposed.
    Rows r >= active[t] hold their state at step t (loops.hold); their r * h is zero (it meets zero deltas
    in dW_n's GEMM, where leftover garbage could be non-finite)."""
    batch, hidden = hs.shape[1], hs.shape[2]
    product_rz = np.empty((batch, 2 * hidden), gates.dtype)
    product_n = np.empty((batch, hidden), gates.dtype)
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            matmul_into(hs[t][:n], WT_rz, product_rz[:n], blas_rows)
            _gates_rz(a[t][:n], product_rz[:n], gates[t][:n], hs[t][:n], rhs[t][:n])
            matmul_into(rhs[t][:n], WT_n, product_n[:n], blas_rows)
            _gate_n(a[t][:n], product_n[:n], gates[t][:n], hs[t][:n], hs[t + 1][:n], one)
        if n < batch:
            hold(hs[t], hs[t + 1], n)
            clear(rhs[t], n)


@njit(**GATE_LOOPS)
def _back_n(delta_rz, delta_n, direct, gate, h_prev, carry, kept, bias_grad, one):
    hidden = carry.shape[1]
    bz, bn = bias_grad[hidden:2 * hidden], bias_grad[2 * hidden:]
    for r in range(carry.shape[0]):
        gr = gate[r]
        gz, gn = gr[hidden:2 * hidden], gr[2 * hidden:]
        dz, dn, out, cr, kr, hp = delta_rz[r][hidden:], delta_n[r], direct[r], carry[r], kept[r], h_prev[r]
        for j in range(hidden):
            update, new = gz[j], gn[j]
            dh = out[j] + cr[j]
            dzn = dh * (one - update) * (one - new * new)
            dzz = dh * (hp[j] - new) * update * (one - update)
            dn[j] = dzn
            dz[j] = dzz
            bz[j] += dzz
            bn[j] += dzn
            kr[j] = dh * update


@njit(**GATE_LOOPS)
def _back_r(delta_rz, d_rh, gate, h_prev, kept, bias_grad, one):
    hidden = kept.shape[1]
    br = bias_grad[:hidden]
    for r in range(kept.shape[0]):
        gr, dr, drh, hp, kr = gate[r][:hidden], delta_rz[r][:hidden], d_rh[r], h_prev[r], kept[r]
        for j in range(hidden):
            reset = gr[j]
            dzr = drh[j] * hp[j] * reset * (one - reset)
            dr[j] = dzr
            br[j] += dzr
            kr[j] += drh[j] * reset


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gates, hs, W_rz, W_n, blas_rows, deltas_rz, deltas_n, carry, bias_grad, one, active):
    """deltas_rz (T, B, 2H) and deltas_n (T, B, H) for t = T..1; carry (B, H) starts at zero and ends
    as dL/dh0; bias_grad (3H,) accumulates. W_rz (2H, H) and W_n (H, H) as the equations write them.
    Rows r >= active[t] were held at step t: their cotangents pass on, their deltas are zero."""
    kept = np.empty_like(carry)
    d_rh = np.empty_like(carry)
    batch = carry.shape[0]
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        if n < batch:
            pass_back(carry, direct[t], n)
            clear(deltas_rz[t], n)
            clear(deltas_n[t], n)
        if n > 0:
            _back_n(deltas_rz[t][:n], deltas_n[t][:n], direct[t][:n], gates[t][:n], hs[t][:n], carry[:n],
                    kept[:n], bias_grad, one)
            matmul_into(deltas_n[t][:n], W_n, d_rh[:n], blas_rows)
            _back_r(deltas_rz[t][:n], d_rh[:n], gates[t][:n], hs[t][:n], kept[:n], bias_grad, one)
            matmul_into(deltas_rz[t][:n], W_rz, carry[:n], blas_rows)
            carry[:n] += kept[:n]


class GruResetBefore(Gated):
    """Two products a step, the second on r * h_{t-1}: the first two gates' W stacked, the third's apart."""

    def recur(self, run) -> None:
        rz, n = self.gates[:2], self.gates[2:]
        run.W_rz, run.W_n = run.stack("W", rz), run.param(f"W_{n}")
        run.rhs = run.scratch("rh", (run.T, run.B, run.H))
        forward(run.a, run.gates, run.hs, run.rhs, checks.contiguous(run.W_rz.T), checks.contiguous(run.W_n.T),
                run.blas_rows, run.one, run.active)

    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        T, B, H = run.T, run.B, run.H
        # consumed by the gradients' GEMMs before any other run's BPTT: shared by every run
        deltas_rz = workspace("deltas_rz", (T, B, 2 * H), run.dtype)
        deltas_n = workspace("deltas_n", (T, B, H), run.dtype)
        carry, bias_grad = np.zeros((B, H), run.dtype), np.zeros(3 * H, run.dtype)
        backward(direct, run.gates, run.hs, run.W_rz, run.W_n, run.blas_rows, deltas_rz, deltas_n, carry, bias_grad,
                 run.one, run.active)
        rz, n = self.gates[:2], self.gates[2:]
        return Deltas([Block(rz, deltas_rz, deltas_rz, run.hs[:T]), Block(n, deltas_n, deltas_n, run.rhs)], bias_grad,
                      {"h0": carry})


KERNEL = GruResetBefore("gru-reset-before")
