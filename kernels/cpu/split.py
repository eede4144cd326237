"""One recurrence on two cores, for the latency-bound sizes: few batch rows, long sequences (lstm, gru-reset-after).

At B = 1 a step's product h_{t-1} W^T is a matrix-vector product that streams all of W (1 MB at
H = 256 for the LSTM) through one core, about 15-19 us a step; with W beyond a core's L2 (16 MB at H = 1024), every
step streams it from memory at any B, and one core's bandwidth bounds the call. Here the hidden units are split in two
halves ("parts"), each owned by one thread for the whole call; a part's thread keeps to its own rows
of every weight matrix, so each core streams half of W, and only h_t (forward) and the step's deltas
(BPTT) cross between the two, once per step, at a barrier (:mod:`threads`).

A part holds its units' gate blocks packed: with G gates and units lo..lo + u - 1, its columns of
the stacked gates are pi_p = [g H + lo + j for g < G for j < u], and

    a_p = x U[pi_p]^T + b[pi_p]                       (its input side, one GEMM in its thread)
    forward step:  product_p = h_{t-1} W[pi_p]^T,    then the cell's step for its units
    BPTT step:     the cell's step for its units gives its deltas d_p, written into an exchange row
                   at their stacked places d[pi_p]; once both are there,
                   dL/dh_{t-1}[lo..lo+u) = d W[:, lo..lo+u)
    after BPTT:    dU[pi_p] = d_p^T x,  dW[pi_p] = d_p^T h_{t-1},  dx = d_0 U[pi_0] + d_1 U[pi_1]

The steps' products are simd.row_times loops on the part's packed copies of W^T (in blocks of columns,
:func:`_pack_blocks`) and W (contiguous, so each core streams its half of W in order) at B = 1; for several rows the
panels' tiles (panels.py) over the same copies packed as panels, which stream W once a step for every 6 rows
instead of once a row (at H = 1024, B = 2-32, where W is beyond L2 and the split runs at any T: 1.4-1.8x). The
GEMMs before and after are BLAS calls
on one thread (:func:`blas.one_thread` holds OpenBLAS there for the whole call). The cells' steps are
their modules' own (:func:`lstm.step`, :func:`lstm.back_step`, :func:`gru_reset_after.step`,
:func:`gru_reset_after.back_step`), given the part's units.
"""

from __future__ import annotations

import weakref

import numpy as np
from numba import njit

from rnnspec.kernels import checks
from rnnspec.kernels.cpu import gru_reset_after, lstm, panels, tuning
from rnnspec.kernels.cpu.loops import matmul_into, project, project_by_panels, transpose_into
from rnnspec.kernels.cpu.simd import VECTOR_BYTES, WIDEST, row_times
from rnnspec.kernels.cpu.threads import arrive_and_wait, counter, together
from rnnspec.kernels.cpu.tuning import cores, forced

PARTS = 2
CELLS = ("lstm", "gru-reset-after")
#: the environment variable that forces the choice: "always" (wherever H is even) or "never"
FORCE = "RNNSPEC_CPU_SPLIT"


def wanted(cell: str, T: int, B: int, H: int, gates: int, weight_bytes: int = 0) -> bool:
    """Whether a call of ``cell`` at these sizes runs on two threads: at most ``split.max_rows`` rows, at least
    ``split.min_steps`` steps and ``split.min_row_step`` multiply-adds G H H a row and step; or, where its stacked
    W (``weight_bytes``) is larger than a core's L2, 2 to ``split.beyond_l2_max_rows`` rows at any T (thresholds of
    :mod:`tuning`, measured on this machine or its safe ones); two cores free to this process; or as FORCE says."""
    if cell not in CELLS or H % PARTS or B == 0 or T == 0:
        return False
    force = forced(FORCE)
    if force is not None:
        return force
    value = tuning.value
    latency = (B <= value("split.max_rows") and T >= value("split.min_steps")
               and gates * H * H >= value("split.min_row_step"))
    beyond_l2 = 2 <= B <= value("split.beyond_l2_max_rows") and weight_bytes > tuning.l2_bytes() > 0
    return (latency or beyond_l2) and cores() >= PARTS  # the syscall last


