"""The recurrence with W spread over a cooperative grid: for H too large for one block's registers.

Block g of G keeps the rows i in [g R, g R + R) of W (the columns, for the backward pass) in
shared memory for all T steps, R = ceil(H / G) with G at most one block per multiprocessor, and
computes every batch row's outputs i at each step from the previous vector, which all blocks wrote
at the step before (states for h_{t-1}, the deltas for delta_{t+1}); then one grid-wide sync per
step. Without it (the single-block kernels of cuda_kernels), every block reads all of W from L2 at
every step: B/rows blocks times 4 MB at H = 1024 in float32, against B*H values of the previous
vector here.

Within a block the products are register-tiled: the thread in slice s of S and tile j holds the
R x P partial sums

    acc[r, u] = sum_{k = s, s + S, s + 2S, ...} W[first + r, k] v[b_j + u, k]

(P = ``tile`` batch rows b_j .. b_j + P - 1, v the previous vector), so each term costs R + P loads
for R * P multiply-adds (one shared and one global load per multiply-add without tiling). The S
slices' sums are added in a fixed tree through shared memory (no atomics: bit-reproducible), and
the totals spread over all threads to apply f (or f') and store. Batches of more than
threads / S tiles take several chunks per step.

The CUDA simulator runs one block at a time, so blocks that wait for each other cannot run there.
``virtual`` blocks per launched block stand in for them in the tests: the threads of one block split
into groups that each act as a block of the grid (their own rows of W, their own slice of shared
memory), and the grid sync, which the simulator makes a block barrier, meets all of them. On a GPU
``virtual`` is 1 and each block of the cooperative launch is one block of the grid.
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import numpy as np

from rnnspec.kernels.cuda.elman import SHARED_LIMIT, _act
from rnnspec.kernels.numpy_compat import SIMULATED, cuda_module

cuda = cuda_module()

THREADS = 8 if SIMULATED else 256  # per block of the grid; a power of two
MAX_TILE = 4  # batch rows per thread: R * 4 partial sums in registers (32 at H = 1024 on 132 SMs)
MIN_SLICE_TERMS = 4  # terms of the dot product per slice, at least, when H allows


class CooperativeLayout(NamedTuple):
    """G = ``blocks`` blocks of the grid, each owning ``rows`` of the H outputs with ``threads``
    threads; each thread sums 1/``slices`` of the terms for ``rows`` x ``tile`` outputs;
    ``virtual`` grid blocks per launched block (1 on a GPU, more in simulator tests)."""

    rows: int
    blocks: int
    threads: int
    virtual: int
    tile: int
    slices: int

    @property
    def resident(self) -> bool:
        """The kernel reads W itself in both directions (never a transposed copy)."""
        return True

    @property
    def launch(self) -> tuple[int, int]:
        """(blocks launched, threads per launched block)."""
        return math.ceil(self.blocks / self.virtual), self.threads * self.virtual

    @property
    def chunk_tiles(self) -> int:
        """Tiles of ``tile`` batch rows summed at once (threads / slices)."""
        return self.threads // self.slices

    def shared_bytes(self, hidden: int, itemsize: int) -> int:
        """W's rows, and the partial sums of half the threads, per launched block."""
        return (self.rows * hidden + self.threads // 2 * self.rows * self.tile) * itemsize * self.virtual


def _power_of_two_at_most(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def cooperative_plan(hidden: int, dtype, multiprocessors: int, batch: int = 1, blocks: int | None = None,
                     tile: int | None = None, slices: int | None = None) -> CooperativeLayout:
    """At most one grid block per multiprocessor (a cooperative grid must be resident all at once),
    as few rows per block as that allows; the widest tile (up to MAX_TILE batch rows) whose partial
    sums fit beside W in shared memory; as many slices of the terms as leave every tile of the batch
    a thread (at least 2, at most H / MIN_SLICE_TERMS). ``blocks``, ``tile`` and ``slices`` may be
    forced (tests, benchmarks). Under the simulator all grid blocks are virtual blocks of one
    launched block. ValueError when a block's rows of W and its partial sums do not fit the shared
    memory that numba-cuda gives (48 KB)."""
    itemsize = np.dtype(dtype).itemsize
    blocks = min(hidden, multiprocessors if blocks is None else blocks)
    rows = math.ceil(hidden / max(1, blocks))
    blocks = math.ceil(hidden / rows)
    virtual = blocks if SIMULATED else 1

    def layout(p: int, s: int) -> CooperativeLayout:
        return CooperativeLayout(rows, blocks, THREADS, virtual, p, s)

    if tile is None:
        fitting = [p for p in range(min(MAX_TILE, max(1, batch)), 0, -1)
                   if layout(p, 2).shared_bytes(hidden, itemsize) <= SHARED_LIMIT]
        tile = fitting[0] if fitting else 1
    if slices is None:
        tiles = math.ceil(max(1, batch) / tile)
        slices = min(_power_of_two_at_most(THREADS // min(tiles, THREADS)),
                     _power_of_two_at_most(hidden // MIN_SLICE_TERMS))
    chosen = layout(tile, max(2, min(slices, THREADS)))
    if chosen.slices & (chosen.slices - 1):
        raise ValueError(f"slices must be a power of two, not {chosen.slices}")
    need = chosen.shared_bytes(hidden, itemsize)
    if need > SHARED_LIMIT:
        raise ValueError(f"H = {hidden} in {np.dtype(dtype).name} over {blocks} blocks needs {need} bytes of "
                         f"shared memory per block for its rows of W and partial sums, over the {SHARED_LIMIT} "
                         "that numba-cuda gives")
    return chosen


@cache
def cooperative_recurrence(direction: str, hidden: int, layout: CooperativeLayout, code: int, dtype: str):
    """kernel(source, states, W, bias, has_bias, target, carry_out), launched as ``layout.launch``;
    the arguments mean what they mean for rnnspec.kernels.cuda.elman.recurrence, except that both
    directions read W itself:

    forward:  states[t] = f(states[t] + b + W h_{t-1}) for t = 1..T, h_{t-1} = states[t-1].
    backward: target[t-1] = delta_t = f'(h_t) * (source[t-1] + W^T delta_{t+1}) for t = T..1
              (delta_{T+1} = 0, read from target[t]), carry_out = W^T delta_1, and with has_bias
              bias (B, H) = sum_t delta_t per batch row.
    """
    f, slope = _act(code, dtype)
    numpy_dtype = np.dtype(dtype)
    typed = numpy_dtype.type
    backward = direction == "backward"
    rows, _, threads, virtual, tile, slices = layout
    chunk_tiles = layout.chunk_tiles
    outputs = rows * tile  # partial sums per thread
    half_threads = threads // 2
    weights_shape = (virtual, rows, hidden)  # [r, k]: a warp's slices k read consecutive banks
    partial_shape = (virtual, outputs * half_threads)  # [e, slot]: a warp's slots are consecutive
    whole = hidden - hidden % slices  # terms k < whole: every slice has one per pass

    @cuda.jit
    def kernel(source, states, W, bias, has_bias, target, carry_out):
        group = cuda.threadIdx.x // threads  # the grid block this thread acts in, within its launched block
        local = cuda.threadIdx.x % threads
        first = (cuda.blockIdx.x * virtual + group) * rows
        batch = states.shape[1]
        steps = states.shape[0] - 1
        chunks = (batch + chunk_tiles * tile - 1) // (chunk_tiles * tile)
        weights = cuda.shared.array(weights_shape, numpy_dtype)
        partial = cuda.shared.array(partial_shape, numpy_dtype)
        acc = cuda.local.array(outputs, numpy_dtype)
        v = cuda.local.array(tile, numpy_dtype)
        for e in range(local, hidden * rows, threads):
            r, k = e // hidden, e % hidden
            i = first + r
            if i < hidden:
                weights[group, r, k] = W[k, i] if backward else W[i, k]
            else:
                weights[group, r, k] = 0
        cuda.syncthreads()
        grid = cuda.cg.this_grid()
        s, j = local % slices, local // slices  # this thread's slice of the terms, and tile of the batch
        # the vector that step t multiplies: h_{t-1} = states[t-1], or delta_{t+1} = target[t]
        vectors = target if backward else states
        for step in range(steps + (1 if backward else 0)):
            t = steps - step if backward else step + 1  # h_t (forward) or delta_t (backward; t = 0: dL/dh0)
            p = t if backward else t - 1
            for chunk in range(chunks):
                b0 = (chunk * chunk_tiles + j) * tile
                for e in range(outputs):
                    acc[e] = 0
                if not backward or t < steps:  # delta_{T+1} = 0
                    for k0 in range(0, whole, slices):
                        k = k0 + s
                        for u in range(tile):  # rows past the batch read its last row; never stored
                            v[u] = vectors[p, min(b0 + u, batch - 1), k]
                        for r in range(rows):
                            w = weights[group, r, k]
                            for u in range(tile):
                                acc[r * tile + u] += w * v[u]
                    k = whole + s
                    if k < hidden:
                        for u in range(tile):
                            v[u] = vectors[p, min(b0 + u, batch - 1), k]
                        for r in range(rows):
                            w = weights[group, r, k]
                            for u in range(tile):
                                acc[r * tile + u] += w * v[u]
                half = slices // 2
                while half >= 1:  # slices [half, 2 half) hand their sums to slices [0, half)
                    if half <= s < 2 * half:
                        slot = j * half + s - half
                        for e in range(outputs):
                            partial[group, e * half_threads + slot] = acc[e]
                    cuda.syncthreads()
                    if s < half:
                        slot = j * half + s
                        for e in range(outputs):
                            acc[e] += partial[group, e * half_threads + slot]
                    cuda.syncthreads()
                    half //= 2
                if s == 0:  # the chunk's totals, spread over all threads to finish
                    for e in range(outputs):
                        partial[group, e * chunk_tiles + j] = acc[e]
                cuda.syncthreads()
                for o in range(local, outputs * chunk_tiles, threads):
                    e, jj = o // chunk_tiles, o % chunk_tiles
                    b = (chunk * chunk_tiles + jj) * tile + e % tile
                    i = first + e // tile
                    if b < batch and i < hidden:
                        total = partial[group, o]
                        if not backward:
                            states[t, b, i] = f(states[t, b, i] + (bias[0, i] if has_bias else typed(0)) + total)
                        elif t == 0:
                            carry_out[b, i] = total
                        else:
                            delta = slope(states[t, b, i]) * (source[t - 1, b, i] + total)
                            target[t - 1, b, i] = delta
                            if has_bias:  # the same thread owns (b, i) at every step: no race, a fixed order
                                bias[b, i] = delta if t == steps else bias[b, i] + delta
                cuda.syncthreads()  # the next chunk writes partial again
            grid.sync()

    return kernel
