"""The LSTM recurrence on the CPU: the sequential part only, fused with the gate nonlinearities.

Gates are stacked in the order i, f, g, o (blocks of H columns). With a_t = x_t U^T + b (computed for
every t in one GEMM beforehand) and the recurrent product h_{t-1} W^T:

    [i f g o] = [sigma tanh sigma sigma]... of a_t + h_{t-1} W^T   (sigma for i, f, o; tanh for g)
    c_t = f * c_{t-1} + i * g,     h_t = o * tanh(c_t)

BPTT, given dh_t (cotangent from outside plus the carry W^T-product of step t+1) and dc_{t+1}'s carry:

    dc_t  = dh_t * o * (1 - tanh(c_t)^2) + gc_t + f_{t+1} * dc_{t+1}
    dz_i = dc_t g i (1 - i),  dz_f = dc_t c_{t-1} f (1 - f),  dz_g = dc_t i (1 - g^2),
    dz_o = dh_t tanh(c_t) o (1 - o),   and dh_{t-1} receives dz_t W (the stacked W of every gate).

The stacked order is the catalogue's (rnnspec.catalogue: i, f, g, o), which the loops' four blocks follow;
the oracle tests of every cell fail on any disagreement. The LSTM's relatives have modules of their own: their
steps, run by copies of this module's loops over time (:mod:`family`): :mod:`lstm_peephole` (peepholes) and
:mod:`lstm_coupled` (f = 1 - i); :mod:`lstm_proj` (a projection) reuses these steps in loops of its own.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels import checks
from rnnspec.kernels.cpu.cells import Block, Deltas, Gated
from rnnspec.kernels.cpu.elementwise import GATE_LOOPS, sigmoid, tanh
from rnnspec.kernels.cpu.family import with_steps_inlined
from rnnspec.kernels.cpu.loops import (
    at_once_inputs,
    clear,
    head_kernel,
    hold,
    input_side,
    pass_back,
    project,
    recurrent_side,
    step_product,
    transposed,
)
from rnnspec.kernels.cpu.scratch import workspace

# The loops index 1D rows and gate blocks (``row[k * H:(k + 1) * H]``), never ``a[r, k * H + j]``:
# Numba's wraparound check on a computed index, and gate values written over their own inputs, each
# stop LLVM from vectorizing (measured 37 against 3.3 ns per hidden unit at B = 64, H = 1024).


@njit(**GATE_LOOPS)
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
def forward(a, gates, hs, cs, tcs, WT, W, transposed, blas_rows, active, cell, packed):
    """a (T, B, G H) = x_t U^T + b; gates (T, B, G H) receives the gates (here [i f g o]); hs, cs (T+1, B, H) start
    with h0, c0 and receive h_t, c_t; tcs (T, B, H) receives tanh(c_t). W is the stacked W (G H, H), WT its
    transpose; the step's product runs through W where ``transposed`` (loops.step_product). Rows r >= active[t]
    hold their states at step t (loops.hold). Each step is the global ``step``: this module's, or a relative's in
    its copy (family.copy_with), given ``cell``, what the cell's step reads beyond the states (here its first
    unit, 0). Where ``packed`` holds W^T in panels (loops.step_product), the products run by them."""
    product = np.empty(gates.shape[1:], gates.dtype)
    staging = np.empty(product.size if transposed else 0, gates.dtype)
    batch = gates.shape[1]
    for t in range(gates.shape[0]):
        n = active[t]
        if n > 0:
            step_product(hs[t][:n], WT, W, product[:n], blas_rows, staging, transposed, packed)
            step(a[t][:n], product[:n], gates[t][:n], hs[t + 1][:n], cs[t][:n], cs[t + 1][:n], tcs[t][:n], cell)
        if n < batch:
            hold(hs[t], hs[t + 1], n)
            hold(cs[t], cs[t + 1], n)


#: :func:`forward` with :func:`step` inlined, the one compiled calls' loop (family.with_steps_inlined)
forward_inlined = with_steps_inlined(forward, __name__, step=step)


@njit(**GATE_LOOPS)
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
def back(delta, direct, gc, gate, c_prev, c, tc, carry_h, carry_c, bias_grad, one, cell):
    """The plain LSTM's BPTT step as :func:`backward` calls a cell's: back_step at every unit, gc given."""
    back_step(delta, direct, gc, True, gate, c_prev, tc, carry_h, carry_c, bias_grad, one, 0)


@njit(cache=True, nogil=True, error_model="numpy")
def backward(direct, gc, gates, cs, tcs, W, WT, transposed, blas_rows, deltas, carry_h, carry_c, bias_grad, one,
             active, cell, packed):
    """dz_t for t = T..1 into deltas (T, B, G H); carry_h as dL/dh0, carry_c as dL/dc0 (both start at zero);
    bias_grad (G H,) accumulates. direct (T, B, H) and gc (T, B, H) are the cotangents of h_t and c_t from
    outside; W is the stacked W, (G H, H), WT its transpose, read where ``transposed`` (loops.step_product).
    Rows r >= active[t] were held at step t: their cotangents pass on, their deltas are zero. Each step is the
    global ``back`` (the plain LSTM's :func:`back`, or a relative's step in its copy), given ``cell`` (as in
    :func:`forward`; the plain LSTM reads none). Where ``packed`` holds W in panels, the products run by them."""
    staging = np.empty(carry_h.size if transposed else 0, carry_h.dtype)
    batch = carry_h.shape[0]
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        if n < batch:
            pass_back(carry_h, direct[t], n)
            pass_back(carry_c, gc[t], n)
            clear(deltas[t], n)
        if n > 0:
            back(deltas[t][:n], direct[t][:n], gc[t][:n], gates[t][:n], cs[t][:n], cs[t + 1][:n], tcs[t][:n],
                 carry_h[:n], carry_c[:n], bias_grad, one, cell)
            step_product(deltas[t][:n], W, WT, carry_h[:n], blas_rows, staging, transposed, packed)


@njit(cache=True, nogil=True, error_model="numpy")
def _forward(x, h0, c0, Us, bs, Ws):
    """The plain LSTM's forward in one compiled call, for step products small enough to run as loops
    (loops.SMALL_STEP): the same steps as the shared path (project, forward), without the Python between them
    (stacking, scratch, states), which took about half of a G1 call (50 x 1 x 32). Us, bs, Ws: the per-gate
    parameters in stacking order. Returns (h, c), each (T, B, H), views of one new block."""
    a, WT, block = at_once_inputs(x, Us, bs, Ws, 2)
    hs, cs = block[0], block[1]
    hs[0] = h0
    cs[0] = c0
    steps, batch, hidden = x.shape[0], x.shape[1], h0.shape[1]
    tcs = np.empty((steps, batch, hidden), x.dtype)
    active = np.full(steps, batch, np.int64)
    forward_inlined(a, np.empty_like(a), hs, cs, tcs, WT, WT, False, 0, active, 0, np.empty((0, 0, 1), x.dtype))
    return hs[1:], cs[1:]


@njit(cache=True, nogil=True, error_model="numpy")
def _train(x2, h0, c0, U, b, W, WT, V, VT, c, targets, one, active):
    """The plain LSTM's loss and every gradient in one compiled call, for step products small enough to run as
    loops (loops.SMALL_STEP): the same steps as the shared path (project, forward, head_kernel, backward,
    input_side, recurrent_side), without the Python between them, which took about half of a G1 call
    (50 x 1 x 32: 127 us). Returns (loss, dx2, dh0, dc0, dU, dW, db, dV, dc) with U, W, b stacked."""
    steps, (batch, hidden) = active.shape[0], c0.shape
    a = np.empty((steps, batch, 4 * hidden), c0.dtype)
    project(x2, U, b, a.reshape(steps * batch, 4 * hidden))
    gates = np.empty_like(a)
    hs, cs = np.empty((steps + 1, batch, hidden), c0.dtype), np.empty((steps + 1, batch, hidden), c0.dtype)
    hs[0] = h0
    cs[0] = c0
    tcs = np.empty((steps, batch, hidden), c0.dtype)
    none = np.empty((0, 0, 1), c0.dtype)  # no panels: the products run as loops
    forward_inlined(a, gates, hs, cs, tcs, WT, W, False, 0, active, 0, none)
    loss, gV, gc, direct = head_kernel(hs, V, VT, c, targets, one)
    deltas = np.empty_like(a)  # a is read no more
    carry, carry_c = np.zeros((batch, hidden), c0.dtype), np.zeros((batch, hidden), c0.dtype)
    bias_grad = np.zeros(4 * hidden, c0.dtype)
    backward(direct, np.zeros_like(tcs), gates, cs, tcs, W, WT, False, 0, deltas, carry, carry_c, bias_grad, one,
             active, 0, none)
    flat = deltas.reshape(steps * batch, 4 * hidden)
    gx, gU = input_side(x2, U, flat)
    gW = recurrent_side(hs[:steps].reshape(steps * batch, hidden), flat)
    return loss, gx, carry, carry_c, gU, gW, bias_grad, gV, gc


class Family(Gated):
    """The kernel of the LSTM and its relatives: one product a step, by the stacked W; the cell state; the loops
    :func:`forward` and :func:`backward`, or a relative's copies of them around its own steps (family.copy_with)."""

    transposable = True

    def __init__(self, name: str, loops: tuple = (forward, backward)) -> None:
        super().__init__(name)
        self.loops = loops

    def begin(self, run) -> None:
        """run.cs (T+1, B, H) from c0, run.tcs for tanh(c_t), run.W the stacked W."""
        run.cs = run.states("cs", (run.T + 1, run.B, run.H))
        run.cs[0] = run.state0["c0"]
        run.tcs = run.scratch("tanh_c", (run.T, run.B, run.H))
        run.W = run.stack("W")

    def sums(self, run) -> tuple[np.ndarray, ...]:
        """The BPTT's accumulators: dL/dh0 (B, P), dL/dc0 (B, H), dL/db (G H,), all zero, and the deltas' scratch
        (consumed by the gradients' GEMMs before any other run's BPTT: shared by every run)."""
        T, B, H, G = run.T, run.B, run.H, len(self.gates)
        return (np.zeros((B, run.P), run.dtype), np.zeros((B, H), run.dtype), np.zeros(G * H, run.dtype),
                workspace("deltas", (T, B, G * H), run.dtype))

    def cell(self, run):
        """What the cell's step reads beyond the states (the loops' ``cell``): the plain LSTM's first unit, 0."""
        return 0

    def cell_back(self, run) -> tuple[object, dict[str, np.ndarray]]:
        """What the cell's BPTT step reads beyond the states, and the gradients of the cell's extra parameters it
        accumulates there, by their keys: none for the plain LSTM."""
        return 0, {}

    def recur(self, run) -> None:
        self.begin(run)
        WT, packed = run.weights(run.W)
        self.loops[0](run.a, run.gates, run.hs, run.cs, run.tcs, WT, run.W, run.transposed, run.blas_rows,
                      run.active, self.cell(run), packed)

    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        carry, carry_c, bias_grad, deltas = self.sums(run)
        cell, extra = self.cell_back(run)
        WT, packed = run.weights(run.W, backward=True)
        self.loops[1](direct, gc, run.gates, run.cs, run.tcs, run.W, WT, run.transposed, run.blas_rows, deltas,
                      carry, carry_c, bias_grad, run.one, run.active, cell, packed)
        return Deltas([Block(self.gates, deltas, deltas, run.hs[:run.T])], bias_grad, {"h0": carry, "c0": carry_c},
                      extra)


