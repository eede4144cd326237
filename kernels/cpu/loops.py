"""The jitted loops of the Elman kernels: elementwise work fused, the recurrence the only sequential part.

Activation codes: 0 tanh, 1 sigmoid, 2 relu, 3 identity, 4 tanh by the float32 rational form; tanh and
sigmoid by the vectorizing forms of :mod:`rnnspec.kernels.cpu.elementwise` (libm's are scalar calls, which
kept the float64 Elman step from vectorizing: its S2 forward ran at 0.41-0.46x PyTorch,
benchmarks/cpu_issue37/).
``one`` is 1 in the arrays' dtype, so float32 arithmetic stays float32 (a float64 literal would
promote it). ``error_model="numpy"`` lets division skip Python's zero check, without which
LLVM cannot vectorize the loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnspec.kernels.cpu.elementwise import GATE_LOOPS, exp, sigmoid, tanh, tanh32
from rnnspec.kernels.cpu.panels import product as panel_product
from rnnspec.kernels.cpu.scratch import ALIGNMENT, aligned_empty
from rnnspec.kernels.cpu.simd import row_times

#: below this many multiply-adds per step, a plain loop beats a BLAS call's fixed cost
SMALL_STEP = 16384

@njit(cache=True, inline="always", error_model="numpy")
def activate(v, act, one):
    """h = f(z)."""
    if act == 0:
        return tanh(v)
    if act == 4:
        return tanh32(v)
    if act == 1:
        return sigmoid(v)
    if act == 2:
        return v if v > 0 else v * 0
    return v


@njit(cache=True, inline="always", error_model="numpy")
def slope(h, act, one):
    """f'(z) from h = f(z): tanh 1 - h^2, sigmoid h (1 - h), relu [h > 0], identity 1."""
    if act == 0 or act == 4:
        return one - h * h
    if act == 1:
        return h * (one - h)
    if act == 2:
        return one if h > 0 else one * 0
    return one


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def matmul_into(a, b, out, blas_rows):
    """out = a @ b for C-contiguous a (R, K), b (K, N): by BLAS calls on blas_rows rows at a time
    (:func:`blas.rows_per_call`: each call kept on OpenBLAS's unpacked small-matrix kernels), or, when
    blas_rows is 0 (small products), by a loop.

    The loop is :func:`simd.row_times` on each row: its columns' sums held in vector registers over the
    whole sum (1 x 32 by 32 x 128: 0.15 against 0.21 us for a loop that adds four rows of b per pass).
    """
    if blas_rows > 0:
        for r0 in range(0, a.shape[0], blas_rows):
            np.dot(a[r0:r0 + blas_rows], b, out[r0:r0 + blas_rows])
        return
    for r in range(a.shape[0]):
        row_times(a[r], b, out[r])


@njit(cache=True, nogil=True, error_model="numpy")
def transpose_into(source, target):
    """target (R, C) = source (C, R)^T, in 16 x 16 tiles so that both sides move in whole cache lines."""
    rows, cols = target.shape
    for r0 in range(0, rows, 16):
        for c0 in range(0, cols, 16):
            for r in range(r0, min(r0 + 16, rows)):
                line = target[r]
                for c in range(c0, min(c0 + 16, cols)):
                    line[c] = source[c, r]


#: the most elements a transposed copy takes by NumPy's copy: up to 128 x 32, it took 1.5 us against the tiles' 3.4;
#: from 256 x 64 on the tiles won (11.6 against 14.0 us), float32 and float64 alike
SMALL_TRANSPOSE = 4096