@njit(cache=True, nogil=True, error_model="numpy")
def _pack_blocks(Ws, lo, blocks):
    """blocks[p, j, c] = WT_p[j, p w + c] (zero past G u), WT_p the part's columns of the stacked W^T, (H, G u):
    WT_p[j, g u + n] = Ws[g][lo + n, j]. Each block of w columns is contiguous, so that a step's product streams
    it in order (:func:`_blocked_product`). Where w divides u (H = 256: u = 128, w = 128 float32, 64 float64) each
    block is the transpose of w rows of one gate's W, copied by loops.transpose_into's tiles (0.09 against 0.37 ms
    for the LSTM's part at H = 256 float32, element by element); else element by element."""
    width, u = blocks.shape[2], Ws[0].shape[0] // PARTS
    if u % width == 0:
        for p in range(blocks.shape[0]):
            col = p * width
            first = lo + col % u
            transpose_into(Ws[col // u][first:first + width], blocks[p])
        return
    columns = len(Ws) * u
    for p in range(blocks.shape[0]):
        for j in range(blocks.shape[1]):
            line = blocks[p, j]
            for c in range(width):
                col = p * width + c
                line[c] = Ws[col // u][lo + col % u, j] if col < columns else 0


@njit(cache=True, nogil=True, error_model="numpy")
def _blocked_product(a, blocks, out, scratch):
    """out = a @ WT_p for WT_p packed in ``blocks`` (:func:`_pack_blocks`), a row and a block at a time by
    simd.row_times (the last, partial block through ``scratch``, (w,)). The matrix-vector products of B = 1 read
    the blocks in order: 1 x 256 by 256 x 512 float32 took 5.0-5.1 us against 6.4-6.7 over the plain (256, 512)
    WT_p, whose rows row_times visits 2 KB apart (benchmarks/cpu_issue37/README.md)."""
    width, columns = blocks.shape[2], out.shape[1]
    for r in range(a.shape[0]):
        for p in range(blocks.shape[0]):
            c0 = p * width
            if c0 + width <= columns:
                row_times(a[r], blocks[p], out[r, c0:c0 + width])
            else:
                row_times(a[r], blocks[p], scratch)
                out[r, c0:] = scratch[:columns - c0]


@njit(cache=True, nogil=True, error_model="numpy")
def _step_product(a, blocks, out, scratch):
    """out = a @ WT_p: one row by :func:`_blocked_product`; several by the panels' tiles (the blocks then packed
    as panels, :meth:`Parts.__init__`), which stream the part's W^T once a step for every 6 rows instead of once
    a row."""
    if a.shape[0] > 1:
        panels.product(a, blocks, out)
    else:
        _blocked_product(a, blocks, out, scratch)


@njit(cache=True, nogil=True, error_model="numpy")
def _pack_columns(Ws, lo, W_p):
    """W_p[g H + j] = Ws[g][j, lo:lo + u]: the part's columns of the stacked W, (G H, u)."""
    hidden, u = Ws[0].shape[0], W_p.shape[1]
    for g in range(len(Ws)):
        W_g = Ws[g]
        for j in range(hidden):
            W_p[g * hidden + j] = W_g[j][lo:lo + u]


@njit(cache=True, nogil=True, error_model="numpy")
def _share(slot, deltas, hidden, lo):
    """slot[r, g H + lo + n] = deltas[r, g u + n]: a part's deltas into the exchange row, in the stacked order."""
    u = deltas.shape[1] * hidden // slot.shape[1]
    for r in range(deltas.shape[0]):
        into, part = slot[r], deltas[r]
        for g in range(slot.shape[1] // hidden):
            into[g * hidden + lo:g * hidden + lo + u] = part[g * u:(g + 1) * u]


@njit(cache=True, nogil=True, error_model="numpy")
def _carry(slot, W_p, packed, carry, kept):
    """carry = slot W_p (+ kept where kept has rows): dL/dh_{t-1} at the part's units; by the panels ``packed``
    (W_p packed) where it is not empty."""
    if packed.shape[0] > 0:
        panels.product(slot, packed, carry)
    else:
        matmul_into(slot, W_p, carry, 0)
    for r in range(carry.shape[0]):
        out = carry[r]
        if kept.shape[0]:
            extra = kept[r]
            for j in range(out.shape[0]):
                out[j] += extra[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _gradients(x2, U_p, previous, deltas_in, deltas_rec, gx, gU, gW):
    """gx = d_in U_p (this part's share of dL/dx), gU = d_in^T x, gW = d_rec^T h_{t-1}: one-thread GEMMs."""
    np.dot(deltas_in, U_p, gx)
    np.dot(deltas_in.T, x2, gU)
    np.dot(deltas_rec.T, previous, gW)


@njit(cache=True, nogil=True, error_model="numpy")
def _project(x2, U_p, b_p, packed_UT, a):
    """a (T, B, G u) = x U_p^T + b_p: by the panels' tiles over U_p^T packed (``packed_UT``, where I <= DEPTH:
    :class:`Parts`), else one BLAS call. On one thread each, at G5's 1000 x 64 by 64 x 512 (a part's), 0.53
    against 0.62 ms float32, 1.02 against 1.37 float64, the packing included."""
    rows = a.shape[0] * a.shape[1]
    if packed_UT.shape[0] > 0:
        project_by_panels(x2, packed_UT, b_p, a.reshape(rows, a.shape[2]))
    else:
        project(x2, U_p, b_p, a.reshape(rows, a.shape[2]))


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_forward(barrier, Ws, x2, U_p, b_p, packed_UT, blocks, a, gates, product, hs, cs, tcs, lo):
    """One part's forward: its columns of W^T packed into ``blocks`` (in its own core's cache), a (T, B, 4u) =
    x U_p^T + b_p (:func:`_project`), then every step for units lo..lo + u - 1."""
    steps = gates.shape[0]
    _pack_blocks(Ws, lo, blocks)
    scratch = np.empty(blocks.shape[2], blocks.dtype)
    _project(x2, U_p, b_p, packed_UT, a)
    for t in range(steps):
        _step_product(hs[t], blocks, product, scratch)
        lstm.step(a[t], product, gates[t], hs[t + 1], cs[t], cs[t + 1], tcs[t], lo)
        if not arrive_and_wait(barrier, PARTS * (t + 1)):
            return


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_backward(barrier, Ws, direct, gc, has_gc, gates, cs, tcs, W_p, packed, deltas, exchange, carry, carry_c,
                  bias_grad, one, lo, x2, U_p, previous, gx, gU, gW):
    """One part's BPTT (t = T..1) for units lo..lo + u - 1, its columns of W packed into W_p first, then its
    share of the GEMMs after it."""
    steps, hs_width = direct.shape[0], direct.shape[2]
    _pack_columns(Ws, lo, W_p)
    if packed.shape[0] > 0:
        panels.pack_into(W_p, packed, 0)
    for s in range(steps):
        t = steps - 1 - s
        lstm.back_step(deltas[t], direct[t], gc[t], has_gc, gates[t], cs[t], tcs[t], carry, carry_c, bias_grad, one,
                       lo)
        slot = exchange[t % 2]  # two slots: a part may write step t's while its partner still reads t + 1's
        _share(slot, deltas[t], hs_width, lo)
        if not arrive_and_wait(barrier, PARTS * (s + 1)):
            return
        _carry(slot, W_p, packed, carry, carry[:0])
    flat = deltas.reshape(steps * deltas.shape[1], deltas.shape[2])
    _gradients(x2, U_p, previous, flat, flat, gx, gU, gW)


@njit(cache=True, nogil=True, error_model="numpy")
def gru_forward(barrier, Ws, x2, U_p, b_p, packed_UT, blocks, b_hn, a, gates, product, hs, ms, one, lo):
    """One part's forward of the reset-after GRU: its blocks packed, a = x U_p^T + b_p (:func:`_project`), then
    every step for its units."""
    steps = gates.shape[0]
    _pack_blocks(Ws, lo, blocks)
    scratch = np.empty(blocks.shape[2], blocks.dtype)
    _project(x2, U_p, b_p, packed_UT, a)
    for t in range(steps):
        _step_product(hs[t], blocks, product, scratch)
        gru_reset_after.step(a[t], product, gates[t], hs[t], hs[t + 1], ms[t], b_hn, one, lo)
        if not arrive_and_wait(barrier, PARTS * (t + 1)):
            return


@njit(cache=True, nogil=True, error_model="numpy")
def gru_backward(barrier, Ws, direct, gates, hs, ms, W_p, packed, deltas_in, deltas_rec, exchange, carry, kept,
                 bias_grad, b_hn_grad, one, lo, x2, U_p, previous, gx, gU, gW):
    """One part's BPTT of the reset-after GRU for its units (W_p packed first), then its share of the GEMMs."""
    steps, hs_width = direct.shape[0], direct.shape[2]
    _pack_columns(Ws, lo, W_p)
    if packed.shape[0] > 0:
        panels.pack_into(W_p, packed, 0)
    for s in range(steps):
        t = steps - 1 - s
        gru_reset_after.back_step(deltas_in[t], deltas_rec[t], direct[t], gates[t], hs[t], ms[t], carry, kept,
                                  bias_grad, b_hn_grad, one, lo)
        slot = exchange[t % 2]
        _share(slot, deltas_rec[t], hs_width, lo)
        if not arrive_and_wait(barrier, PARTS * (s + 1)):
            return
        _carry(slot, W_p, packed, carry, kept)
    rows = steps * deltas_in.shape[1]
    _gradients(x2, U_p, previous, deltas_in.reshape(rows, deltas_in.shape[2]),
               deltas_rec.reshape(rows, deltas_rec.shape[2]), gx, gU, gW)


class Parts:
    """One call's per-part arrays (see the module docstring) and its two-thread passes.

    ``run`` is the caller's gated._Run: its x2 and hs, and the cs, tcs (LSTM) or ms (GRU) that
    :meth:`forward` fills, are what the head and the caller read; :meth:`backward` returns the gradients
    as gated._Run.backward does."""

    def __init__(self, run) -> None:
        #: a weak reference: the run holds its parts (run.parts), and a cycle would keep both, with the run's
        #: result arrays, alive until the garbage collector's next pass, so that the next call could not reuse
        #: the results' memory (scratch.result_block)
        self.run = weakref.proxy(run)
        G, H, I = len(run.order), run.H, run.I
        self.u = H // PARTS
        self.los = tuple(p * self.u for p in range(PARTS))
        columns = [np.concatenate([np.arange(g * H + lo, g * H + lo + self.u) for g in range(G)]) for lo in self.los]
        U, b = run.U, run.stack("b")
        #: each part's rows of the stacked U and b, (G u, I) and (G u,), C-contiguous, in scratch (fresh copies
        #: came from the system, their pages faulted in at every call)
        self.U = [np.take(U, c, axis=0, out=U_p) for c, U_p in zip(columns, self._scratch("U", G * self.u, I))]
        self.b = [b[c] for c in columns]
        #: each part's U_p^T in panels for its projection where I <= DEPTH (_project), else empty
        self.packed_U = [panels.unused(run.dtype)] * PARTS
        if I <= panels.DEPTH:
            self.packed_U = self._scratch("U_panels", *panels.packed_shape(I, G * self.u, run.dtype))
            for U_p, packed in zip(self.U, self.packed_U):
                panels.pack_into(U_p.T, packed, 0)
        #: each gate's W, C-contiguous; each part packs its columns of W^T (forward) and of W (BPTT) from
        #: them in its own thread, into its own core's cache
        self.Ws = tuple(checks.contiguous(run.params[f"W_{g}"]) for g in run.order)
        # one simd.row_times block of columns at B = 1; the panels' width for several rows (_step_product)
        width = WIDEST * VECTOR_BYTES // run.dtype.itemsize if run.B == 1 else panels.columns(run.dtype)
        self.blocks = self._scratch("blocks", -(-G * self.u // width), H, width)
        self.W = self._scratch("W", G * H, self.u)

    def _scratch(self, name: str, *shape: int) -> list[np.ndarray]:
        return [self.run.scratch(f"split_{name}{p}", shape) for p in range(PARTS)]

    def forward(self) -> None:
        run = self.run
        T, B, H, G = run.T, run.B, run.H, len(run.order)
        self.a, self.gates = self._scratch("a", T, B, G * self.u), self._scratch("gates", T, B, G * self.u)
        products = self._scratch("product", B, G * self.u)
        barrier = counter()
        inputs = [(barrier, self.Ws, run.x2, self.U[p], self.b[p], self.packed_U[p], self.blocks[p])
                  for p in range(PARTS)]
        if run.lstm:
            run.cs = run.states("cs", (T + 1, B, H))
            run.cs[0] = run.state0["c0"]
            run.tcs = run.scratch("tanh_c", (T, B, H))
            together(lstm_forward, [(*inputs[p], self.a[p], self.gates[p], products[p], run.hs, run.cs, run.tcs,
                                     self.los[p]) for p in range(PARTS)], barrier)
        else:
            run.ms = run.scratch("m", (T, B, H))
            b_hn = checks.contiguous(run.params["b_hn"])
            together(gru_forward, [(*inputs[p], b_hn, self.a[p], self.gates[p], products[p], run.hs, run.ms, run.one,
                                    self.los[p]) for p in range(PARTS)], barrier)

    def backward(self, direct: np.ndarray, gc: np.ndarray | None) -> dict[str, np.ndarray]:
        run = self.run
        T, B, H, G, I, dtype = run.T, run.B, run.H, len(run.order), run.I, run.dtype
        width = G * self.u
        deltas = self._scratch("deltas", T, B, width)
        exchange = np.zeros((2, B, G * H), dtype)
        carry = [np.zeros((B, self.u), dtype) for _ in range(PARTS)]
        bias = [np.zeros(width, dtype) for _ in range(PARTS)]
        gx = [np.empty((T * B, I), dtype)] + self._scratch("gx", T * B, I)[1:]
        gU, gW = self._scratch("gU", width, I), self._scratch("gW", width, H)
        previous = run.hs[:T].reshape(T * B, H)
        # several rows: each part's W_p packed in panels too (_carry); one row keeps the loop over W_p
        packed = (self._scratch("W_panels", *panels.packed_shape(G * H, self.u, dtype))
                  if B > 1 else [np.empty((0, 0, 0), dtype)] * PARTS)
        barrier = counter()
        shared = [(run.x2, self.U[p], previous, gx[p], gU[p], gW[p]) for p in range(PARTS)]
        grads: dict[str, np.ndarray] = {}
        if run.lstm:
            carry_c = [np.zeros((B, self.u), dtype) for _ in range(PARTS)]
            has_gc = gc is not None
            gc = gc if has_gc else run.tcs  # any (T, B, H) array: not read
            together(lstm_backward, [(barrier, self.Ws, direct, gc, has_gc, self.gates[p], run.cs, run.tcs, self.W[p],
                                      packed[p], deltas[p], exchange, carry[p], carry_c[p], bias[p], run.one,
                                      self.los[p], *shared[p]) for p in range(PARTS)], barrier)
            grads["c0"] = np.concatenate(carry_c, axis=1)
        else:
            kept = [np.empty((B, self.u), dtype) for _ in range(PARTS)]
            recurrent = self._scratch("deltas_recurrent", T, B, width)
            grads["b_hn"] = np.zeros(H, dtype)
            together(gru_backward, [(barrier, self.Ws, direct, self.gates[p], run.hs, run.ms, self.W[p], packed[p],
                                     deltas[p], recurrent[p], exchange, carry[p], kept[p], bias[p], grads["b_hn"],
                                     run.one, self.los[p], *shared[p]) for p in range(PARTS)], barrier)
        for part in gx[1:]:
            gx[0] += part
        grads.update(x=gx[0].reshape(T, B, I), h0=np.concatenate(carry, axis=1))
        for k, g in enumerate(run.order):
            gate = slice(k * self.u, (k + 1) * self.u)
            grads[f"U_{g}"] = np.concatenate([part[gate] for part in gU])
            grads[f"W_{g}"] = np.concatenate([part[gate] for part in gW])
            grads[f"b_{g}"] = np.concatenate([part[gate] for part in bias])
        return grads
