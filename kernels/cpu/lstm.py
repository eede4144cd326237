"""The LSTM recurrence on the CPU: the sequential part only, fused with the gate nonlinearities.

Gates are stacked in the order i, f, g, o (blocks of H columns). With a_t = x_t U^T + b (computed for
every t in one GEMM beforehand) and the recurrent product h_{t-1} W^T:

    [i f g o] = [sigma tanh sigma sigma]... of a_t + h_{t-1} W^T   (sigma for i, f, o; tanh for g)
    c_t = f * c_{t-1} + i * g,     h_t = o * tanh(c_t)

BPTT, given dh_t (cotangent from outside plus the carry W^T-product of step t+1) and dc_{t+1}'s carry:

    dc_t  = dh_t * o * (1 - tanh(c_t)^2) + gc_t + f_{t+1} * dc_{t+1}
    dz_i = dc_t g i (1 - i),  dz_f = dc_t c_{t-1} f (1 - f),  dz_g = dc_t i (1 - g^2),
    dz_o = dh_t tanh(c_t) o (1 - o),   and dh_{t-1} receives dz_t W (the stacked W of every gate).

The same loops run the LSTM's two relatives, chosen by arguments that are empty when unused:

- peepholes (ONNX's P; ``peep`` (3, H) = P_i, P_f, P_o): the fused steps of :mod:`lstm_peephole`;
- a projection (PyTorch's ``proj_size``; ``W_hrT`` (H, P) not empty): the step writes r_t = o tanh(c_t)
  to ``rs`` and h_t = r_t W_hr^T (P) is a second product per step; W is then (4H, P). In BPTT the whole
  cotangent q_t of h_t goes to ``douts`` (for dW_hr = sum_t q_t^T r_t, one GEMM afterwards) and
  dr_t = q_t W_hr enters the step in place of dh_t.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu import lstm_peephole
from rnnspec.kernels.cpu.elementwise import sigmoid, tanh
from rnnspec.kernels.cpu.loops import clear, hold, matmul_into, pass_back, step_product

GATES = "ifgo"


# The loops index 1D rows and gate blocks (``row[k * H:(k + 1) * H]``), never ``a[r, k * H + j]``:
# Numba's wraparound check on a computed index, and gate values written over their own inputs, each
# stop LLVM from vectorizing (measured 37 against 3.3 ns per hidden unit at B = 64, H = 1024).


@njit(cache=True, nogil=True, error_model="numpy")
def step(a, product, gate, h, c_prev, c, tc, lo):
    """One step for the units lo..lo + u - 1, u = a.shape[1] / 4: a, product and gate hold those units' four
    gate blocks (u wide each); h, c_prev, c and tc are whole states, read and written at those units."""
    hidden = a.shape[1] // 4
    for r in range(h.shape[0]):
        ar, pr, gr = a[r], product[r], gate[r]
        ai, af, ag, ao = ar[:hidden], ar[hidden:2 * hidden], ar[2 * hidden:3 * hidden], ar[3 * hidden:]
        pi, pf, pg, po = pr[:hidden], pr[hidden:2 * hidden], pr[2 * hidden:3 * hidden], pr[3 * hidden:]
        gi, gf, gg, go = gr[:hidden], gr[hidden:2 * hidden], gr[2 * hidden:3 * hidden], gr[3 * hidden:]
        cp, cr = c_prev[r][lo:lo + hidden], c[r][lo:lo + hidden]
        tr, hr = tc[r][lo:lo + hidden], h[r][lo:lo + hidden]
        for j in range(hidden):
            i, f = sigmoid(ai[j] + pi[j]), sigmoid(af[j] + pf[j])
            g, o = tanh(ag[j] + pg[j]), sigmoid(ao[j] + po[j])
            cell = f * cp[j] + i * g
            squashed = tanh(cell)
            gi[j], gf[j], gg[j], go[j] = i, f, g, o
            cr[j], tr[j], hr[j] = cell, squashed, o * squashed


@njit(cache=True, nogil=True, error_model="numpy")
def forward(a, gates, hs, cs, tcs, rs, WT, W, W_hrT, peep, blas_rows, projection_rows, active):
    """a (T, B, 4H) = x_t U^T + b; gates (T, B, 4H) receives [i f g o]; hs (T+1, B, P), cs (T+1, B, H) start
    with h0, c0 and receive h_t, c_t; tcs (T, B, H) receives tanh(c_t). WT is the stacked W transposed,
    (P, 4H); W the stacked W itself where the step's product goes through it (loops.step_product), else
    empty. Rows r >= active[t] hold their states at step t (loops.hold). Without a projection (W_hrT
    empty) P = H and rs is not used; without peepholes peep is empty."""
    projected, peeped = W_hrT.shape[0] > 0, peep.shape[0] > 0
    product = np.empty(gates.shape[1:], gates.dtype)
    staging = np.empty(product.size if W.shape[0] else 0, gates.dtype)
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            step_product(hs[t][:n], WT, W, product[:n], blas_rows, staging)
            out = rs[t][:n] if projected else hs[t + 1][:n]
            if peeped:
                lstm_peephole.step(a[t][:n], product[:n], gates[t][:n], out, cs[t][:n], cs[t + 1][:n], tcs[t][:n],
                                   peep)
            else:
                step(a[t][:n], product[:n], gates[t][:n], out, cs[t][:n], cs[t + 1][:n], tcs[t][:n], 0)
            if projected:
                matmul_into(rs[t][:n], W_hrT, hs[t + 1][:n], projection_rows)
        hold(hs[t], hs[t + 1], n)
        hold(cs[t], cs[t + 1], n)
        if projected:
            clear(rs[t], n)  # finite where dW_hr's GEMM meets its zero cotangents


@njit(cache=True, nogil=True, error_model="numpy")
def back_step(delta, direct, gc, has_gc, gate, c_prev, tc, carry_h, carry_c, bias_grad, one, lo):
    """One BPTT step for the units lo..lo + u - 1, u = carry_h.shape[1]: delta, gate, the carries and
    bias_grad hold those units only; direct, gc, c_prev and tc are whole states, read at those units."""
    hidden = carry_h.shape[1]
    bi, bf, bg, bo = bias_grad[:hidden], bias_grad[hidden:2 * hidden], bias_grad[2 * hidden:3 * hidden], \
        bias_grad[3 * hidden:]
    for r in range(carry_h.shape[0]):
        gr, dr = gate[r], delta[r]
        gi, gf, gg, go = gr[:hidden], gr[hidden:2 * hidden], gr[2 * hidden:3 * hidden], gr[3 * hidden:]
        di, df, dg, do = dr[:hidden], dr[hidden:2 * hidden], dr[2 * hidden:3 * hidden], dr[3 * hidden:]
        out, ch, cc = direct[r][lo:lo + hidden], carry_h[r], carry_c[r]
        cp, tr = c_prev[r][lo:lo + hidden], tc[r][lo:lo + hidden]
        extra = gc[r][lo:lo + hidden]  # read only when has_gc
        for j in range(hidden):
            i, f, g, o = gi[j], gf[j], gg[j], go[j]
            dh = out[j] + ch[j]
            squashed = tr[j]
            dc = dh * o * (one - squashed * squashed) + cc[j]
            if has_gc:
                dc += extra[j]
            dzi, dzf = dc * g * i * (one - i), dc * cp[j] * f * (one - f)
            dzg, dzo = dc * i * (one - g * g), dh * squashed * o * (one - o)
            di[j], df[j], dg[j], do[j] = dzi, dzf, dzg, dzo
            bi[j] += dzi
            bf[j] += dzf
            bg[j] += dzg
            bo[j] += dzo
            cc[j] = dc * f


@njit(cache=True, nogil=True, error_model="numpy")
def _total(out, direct, carry):
    """out = direct + carry: the whole cotangent of h_t."""
    for r in range(out.shape[0]):
        o, d, c = out[r], direct[r], carry[r]
        for j in range(out.shape[1]):
            o[j] = d[j] + c[j]


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gc, has_gc, gates, cs, tcs, W, WT, W_hr, peep, blas_rows, projection_rows, deltas, douts,
             carry_h, carry_c, bias_grad, peep_grad, one, active):
    """dz_t for t = T..1 into deltas (T, B, 4H); carry_h (B, P) ends as dL/dh0, carry_c as dL/dc0 (both start
    at zero); bias_grad (4H,) and peep_grad (3, H) accumulate. W is the stacked W, (4H, P); WT its transpose
    where the step's product goes through it (loops.step_product), else empty; W_hr (P, H) or empty; douts
    (T, B, P) receives the cotangents of h_t when projected. gc (T, B, H) is read only if has_gc.
    Rows r >= active[t] were held at step t: their cotangents pass on, their deltas are zero."""
    projected, peeped = W_hr.shape[0] > 0, peep.shape[0] > 0
    batch, hidden = carry_c.shape
    staging = np.empty(carry_h.size if WT.shape[0] else 0, carry_h.dtype)
    d_r = np.empty((batch if projected else 0, hidden), carry_c.dtype)
    none = np.zeros((batch if projected else 0, hidden), carry_c.dtype)  # the step's dh carry: all of it is in d_r
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        pass_back(carry_h, direct[t], n)
        if has_gc:
            pass_back(carry_c, gc[t], n)
        clear(deltas[t], n)
        if projected:
            clear(douts[t], n)
        if n == 0:
            continue
        if projected:
            _total(douts[t][:n], direct[t][:n], carry_h[:n])
            matmul_into(douts[t][:n], W_hr, d_r[:n], projection_rows)
            dh, carry = d_r[:n], none[:n]
        else:
            dh, carry = direct[t][:n], carry_h[:n]
        if peeped:
            lstm_peephole.back_step(deltas[t][:n], dh, gc[t][:n], has_gc, gates[t][:n], cs[t][:n], cs[t + 1][:n],
                                    tcs[t][:n], carry, carry_c[:n], bias_grad, peep, peep_grad, one)
        else:
            back_step(deltas[t][:n], dh, gc[t][:n], has_gc, gates[t][:n], cs[t][:n], tcs[t][:n], carry, carry_c[:n],
                      bias_grad, one, 0)
        step_product(deltas[t][:n], W, WT, carry_h[:n], blas_rows, staging)