def transposed(source: np.ndarray) -> np.ndarray:
    """source^T as a new C-contiguous array: by :func:`transpose_into`, or NumPy's copy up to SMALL_TRANSPOSE
    elements. The same values as ``np.require(source.T, requirements="C")``, which took 4x as long for a stacked W of
    4096 x 1024 in float32 (46.6 against 11.2 ms, 1.8x in float64; benchmarks/cpu_profile_issue37.md)."""
    if source.size <= SMALL_TRANSPOSE:
        return source.T.copy()
    out = aligned_empty((source.shape[1], source.shape[0]), source.dtype)
    transpose_into(source, out)
    return out


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def step_product(a, b, b_transposed, out, blas_rows, staging, transposed=True, packed=None):
    """out = a @ b: where ``packed`` holds b in panels (not empty), by the kernels' tiles (:func:`panels.product`);
    else, where ``transposed``, as (b^T a^T)^T from ``b_transposed`` (b^T, C-contiguous): one BLAS call writes
    out^T into ``staging`` (at least R N elements), then a tiled transpose; else by :func:`matmul_into`. Only the
    operand the path reads need be given: the others may be empty.
    OpenBLAS's sgemm ran the transposed problem faster at large W (blas.transposed_wins), with the same bits."""
    if packed is not None:  # two ifs: Numba prunes the first where packed is left out
        if packed.shape[0] > 0:
            panel_product(a, packed, out)
            return
    if not transposed:
        matmul_into(a, b, out, blas_rows)
        return
    columns = b_transposed.shape[0]  # b itself may be left empty here (gated._Run.weights)
    staged = staging[:a.shape[0] * columns].reshape(columns, a.shape[0])
    np.dot(b_transposed, a.T, staged)
    transpose_into(staged, out)


# Padded steps of variable-length runs. Rows are sorted by length, longest first, so the rows still
# running at step t are a prefix 0..n_t - 1 (``active[t] = n_t``, in either direction); the others keep
# their state, s_t = s_{t-1}, and in BPTT hand the whole cotangent of s_t on to s_{t-1}, with no delta.
# The loops call these only where some row is held (n < B): a call over full sequences holds none, and the
# calls' views cost the LSTM's G1 forward (T = 50, B = 1, H = 32) 9 of its 35 us in the loop.


@njit(cache=True, nogil=True, error_model="numpy")
def hold(previous, current, n):
    """current[r] = previous[r] for the rows r >= n that are past their sequence's end."""
    for r in range(n, current.shape[0]):
        current[r, :] = previous[r, :]


@njit(cache=True, nogil=True, error_model="numpy")
def pass_back(carry, direct, n):
    """carry[r] += direct[r] for the rows r >= n: a held state's cotangent reaches the state it held."""
    for r in range(n, carry.shape[0]):
        carry[r, :] += direct[r, :]


@njit(cache=True, nogil=True, error_model="numpy")
def clear(rows, n):
    """rows[r] = 0 for r >= n: no delta (and no finite garbage for the GEMMs) at a held step."""
    for r in range(n, rows.shape[0]):
        rows[r, :] = 0


@njit(**GATE_LOOPS)
def step_forward(current, product, bias, act, one):
    """current = f(current + product + b): current holds U x_t, product h_{t-1} W^T, bias b (zero for a cell
    without one: adding it changes no value)."""
    for r in range(current.shape[0]):
        for i in range(current.shape[1]):
            current[r, i] = activate(current[r, i] + product[r, i] + bias[i], act, one)


@njit(**GATE_LOOPS)
def step_backward(delta, direct, carry, h, act, one, bias_grad):
    """delta = f'(z_t) * (direct + carry), carry holding W^T delta_{t+1}; bias_grad += sum of delta rows."""
    for r in range(delta.shape[0]):
        for i in range(delta.shape[1]):
            d = (direct[r, i] + carry[r, i]) * slope(h[r, i], act, one)
            delta[r, i] = d
            bias_grad[i] += d


@njit(cache=True, nogil=True, error_model="numpy")
def recur_forward(states, WT, bias, act, one, blas_rows, active, packed):
    """states[0] = h0 and states[1:] = U x_t on entry; on exit states[t] = f(states[t] + W h_{t-1} + b)
    for the active[t - 1] rows still running, states[t - 1] for the others. The products run by the panels
    ``packed`` (W^T packed: :func:`step_product`) where it is not empty."""
    steps, batch, hidden = states.shape
    product = np.empty((batch, hidden), states.dtype)
    none = np.empty(0, states.dtype)  # no staging: the products never run transposed here
    for t in range(1, steps):
        n = active[t - 1]
        if n > 0:
            step_product(states[t - 1][:n], WT, WT, product[:n], blas_rows, none, False, packed)
            step_forward(states[t][:n], product[:n], bias, act, one)
        if n < batch:
            hold(states[t - 1], states[t], n)


