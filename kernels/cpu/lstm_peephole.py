"""The LSTM with peepholes (ONNX's P) on the CPU: its fused steps and the loops around them.

As :mod:`lstm` (gates i, f, g, o stacked; a_t = x_t U^T + b beforehand), with the peephole vectors P_i, P_f
reading c_{t-1} and P_o reading the new c_t:

    i = sigma(a_i + p_i + P_i c_{t-1}),  f = sigma(a_f + p_f + P_f c_{t-1}),  g = tanh(a_g + p_g),
    c_t = f c_{t-1} + i g,  o = sigma(a_o + p_o + P_o c_t),  h_t = o tanh(c_t)

BPTT, given dh_t and the carry of dc_{t+1}:

    dz_o = dh_t tanh(c_t) o (1 - o),   dc_t = dh_t o (1 - tanh(c_t)^2) + dz_o P_o + gc_t + carry,
    dz_i = dc_t g i (1 - i),  dz_f = dc_t c_{t-1} f (1 - f),  dz_g = dc_t i (1 - g^2),
    carry to c_{t-1} = dc_t f + dz_i P_i + dz_f P_f,
    dP_i += dz_i c_{t-1},  dP_f += dz_f c_{t-1},  dP_o += dz_o c_t.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.cells import Block, Deltas
from rnnspec.kernels.cpu.elementwise import sigmoid, tanh
from rnnspec.kernels.cpu.loops import clear, hold, pass_back, step_product
from rnnspec.kernels.cpu.lstm import Family

# 1D rows and gate blocks, and gate values apart from their inputs, as in lstm.py: so LLVM vectorizes.


@njit(cache=True, nogil=True, error_model="numpy")
def step(a, product, gate, h, c_prev, c, tc, peep):
    hidden = h.shape[1]
    peep_i, peep_f, peep_o = peep[0], peep[1], peep[2]
    for r in range(h.shape[0]):
        ar, pr, gr = a[r], product[r], gate[r]
        ai, af, ag, ao = ar[:hidden], ar[hidden:2 * hidden], ar[2 * hidden:3 * hidden], ar[3 * hidden:]
        pi, pf, pg, po = pr[:hidden], pr[hidden:2 * hidden], pr[2 * hidden:3 * hidden], pr[3 * hidden:]
        gi, gf, gg, go = gr[:hidden], gr[hidden:2 * hidden], gr[2 * hidden:3 * hidden], gr[3 * hidden:]
        cp, cr, tr, hr = c_prev[r], c[r], tc[r], h[r]
        for j in range(hidden):
            i, f = sigmoid(ai[j] + pi[j] + peep_i[j] * cp[j]), sigmoid(af[j] + pf[j] + peep_f[j] * cp[j])
            g = tanh(ag[j] + pg[j])
            cell = f * cp[j] + i * g
            o = sigmoid(ao[j] + po[j] + peep_o[j] * cell)
            squashed = tanh(cell)
            gi[j], gf[j], gg[j], go[j] = i, f, g, o
            cr[j], tr[j], hr[j] = cell, squashed, o * squashed


@njit(cache=True, nogil=True, error_model="numpy")
def back_step(delta, direct, gc, gate, c_prev, c, tc, carry_h, carry_c, bias_grad, peep, peep_grad, one):
    hidden = carry_h.shape[1]
    bi, bf, bg, bo = bias_grad[:hidden], bias_grad[hidden:2 * hidden], bias_grad[2 * hidden:3 * hidden], \
        bias_grad[3 * hidden:]
    peep_i, peep_f, peep_o = peep[0], peep[1], peep[2]
    dpi, dpf, dpo = peep_grad[0], peep_grad[1], peep_grad[2]
    for r in range(carry_h.shape[0]):
        gr, dr = gate[r], delta[r]
        gi, gf, gg, go = gr[:hidden], gr[hidden:2 * hidden], gr[2 * hidden:3 * hidden], gr[3 * hidden:]
        di, df, dg, do = dr[:hidden], dr[hidden:2 * hidden], dr[2 * hidden:3 * hidden], dr[3 * hidden:]
        out, ch, cc, cp, cr, tr = direct[r], carry_h[r], carry_c[r], c_prev[r], c[r], tc[r]
        extra = gc[r]
        for j in range(hidden):
            i, f, g, o = gi[j], gf[j], gg[j], go[j]
            dh = out[j] + ch[j]
            squashed = tr[j]
            dzo = dh * squashed * o * (one - o)
            dc = dh * o * (one - squashed * squashed) + dzo * peep_o[j] + cc[j] + extra[j]
            dzi, dzf = dc * g * i * (one - i), dc * cp[j] * f * (one - f)
            dzg = dc * i * (one - g * g)
            di[j], df[j], dg[j], do[j] = dzi, dzf, dzg, dzo
            cc[j] = dc * f + dzi * peep_i[j] + dzf * peep_f[j]
        # the sums over rows apart: in the loop above their streams kept LLVM from vectorizing it
        for j in range(hidden):
            bi[j] += di[j]
            bf[j] += df[j]
            bg[j] += dg[j]
            bo[j] += do[j]
            dpi[j] += di[j] * cp[j]
            dpf[j] += df[j] * cp[j]
            dpo[j] += do[j] * cr[j]


@njit(cache=True, nogil=True, error_model="numpy")
def forward(a, gates, hs, cs, tcs, WT, W, transposed, peep, blas_rows, active):
    """As lstm.forward, the steps reading the peepholes peep (3, H) = P_i, P_f, P_o."""
    product = np.empty(gates.shape[1:], gates.dtype)
    staging = np.empty(product.size if transposed else 0, gates.dtype)
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            step_product(hs[t][:n], WT, W, product[:n], blas_rows, staging, transposed)
            step(a[t][:n], product[:n], gates[t][:n], hs[t + 1][:n], cs[t][:n], cs[t + 1][:n], tcs[t][:n], peep)
        hold(hs[t], hs[t + 1], n)
        hold(cs[t], cs[t + 1], n)


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gc, gates, cs, tcs, W, WT, transposed, peep, blas_rows, deltas, carry_h, carry_c, bias_grad,
             peep_grad, one, active):
    """As lstm.backward; peep_grad (3, H) accumulates dL/dP_i, dL/dP_f, dL/dP_o."""
    staging = np.empty(carry_h.size if transposed else 0, carry_h.dtype)
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        pass_back(carry_h, direct[t], n)
        pass_back(carry_c, gc[t], n)
        clear(deltas[t], n)
        if n > 0:
            back_step(deltas[t][:n], direct[t][:n], gc[t][:n], gates[t][:n], cs[t][:n], cs[t + 1][:n], tcs[t][:n],
                      carry_h[:n], carry_c[:n], bias_grad, peep, peep_grad, one)
            step_product(deltas[t][:n], W, WT, carry_h[:n], blas_rows, staging, transposed)


class LstmPeephole(Family):
    """peep's rows are the catalogue's extra parameters of the cell, in its order: P_i, P_f, P_o."""

    def recur(self, run) -> None:
        self.begin(run)
        run.peep = np.stack([run.params[key] for key in self.extra])
        forward(run.a, run.gates, run.hs, run.cs, run.tcs, run.WT, run.W, run.transposed, run.peep, run.blas_rows,
                run.active)

    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        carry, carry_c, bias_grad, deltas = self.sums(run)
        peep_grad = np.zeros(run.peep.shape, run.dtype)
        backward(direct, gc, run.gates, run.cs, run.tcs, run.W, run.WT, run.transposed, run.peep, run.blas_rows,
                 deltas, carry, carry_c, bias_grad, peep_grad, run.one, run.active)
        return Deltas([Block(self.gates, deltas, deltas, run.hs[:run.T])], bias_grad, {"h0": carry, "c0": carry_c},
                      dict(zip(self.extra, peep_grad)))


KERNEL = LstmPeephole("lstm-peephole")
