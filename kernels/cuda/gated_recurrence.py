"""The recurrences of the gated cells (LSTM, both GRUs) on NVIDIA GPUs: one launch per direction for
all T steps. The cells' equations are those of rnnspec.kernels.cpu's lstm, gru_reset_after and
gru_reset_before modules; the host side is rnnspec.kernels.cuda.gated.

Groups of threads own hidden units: a group owns the units i in [first, first + R) of the batch rows
[b_first, b_first + RB), every gate of them. At each step a group

1. sums its products, each dot product split over S threads (slices of the terms j) and their
   partial sums added in a fixed tree through shared memory (no atomics: bit-reproducible):

       forward   p[b, k, i] = sum_j W[k H + i, j] v[b, j]      v = h_{t-1} (r * h_{t-1} for the
                                                              reset-before GRU's n: a second product)
       backward  q[b, i]    = sum_j W^T[i, j] d[b, j]          d = the deltas of step t + 1

2. finishes: applies the cell's equations to its units. Everything there is local to a unit: c_t,
   the carry of dc, the kept dh * z. So a product is the only exchange between groups;
3. syncs: with R < H the groups are the blocks of a cooperative grid and meet at a grid sync (the
   ``cooperative`` layout); with R = H one block owns every unit of its batch rows and a block
   barrier is enough (``streamed``). The reset-before GRU syncs twice per step.

Each group's rows of W (of W^T backward: G R H values either way) stay in shared memory for all T
steps where they fit (``resident``: the persistent RNN of Diamos et al., ICML 2016), else they are
read through L1 and L2 at every step. Under the simulator, which runs one block at a time, the
groups of a cooperative grid are ``virtual`` groups of one launched block, as in
rnnspec.kernels.cuda.cooperative.
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import numpy as np

from rnnspec import catalogue
from rnnspec.kernels.cuda.elman import SHARED_LIMIT
from rnnspec.kernels.numpy_compat import SIMULATED, cuda_module

cuda = cuda_module()

#: the cells the CUDA recurrence implements
CELLS = ("lstm", "gru-reset-after", "gru-reset-before")
#: gates per cell, as the catalogue has them (stacked in its order)
GATE_COUNT = {cell: len(catalogue.cell(cell).gates) for cell in CELLS}
THREADS = 8 if SIMULATED else 256  # per group; a power of two
MAX_SLICES = 2 if SIMULATED else 32  # threads per dot product, at most (a warp); a power of two
MIN_SLICE_TERMS = 4  # terms of a dot product per thread, at least, where H allows
#: shared memory for the products' totals (RB G R values per group), at most
TOTALS_LIMIT = 16 * 1024


class GatedLayout(NamedTuple):
    """``groups`` groups of ``threads`` threads, each owning ``units`` hidden units (R) of ``rows``
    batch rows (RB); ``slices`` threads per dot product; ``virtual`` groups per launched block (1 on
    a GPU); ``cooperative``: groups meet at grid syncs (else each is a block that owns all H units);
    ``resident``: each group keeps its rows of W in shared memory."""

    units: int
    rows: int
    groups: int
    threads: int
    slices: int
    virtual: int
    cooperative: bool
    resident: bool

    @property
    def launch(self) -> tuple[int, int]:
        """(blocks launched, threads per launched block)."""
        return math.ceil(self.groups / self.virtual), self.threads * self.virtual

    def shared_bytes(self, cell: str, hidden: int, itemsize: int) -> int:
        """Shared memory per launched block: W's rows (when resident), partial sums and totals."""
        G = GATE_COUNT[cell]
        weights = G * self.units * (hidden + 1) if self.resident else 1
        return (weights + self.threads + self.rows * G * self.units) * itemsize * self.virtual