@njit(cache=True, nogil=True, error_model="numpy", inline="always", fastmath=GATE_LOOPS["fastmath"])
def _rows_forward(states, WT, bias, act, one):
    """recur_forward's sums and activations, row by row (see :func:`recur_rows`); ``act`` a constant where inlined."""
    steps, batch, hidden = states.shape
    product = np.empty(hidden, states.dtype)
    for t in range(1, steps):
        previous, current = states[t - 1], states[t]
        for r in range(batch):
            row_times(previous[r], WT, product)
            line = current[r]
            for i in range(hidden):
                line[i] = activate(line[i] + product[i] + bias[i], act, one)


@njit(**GATE_LOOPS)
def recur_rows(states, WT, bias, act, one):
    """:func:`recur_forward` where every row runs every step and the products run as loops (no BLAS rows, no panels):
    the same sums (simd.row_times, row by row) and the same activation of each, so the same bits, without the shared
    loop's views, branches and held rows, and with the activation a constant in each copy of the loop, which lets LLVM
    vectorize it (a branch on ``act`` at every element did not): 50 steps of 1 x 32 by 32 x 32, float32, 5.9 against
    3.0 us (4.6 with ``act`` left a variable)."""
    if act == 4:
        _rows_forward(states, WT, bias, 4, one)
    elif act == 0:
        _rows_forward(states, WT, bias, 0, one)
    elif act == 1:
        _rows_forward(states, WT, bias, 1, one)
    elif act == 2:
        _rows_forward(states, WT, bias, 2, one)
    else:
        _rows_forward(states, WT, bias, 3, one)


@njit(cache=True, nogil=True, error_model="numpy")
def forward_at_once(x, h0, U, W, bias, act, one):
    """h_t for t = 1..T (T, B, H), a view of a new (T+1, B, H) block, in one compiled call: U^T and W^T, then
    :func:`projected_states` and :func:`recur_forward` as the Elman kernel's shared path runs them where its step
    products are loops (elman._Step.at_once), without the Python between them (transposes, packing, states:
    about 4 of the S1 forward's 19 us)."""
    steps, batch, inputs = x.shape
    UT, WT = stacked_transposed((U,)), stacked_transposed((W,))
    states = on_a_line((steps + 1) * batch * W.shape[0], x).reshape(steps + 1, batch, W.shape[0])
    none = np.empty((0, 0, 1), x.dtype)  # no panels
    projected_states(x.reshape(steps * batch, inputs), h0, UT, states, none)
    recur_rows(states, WT, bias, act, one)
    return states[1:]


@njit(cache=True, nogil=True, error_model="numpy")
def recur_backward(direct, states, W, act, one, blas_rows, deltas, carry, bias_grad, active, packed):
    """delta_t = f'(z_t) * (direct_t + W^T delta_{t+1}) for t = T..1; carry ends as W^T delta_1.

    states is (T+1, B, H) with h0 first; deltas (T, B, H) is written; carry (B, H) and bias_grad (H,)
    start at zero. Rows r >= active[t] are held at step t (see :func:`hold`). The products run by the panels
    ``packed`` (W packed) where it is not empty.
    """
    none = np.empty(0, carry.dtype)
    batch = carry.shape[0]
    for t in range(direct.shape[0] - 1, -1, -1):
        n = active[t]
        if n < batch:
            pass_back(carry, direct[t], n)
            clear(deltas[t], n)
        if n > 0:
            step_backward(deltas[t][:n], direct[t][:n], carry[:n], states[t + 1][:n], act, one, bias_grad)
            step_product(deltas[t][:n], W, W, carry[:n], blas_rows, none, False, packed)


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_shift(logits, bias, targets, one):
    """Softmax cross-entropy, first half: logits become a + c - max(a + c) per row; returns the sum
    over rows of minus the target's shifted logit. The caller exponentiates, then softmax_finish."""
    total = one * 0
    for r in range(logits.shape[0]):
        row = logits[r]
        top = row[0] + bias[0]
        for k in range(row.shape[0]):
            row[k] += bias[k]
            top = max(top, row[k])
        for k in range(row.shape[0]):
            row[k] -= top
        total -= row[targets[r]]
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_finish(exps, targets, one, bias_grad):
    """Second half: exps = exp(shifted logits) become softmax - onehot(y); returns sum of log norms."""
    total = one * 0
    for r in range(exps.shape[0]):
        row = exps[r]
        norm = one * 0
        for k in range(row.shape[0]):
            norm += row[k]
        total += np.log(norm)
        inv = one / norm
        for k in range(row.shape[0]):
            row[k] *= inv
        row[targets[r]] -= one
        for k in range(row.shape[0]):
            bias_grad[k] += row[k]
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def project(x2, U, bias, out):
    """out (T B, G H) = x2 U^T + b: the input side of every gate at every step, one GEMM."""
    np.dot(x2, U.T, out)
    for r in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[r, k] += bias[k]


