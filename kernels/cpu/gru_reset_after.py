"""The GRU recurrence with the reset gate after the recurrent product (PyTorch, cuDNN, Keras 3, Flax).

Gates stacked r, z, n. With a_t = x_t U^T + b (every t in one GEMM beforehand; b_n in the n block)
and the recurrent product p_t = h_{t-1} W^T (all three gates in one GEMM per step):

    r = sigma(a_r + p_r),  z = sigma(a_z + p_z),  m = p_n + b_hn,  n = tanh(a_n + r * m),
    h_t = (1 - z) * n + z * h_{t-1}

BPTT, given dh_t: dz_n = dh_t (1 - z)(1 - n^2), dz_r = dz_n m r (1 - r), dz_z = dh_t (h_{t-1} - n) z (1 - z),
dm = dz_n r. The input side's deltas are [dz_r dz_z dz_n] (for U, b, x); the recurrent side's are
[dz_r dz_z dm] (for W, b_hn and dh_{t-1} = dh_t z + [dz_r dz_z dm] W).

The loops over time (:func:`forward`, :func:`backward`) serve every cell of this form: :mod:`mgu_flax` runs copies
of them around its own steps (:mod:`family`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels import checks
from rnnspec.kernels.cpu.cells import Block, Deltas, Gated
from rnnspec.kernels.cpu.elementwise import GATE_LOOPS, sigmoid, tanh
from rnnspec.kernels.cpu.family import with_steps_inlined
from rnnspec.kernels.cpu.loops import at_once_inputs, clear, hold, pass_back, step_product
from rnnspec.kernels.cpu.scratch import workspace

# 1D rows and gate blocks, and gate values apart from their inputs, as in lstm.py: so LLVM vectorizes.


@njit(**GATE_LOOPS)
def step(a, product, gate, h_prev, h, m, b_hn, one, lo):
    """One step for the units lo..lo + u - 1, u = a.shape[1] / 3: a, product and gate hold those units' three
    gate blocks (u wide each); h_prev, h, m and b_hn are whole, read and written at those units."""
    hidden = a.shape[1] // 3
    for r in range(h.shape[0]):
        ar, pr, gr = a[r], product[r], gate[r]
        ar_, az, an = ar[:hidden], ar[hidden:2 * hidden], ar[2 * hidden:]
        pr_, pz, pn = pr[:hidden], pr[hidden:2 * hidden], pr[2 * hidden:]
        gr_, gz, gn = gr[:hidden], gr[hidden:2 * hidden], gr[2 * hidden:]
        hp, hr, mr = h_prev[r][lo:lo + hidden], h[r][lo:lo + hidden], m[r][lo:lo + hidden]
        bias = b_hn[lo:lo + hidden]
        for j in range(hidden):
            reset, update = sigmoid(ar_[j] + pr_[j]), sigmoid(az[j] + pz[j])
            recurrent = pn[j] + bias[j]
            new = tanh(an[j] + reset * recurrent)
            gr_[j], gz[j], gn[j] = reset, update, new
            mr[j] = recurrent
            hr[j] = (one - update) * new + update * hp[j]


@njit(cache=True, nogil=True, error_model="numpy")
def forward(a, gates, hs, ms, WT, W, transposed, b_hn, blas_rows, one, active, packed):
    """a (T, B, G H) = x_t U^T + b; gates (T, B, G H) receives the gates (here [r z n]); hs (T+1, B, H) starts
    with h0 and receives h_t; ms (T, B, H) receives m_t. W is the stacked W (G H, H), WT its transpose; the step's
    product runs through W where ``transposed`` (loops.step_product). Rows r >= active[t] hold their state at
    step t (loops.hold). Each step is the global ``step``: this module's, or a relative's in its copy
    (family.copy_with). Where ``packed`` holds W^T in panels (loops.step_product), the products run by them."""
    product = np.empty(gates.shape[1:], gates.dtype)
    staging = np.empty(product.size if transposed else 0, gates.dtype)
    batch = gates.shape[1]
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            step_product(hs[t][:n], WT, W, product[:n], blas_rows, staging, transposed, packed)
            step(a[t][:n], product[:n], gates[t][:n], hs[t][:n], hs[t + 1][:n], ms[t][:n], b_hn, one, 0)
        if n < batch:
            hold(hs[t], hs[t + 1], n)


# The deltas, the carry and the sums over rows run as three loops: fused into one, its eleven streams
# (four of them sums) needed more runtime alias checks than LLVM makes, and it ran scalar
# (21.5 against 7.7 us at B = 32, H = 128).
@njit(**GATE_LOOPS)
def back_step(delta_in, delta_rec, direct, gate, h_prev, m, carry, kept, bias_grad, b_hn_grad, one, lo):
    """One BPTT step for the units lo..lo + u - 1, u = carry.shape[1]: both deltas, gate, carry, kept and
    bias_grad hold those units only; direct, h_prev, m and b_hn_grad are whole, used at those units."""
    hidden = carry.shape[1]
    br, bz, bn = bias_grad[:hidden], bias_grad[hidden:2 * hidden], bias_grad[2 * hidden:]
    bias_hn = b_hn_grad[lo:lo + hidden]
    for r in range(carry.shape[0]):
        gr, di, dr = gate[r], delta_in[r], delta_rec[r]
        gr_, gz, gn = gr[:hidden], gr[hidden:2 * hidden], gr[2 * hidden:]
        dir_, diz, din = di[:hidden], di[hidden:2 * hidden], di[2 * hidden:]
        drr, drz, drn = dr[:hidden], dr[hidden:2 * hidden], dr[2 * hidden:]
        out, cr, kr = direct[r][lo:lo + hidden], carry[r], kept[r]
        hp, mr = h_prev[r][lo:lo + hidden], m[r][lo:lo + hidden]
        for j in range(hidden):
            reset, update, new = gr_[j], gz[j], gn[j]
            dh = out[j] + cr[j]
            dzn = dh * (one - update) * (one - new * new)
            dzr = dzn * mr[j] * reset * (one - reset)
            dzz = dh * (hp[j] - new) * update * (one - update)
            dir_[j], diz[j], din[j] = dzr, dzz, dzn
            drr[j], drz[j], drn[j] = dzr, dzz, dzn * reset
        for j in range(hidden):
            kr[j] = (out[j] + cr[j]) * gz[j]
        for j in range(hidden):
            br[j] += dir_[j]
            bz[j] += diz[j]
            bn[j] += din[j]
            bias_hn[j] += drn[j]


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gates, hs, ms, W, WT, transposed, blas_rows, deltas_in, deltas_rec, carry, bias_grad, b_hn_grad,
             one, active, packed):
    """Both deltas (T, B, G H) for t = T..1; carry (B, H) starts at zero and ends as dL/dh0;
    bias_grad (G H,) and b_hn_grad (H,) accumulate. W is the stacked W, (G H, H), WT its transpose, read where
    ``transposed`` (loops.step_product). Rows r >= active[t] were held at step t: their cotangents pass on,
    their deltas are zero. Each step is the global ``back_step``, as ``step`` in :func:`forward`; ``packed`` as
    there, W in panels."""
    kept = np.empty_like(carry)
    staging = np.empty(carry.size if transposed else 0, carry.dtype)
    batch = carry.shape[0]
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        if n < batch:
            pass_back(carry, direct[t], n)
            clear(deltas_in[t], n)
            clear(deltas_rec[t], n)
        if n > 0:
            back_step(deltas_in[t][:n], deltas_rec[t][:n], direct[t][:n], gates[t][:n], hs[t][:n], ms[t][:n],
                      carry[:n], kept[:n], bias_grad, b_hn_grad, one, 0)
            step_product(deltas_rec[t][:n], W, WT, carry[:n], blas_rows, staging, transposed, packed)
            carry[:n] += kept[:n]


#: :func:`forward` with :func:`step` inlined, the one compiled call's loop (family.with_steps_inlined)
forward_inlined = with_steps_inlined(forward, __name__, step=step)


@njit(cache=True, nogil=True, error_model="numpy")
def _forward(x, h0, Us, bs, Ws, b_hn, one):
    """The GRU's forward in one compiled call, for step products small enough to run as loops, as lstm._forward is
    the LSTM's: the same steps as the shared path. Returns h (T, B, H)."""
    a, WT, block = at_once_inputs(x, Us, bs, Ws, 1)
    hs = block[0]
    hs[0] = h0
    steps, batch, hidden = x.shape[0], x.shape[1], h0.shape[1]
    ms = np.empty((steps, batch, hidden), x.dtype)
    active = np.full(steps, batch, np.int64)
    forward_inlined(a, np.empty_like(a), hs, ms, WT, WT, False, b_hn, 0, one, active, np.empty((0, 0, 1), x.dtype))
    return hs[1:]


