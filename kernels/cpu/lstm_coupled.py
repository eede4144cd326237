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

from rnnspec.kernels.cpu import lstm
from rnnspec.kernels.cpu.elementwise import GATE_LOOPS, sigmoid, tanh
from rnnspec.kernels.cpu.family import copy_with
from rnnspec.kernels.cpu.lstm import Family

# 1D rows and gate blocks, and gate values apart from their inputs, as in lstm.py: so LLVM vectorizes.


@njit(**GATE_LOOPS)
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


@njit(**GATE_LOOPS)
def back_step(delta, direct, gc, gate, c_prev, c, tc, carry_h, carry_c, bias_grad, one, cell):
    """One BPTT step (lstm.backward's ``back``; c and cell unread)."""
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


class LstmCoupled(Family):
    """The LSTM family's cell state and one stacked product a step, with the catalogue's three gates."""

    def cell(self, run) -> np.generic:
        """1 in the run's dtype: the coupled forget gate's 1 - i."""
        return run.one


# the LSTM's loops over time, calling this module's steps
forward = copy_with(lstm.forward, __name__, step=step)
backward = copy_with(lstm.backward, __name__, back=back_step)
KERNEL = LstmCoupled("lstm-coupled", (forward, backward))
