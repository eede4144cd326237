"""The recurrence with W spread over a cooperative grid: for H too large for one block's registers.

Block g of G keeps the rows i in [g R, g R + R) of W (the columns, for the backward pass) in
shared memory for all T steps, R = ceil(H / G) with G at most one block per multiprocessor, and
computes every batch row's outputs i at each step: a dot product of length H against the previous
vector, which all blocks wrote at the step before and read from L2 (states for h_{t-1}, the
deltas for delta_{t+1}); then one grid-wide sync per step. Without it (the single-block kernels of
cuda_kernels), every block reads all of W from L2 at every step: B/rows blocks times 4 MB at
H = 1024 in float32, against B*H values of the previous vector here.

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

from rnnspec.kernels.cuda_kernels import SHARED_LIMIT, _act
from rnnspec.kernels.numpy_compat import SIMULATED, cuda_module

cuda = cuda_module()

THREADS = 2 if SIMULATED else 256  # per block of the grid


class CooperativeLayout(NamedTuple):
    """G = ``blocks`` blocks of the grid, each owning ``rows`` of the H outputs with ``threads``
    threads; ``virtual`` grid blocks per launched block (1 on a GPU, more in simulator tests)."""

    rows: int
    blocks: int
    threads: int
    virtual: int

    @property
    def resident(self) -> bool:
        """The kernel reads W itself in both directions (never a transposed copy)."""
        return True

    @property
    def launch(self) -> tuple[int, int]:
        """(blocks launched, threads per launched block)."""
        return math.ceil(self.blocks / self.virtual), self.threads * self.virtual


def cooperative_plan(hidden: int, dtype, multiprocessors: int, blocks: int | None = None) -> CooperativeLayout:
    """At most one grid block per multiprocessor (a cooperative grid must be resident all at once),
    as few rows per block as that allows; ``blocks`` may be forced (tests, benchmarks). Under the
    simulator all grid blocks are virtual blocks of one launched block. ValueError when a block's
    rows of W do not fit the shared memory that numba-cuda gives (48 KB: R * H * itemsize)."""
    blocks = min(hidden, multiprocessors if blocks is None else blocks)
    rows = math.ceil(hidden / max(1, blocks))
    blocks = math.ceil(hidden / rows)
    virtual = blocks if SIMULATED else 1
    need = rows * hidden * np.dtype(dtype).itemsize * virtual
    if need > SHARED_LIMIT:
        raise ValueError(f"H = {hidden} in {np.dtype(dtype).name} over {blocks} blocks needs {need} bytes of "
                         f"shared memory per block for its rows of W, over the {SHARED_LIMIT} that numba-cuda gives")
    return CooperativeLayout(rows, blocks, THREADS, virtual)


@cache
def cooperative_recurrence(direction: str, hidden: int, layout: CooperativeLayout, code: int, dtype: str):
    """kernel(source, states, W, bias, has_bias, target, carry_out), launched as ``layout.launch``;
    the arguments mean what they mean for rnnspec.kernels.cuda_kernels.recurrence, except that both
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
    rows, _, threads, virtual = layout
    weights_shape = (virtual, hidden, rows)  # [k, r]: a warp's rows r read consecutive banks
    whole = hidden - hidden % 4

    @cuda.jit
    def kernel(source, states, W, bias, has_bias, target, carry_out):
        group = cuda.threadIdx.x // threads  # the grid block this thread acts in, within its launched block
        local = cuda.threadIdx.x % threads
        first = (cuda.blockIdx.x * virtual + group) * rows
        batch = states.shape[1]
        steps = states.shape[0] - 1
        weights = cuda.shared.array(weights_shape, numpy_dtype)
        for e in range(local, hidden * rows, threads):
            k, r = e // rows, e % rows
            i = first + r
            if i < hidden:
                weights[group, k, r] = W[k, i] if backward else W[i, k]
            else:
                weights[group, k, r] = 0
        cuda.syncthreads()
        grid = cuda.cg.this_grid()
        # the vector that step t multiplies: h_{t-1} = states[t-1], or delta_{t+1} = target[t]
        vectors = target if backward else states
        for step in range(steps + (1 if backward else 0)):
            t = steps - step if backward else step + 1  # h_t (forward) or delta_t (backward; t = 0: dL/dh0)
            p = t if backward else t - 1
            for o in range(local, batch * rows, threads):
                b, r = o // rows, o % rows
                i = first + r
                if i < hidden:
                    a0 = typed(0)
                    a1 = typed(0)
                    a2 = typed(0)
                    a3 = typed(0)
                    if not backward or t < steps:  # delta_{T+1} = 0
                        for k in range(0, whole, 4):  # four chains: FMA latency
                            a0 += weights[group, k, r] * vectors[p, b, k]
                            a1 += weights[group, k + 1, r] * vectors[p, b, k + 1]
                            a2 += weights[group, k + 2, r] * vectors[p, b, k + 2]
                            a3 += weights[group, k + 3, r] * vectors[p, b, k + 3]
                        for k in range(whole, hidden):
                            a0 += weights[group, k, r] * vectors[p, b, k]
                    total = (a0 + a1) + (a2 + a3)
                    if not backward:
                        states[t, b, i] = f(states[t, b, i] + (bias[0, i] if has_bias else typed(0)) + total)
                    elif t == 0:
                        carry_out[b, i] = total
                    else:
                        delta = slope(states[t, b, i]) * (source[t - 1, b, i] + total)
                        target[t - 1, b, i] = delta
                        if has_bias:  # the same thread owns (b, i) at every step: no race, a fixed order
                            bias[b, i] = delta if t == steps else bias[b, i] + delta
            grid.sync()

    return kernel
