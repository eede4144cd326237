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

from numba import njit

from rnnspec.kernels.cpu import gru_reset_after
from rnnspec.kernels.cpu.elementwise import GATE_LOOPS, sigmoid, tanh
from rnnspec.kernels.cpu.family import copy_with, with_steps_inlined
from rnnspec.kernels.cpu.gru_reset_after import ResetAfter

# 1D rows and gate blocks, and gate values apart from their inputs, as in lstm.py: so LLVM vectorizes.


@njit(**GATE_LOOPS)
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


# The deltas, the carry and the sums over rows as three loops, as in gru_reset_after.back_step (so that LLVM
# vectorizes each).
@njit(**GATE_LOOPS)
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


# the reset-after GRU's loops over time, calling this module's steps
forward = copy_with(gru_reset_after.forward, __name__, step=step)
backward = copy_with(gru_reset_after.backward, __name__, back_step=back_step)
#: the forward in one compiled call, around this module's loop with its step inlined (family.with_steps_inlined)
forward_inlined = with_steps_inlined(gru_reset_after.forward, __name__, step=step)
forward_at_once = copy_with(gru_reset_after._forward, __name__, forward_inlined=forward_inlined)
KERNEL = ResetAfter("mgu-flax", (forward, backward), forward_at_once)