def _power_of_two_at_most(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def gated_plan(cell: str, hidden: int, batch: int, dtype, multiprocessors: int, cooperative: bool | None = None,
               units: int | None = None, rows: int | None = None, slices: int | None = None,
               resident: bool | None = None) -> GatedLayout:
    """The cooperative grid (at most one group per multiprocessor, as few units per group as that
    allows, every batch row) wherever its totals fit; else streamed blocks of every unit and as
    many batch rows as fill the GPU. Weights resident wherever they fit beside the rest. Slices:
    enough threads per dot product that a group's forward outputs take one pass (at most
    MAX_SLICES, and at least MIN_SLICE_TERMS terms each). Every choice may be forced (tests,
    benchmarks); ValueError when the forced layout does not fit."""
    G, itemsize = GATE_COUNT[cell], np.dtype(dtype).itemsize
    batch = max(1, batch)
    threads = THREADS

    def cooperative_units() -> int:
        return units or math.ceil(hidden / max(1, min(hidden, multiprocessors)))

    if cooperative is None:
        cooperative = batch * G * cooperative_units() * itemsize <= TOTALS_LIMIT
    if cooperative:
        R = cooperative_units()
        RB = rows or batch
        groups = math.ceil(hidden / R) * math.ceil(batch / RB)
    else:
        R = units or hidden
        fit = max(1, TOTALS_LIMIT // (G * R * itemsize))
        RB = rows or min(batch, fit, max(1, math.ceil(batch / max(1, multiprocessors))))
        groups = math.ceil(hidden / R) * math.ceil(batch / RB)
        if R < hidden:
            raise ValueError(f"a streamed layout owns all {hidden} units per block, not {R}")
    virtual = groups if SIMULATED and cooperative else 1
    if slices is None:  # every forward output of a group a thread in one pass, the rest slicing the terms
        outputs = RB * R * G
        slices = min(MAX_SLICES, _power_of_two_at_most(threads // min(outputs, threads)),
                     _power_of_two_at_most(max(1, hidden // MIN_SLICE_TERMS)))
    if slices < 1 or slices > threads or slices & (slices - 1):
        raise ValueError(f"slices must be a power of two from 1 to {threads}, not {slices}")

    def layout(keep: bool) -> GatedLayout:
        return GatedLayout(R, RB, groups, threads, slices, virtual, cooperative, keep)

    if resident is None:
        resident = layout(True).shared_bytes(cell, hidden, itemsize) <= SHARED_LIMIT
    chosen = layout(resident)
    need = chosen.shared_bytes(cell, hidden, itemsize)
    if need > SHARED_LIMIT:
        raise ValueError(f"{cell} at H = {hidden}, {RB} batch rows of {R} units per group in "
                         f"{np.dtype(dtype).name} needs {need} bytes of shared memory per block, over the "
                         f"{SHARED_LIMIT} that numba-cuda gives")
    return chosen


def _sync(cooperative: bool):
    """The step's meeting point: a grid sync for a cooperative grid, a block barrier otherwise."""
    if cooperative:
        @cuda.jit(device=True, inline=True)
        def grid_sync():
            cuda.cg.this_grid().sync()
        return grid_sync

    @cuda.jit(device=True, inline=True)
    def block_sync():
        cuda.syncthreads()
    return block_sync


def _logistic(dtype):
    typed = np.dtype(dtype).type

    @cuda.jit(device=True, inline=True)
    def sigma(z):
        return typed(1) / (typed(1) + math.exp(-z))
    return sigma


def _product(direction: str, cell: str, hidden: int, layout: GatedLayout, dtype: str):
    """device function product(M, vector, step, col0, gate0, gates, terms, weights, partial, totals,
    group, local, first, b_first): this group's dot products into totals[group, (bl G + k) R + r]
    (k = the gate, or 0 backward) for its rows b_first + bl and units first + r:

        forward   sum_{j < H}     M[k H + first + r, j] vector[step, b, j]  for gates k = gate0 .. gate0 + gates - 1
        backward  sum_{j < terms} M[first + r, col0 + j] vector[step, b, col0 + j]

    ``terms`` 0 gives zeros. ``weights`` holds the group's rows of M when resident (see _load_weights)."""
    numpy_dtype = np.dtype(dtype)
    zero = numpy_dtype.type(0)
    G = GATE_COUNT[cell]
    R, RB, _, threads, S, _, _, resident = layout
    per_chunk = threads // S
    backward = direction == "backward"
    stride = (G * hidden if backward else hidden) + 1  # a kept row and one pad: rows start in different banks

    @cuda.jit(device=True, inline=True)
    def product(M, vector, step, col0, gate0, gates, terms, weights, partial, totals, group, local, first, b_first):
        s, lane = local % S, local // S
        batch = vector.shape[1]
        outputs = RB * R * (1 if backward else gates)
        for base in range(0, outputs, per_chunk):
            o = base + lane
            r = o % R
            k = 0 if backward else gate0 + (o // R) % gates
            bl = o // R if backward else o // (R * gates)
            b, i = b_first + bl, first + r
            acc = zero
            if o < outputs and b < batch and i < hidden:
                row = i if backward else k * hidden + i
                kept_row = (r if backward else k * R + r) * stride
                for j in range(s, terms, S):
                    w = weights[group, kept_row + col0 + j] if resident else M[row, col0 + j]
                    acc += w * vector[step, b, col0 + j]
            partial[group, local] = acc
            cuda.syncthreads()
            half = S // 2
            while half >= 1:  # slices [half, 2 half) hand their sums to slices [0, half)
                if s < half:
                    partial[group, local] += partial[group, local + half]
                cuda.syncthreads()
                half //= 2
            if s == 0 and o < outputs:
                totals[group, (bl * G + k) * R + r] = partial[group, local]
        cuda.syncthreads()  # the totals, before they are read

    return product


def _load_weights(direction: str, cell: str, hidden: int, layout: GatedLayout):
    """device function load(M, weights, group, local, first): the group's rows of M into shared
    memory, row-major with one pad per row (so that the threads of a warp reading one term of different
    rows meet different banks): forward row k R + r = W[k H + first + r, :], backward row
    r = W^T[first + r, :]."""
    G = GATE_COUNT[cell]
    R, threads = layout.units, layout.threads
    backward = direction == "backward"
    row_length = G * hidden if backward else hidden
    stride = row_length + 1  # as in _product

    @cuda.jit(device=True, inline=True)
    def load(M, weights, group, local, first):
        for e in range(local, G * R * hidden, threads):
            kept_row, j = e // row_length, e % row_length
            r = kept_row if backward else kept_row % R
            i = first + r
            if i < hidden:
                weights[group, kept_row * stride + j] = M[i, j] if backward else M[(kept_row // R) * hidden + i, j]
            else:
                weights[group, kept_row * stride + j] = 0
        cuda.syncthreads()

    return load


def _shared_shapes(cell: str, hidden: int, layout: GatedLayout):
    G = GATE_COUNT[cell]
    weights = G * layout.units * (hidden + 1) if layout.resident else 1
    return ((layout.virtual, weights), (layout.virtual, layout.threads),
            (layout.virtual, layout.rows * G * layout.units))


def _common(direction: str, cell: str, hidden: int, layout: GatedLayout, dtype: str) -> tuple:
    """What both directions' kernels are built from: (G, numpy dtype, its 1, R, RB, threads, the shared
    arrays' shapes, product, load, sync, where), where() giving a thread's (group, local, first, b_first)."""
    numpy_dtype = np.dtype(dtype)
    R, RB, threads, virtual = layout.units, layout.rows, layout.threads, layout.virtual
    unit_groups = math.ceil(hidden / R)

    @cuda.jit(device=True, inline=True)
    def where():
        group, local = cuda.threadIdx.x // threads, cuda.threadIdx.x % threads
        place = cuda.blockIdx.x * virtual + group
        return group, local, (place % unit_groups) * R, (place // unit_groups) * RB

    return (GATE_COUNT[cell], numpy_dtype, numpy_dtype.type(1), R, RB, threads, _shared_shapes(cell, hidden, layout),
            _product(direction, cell, hidden, layout, dtype), _load_weights(direction, cell, hidden, layout),
            _sync(layout.cooperative), where)


@cache
def forward_recurrence(cell: str, hidden: int, layout: GatedLayout, dtype: str):
    """kernel(a, W, hs, cs, gates, aux, b_hn), launched as ``layout.launch``: a (T, B, G H) = x_t U^T + b;
    W (G H, H) the stacked recurrent weights; hs (T+1, B, H) and, for the LSTM, cs (T+1, B, H) hold h0
    and c0 in row 0 and receive h_t, c_t; gates (T, B, G H) receives the gate values; aux (T, B, H)
    receives the LSTM's tanh(c_t), the reset-after GRU's m_t = W_n h_{t-1} + b_hn, or the reset-before
    GRU's r_t * h_{t-1}. cs and b_hn are any arrays of their ranks where the cell has none."""
    G, numpy_dtype, one, R, RB, threads, shapes, product, load, sync, where = _common("forward", cell, hidden,
                                                                                     layout, dtype)
    weights_shape, partial_shape, totals_shape = shapes
    sigma = _logistic(dtype)
    resident = layout.resident
    is_lstm, after = cell == "lstm", cell == "gru-reset-after"

    @cuda.jit
    def kernel(a, W, hs, cs, gates, aux, b_hn):
        group, local, first, b_first = where()
        batch, steps = hs.shape[1], hs.shape[0] - 1
        weights = cuda.shared.array(weights_shape, numpy_dtype)
        partial = cuda.shared.array(partial_shape, numpy_dtype)
        totals = cuda.shared.array(totals_shape, numpy_dtype)
        if resident:
            load(W, weights, group, local, first)
        for t in range(1, steps + 1):
            product(W, hs, t - 1, 0, 0, G if is_lstm or after else 2, hidden, weights, partial, totals, group, local,
                    first, b_first)
            for e in range(local, RB * R, threads):
                bl, r = e // R, e % R
                b, i = b_first + bl, first + r
                if b < batch and i < hidden:
                    base = bl * G * R + r
                    h_prev = hs[t - 1, b, i]
                    if is_lstm:
                        gi = sigma(a[t - 1, b, i] + totals[group, base])
                        gf = sigma(a[t - 1, b, hidden + i] + totals[group, base + R])
                        gg = math.tanh(a[t - 1, b, 2 * hidden + i] + totals[group, base + 2 * R])
                        go = sigma(a[t - 1, b, 3 * hidden + i] + totals[group, base + 3 * R])
                        c = gf * cs[t - 1, b, i] + gi * gg
                        squashed = math.tanh(c)
                        gates[t - 1, b, i], gates[t - 1, b, hidden + i] = gi, gf
                        gates[t - 1, b, 2 * hidden + i], gates[t - 1, b, 3 * hidden + i] = gg, go
                        cs[t, b, i], aux[t - 1, b, i], hs[t, b, i] = c, squashed, go * squashed
                    else:
                        reset = sigma(a[t - 1, b, i] + totals[group, base])
                        update = sigma(a[t - 1, b, hidden + i] + totals[group, base + R])
                        gates[t - 1, b, i], gates[t - 1, b, hidden + i] = reset, update
                        if after:
                            m = totals[group, base + 2 * R] + b_hn[i]
                            new = math.tanh(a[t - 1, b, 2 * hidden + i] + reset * m)
                            gates[t - 1, b, 2 * hidden + i], aux[t - 1, b, i] = new, m
                            hs[t, b, i] = (one - update) * new + update * h_prev
                        else:
                            aux[t - 1, b, i] = reset * h_prev
            sync()
            if not (is_lstm or after):  # n from r * h_{t-1}, which needs every unit's r
                product(W, aux, t - 1, 0, 2, 1, hidden, weights, partial, totals, group, local, first, b_first)
                for e in range(local, RB * R, threads):
                    bl, r = e // R, e % R
                    b, i = b_first + bl, first + r
                    if b < batch and i < hidden:
                        new = math.tanh(a[t - 1, b, 2 * hidden + i] + totals[group, bl * G * R + 2 * R + r])
                        update = gates[t - 1, b, hidden + i]
                        gates[t - 1, b, 2 * hidden + i] = new
                        hs[t, b, i] = (one - update) * new + update * hs[t - 1, b, i]
                sync()

    return kernel


@cache
def backward_recurrence(cell: str, hidden: int, layout: GatedLayout, dtype: str):
    """kernel(direct, gc, has_gc, WT, hs, cs, gates, aux, deltas, deltas_rec, carry, carry_c, kept), launched
    as ``layout.launch``, after forward_recurrence (hs, cs, gates, aux as it left them), for t = T..1:

    - direct (T, B, H) is dL/dh_t from outside; gc (T, B, H) dL/dc_t, read when has_gc (the LSTM);
    - WT (H, G H) is the stacked W transposed;
    - deltas (T, B, G H) receives the input side's deltas (for U, b and x); deltas_rec (T, B, G H) the
      recurrent side's (for W and dh_{t-1}), the reset-after GRU's only (any array else: not read);
    - carry (B, H) receives dL/dh0; carry_c (B, H) dL/dc0 (the LSTM; any array else); kept (B, H) is
      scratch: the part of dh_{t-1} local to a unit (dh_t z, and r d(r h) for the reset-before GRU).
    """
    G, numpy_dtype, one, R, RB, threads, shapes, product, load, sync, where = _common("backward", cell, hidden,
                                                                                     layout, dtype)
    weights_shape, partial_shape, totals_shape = shapes
    resident = layout.resident
    is_lstm, after = cell == "lstm", cell == "gru-reset-after"
    #: the deltas that meet W^T in dh_{t-1}'s product: all gates', or the reset-before GRU's r and z
    first_terms = G * hidden if is_lstm or after else 2 * hidden

    @cuda.jit
    def kernel(direct, gc, has_gc, WT, hs, cs, gates, aux, deltas, deltas_rec, carry, carry_c, kept):
        group, local, first, b_first = where()
        batch, steps = hs.shape[1], hs.shape[0] - 1
        weights = cuda.shared.array(weights_shape, numpy_dtype)
        partial = cuda.shared.array(partial_shape, numpy_dtype)
        totals = cuda.shared.array(totals_shape, numpy_dtype)
        if resident:
            load(WT, weights, group, local, first)
        recurrent = deltas_rec if after else deltas
        for e in range(local, RB * R, threads):  # nothing is carried into step T
            b, i = b_first + e // R, first + e % R
            if b < batch and i < hidden:
                kept[b, i] = 0
                if is_lstm:
                    carry_c[b, i] = 0
        for step in range(steps + 1):
            t = steps - step  # t = 0: only dL/dh0 is left
            # dh_t's part through W: the deltas of step t + 1 (none at t = T), kept at index t
            product(WT, recurrent, min(t, steps - 1), 0, 0, 1, first_terms if t < steps else 0, weights, partial,
                    totals, group, local, first, b_first)
            for e in range(local, RB * R, threads):
                bl, r = e // R, e % R
                b, i = b_first + bl, first + r
                if b < batch and i < hidden:
                    through = totals[group, bl * G * R + r]
                    if t == 0:
                        carry[b, i] = through if is_lstm else through + kept[b, i]
                    elif is_lstm:
                        gi, gf = gates[t - 1, b, i], gates[t - 1, b, hidden + i]
                        gg, go = gates[t - 1, b, 2 * hidden + i], gates[t - 1, b, 3 * hidden + i]
                        dh = direct[t - 1, b, i] + through
                        squashed = aux[t - 1, b, i]
                        dc = dh * go * (one - squashed * squashed) + carry_c[b, i]
                        if has_gc:
                            dc += gc[t - 1, b, i]
                        deltas[t - 1, b, i] = dc * gg * gi * (one - gi)
                        deltas[t - 1, b, hidden + i] = dc * cs[t - 1, b, i] * gf * (one - gf)
                        deltas[t - 1, b, 2 * hidden + i] = dc * gi * (one - gg * gg)
                        deltas[t - 1, b, 3 * hidden + i] = dh * squashed * go * (one - go)
                        carry_c[b, i] = dc * gf
                    else:
                        reset, update = gates[t - 1, b, i], gates[t - 1, b, hidden + i]
                        new = gates[t - 1, b, 2 * hidden + i]
                        dh = direct[t - 1, b, i] + through + kept[b, i]
                        dzn = dh * (one - update) * (one - new * new)
                        deltas[t - 1, b, hidden + i] = dh * (hs[t - 1, b, i] - new) * update * (one - update)
                        deltas[t - 1, b, 2 * hidden + i] = dzn
                        kept[b, i] = dh * update
                        if after:
                            dzr = dzn * aux[t - 1, b, i] * reset * (one - reset)
                            deltas[t - 1, b, i] = dzr
                            deltas_rec[t - 1, b, i] = dzr
                            deltas_rec[t - 1, b, hidden + i] = deltas[t - 1, b, hidden + i]
                            deltas_rec[t - 1, b, 2 * hidden + i] = dzn * reset
            sync()
            if not (is_lstm or after) and t > 0:  # d(r h) = dz_n W_n, which needs every unit's dz_n
                product(WT, deltas, t - 1, 2 * hidden, 0, 1, hidden, weights, partial, totals, group, local, first,
                        b_first)
                for e in range(local, RB * R, threads):
                    bl, r = e // R, e % R
                    b, i = b_first + bl, first + r
                    if b < batch and i < hidden:
                        d_rh = totals[group, bl * G * R + r]
                        reset = gates[t - 1, b, i]
                        deltas[t - 1, b, i] = d_rh * hs[t - 1, b, i] * reset * (one - reset)
                        kept[b, i] += d_rh * reset
                sync()

    return kernel
