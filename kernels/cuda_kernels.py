"""numba-cuda kernels for the Elman cell. Compiled per configuration (sizes fixed at compile time,
so shared arrays have static shapes); see rnnspec.kernels.cuda for the host side.

The recurrence runs as one launch for all T steps: one block per slice of ``ROWS`` batch rows,
the block's threads covering the H hidden units, the previous state in shared memory, the
recurrent matrix in shared memory when it fits (else read through the L1 cache), and one block
barrier per step. Blocks never wait for each other, so the kernels also run under the CUDA
simulator, which executes blocks one at a time.
"""

from __future__ import annotations

import math
from functools import cache

import numba
import numpy as np

from rnnspec.kernels.numpy_compat import cuda_module

cuda = cuda_module()

#: the simulator runs each thread as a Python thread: small tiles and blocks keep it usable
SIMULATED = bool(numba.config.ENABLE_CUDASIM)
TILE = 4 if SIMULATED else 16
SHARED_BYTES = 40 * 1024  # under the 48 KB that numba-cuda can give a block


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


def threads_for(hidden: int) -> int:
    """Threads of a recurrence block: whole warps covering H, at most 1024 (threads loop over the rest)."""
    if SIMULATED:
        return min(hidden, 8)
    return min(1024, max(32, 32 * math.ceil(hidden / 32)))


@cache
def recurrence(direction: str, hidden: int, rows: int, code: int, dtype: str):
    """The forward (``"forward"``) or backward (``"backward"``) recurrence kernel for one configuration.

    forward:  states[t+1, b] = f(states[t+1, b] + M^T-product) with out[i] = sum_k M[k, i] h_t[k] + bias[i]
              (M = W^T), states[0] = h0 on entry.
    backward: delta_t = f'(h_t) * (direct_t + carry); carry = sum_j W[j, i] delta_t[j]; bias_grad per row.
    """
    f, slope = _act(code, dtype)
    numpy_dtype = np.dtype(dtype)
    typed = numpy_dtype.type
    in_shared = hidden * hidden * numpy_dtype.itemsize <= SHARED_BYTES
    m_size = hidden * hidden if in_shared else 1

    @cuda.jit(device=True, inline=True)
    def load_matrix(m, M, tid, step):
        """The block's copy of M in shared memory, when it fits (else M is read from global memory)."""
        if in_shared:
            for n in range(tid, hidden * hidden, step):
                m[n] = M[n // hidden, n % hidden]

    @cuda.jit
    def forward(states, M, bias, has_bias):
        """states (T+1, B, H): h0 then U x_t on entry; f(U x_t + W h_{t-1} + b) on exit."""
        tid = cuda.threadIdx.x
        step = cuda.blockDim.x
        first = cuda.blockIdx.x * rows
        batch = states.shape[1]
        h = cuda.shared.array((rows, hidden), numpy_dtype)
        m = cuda.shared.array(m_size, numpy_dtype)
        load_matrix(m, M, tid, step)
        for r in range(rows):
            if first + r < batch:
                for i in range(tid, hidden, step):
                    h[r, i] = states[0, first + r, i]
        cuda.syncthreads()
        for t in range(1, states.shape[0]):
            for r in range(rows):
                b = first + r
                if b < batch:
                    for i in range(tid, hidden, step):
                        acc = states[t, b, i]
                        if has_bias:
                            acc += bias[i]
                        for k in range(hidden):
                            weight = m[k * hidden + i] if in_shared else M[k, i]
                            acc += weight * h[r, k]
                        states[t, b, i] = f(acc)
            cuda.syncthreads()
            for r in range(rows):
                b = first + r
                if b < batch:
                    for i in range(tid, hidden, step):
                        h[r, i] = states[t, b, i]
            cuda.syncthreads()

    @cuda.jit
    def backward(direct, states, M, deltas, carry_out):
        """deltas (T, B, H) written; carry_out (B, H) = W^T delta_1; M = W (row-major)."""
        tid = cuda.threadIdx.x
        step = cuda.blockDim.x
        first = cuda.blockIdx.x * rows
        batch = direct.shape[1]
        carry = cuda.shared.array((rows, hidden), numpy_dtype)
        d = cuda.shared.array((rows, hidden), numpy_dtype)
        m = cuda.shared.array(m_size, numpy_dtype)
        load_matrix(m, M, tid, step)
        for r in range(rows):
            for i in range(tid, hidden, step):
                carry[r, i] = 0
        cuda.syncthreads()
        for t in range(direct.shape[0] - 1, -1, -1):
            for r in range(rows):
                b = first + r
                if b < batch:
                    for i in range(tid, hidden, step):
                        value = (direct[t, b, i] + carry[r, i]) * slope(states[t + 1, b, i])
                        d[r, i] = value
                        deltas[t, b, i] = value
            cuda.syncthreads()
            for r in range(rows):
                if first + r < batch:
                    for i in range(tid, hidden, step):
                        acc = typed(0)
                        for j in range(hidden):
                            weight = m[j * hidden + i] if in_shared else M[j, i]
                            acc += weight * d[r, j]
                        carry[r, i] = acc
            cuda.syncthreads()
        for r in range(rows):
            b = first + r
            if b < batch:
                for i in range(tid, hidden, step):
                    carry_out[b, i] = carry[r, i]

    return forward if direction == "forward" else backward


@cache
def gemm(trans_a: bool, trans_b: bool, dtype: str):
    """C = op(A) @ op(B), 16x16 tiles through shared memory; grid covers C."""
    numpy_dtype = np.dtype(dtype)
    zero = numpy_dtype.type

    @cuda.jit
    def kernel(A, B, C):
        row = cuda.blockIdx.y * TILE + cuda.threadIdx.y
        col = cuda.blockIdx.x * TILE + cuda.threadIdx.x
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        a_tile = cuda.shared.array((TILE, TILE), numpy_dtype)
        b_tile = cuda.shared.array((TILE, TILE), numpy_dtype)
        inner = A.shape[0] if trans_a else A.shape[1]
        acc = zero(0)
        for start in range(0, inner, TILE):
            k = start + tx
            if row < C.shape[0] and k < inner:
                a_tile[ty, tx] = A[k, row] if trans_a else A[row, k]
            else:
                a_tile[ty, tx] = 0
            k = start + ty
            if col < C.shape[1] and k < inner:
                b_tile[ty, tx] = B[col, k] if trans_b else B[k, col]
            else:
                b_tile[ty, tx] = 0
            cuda.syncthreads()
            for n in range(TILE):
                acc += a_tile[ty, n] * b_tile[n, tx]
            cuda.syncthreads()
        if row < C.shape[0] and col < C.shape[1]:
            C[row, col] = acc

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
