"""numba-cuda kernels for the Elman cell. Compiled per configuration (sizes fixed at compile time,
so shared and register arrays have static shapes); see rnnspec.kernels.cuda for the host side.

Each recurrence direction is one launch for all T steps: one block per slice of batch rows, its
threads covering the H outputs (and, split, the terms of each dot product), the previous vector in
shared memory (double-buffered: one barrier per step, two when the partial sums are exchanged), the
recurrent matrix in registers when it fits (H <= 128 in float32) and read through L1/L2 otherwise.
Blocks never wait for each other, so the kernels also run under the CUDA simulator, which executes
blocks one at a time. scripts/cuda_resources.py prints ptxas's register report for each layout.
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import numpy as np

from rnnspec.kernels.numpy_compat import SIMULATED, cuda_module

cuda = cuda_module()

#: the simulator runs each thread as a Python thread: small tiles and blocks keep it usable


def _act(code, dtype):
    """f(z) and f'(z) from h = f(z), as device functions, for activation code 0 tanh, 1 sigmoid,
    2 relu, 3 identity; constants are of the arrays' dtype so float32 stays float32."""
    typed = np.dtype(dtype).type

    @cuda.jit(device=True, inline=True)
    def f(z):
        if code == 0:
            return math.tanh(z)
        if code == 1:
            return typed(1) / (typed(1) + math.exp(-z))
        if code == 2:
            return z if z > 0 else typed(0)
        return z

    @cuda.jit(device=True, inline=True)
    def slope(h):
        one = typed(1)
        if code == 0:
            return one - h * h
        if code == 1:
            return h * (one - h)
        if code == 2:
            return one if h > 0 else typed(0)
        return one

    return f, slope


class Layout(NamedTuple):
    """How one recurrence block covers the H outputs of ``rows`` batch rows.

    The block has ``lanes * split`` threads. Thread (lane, s) covers the outputs
    i = lane + n * lanes (n < per_thread) and, of each dot product out[i] = sum_k M[k, i] v[k], the
    terms k in [s * chunk, (s + 1) * chunk); the ``split`` partial sums of an output meet in shared
    memory. The first ``held`` terms of a thread's chunk keep their weights in registers for all T
    steps; the rest are read from global memory (through L1, where they can stay) at every step.
    Each step's inputs (U x_t, or dL/dh_t and h_t) are loaded ``ahead`` steps at a time: with
    ahead = 1 each is loaded one step before its use; with ahead = P > 1 the last step of every group
    of P moves the next group's inputs (in flight during this group) into shared memory and issues
    the loads of the group after it, P steps at once (independent loads, all in flight together).
    plan() chooses 1: on the H200 at H = 64, groups of 8 made the forward recurrence slower in one
    run (0.78 against 0.56 ms for 1000 steps, gpu_run_2.txt) and the whole call no faster in the next
    (1.51 against 1.55 ms, gpu_run_3.txt). On the H100 groups of 8 were faster in runs 4 to 6 (whole
    call 0.87 to 0.93 against 1.02 to 1.11 ms with the lean launch): a repeated run on both machines
    should settle it (benchmarks/cuda_notes.md, "Next").
    """

    lanes: int
    per_thread: int
    split: int
    chunk: int
    held: int
    rows: int
    ahead: int

    @property
    def threads(self) -> int:
        return self.lanes * self.split

    @property
    def resident(self) -> bool:
        """All of M in registers: nothing read from global memory in the time loop."""
        return self.held == self.chunk


REGISTER_WORDS = 64  # 32-bit registers per thread that may hold M
REGISTER_FILE = 65536  # 32-bit registers per multiprocessor (sm_70 to sm_90)
OTHER_REGISTERS = 40  # what a thread needs beside M (ptxas: 0 spills at 128 with 64 words of M)
STREAM_REGISTERS = 40  # more of them while streamed weights are in flight (ptxas, sm_90)
MAX_THREADS = 8 if SIMULATED else 1024
SHARED_LIMIT = 48 * 1024  # static shared memory per block, all that numba-cuda offers
MIN_HELD = 16
HELD_GROUP, STREAM_GROUP = 4, 16  # terms per unrolled group: 4 accumulators; 16 streamed loads in flight
#: 16-byte aligned shared vectors let the compiler load 4 terms at once (ld.shared.v4); the simulator
#: accepts no alignment
VECTOR_ALIGNMENT = None if SIMULATED else 16
MAX_AHEAD = 8  # steps per group of prefetched inputs


