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

from rnnspec.kernels.cpu import lstm
from rnnspec.kernels.cpu.elementwise import GATE_LOOPS, sigmoid, tanh
from rnnspec.kernels.cpu.family import copy_with
from rnnspec.kernels.cpu.lstm import Family

# 1D rows and gate blocks, and gate values apart from their inputs, as in lstm.py: so LLVM vectorizes.


@njit(**GATE_LOOPS)
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


@njit(**GATE_LOOPS)
def back_step(delta, direct, gc, gate, c_prev, c, tc, carry_h, carry_c, bias_grad, one, cell):
    """One BPTT step (lstm.backward's ``back``); cell = (peep (3, H), peep_grad (3, H)): P_i, P_f, P_o and the
    sums of their gradients."""
    peep, peep_grad = cell
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


class LstmPeephole(Family):
    """peep's rows are the catalogue's extra parameters of the cell, in its order: P_i, P_f, P_o."""

    def cell(self, run) -> np.ndarray:
        run.peep = np.stack([run.params[key] for key in self.extra])
        return run.peep

    def cell_back(self, run) -> tuple[object, dict[str, np.ndarray]]:
        peep_grad = np.zeros(run.peep.shape, run.dtype)
        return (run.peep, peep_grad), dict(zip(self.extra, peep_grad))


# the LSTM's loops over time, calling this module's steps
forward = copy_with(lstm.forward, __name__, step=step)
backward = copy_with(lstm.backward, __name__, back=back_step)
KERNEL = LstmPeephole("lstm-peephole", (forward, backward))
