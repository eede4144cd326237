"""Elman forward and BPTT on NVIDIA GPUs (numba-cuda), mirroring rnnspec.kernels.cpu.

    from rnnspec.kernels.cuda import elman_forward, elman_backward, elman_loss

Same arguments, semantics and checks as the CPU kernels. Arguments may be NumPy arrays (copied to
the device; results come back as NumPy arrays) or CUDA device arrays (used in place; results stay
on the device). Work parallel over time (input projection, output head, dU, dW, dV, dx) runs as
tiled GEMM kernels over all T*B rows; each recurrence direction is one launch for all T steps
(rnnspec.kernels.cuda_kernels.recurrence).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from rnnspec.kernels import checks
from rnnspec.kernels.cuda_gemm import TILE, matmul_into, splits_for
from rnnspec.kernels.cuda_kernels import (
    Layout,
    column_sums,
    plan,
    recurrence,
    softmax_cross_entropy,
    transpose,
)
from rnnspec.kernels.numpy_compat import cuda_module

cuda = cuda_module()

#: forced layout choices for the recurrence kernels ("split", "held", "rows"); tests and benchmarks
LAYOUT_OVERRIDE: dict = {}


@cache
def _multiprocessors() -> int:
    return int(getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1))


def layout_for(hidden: int, batch: int, dtype) -> Layout:
    """The recurrence layout used for these sizes (rnnspec.kernels.cuda_kernels.plan)."""
    return plan(hidden, batch, dtype, _multiprocessors(), **LAYOUT_OVERRIDE)


def _on_device(value) -> bool:
    return hasattr(value, "__cuda_array_interface__") or hasattr(value, "copy_to_host")


class _Args:
    """Checked arguments, moved to the device once; remembers whether results go back to the host."""

    def __init__(self, x, h0, U, W, b, activation):
        host = [a for a in (x, h0, U, W, b) if a is not None and not _on_device(a)]
        self.to_host = bool(host)
        self.T, self.B, self.I, self.H = checks.elman_step_args(x, h0, U, W, b, device_ok=True)
        self.dtype = np.dtype(x.dtype)
        self.code = checks.activation_code(activation)
        self.empty = self.T == 0 or self.B == 0
        self.has_bias = b is not None
        dev = self.device
        self.x, self.h0, self.U, self.W = dev(x), dev(h0), dev(U), dev(W)
        self.b = dev(b) if b is not None else cuda.device_array(1, self.dtype)
        self.layout = layout_for(self.H, self.B, self.dtype)

    def device(self, value):
        return value if _on_device(value) else cuda.to_device(np.ascontiguousarray(value))

    def out(self, value):
        return value.copy_to_host() if self.to_host else value


def _transpose(matrix):
    out = cuda.device_array((matrix.shape[1], matrix.shape[0]), matrix.dtype)
    grid = (math.ceil(matrix.shape[0] / TILE), math.ceil(matrix.shape[1] / TILE))
    transpose[grid, (TILE, TILE)](matrix, out)
    return out


def _matmul_into(A, B, C, trans_a: bool = False, trans_b: bool = False) -> None:
    inner = A.shape[0] if trans_a else A.shape[1]
    splits = splits_for(C.shape[0], C.shape[1], inner, _multiprocessors())
    matmul_into(A, B, C, trans_a, trans_b, splits)


def _matmul(A, B, rows: int, cols: int, trans_a: bool = False, trans_b: bool = False):
    C = cuda.device_array((rows, cols), A.dtype)
    _matmul_into(A, B, C, trans_a, trans_b)
    return C


def _column_sums(rows):
    out = cuda.device_array(rows.shape[1], rows.dtype)
    column_sums[math.ceil(rows.shape[1] / 128), 128](rows, out)
    return out


def _states(a: _Args):
    """(T+1, B, H) on the device: h0, then h_1..h_T."""
    states = cuda.device_array((a.T + 1, a.B, a.H), a.dtype)
    states[0].copy_to_device(a.h0)
    flat = states.reshape((a.T + 1) * a.B, a.H)
    _matmul_into(a.x.reshape(a.T * a.B, a.I), a.U, flat[a.B:], trans_b=True)
    kernel = recurrence("forward", a.H, a.layout, a.code, str(a.dtype))
    M = a.W if a.layout.resident else _transpose(a.W)
    bias = a.b.reshape(1, a.b.shape[0])
    kernel[math.ceil(a.B / a.layout.rows), a.layout.threads](states, states, M, bias, a.has_bias, states, states[0])
    return states


def _backward(a: _Args, states, direct) -> dict:
    deltas = cuda.device_array((a.T, a.B, a.H), a.dtype)
    carry = cuda.device_array((a.B, a.H), a.dtype)
    bias_rows = cuda.device_array((a.B, a.H) if a.has_bias else (1, 1), a.dtype)
    kernel = recurrence("backward", a.H, a.layout, a.code, str(a.dtype))
    kernel[math.ceil(a.B / a.layout.rows), a.layout.threads](direct, states, a.W, bias_rows, a.has_bias, deltas, carry)
    d2 = deltas.reshape(a.T * a.B, a.H)
    previous = states.reshape((a.T + 1) * a.B, a.H)[: a.T * a.B]
    grads = {"x": _matmul(d2, a.U, a.T * a.B, a.I).reshape(a.T, a.B, a.I), "h0": carry,
             "U": _matmul(d2, a.x.reshape(a.T * a.B, a.I), a.H, a.I, trans_a=True),
             "W": _matmul(d2, previous, a.H, a.H, trans_a=True)}
    if a.has_bias:
        grads["b"] = bias_rows.reshape(a.H) if a.B == 1 else _column_sums(bias_rows)
    return grads


def _zeros(a: _Args, extra=()) -> dict:
    shapes = {"x": (a.T, a.B, a.I), "h0": (a.B, a.H), "U": (a.H, a.I), "W": (a.H, a.H), **dict(extra)}
    if a.has_bias:
        shapes["b"] = (a.H,)
    return {k: (np.zeros(s, a.dtype) if a.to_host else cuda.to_device(np.zeros(s, a.dtype))) for k, s in shapes.items()}


def elman_forward(x, h0, U, W, b=None, *, activation: str = "tanh"):
    """h_t for t = 1..T, shape (T, B, H)."""
    a = _Args(x, h0, U, W, b, activation)
    if a.empty:
        return np.zeros((a.T, a.B, a.H), a.dtype)
    return a.out(_states(a)[1:])


def elman_backward(x, h0, U, W, b, gh, *, activation: str = "tanh") -> dict:
    """The VJP for cotangents gh (T, B, H) on every h_t: gradients of x, h0, U, W and b (if given)."""
    a = _Args(x, h0, U, W, b, activation)
    checks.array("gh", gh, 3, device_ok=True)
    checks.same_dtype("x", a.dtype, gh=gh)
    checks.shape("gh", gh, (a.T, a.B, a.H), "(T, B, H)")
    if a.empty:
        return _zeros(a)
    grads = _backward(a, _states(a), a.device(gh))
    return {k: a.out(v) for k, v in grads.items()}


def elman_loss(x, h0, U, W, b, V, c, targets, *, activation: str = "tanh"):
    """Softmax cross-entropy of V h_t + c summed over time and batch, and every gradient."""
    a = _Args(x, h0, U, W, b, activation)
    V = checks.array("V", V, 2, device_ok=True)
    c = checks.array("c", c, 1, device_ok=True)
    checks.same_dtype("x", a.dtype, V=V, c=c)
    K = V.shape[0]
    checks.shape("V", V, (K, a.H), "(K, H)")
    checks.shape("c", c, (K,), "(K,)")
    y = checks.targets_arg(checks.host(targets), a.T, a.B, K)
    if a.empty:
        return a.dtype.type(0), _zeros(a, {"V": (K, a.H), "c": (K,)})
    Vd, cd = a.device(V), a.device(c)
    states = _states(a)
    rows = a.T * a.B
    hs = states.reshape((a.T + 1) * a.B, a.H)[a.B:]
    residual = _matmul(hs, Vd, rows, K, trans_b=True)
    losses = cuda.device_array(rows, a.dtype)
    softmax_cross_entropy[math.ceil(rows / 128), 128](residual, cd, cuda.to_device(y.reshape(rows)), losses)
    direct = _matmul(residual, Vd, rows, a.H).reshape(a.T, a.B, a.H)
    grads = _backward(a, states, direct)
    grads["V"] = _matmul(residual, hs, K, a.H, trans_a=True)
    grads["c"] = _column_sums(residual)
    loss = a.dtype.type(np.sum(losses.copy_to_host(), dtype=a.dtype))
    return loss, {k: a.out(v) for k, v in grads.items()}