class Lstm(Family):
    def forward_at_once(self, call) -> dict[str, np.ndarray]:
        h, c = _forward(checks.contiguous(call.x), checks.contiguous(call.state0["h0"]),
                        checks.contiguous(call.state0["c0"]), call.per_gate("U"), call.per_gate("b"),
                        call.per_gate("W"))
        return {"h": h, "c": c}

    def loss_at_once(self, run, targets: np.ndarray):
        V, c, W = run.params["V"], run.params["c"], run.stack("W")
        value, gx, gh0, gc0, gU, gW, bias_grad, gV, gc = _train(
            checks.contiguous(run.x).reshape(run.T * run.B, run.I), checks.contiguous(run.state0["h0"]),
            checks.contiguous(run.state0["c0"]), run.stack("U"), run.stack("b"), W, transposed(W),
            checks.contiguous(V), transposed(V), checks.contiguous(c), checks.contiguous(targets).reshape(-1),
            run.one, run.active)
        grads = {"x": gx.reshape(run.T, run.B, run.I), "h0": gh0, "c0": gc0, "V": gV, "c": gc}
        for k, g in enumerate(self.gates):
            rows = slice(k * run.H, (k + 1) * run.H)
            grads[f"U_{g}"], grads[f"W_{g}"], grads[f"b_{g}"] = gU[rows], gW[rows], bias_grad[rows]
        return run.dtype.type(value), grads


KERNEL = Lstm("lstm")