@njit(cache=True, nogil=True, error_model="numpy")
def stacked(parts):
    """parts[0], parts[1], ... (a tuple of C-contiguous arrays of one shape) one after another along the first axis,
    in a new array: a small call's per-gate parameters stacked inside its one compiled call (np.concatenate of the
    LSTM's four 32 x 16 U_k took 2.8 us from Python). A flat copy: slice assignment took 4.8 s to compile."""
    first = parts[0]
    out = np.empty((len(parts) * first.shape[0],) + first.shape[1:], first.dtype)
    flat, size = out.reshape(-1), first.size
    for k, part in enumerate(parts):
        source = part.reshape(-1)
        for i in range(size):
            flat[k * size + i] = source[i]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def stacked_transposed(parts):
    """stacked(parts)^T, C-contiguous, in one pass that writes it in order (for the LSTM's four 32 x 32 W_k: 1.0 us,
    against 3.9 for stacking, then :func:`transpose_into`)."""
    first = parts[0]
    rows, cols = first.shape
    out = on_a_line(cols * len(parts) * rows, first).reshape(cols, len(parts) * rows)
    for j in range(cols):
        line = out[j]
        for k, part in enumerate(parts):
            for i in range(rows):
                line[k * rows + i] = part[i, j]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def at_once_inputs(x, Us, bs, Ws, states):
    """What a small call's loop reads, made inside its one compiled call (a cell's ``forward_at_once``): the input
    projection a (T, B, G H) = x U^T + b by :func:`project`, the stacked W^T (U, b and W stacked from the per-gate
    tuples Us, bs, Ws; the loops read W itself only where the products run transposed, never here), and one new
    block (states, T+1, B, H) for the states at every step. The same products as the shared path's
    (gated._Run.prepare), so the same bits."""
    steps, batch, inputs = x.shape
    U, b, WT = stacked(Us), stacked(bs), stacked_transposed(Ws)
    a = on_a_line(steps * batch * U.shape[0], x).reshape(steps, batch, U.shape[0])
    project(x.reshape(steps * batch, inputs), U, b, a.reshape(steps * batch, U.shape[0]))
    block = on_a_line(states * (steps + 1) * batch * WT.shape[0], x)
    return a, WT, block.reshape(states, steps + 1, batch, WT.shape[0])


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def on_a_line(size, like):
    """A new 1-d array of ``size`` elements of ``like``'s dtype whose first element starts on a cache line
    (scratch.ALIGNMENT bytes), a view of a slightly larger allocation: Numba's own start 32 bytes past one, so
    that every 64-byte vector load of a row of G1's W^T (128 float32) straddled two lines (50 step products of
    1 x 32 by 32 x 128: 6.0 against 4.2 us on a line)."""
    lanes = ALIGNMENT // like.itemsize
    raw = np.empty(size + lanes, like.dtype)
    start = (-raw.ctypes.data % ALIGNMENT) // like.itemsize
    return raw[start:start + size]


@njit(cache=True, nogil=True, error_model="numpy")
def project_by_panels(x2, packed_UT, bias, out):
    """out (T B, G H) = b + x2 U^T, U^T in panels (panels.pack): the tiles' sums start at b (in registers: filling
    out with b first cost G2's projection a third more), then add x2 U^T (panels.projection_wanted says where)."""
    panel_product(x2, packed_UT, out, False, bias)


