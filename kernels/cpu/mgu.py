"""The minimal gated unit (Zhou et al., 2016) on the CPU: two sequential products per step, the second on f * h.

Gates stacked f, n (the catalogue's order). With a_t = x_t U^T + b (every t in one GEMM beforehand):

    f = sigma(a_f + h_{t-1} W_f^T),  n = tanh(a_n + (f * h_{t-1}) W_n^T),  h_t = (1 - f) * h_{t-1} + f * n

BPTT, given dh_t (from outside plus the carry of step t+1):

    dz_n = dh_t f (1 - n^2),  d(fh) = dz_n W_n,  dz_f = (dh_t (n - h_{t-1}) + d(fh) h_{t-1}) f (1 - f),
    dh_{t-1} = dh_t (1 - f) + d(fh) f + dz_f W_f

dL/dW_f = sum_t dz_f^T h_{t-1} and dL/dW_n = sum_t dz_n^T (f * h_{t-1}): two blocks of gates (cells.Block).
The reset-before GRU's structure with one gate (:mod:`gru_reset_before`).
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
def _gate_f(a, product, gate, h_prev, fh):
    hidden = h_prev.shape[1]
    for r in range(h_prev.shape[0]):
        af, pf, gf, hp, fr = a[r][:hidden], product[r], gate[r][:hidden], h_prev[r], fh[r]
        for j in range(hidden):
            forget = sigmoid(af[j] + pf[j])
            gf[j] = forget
            fr[j] = forget * hp[j]


@njit(**GATE_LOOPS)
def _gate_n(a, product, gate, h_prev, h, one):
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        an, gr, pr, hp, hr = a[r][hidden:], gate[r], product[r], h_prev[r], h[r]
        gf, gn = gr[:hidden], gr[hidden:]
        for j in range(hidden):
            forget = gf[j]
            new = tanh(an[j] + pr[j])
            gn[j] = new
            hr[j] = (one - forget) * hp[j] + forget * new


@njit(cache=True, nogil=True, error_model="numpy")
def forward(a, gates, hs, fhs, WT_f, WT_n, blas_rows, one, active):
    """a (T, B, 2H) = x_t U^T + b; gates (T, B, 2H) receives [f n]; hs (T+1, B, H) starts with h0 and receives
    h_t; fhs (T, B, H) receives f_t * h_{t-1}, zero at held rows (it meets zero deltas in dW_n's GEMM).
    WT_f, WT_n (H, H) are W_f, W_n transposed. Rows r >= active[t] hold their state at step t (loops.hold)."""
    batch, hidden = hs.shape[1], hs.shape[2]
    product_f = np.empty((batch, hidden), gates.dtype)
    product_n = np.empty((batch, hidden), gates.dtype)
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            matmul_into(hs[t][:n], WT_f, product_f[:n], blas_rows)
            _gate_f(a[t][:n], product_f[:n], gates[t][:n], hs[t][:n], fhs[t][:n])
            matmul_into(fhs[t][:n], WT_n, product_n[:n], blas_rows)
            _gate_n(a[t][:n], product_n[:n], gates[t][:n], hs[t][:n], hs[t + 1][:n], one)
        if n < batch:
            hold(hs[t], hs[t + 1], n)
            clear(fhs[t], n)


@njit(**GATE_LOOPS)
def _back_n(delta_f, delta_n, direct, gate, h_prev, carry, kept, bias_grad, one):
    """dz_n, and what dz_f and dh_{t-1} take without d(fh): dh (n - h_{t-1}) into delta_f, dh (1 - f) into kept."""
    hidden = carry.shape[1]
    bn = bias_grad[hidden:]
    for r in range(carry.shape[0]):
        gr = gate[r]
        gf, gn = gr[:hidden], gr[hidden:]
        df, dn, out, cr, kr, hp = delta_f[r], delta_n[r], direct[r], carry[r], kept[r], h_prev[r]
        for j in range(hidden):
            forget, new = gf[j], gn[j]
            dh = out[j] + cr[j]
            dzn = dh * forget * (one - new * new)
            dn[j] = dzn
            bn[j] += dzn
            df[j] = dh * (new - hp[j])
            kr[j] = dh * (one - forget)


@njit(**GATE_LOOPS)
def _back_f(delta_f, d_fh, gate, h_prev, kept, bias_grad, one):
    """dz_f = (delta_f + d(fh) h_{t-1}) f (1 - f), and kept += d(fh) f."""
    hidden = kept.shape[1]
    bf = bias_grad[:hidden]
    for r in range(kept.shape[0]):
        gf, df, dfh, hp, kr = gate[r][:hidden], delta_f[r], d_fh[r], h_prev[r], kept[r]
        for j in range(hidden):
            forget = gf[j]
            dzf = (df[j] + dfh[j] * hp[j]) * forget * (one - forget)
            df[j] = dzf
            bf[j] += dzf
            kr[j] += dfh[j] * forget


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gates, hs, W_f, W_n, blas_rows, deltas_f, deltas_n, carry, bias_grad, one, active):
    """deltas_f and deltas_n (T, B, H) for t = T..1; carry (B, H) starts at zero and ends as dL/dh0;
    bias_grad (2H,) accumulates. W_f, W_n (H, H) as the equations write them. Rows r >= active[t] were held
    at step t: their cotangents pass on, their deltas are zero."""
    kept = np.empty_like(carry)
    d_fh = np.empty_like(carry)
    batch = carry.shape[0]
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        if n < batch:
            pass_back(carry, direct[t], n)
            clear(deltas_f[t], n)
            clear(deltas_n[t], n)
        if n > 0:
            _back_n(deltas_f[t][:n], deltas_n[t][:n], direct[t][:n], gates[t][:n], hs[t][:n], carry[:n], kept[:n],
                    bias_grad, one)
            matmul_into(deltas_n[t][:n], W_n, d_fh[:n], blas_rows)
            _back_f(deltas_f[t][:n], d_fh[:n], gates[t][:n], hs[t][:n], kept[:n], bias_grad, one)
            matmul_into(deltas_f[t][:n], W_f, carry[:n], blas_rows)
            carry[:n] += kept[:n]


class Mgu(Gated):
    """Two products a step, the second on f * h_{t-1}: each gate's W apart."""

    def recur(self, run) -> None:
        f, n = self.gates
        run.W_f, run.W_n = run.param(f"W_{f}"), run.param(f"W_{n}")
        run.fhs = run.scratch("fh", (run.T, run.B, run.H))
        forward(run.a, run.gates, run.hs, run.fhs, checks.contiguous(run.W_f.T), checks.contiguous(run.W_n.T),
                run.blas_rows, run.one, run.active)

    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        T, B, H = run.T, run.B, run.H
        f, n = self.gates
        # consumed by the gradients' GEMMs before any other run's BPTT: shared by every run
        deltas_f, deltas_n = workspace("deltas_f", (T, B, H), run.dtype), workspace("deltas_n", (T, B, H), run.dtype)
        carry, bias_grad = np.zeros((B, H), run.dtype), np.zeros(2 * H, run.dtype)
        backward(direct, run.gates, run.hs, run.W_f, run.W_n, run.blas_rows, deltas_f, deltas_n, carry, bias_grad,
                 run.one, run.active)
        return Deltas([Block(f, deltas_f, deltas_f, run.hs[:T]), Block(n, deltas_n, deltas_n, run.fhs)], bias_grad,
                      {"h0": carry})


KERNEL = Mgu("mgu")
