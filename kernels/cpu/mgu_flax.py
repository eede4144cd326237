"""The minimal gated unit as flax.linen's MGUCell computes it, on the CPU: one product per step, f inside the
recurrent product's sum (the reset-after GRU's structure with r = z = f, :mod:`gru_reset_after`).

Gates stacked f, n (the catalogue's order). With a_t = x_t U^T + b (every t in one GEMM beforehand; b_n in the
n block) and the recurrent product p_t = h_{t-1} W^T (both gates in one GEMM per step):

    f = sigma(a_f + p_f),  m = p_n + b_hn,  n = tanh(a_n + f * m),  h_t = (1 - f) * n + f * h_{t-1}

BPTT, given dh_t: dz_n = dh_t (1 - f)(1 - n^2), dz_f = (dh_t (h_{t-1} - n) + dz_n m) f (1 - f), dm = dz_n f.
The input side's deltas are [dz_f dz_n] (for U, b, x); the recurrent side's [dz_f dm] (for W, b_hn and
dh_{t-1} = dh_t f + [dz_f dm] W).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.cells import Block, Deltas, Gated
from rnnspec.kernels.cpu.elementwise import sigmoid, tanh
from rnnspec.kernels.cpu.loops import clear, hold, pass_back, step_product, transposed
from rnnspec.kernels.cpu.scratch import workspace

# 1D rows and gate blocks, and gate values apart from their inputs, as in lstm.py: so LLVM vectorizes.


@njit(cache=True, nogil=True, error_model="numpy")
def step(a, product, gate, h_prev, h, m, b_hn, one, lo):
    """One step for the units lo..lo + u - 1, u = a.shape[1] / 2: a, product and gate hold those units' two
    gate blocks (u wide each); h_prev, h, m and b_hn are whole, read and written at those units."""
    hidden = a.shape[1] // 2
    for r in range(h.shape[0]):
        ar, pr, gr = a[r], product[r], gate[r]
        af, an, pf, pn, gf, gn = ar[:hidden], ar[hidden:], pr[:hidden], pr[hidden:], gr[:hidden], gr[hidden:]
        hp, hr, mr = h_prev[r][lo:lo + hidden], h[r][lo:lo + hidden], m[r][lo:lo + hidden]
        bias = b_hn[lo:lo + hidden]
        for j in range(hidden):
            forget = sigmoid(af[j] + pf[j])
            recurrent = pn[j] + bias[j]
            new = tanh(an[j] + forget * recurrent)
            gf[j], gn[j] = forget, new
            mr[j] = recurrent
            hr[j] = (one - forget) * new + forget * hp[j]


@njit(cache=True, nogil=True, error_model="numpy")
def forward(a, gates, hs, ms, WT, W, transposed, b_hn, blas_rows, one, active):
    """a (T, B, 2H) = x_t U^T + b; gates (T, B, 2H) receives [f n]; hs (T+1, B, H) starts with h0 and receives
    h_t; ms (T, B, H) receives m_t. W is the stacked W (2H, H), WT its transpose; the step's product runs
    through W where ``transposed`` (loops.step_product). Rows r >= active[t] hold their state (loops.hold)."""
    product = np.empty(gates.shape[1:], gates.dtype)
    staging = np.empty(product.size if transposed else 0, gates.dtype)
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            step_product(hs[t][:n], WT, W, product[:n], blas_rows, staging, transposed)
            step(a[t][:n], product[:n], gates[t][:n], hs[t][:n], hs[t + 1][:n], ms[t][:n], b_hn, one, 0)
        hold(hs[t], hs[t + 1], n)


# The deltas, the carry and the sums over rows as three loops, as in gru_reset_after.back_step (so that LLVM
# vectorizes each).
@njit(cache=True, nogil=True, error_model="numpy")
def back_step(delta_in, delta_rec, direct, gate, h_prev, m, carry, kept, bias_grad, b_hn_grad, one, lo):
    """One BPTT step for the units lo..lo + u - 1, u = carry.shape[1]: both deltas, gate, carry, kept and
    bias_grad hold those units only; direct, h_prev, m and b_hn_grad are whole, used at those units."""
    hidden = carry.shape[1]
    bf, bn = bias_grad[:hidden], bias_grad[hidden:]
    bias_hn = b_hn_grad[lo:lo + hidden]
    for r in range(carry.shape[0]):
        gr, di, dr = gate[r], delta_in[r], delta_rec[r]
        gf, gn = gr[:hidden], gr[hidden:]
        dif, din, drf, drn = di[:hidden], di[hidden:], dr[:hidden], dr[hidden:]
        out, cr, kr = direct[r][lo:lo + hidden], carry[r], kept[r]
        hp, mr = h_prev[r][lo:lo + hidden], m[r][lo:lo + hidden]
        for j in range(hidden):
            forget, new = gf[j], gn[j]
            dh = out[j] + cr[j]
            dzn = dh * (one - forget) * (one - new * new)
            dzf = (dh * (hp[j] - new) + dzn * mr[j]) * forget * (one - forget)
            dif[j], din[j] = dzf, dzn
            drf[j], drn[j] = dzf, dzn * forget
        for j in range(hidden):
            kr[j] = (out[j] + cr[j]) * gf[j]
        for j in range(hidden):
            bf[j] += dif[j]
            bn[j] += din[j]
            bias_hn[j] += drn[j]


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gates, hs, ms, W, WT, transposed, blas_rows, deltas_in, deltas_rec, carry, bias_grad, b_hn_grad,
             one, active):
    """Both deltas (T, B, 2H) for t = T..1; carry (B, H) starts at zero and ends as dL/dh0; bias_grad (2H,) and
    b_hn_grad (H,) accumulate. W is the stacked W (2H, H), WT its transpose, read where ``transposed``. Rows
    r >= active[t] were held at step t: their cotangents pass on, their deltas are zero."""
    kept = np.empty_like(carry)
    staging = np.empty(carry.size if transposed else 0, carry.dtype)
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        pass_back(carry, direct[t], n)
        clear(deltas_in[t], n)
        clear(deltas_rec[t], n)
        if n > 0:
            back_step(deltas_in[t][:n], deltas_rec[t][:n], direct[t][:n], gates[t][:n], hs[t][:n], ms[t][:n],
                      carry[:n], kept[:n], bias_grad, b_hn_grad, one, 0)
            step_product(deltas_rec[t][:n], W, WT, carry[:n], blas_rows, staging, transposed)
            carry[:n] += kept[:n]


class MguFlax(Gated):
    transposable = True

    def recur(self, run) -> None:
        run.W = run.stack("W")
        run.WT = transposed(run.W)
        run.ms = run.scratch("m", (run.T, run.B, run.H))
        forward(run.a, run.gates, run.hs, run.ms, run.WT, run.W, run.transposed, run.param("b_hn"), run.blas_rows,
                run.one, run.active)

    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        T, B, H = run.T, run.B, run.H
        # consumed by the gradients' GEMMs before any other run's BPTT: shared by every run
        deltas, recurrent = workspace("deltas", (T, B, 2 * H), run.dtype), workspace("deltas_recurrent", (T, B, 2 * H),
                                                                                      run.dtype)
        carry, bias_grad, b_hn_grad = np.zeros((B, H), run.dtype), np.zeros(2 * H, run.dtype), np.zeros(H, run.dtype)
        backward(direct, run.gates, run.hs, run.ms, run.W, run.WT, run.transposed, run.blas_rows, deltas, recurrent,
                 carry, bias_grad, b_hn_grad, run.one, run.active)
        return Deltas([Block(self.gates, deltas, recurrent, run.hs[:T])], bias_grad, {"h0": carry}, {"b_hn": b_hn_grad})


KERNEL = MguFlax("mgu-flax")