@njit(cache=True, nogil=True, error_model="numpy")
def projected_states(x2, h0, UT, states, packed_UT=None):
    """states (T+1, B, H) = h0, then U x_t for every t in one GEMM, or by the panels ``packed_UT`` (U^T packed,
    panels.pack) where they are given and not empty (UT may be empty then)."""
    batch, hidden = h0.shape
    steps = states.shape[0] - 1
    states[0] = h0
    rest = states.reshape((steps + 1) * batch, hidden)[batch:]
    if packed_UT is not None:  # two ifs, as in step_product
        if packed_UT.shape[0] > 0:
            panel_product(x2, packed_UT, rest)
            return
    np.dot(x2, UT, rest)


@njit(cache=True, nogil=True, error_model="numpy")
def head_kernel(states, V, VT, c, targets, one):
    """Loss, dL/dV, dL/dc and the head's cotangent on every h_t, (T, B, H)."""
    steps, batch, hidden = states.shape[0] - 1, states.shape[1], states.shape[2]
    loss, gV, gc, direct = head_rows(states.reshape((steps + 1) * batch, hidden)[batch:], V, VT, c, targets, one)
    return loss, gV, gc, direct.reshape(steps, batch, hidden)


@njit(cache=True, nogil=True, error_model="numpy")
def head_rows(hs, V, VT, c, targets, one):
    """sum over rows of -log softmax(V h + c)[y], dL/dV, dL/dc and dL/dh (R, H), for hs (R, H)."""
    residual = np.dot(hs, VT)
    gc = np.zeros(c.shape[0], c.dtype)
    loss = softmax_shift(residual, c, targets, one)
    for r in range(residual.shape[0]):
        for k in range(residual.shape[1]):
            residual[r, k] = exp(residual[r, k])  # float32: the vectorizing exp32
    loss += softmax_finish(residual, targets, one, gc)
    return loss, np.dot(residual.T, hs), gc, np.dot(residual, V)


@njit(cache=True, nogil=True, error_model="numpy")
def input_side(x2, U, deltas):
    """dL/dx (T B, I) and dL/dU (g H, I) from the input side's deltas (T B, g H) of some gates (U theirs)."""
    return np.dot(deltas, U), np.dot(deltas.T, x2)


@njit(cache=True, nogil=True, error_model="numpy")
def recurrent_side(previous, deltas):
    """dL/dW (g H, width) = deltas^T previous, summed over every step and row: the gated cells' one dL/dW."""
    return np.dot(deltas.T, previous)


@njit(cache=True, nogil=True, error_model="numpy")
def parameter_gradients(x2, U, states, deltas):
    """dL/dx, dL/dU, dL/dW from the deltas of every step: one GEMM each."""
    steps, batch, hidden = deltas.shape
    d2 = deltas.reshape(steps * batch, hidden)
    previous = states.reshape((steps + 1) * batch, hidden)[: steps * batch]
    return np.dot(d2, U), np.dot(d2.T, x2), np.dot(d2.T, previous)


@njit(cache=True, nogil=True, error_model="numpy")
def train_kernel(x2, h0, U, UT, W, WT, bias, V, VT, c, targets, act, one, blas_rows, active, states, packed_UT,
                 packed_T, packed):
    """Forward, softmax cross-entropy summed over time and batch, BPTT, all in one call (small sizes, and the
    halves of rows.py). states (T+1, B, H) receives the states; the input projection runs by the panels packed_UT
    (U^T), the steps' products by packed_T (W^T) and packed (W), where they are not empty."""
    projected_states(x2, h0, UT, states, packed_UT)
    recur_forward(states, WT, bias, act, one, blas_rows, active, packed_T)
    loss, gV, gc, direct = head_kernel(states, V, VT, c, targets, one)
    deltas = np.empty_like(direct)
    carry = np.zeros(h0.shape, h0.dtype)
    gb = np.zeros(h0.shape[1], h0.dtype)
    recur_backward(direct, states, W, act, one, blas_rows, deltas, carry, gb, active, packed)
    gx2, gU, gW = parameter_gradients(x2, U, states, deltas)
    return loss, gx2, carry, gU, gW, gb, gV, gc
