"""The LSTM with coupled input and forget gates (ONNX's ``input_forget=1``) on the CPU: its fused steps.

Gates i, g, o stacked in the catalogue's order (no forget-gate parameters); a_t = x_t U^T + b beforehand, and
the recurrent product p_t = h_{t-1} W^T, as in :mod:`lstm`:

    i = sigma(a_i + p_i),  g = tanh(a_g + p_g),  o = sigma(a_o + p_o),
    c_t = (1 - i) c_{t-1} + i g,  h_t = o tanh(c_t)           (the forget gate is f = 1 - i)

BPTT, given dh_t and the carry of dc_{t+1}:

    dc_t = dh_t o (1 - tanh(c_t)^2) + gc_t + carry,   dz_o = dh_t tanh(c_t) o (1 - o),
    dz_i = dc_t (g - c_{t-1}) i (1 - i)   (i reaches c_t twice: through i g and through f = 1 - i),
    dz_g = dc_t i (1 - g^2),   carry to c_{t-1} = dc_t (1 - i).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.cells import Block, Deltas
from rnnspec.kernels.cpu.elementwise import sigmoid, tanh
from rnnspec.kernels.cpu.loops import clear, hold, pass_back, step_product
from rnnspec.kernels.cpu.lstm import Family
from rnnspec.kernels.cpu.scratch import workspace

# 1D rows and gate blocks, and gate values apart from their inputs, as in lstm.py: so LLVM vectorizes.


@njit(cache=True, nogil=True, error_model="numpy")
def step(a, product, gate, h, c_prev, c, tc, one):
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        ar, pr, gr = a[r], product[r], gate[r]
        ai, ag, ao = ar[:hidden], ar[hidden:2 * hidden], ar[2 * hidden:]
        pi, pg, po = pr[:hidden], pr[hidden:2 * hidden], pr[2 * hidden:]
        gi, gg, go = gr[:hidden], gr[hidden:2 * hidden], gr[2 * hidden:]
        cp, cr, tr, hr = c_prev[r], c[r], tc[r], h[r]
        for j in range(hidden):
            i, g, o = sigmoid(ai[j] + pi[j]), tanh(ag[j] + pg[j]), sigmoid(ao[j] + po[j])
            cell = (one - i) * cp[j] + i * g
            squashed = tanh(cell)
            gi[j], gg[j], go[j] = i, g, o
            cr[j], tr[j], hr[j] = cell, squashed, o * squashed


@njit(cache=True, nogil=True, error_model="numpy")
def back_step(delta, direct, gc, gate, c_prev, tc, carry_h, carry_c, bias_grad, one):
    hidden = carry_h.shape[1]
    bi, bg, bo = bias_grad[:hidden], bias_grad[hidden:2 * hidden], bias_grad[2 * hidden:]
    for r in range(carry_h.shape[0]):
        gr, dr = gate[r], delta[r]
        gi, gg, go = gr[:hidden], gr[hidden:2 * hidden], gr[2 * hidden:]
        di, dg, do = dr[:hidden], dr[hidden:2 * hidden], dr[2 * hidden:]
        out, ch, cc, cp, tr, extra = direct[r], carry_h[r], carry_c[r], c_prev[r], tc[r], gc[r]
        for j in range(hidden):
            i, g, o = gi[j], gg[j], go[j]
            dh = out[j] + ch[j]
            squashed = tr[j]
            dc = dh * o * (one - squashed * squashed) + cc[j] + extra[j]
            di[j] = dc * (g - cp[j]) * i * (one - i)
            dg[j] = dc * i * (one - g * g)
            do[j] = dh * squashed * o * (one - o)
            cc[j] = dc * (one - i)
        # the sums over rows apart: in the loop above their streams kept LLVM from vectorizing it
        for j in range(hidden):
            bi[j] += di[j]
            bg[j] += dg[j]
            bo[j] += do[j]


@njit(cache=True, nogil=True, error_model="numpy")
def forward(a, gates, hs, cs, tcs, WT, W, transposed, blas_rows, one, active):
    """As lstm.forward, with the three gate blocks i, g, o."""
    product = np.empty(gates.shape[1:], gates.dtype)
    staging = np.empty(product.size if transposed else 0, gates.dtype)
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            step_product(hs[t][:n], WT, W, product[:n], blas_rows, staging, transposed)
            step(a[t][:n], product[:n], gates[t][:n], hs[t + 1][:n], cs[t][:n], cs[t + 1][:n], tcs[t][:n], one)
        hold(hs[t], hs[t + 1], n)
        hold(cs[t], cs[t + 1], n)


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gc, gates, cs, tcs, W, WT, transposed, blas_rows, deltas, carry_h, carry_c, bias_grad, one,
             active):
    """As lstm.backward, with the three gate blocks i, g, o."""
    staging = np.empty(carry_h.size if transposed else 0, carry_h.dtype)
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        pass_back(carry_h, direct[t], n)
        pass_back(carry_c, gc[t], n)
        clear(deltas[t], n)
        if n > 0:
            back_step(deltas[t][:n], direct[t][:n], gc[t][:n], gates[t][:n], cs[t][:n], tcs[t][:n], carry_h[:n],
                      carry_c[:n], bias_grad, one)
            step_product(deltas[t][:n], W, WT, carry_h[:n], blas_rows, staging, transposed)


class LstmCoupled(Family):
    """The LSTM family's cell state and one stacked product a step, with the catalogue's three gates."""

    def sums(self, run) -> tuple[np.ndarray, ...]:
        """As Family.sums, sized for this cell's gates (G H, not the plain LSTM's 4 H)."""
        T, B, H, G = run.T, run.B, run.H, len(self.gates)
        return (np.zeros((B, run.P), run.dtype), np.zeros((B, H), run.dtype), np.zeros(G * H, run.dtype),
                workspace("deltas", (T, B, G * H), run.dtype))

    def recur(self, run) -> None:
        self.begin(run)
        forward(run.a, run.gates, run.hs, run.cs, run.tcs, run.WT, run.W, run.transposed, run.blas_rows, run.one,
                run.active)

    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        carry, carry_c, bias_grad, deltas = self.sums(run)
        backward(direct, gc, run.gates, run.cs, run.tcs, run.W, run.WT, run.transposed, run.blas_rows, deltas, carry,
                 carry_c, bias_grad, run.one, run.active)
        return Deltas([Block(self.gates, deltas, deltas, run.hs[:run.T])], bias_grad, {"h0": carry, "c0": carry_c})


KERNEL = LstmCoupled("lstm-coupled")