def plan(hidden: int, batch: int, dtype, multiprocessors: int, split: int | None = None,
         held: int | None = None, rows: int | None = None, ahead: int | None = None) -> Layout:
    """The layout for H = ``hidden``: the split that keeps the most of M in registers (fewest threads
    among equals), the rest of M streamed; rows per block so that the blocks fill the GPU (fewer when
    the shared vectors would not fit); inputs one step ahead (groups of up to MAX_AHEAD steps when
    forced). On the H200 (benchmarks/gpu_run_3.txt) split 2 beat split 4 at H = 128 (0.95x against
    0.78x cuDNN's fwd+bwd) and split 1 was best at H = 64. ``split``, ``held``, ``rows`` and
    ``ahead`` may be forced (tests, benchmarks). ValueError when H is too large for one block's
    shared memory."""
    itemsize = np.dtype(dtype).itemsize
    words = max(1, itemsize // 4)

    def terms(s: int, keep: int | None) -> tuple[int, int]:
        """(chunk, held) for split s: whole chunk held when it fits, else as many as the registers allow."""
        need = math.ceil(hidden / s)
        budget = min(255, REGISTER_FILE // (min(hidden, MAX_THREADS // s) * s)) - OTHER_REGISTERS
        whole = HELD_GROUP * math.ceil(need / HELD_GROUP)
        if keep is None:
            keep = whole if whole * words <= min(REGISTER_WORDS, budget) else \
                HELD_GROUP * (min(REGISTER_WORDS, budget - STREAM_REGISTERS) // words // HELD_GROUP)
            if keep < MIN_HELD:  # too few to be worth a second loop and the padding
                keep = 0
        keep = max(0, min(keep, whole))
        if keep == whole:
            return whole, whole
        return keep + STREAM_GROUP * math.ceil((need - keep) / STREAM_GROUP), keep

    splits = [1 << e for e in range(11) if (1 << e) <= max(1, MAX_THREADS // max(hidden, 1))] or [1]
    if split is None:  # most of M in registers, then fewest threads
        split = max(splits, key=lambda s: (terms(s, held)[1] * min(hidden, MAX_THREADS // s) * s, -s))
    chunk, held = terms(split, held)

    def shared_bytes(r: int, steps_ahead: int = 1) -> int:
        staged = 2 * steps_ahead * r * hidden if steps_ahead > 1 else 0  # the backward's two inputs
        return (2 * r * split * chunk + (split * r * hidden if split > 1 else 0) + staged) * itemsize

    if rows is None:
        rows = min(8, 1 << max(0, math.ceil(math.log2(max(1, math.ceil(batch / max(1, multiprocessors)))))))
        while rows > 1 and shared_bytes(rows) > SHARED_LIMIT:
            rows //= 2
    if shared_bytes(rows) > SHARED_LIMIT:
        raise ValueError(f"H = {hidden} in {np.dtype(dtype).name} needs {shared_bytes(rows)} bytes of shared memory "
                         f"per block, over the {SHARED_LIMIT} that numba-cuda gives; use the CPU kernels")
    lanes = min(hidden, max(1, MAX_THREADS // split))
    per_thread = math.ceil(hidden / lanes)
    if ahead is None:  # staged groups ran slower on the H200 at H = 64 (0.78 against 0.56 ms): a variant
        ahead = 1
    if not 1 <= ahead <= MAX_AHEAD:
        raise ValueError(f"ahead: expected 1 to {MAX_AHEAD} steps, got {ahead}")
    if shared_bytes(rows, ahead) > SHARED_LIMIT:
        raise ValueError(f"ahead = {ahead} steps at H = {hidden} and {rows} rows needs {shared_bytes(rows, ahead)} "
                         f"bytes of shared memory per block, over {SHARED_LIMIT}")
    return Layout(lanes, per_thread, split, chunk, held, rows, ahead)


@cache
def recurrence(direction: str, hidden: int, layout: Layout, code: int, dtype: str):
    """The forward (``"forward"``) or backward (``"backward"``) recurrence, one launch for all T steps.

    kernel(source, states, M, bias, has_bias, target, carry_out), grid ceil(B / rows), block threads:

    forward  (source = target = states, M = W if layout.resident else W^T, carry_out = h0 (B, H)):
             states (T+1, B, H) holds U x_t in rows 1..T on entry; on exit states[0] = h0 and
             states[t] = f(states[t] + b + W h_{t-1}).
    backward (source = direct dL/dh_t (T, B, H), M = W): delta_t = f'(h_t) * (direct_t + W^T delta_{t+1})
             into target (T, B, H), carry_out (B, H) = W^T delta_1 = dL/dh0, and bias (B, H) = sum_t delta_t
             per batch row when has_bias (summed over rows by the caller: no atomics, so bit-reproducible).
    The forward's bias is b as a (1, H) array, so that both directions compile with the same types.

    Each step: partial dot products against the previous vector v (shared memory, double-buffered),
    four accumulators per output (FMA latency), partial sums exchanged through shared memory when
    split > 1, then each (row, output) finished by one thread whose inputs were loaded ahead
    (Layout). The forward adds b to U x_t here, from a register, rather than in the GEMM.
    """
    f, slope = _act(code, dtype)
    numpy_dtype = np.dtype(dtype)
    typed = numpy_dtype.type
    backward = direction == "backward"
    lanes, per_thread, split, chunk, held, rows, ahead = layout
    staged = ahead > 1
    width = split * chunk  # a shared vector, zero-padded past H, as (split, chunk): see the kernel
    finishers = math.ceil(rows / split)  # rows finished by each thread: r = s + m * split
    weights_size = max(1, per_thread * held)
    partials_shape = (split, rows, hidden) if split > 1 else (1, 1, 1)
    accumulators = rows * per_thread * 4
    finishing = finishers * per_thread  # (row, output) pairs that each thread finishes
    stage_shape = (ahead, rows, hidden) if staged else (1, 1, 1)
    state_stage_shape = stage_shape if backward else (1, 1, 1)
    pending = ahead * finishing if staged else 1
    by_rows = layout.resident and not backward  # forward reads W itself once: no transposed copy needed
    options = {} if SIMULATED else {"launch_bounds": layout.threads, "shared_memory_carveout": "MaxL1"}

    @cuda.jit(device=True, inline=True)
    def step_inputs(source, states, steps, q, b, i):
        """The inputs of loop step q < steps: forward (U x_{q+1}, 0); backward, t = steps - q,
        (dL/dh_t, h_t) = (source[t - 1], states[t])."""
        if backward:
            return source[steps - q - 1, b, i], states[steps - q, b, i]
        return states[q + 1, b, i], typed(0)

    # launch_bounds: ptxas keeps the registers per thread within what a block of this size can have;
    # the largest L1 keeps streamed weights on chip across steps where they fit
    @cuda.jit(**options)
    def kernel(source, states, M, bias, has_bias, target, carry_out):
        tid = cuda.threadIdx.x
        lane = tid % lanes
        s = tid // lanes
        first = cuda.blockIdx.x * rows
        batch = states.shape[1]
        steps = states.shape[0] - 1
        # v[buffer, row, s, j] is term k = s * chunk + j of the previous vector: with s an index of its
        # own and j a constant of the unrolled loop, every load's address is one register plus a
        # constant (with k as one index, numba's negative-index fix-up made it 3 to 6 integer
        # instructions per multiply-add, the step's longest part)
        v = cuda.shared.array((2, rows, split, chunk), numpy_dtype, alignment=VECTOR_ALIGNMENT)
        partials = cuda.shared.array(partials_shape, numpy_dtype)
        # a step's inputs: U x_t (forward), or dL/dh_t and h_t (backward). Staged: this group's, each
        # read back only by the thread that wrote it (no barrier); the next group's in flight meanwhile
        given_stage = cuda.shared.array(stage_shape, numpy_dtype)
        state_stage = cuda.shared.array(state_stage_shape, numpy_dtype)
        given_next = cuda.local.array(pending, numpy_dtype)
        state_next = cuda.local.array(pending, numpy_dtype)
        given = cuda.local.array(finishing, numpy_dtype)  # not staged: this step's, loaded last step
        state = cuda.local.array(finishing, numpy_dtype)
        added = cuda.local.array(finishing, numpy_dtype)  # forward: b_i, read once (states is written)
        bias_sum = cuda.local.array(finishing, numpy_dtype)
        w = cuda.local.array(weights_size, numpy_dtype)
        acc = cuda.local.array(accumulators, numpy_dtype)
        for n in range(per_thread):
            i = lane + n * lanes
            for j in range(held):
                k = s * chunk + j
                if k < hidden and i < hidden:
                    w[n * held + j] = M[i, k] if by_rows else M[k, i]
                else:
                    w[n * held + j] = 0
        for e in range(tid, 2 * rows * width, cuda.blockDim.x):
            k = e % width
            v[e // (rows * width), (e // width) % rows, k // chunk, k % chunk] = 0
        cuda.syncthreads()  # zeroed before h0 is written into it
        # the inputs of loop step q: forward U x_{q+1} = states[q + 1]; backward, t = steps - q,
        # dL/dh_t = source[t - 1] and h_t = states[t]; steps q < steps have them
        for m in range(finishers):
            r = m if split == 1 else s + m * split
            b = first + r
            for n in range(per_thread):
                i = lane + n * lanes
                slot = m * per_thread + n
                bias_sum[slot] = 0
                given[slot] = 0
                state[slot] = 0
                added[slot] = 0
                if staged and r < rows and i < hidden:  # 0 where nothing is loaded (rows past B, steps
                    for q in range(ahead):             # past T): their f and f' are computed, not used
                        given_stage[q, r, i] = 0
                        if backward:
                            state_stage[q, r, i] = 0
                if r < rows and b < batch and i < hidden:
                    if not backward:  # h0, from carry_out: no copy into states before the launch
                        v[0, r, i // chunk, i % chunk] = carry_out[b, i]
                        states[0, b, i] = carry_out[b, i]
                        if has_bias:
                            added[slot] = bias[0, i]
                    for q in range(2 * ahead if staged else 1):  # staged: group 0 staged, group 1 in flight
                        if q < steps:
                            g_in, s_in = step_inputs(source, states, steps, q, b, i)
                            if not staged:
                                given[slot] = g_in
                                state[slot] = s_in
                            elif q < ahead:
                                given_stage[q, r, i] = g_in
                                if backward:
                                    state_stage[q, r, i] = s_in
                            else:
                                given_next[(q - ahead) * finishing + slot] = g_in
                                state_next[(q - ahead) * finishing + slot] = s_in
        cuda.syncthreads()
        for step in range(steps + (1 if backward else 0)):
            cur = step & 1  # (not step % 2: Python's modulo of a signed integer is several instructions)
            j = step % ahead
            for e in range(accumulators):
                acc[e] = 0
            for n in range(per_thread):
                i = lane + n * lanes
                for j0 in range(0, held, HELD_GROUP):  # unrolled whole: constant register indices
                    for q in range(HELD_GROUP):
                        wt = w[n * held + j0 + q]
                        for r in range(rows):
                            acc[(r * per_thread + n) * 4 + q % 4] += wt * v[cur, r, s, j0 + q]
                for j0 in range(held, chunk, STREAM_GROUP):
                    for q in range(STREAM_GROUP):
                        k = s * chunk + j0 + q
                        wt = M[k, i] if k < hidden and i < hidden else typed(0)
                        for r in range(rows):
                            acc[(r * per_thread + n) * 4 + q % 4] += wt * v[cur, r, s, j0 + q]
            if split > 1:
                for r in range(rows):
                    for n in range(per_thread):
                        i = lane + n * lanes
                        if i < hidden:
                            e = (r * per_thread + n) * 4
                            partials[s, r, i] = (acc[e] + acc[e + 1]) + (acc[e + 2] + acc[e + 3])
                cuda.syncthreads()
            t = step + 1 if not backward else steps - step  # the h_t (forward) or delta_t (backward) made now
            for m in range(finishers):
                r = m if split == 1 else s + m * split  # constant when split == 1: acc stays in registers
                b = first + r
                for n in range(per_thread):
                    i = lane + n * lanes
                    slot = m * per_thread + n
                    if r < rows and i < hidden:
                        if split > 1:
                            total = partials[0, r, i]
                            for other in range(1, split):
                                total += partials[other, r, i]
                        else:
                            e = (r * per_thread + n) * 4
                            total = (acc[e] + acc[e + 1]) + (acc[e + 2] + acc[e + 3])
                        live = b < batch
                        if backward and t == 0:
                            if live:
                                carry_out[b, i] = total
                        else:
                            g_in = given_stage[j, r, i] if staged else given[slot]
                            if backward:
                                value = slope(state_stage[j, r, i] if staged else state[slot]) * (g_in + total)
                            else:
                                value = f(g_in + added[slot] + total)
                            if not live:
                                value = typed(0)
                            v[1 - cur, r, i // chunk, i % chunk] = value
                            if live:
                                if backward:
                                    target[t - 1, b, i] = value
                                    bias_sum[slot] += value
                                else:
                                    states[t, b, i] = value
                                if not staged and step + 1 < steps:  # the next step's inputs
                                    given[slot], state[slot] = step_inputs(source, states, steps, step + 1, b, i)
            if staged and j == ahead - 1:  # this group is done: stage the next (arrived during this
                for m in range(finishers):  # one) and put the group after it in flight
                    r = m if split == 1 else s + m * split
                    b = first + r
                    for n in range(per_thread):
                        i = lane + n * lanes
                        if r < rows and b < batch and i < hidden:
                            for p in range(ahead):
                                e = p * finishing + m * per_thread + n
                                given_stage[p, r, i] = given_next[e]
                                if backward:
                                    state_stage[p, r, i] = state_next[e]
                                later = step + 1 + ahead + p
                                if later < steps:
                                    given_next[e], state_next[e] = step_inputs(source, states, steps, later, b, i)
            cuda.syncthreads()
        if backward and has_bias:
            for m in range(finishers):
                r = m if split == 1 else s + m * split
                for n in range(per_thread):
                    i = lane + n * lanes
                    if r < rows and first + r < batch and i < hidden:
                        bias[first + r, i] = bias_sum[m * per_thread + n]

    return kernel


@cuda.jit
def transpose(matrix, out):
    """out = matrix^T, one thread per entry."""
    i, j = cuda.grid(2)
    if i < matrix.shape[0] and j < matrix.shape[1]:
        out[j, i] = matrix[i, j]


@cuda.jit
def column_sums(rows, out):
    """out[j] = sum_i rows[i, j]; one thread per column."""
    j = cuda.grid(1)
    if j < rows.shape[1]:
        acc = rows[0, j] * 0
        for i in range(rows.shape[0]):
            acc += rows[i, j]
        out[j] = acc


@cuda.jit
def softmax_cross_entropy(logits, bias, targets, losses):
    """Per row: loss = log sum exp(a + c) - (a + c)[y]; logits become softmax - onehot(y)."""
    r = cuda.grid(1)
    if r < logits.shape[0]:
        classes = logits.shape[1]
        top = logits[r, 0] + bias[0]
        for k in range(classes):
            logits[r, k] += bias[k]
            top = max(top, logits[r, k])
        y = targets[r]
        loss = top - logits[r, y]
        norm = logits[r, 0] * 0
        for k in range(classes):
            e = math.exp(logits[r, k] - top)
            logits[r, k] = e
            norm += e
        losses[r] = loss + math.log(norm)
        for k in range(classes):
            logits[r, k] /= norm
        logits[r, y] -= 1
