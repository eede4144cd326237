"""The LSTM with a projection (PyTorch's ``proj_size``) on the CPU: the LSTM's steps (:mod:`lstm`), then
h_t = r_t W_hr^T, a second product per step.

As :mod:`lstm`, with W (4H, P) reading the P-wide h_{t-1}: the step writes r_t = o tanh(c_t) (H) to ``rs``, and
h_t = r_t W_hr^T (P). In BPTT the whole cotangent q_t of h_t (from outside plus the carry) goes to ``douts`` (for
dW_hr = sum_t q_t^T r_t, one GEMM afterwards), and dr_t = q_t W_hr enters the LSTM's step in place of dh_t.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.cells import Block, Deltas
from rnnspec.kernels.cpu.loops import clear, hold, matmul_into, pass_back, recurrent_side, step_product
from rnnspec.kernels.cpu.loops import transposed as transposed_copy
from rnnspec.kernels.cpu.lstm import Family, back_step, step
from rnnspec.kernels.cpu.scratch import workspace


@njit(cache=True, nogil=True, error_model="numpy")
def forward(a, gates, hs, cs, tcs, rs, WT, W, transposed, W_hrT, blas_rows, projection_rows, active, packed):
    """As lstm.forward, with hs (T+1, B, P), WT (P, 4H) and W (4H, P); rs (T, B, H) receives r_t, and h_t =
    r_t W_hr^T by W_hrT (H, P). rs is zero at held rows (finite where dW_hr's GEMM meets their zero cotangents).
    packed as in lstm.forward."""
    product = np.empty(gates.shape[1:], gates.dtype)
    staging = np.empty(product.size if transposed else 0, gates.dtype)
    batch = gates.shape[1]
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            step_product(hs[t][:n], WT, W, product[:n], blas_rows, staging, transposed, packed)
            step(a[t][:n], product[:n], gates[t][:n], rs[t][:n], cs[t][:n], cs[t + 1][:n], tcs[t][:n], 0)
            matmul_into(rs[t][:n], W_hrT, hs[t + 1][:n], projection_rows)
        if n < batch:
            hold(hs[t], hs[t + 1], n)
            hold(cs[t], cs[t + 1], n)
            clear(rs[t], n)


@njit(cache=True, nogil=True, error_model="numpy")
def _total(out, direct, carry):
    """out = direct + carry: the whole cotangent of h_t."""
    for r in range(out.shape[0]):
        o, d, c = out[r], direct[r], carry[r]
        for j in range(out.shape[1]):
            o[j] = d[j] + c[j]


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gc, gates, cs, tcs, W, WT, transposed, W_hr, blas_rows, projection_rows, deltas, douts,
             carry_h, carry_c, bias_grad, one, active, packed):
    """As lstm.backward, with direct and carry_h (B, P) P wide and W (4H, P); douts (T, B, P) receives the whole
    cotangent of h_t, and its product with W_hr (P, H) enters the step as dr_t. packed as in lstm.backward."""
    batch, hidden = carry_c.shape
    staging = np.empty(carry_h.size if transposed else 0, carry_h.dtype)
    d_r = np.empty((batch, hidden), carry_c.dtype)
    none = np.zeros((batch, hidden), carry_c.dtype)  # the step's own carry of dh: all of it is in d_r
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        if n < batch:
            pass_back(carry_h, direct[t], n)
            pass_back(carry_c, gc[t], n)
            clear(deltas[t], n)
            clear(douts[t], n)
        if n > 0:
            _total(douts[t][:n], direct[t][:n], carry_h[:n])
            matmul_into(douts[t][:n], W_hr, d_r[:n], projection_rows)
            back_step(deltas[t][:n], d_r[:n], gc[t][:n], True, gates[t][:n], cs[t][:n], tcs[t][:n], none[:n],
                      carry_c[:n], bias_grad, one, 0)
            step_product(deltas[t][:n], W, WT, carry_h[:n], blas_rows, staging, transposed, packed)


class LstmProjected(Family):
    def recur(self, run) -> None:
        self.begin(run)
        run.rs = run.scratch("r", (run.T, run.B, run.H))
        W_hr = run.param("W_hr")
        WT, packed = run.weights(run.W)
        forward(run.a, run.gates, run.hs, run.cs, run.tcs, run.rs, WT, run.W, run.transposed, transposed_copy(W_hr),
                run.blas_rows, run.projection_rows, run.active, packed)

    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        T, B, H, P = run.T, run.B, run.H, run.P
        carry, carry_c, bias_grad, deltas = self.sums(run)
        douts = workspace("douts", (T, B, P), run.dtype)
        WT, packed = run.weights(run.W, backward=True)
        backward(direct, gc, run.gates, run.cs, run.tcs, run.W, WT, run.transposed, run.param("W_hr"),
                 run.blas_rows, run.projection_rows, deltas, douts, carry, carry_c, bias_grad, run.one, run.active,
                 packed)
        extra = {"W_hr": recurrent_side(run.rs.reshape(T * B, H), douts.reshape(T * B, P))}
        return Deltas([Block(self.gates, deltas, deltas, run.hs[:T])], bias_grad, {"h0": carry, "c0": carry_c},
                      extra)


KERNEL = LstmProjected("lstm-proj")