class ResetAfter(Gated):
    """The kernel of a cell of the reset-after form (one stacked product a step, then the gate inside the
    recurrent product's sum, and b_hn): this module's GRU, and flax's MGU with its own copies of the loops."""

    transposable = True

    def __init__(self, name: str, loops: tuple = (forward, backward), at_once: object = _forward) -> None:
        super().__init__(name)
        #: the cell's forward and backward: this module's, or copies calling the cell's steps (family.copy_with)
        self.loops = loops
        #: the forward in one compiled call (:func:`_forward`, or a relative's copy of it around its own loop)
        self.at_once = at_once

    def forward_at_once(self, call) -> dict[str, np.ndarray]:
        return {"h": self.at_once(checks.contiguous(call.x), checks.contiguous(call.state0["h0"]), call.per_gate("U"),
                                  call.per_gate("b"), call.per_gate("W"), call.param("b_hn"), call.one)}

    def recur(self, run) -> None:
        run.W = run.stack("W")
        run.ms = run.scratch("m", (run.T, run.B, run.H))
        WT, packed = run.weights(run.W)
        self.loops[0](run.a, run.gates, run.hs, run.ms, WT, run.W, run.transposed, run.param("b_hn"),
                      run.blas_rows, run.one, run.active, packed)

    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        T, B, H, G = run.T, run.B, run.H, len(self.gates)
        # consumed by the gradients' GEMMs before any other run's BPTT: shared by every run
        deltas, recurrent = workspace("deltas", (T, B, G * H), run.dtype), workspace("deltas_recurrent", (T, B, G * H),
                                                                                      run.dtype)
        carry, bias_grad, b_hn_grad = np.zeros((B, H), run.dtype), np.zeros(G * H, run.dtype), np.zeros(H, run.dtype)
        WT, packed = run.weights(run.W, backward=True)
        self.loops[1](direct, run.gates, run.hs, run.ms, run.W, WT, run.transposed, run.blas_rows, deltas,
                      recurrent, carry, bias_grad, b_hn_grad, run.one, run.active, packed)
        return Deltas([Block(self.gates, deltas, recurrent, run.hs[:T])], bias_grad, {"h0": carry}, {"b_hn": b_hn_grad})


KERNEL = ResetAfter("gru-reset-after")
