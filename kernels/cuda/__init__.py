"""Forward and BPTT on NVIDIA GPUs (numba-cuda), mirroring rnnspec.kernels.cpu.

    from rnnspec.kernels.cuda import forward, backward, loss          # any cell: "elman", "lstm", the GRUs
    from rnnspec.kernels.cuda import elman_forward, elman_backward, elman_loss

Same arguments, semantics and checks as the CPU kernels. Arguments may be NumPy arrays (copied to
the device; results come back as NumPy arrays) or CUDA device arrays (used in place; results stay
on the device). Work parallel over time (input projection, output head, dU, dW, dV, dx) runs as
tiled GEMM kernels over all T*B rows; each recurrence direction is one launch for all T steps
(Elman: rnnspec.kernels.cuda.elman.recurrence and .cooperative; the gated cells:
rnnspec.kernels.cuda.gated and .gated_recurrence).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from rnnspec.kernels import checks
from rnnspec.kernels.checks import on_device
from rnnspec.kernels.cuda import gated, host
from rnnspec.kernels.cuda.arrays import (
    FreshArrays,
    contiguous,
    copied_to_host,
    fresh_arrays,
    imported,
    scratch,
    scratch_view,
)
from rnnspec.kernels.cuda.cooperative import CooperativeLayout, cooperative_plan, cooperative_recurrence
from rnnspec.kernels.cuda.elman import (
    Layout,
    plan,
    recurrence,
    softmax_cross_entropy,
    transpose,
)
from rnnspec.kernels.cuda.gemm import TILE, deltas_products_into, matmul_pair_into, splits_for
from rnnspec.kernels.cuda.host import column_sums_into, one_context_no_release_midway, parts_for, product_into
from rnnspec.kernels.cuda.launches import launch
from rnnspec.kernels.numpy_compat import cuda_module

cuda = cuda_module()

#: forced layout choices for the recurrence kernels, tests and benchmarks: plan()'s ("split", "held",
#: "rows", "ahead"), or "cooperative": True with cooperative_plan()'s ("blocks", "tile", "slices")
LAYOUT_OVERRIDE: dict = {}
#: H from which float32 recurrences run on the cooperative grid (where its shared memory allows):
#: the first GPU run (H200, benchmarks/gpu_run_1.txt) had it correct and 2.9x to 12x faster than the
#: streamed single-block layouts at H = 256 and 1024
COOPERATIVE_FROM_HIDDEN: int | None = 256
#: below H = 512, only up to this batch: the streamed blocks (one per batch row) win once there are
#: enough of them. At H = 256, fwd+bwd took 6.4 ms on the cooperative grid and 16.8 streamed at
#: B = 1, 3.4 and 2.5 ms at B = 64 (benchmarks/gpu_run_3.txt); 16 lies between the two
COOPERATIVE_BELOW_512_MAX_BATCH = 16


def layout_for(hidden: int, batch: int, dtype) -> Layout | CooperativeLayout:
    """The recurrence layout used for these sizes: rnnspec.kernels.cuda.cooperative.cooperative_plan
    when LAYOUT_OVERRIDE asks for it, or for float32 from H = COOPERATIVE_FROM_HIDDEN where it fits
    (below H = 512 up to B = COOPERATIVE_BELOW_512_MAX_BATCH); else rnnspec.kernels.cuda.elman.plan."""
    forced = tuple(sorted(LAYOUT_OVERRIDE.items()))
    return _planned(hidden, batch, np.dtype(dtype).name, host.multiprocessors(), forced,
                    (COOPERATIVE_FROM_HIDDEN, COOPERATIVE_BELOW_512_MAX_BATCH))


@cache
def _planned(hidden: int, batch: int, dtype: str, multiprocessors: int, forced: tuple, cooperative: tuple):
    # cached: plan() costs about 8 us of Python, before the first launch of every call
    options = dict(forced)
    if options.pop("cooperative", False):
        return cooperative_plan(hidden, dtype, multiprocessors, batch, **options)
    cooperative_from, max_batch_below_512 = cooperative
    if not options and cooperative_from is not None and dtype == "float32" and hidden >= cooperative_from \
            and (hidden >= 512 or batch <= max_batch_below_512):
        try:
            return cooperative_plan(hidden, dtype, multiprocessors, batch)
        except ValueError:  # its rows of W do not fit a block's shared memory: streamed instead
            pass
    return plan(hidden, batch, dtype, multiprocessors, **options)


class _Args:
    """Checked arguments, on the device as C-contiguous arrays; remembers whether results go back
    to the host (they do when any argument came from the host)."""

    def __init__(self, x, h0, U, W, b, activation):
        x, h0, U, W, b = (imported(v) for v in (x, h0, U, W, b))
        self.to_host = any(v is not None and not on_device(v) for v in (x, h0, U, W, b))
        self.T, self.B, self.I, self.H = checks.elman_step_args(x, h0, U, W, b, device_ok=True)
        self.dtype = np.dtype(x.dtype)
        self.code = checks.activation_code(activation)
        self.empty = self.T == 0 or self.B == 0
        self.has_bias = b is not None
        self.x, self.h0, self.U, self.W = (contiguous(v) for v in (x, h0, U, W))
        self.x_rows = self.x.reshape(self.T * self.B, self.I)
        self.b = contiguous(b) if b is not None else scratch("absent bias", (1,), self.dtype)
        self.b_row = self.b.reshape(1, self.b.shape[0])  # the kernels' bias argument is 2-D in both directions
        self.layout = layout_for(self.H, self.B, self.dtype)

    def out(self, value):
        return value.copy_to_host() if self.to_host else value


def recurrent_matrix(W, layout: Layout, role: str = "W transposed"):
    """What the forward recurrence kernel reads: W itself when the layout keeps it on chip, else
    W^T (scratch under ``role``), so that the streamed rows are read along memory."""
    if layout.resident:
        return W
    out = scratch(role, (W.shape[1], W.shape[0]), W.dtype)
    launch(transpose, (math.ceil(W.shape[0] / TILE), math.ceil(W.shape[1] / TILE)), (TILE, TILE), W, out)
    return out


def _launch_recurrence(direction: str, states, layout, code: int, *args) -> None:
    """The recurrence kernel for this layout, launched on ``args``."""
    H, dtype = states.shape[2], str(states.dtype)
    if isinstance(layout, CooperativeLayout):
        launch(cooperative_recurrence(direction, H, layout, code, dtype), *layout.launch, *args)
    else:
        launch(recurrence(direction, H, layout, code, dtype), math.ceil(states.shape[1] / layout.rows),
               layout.threads, *args)


def forward_recurrence(states, h0, M, bias_row, has_bias: bool, layout, code: int) -> None:
    """One launch for all T steps, in place: states (T+1, B, H) holds z_t = U x_t in rows 1..T on
    entry, h0 and h_t = f(z_t + b + W h_{t-1}) on return; M from ``recurrent_matrix``, bias_row
    (1, H) (any (1, 1) array when has_bias is False). The single-block kernels copy h0 themselves."""
    if isinstance(layout, CooperativeLayout):  # its blocks read h0 from states: there before the launch
        states[0].copy_to_device(h0)
    _launch_recurrence("forward", states, layout, code, states, states, M, bias_row, has_bias, states, h0)


def backward_recurrence(direct, states, W, bias_rows, has_bias: bool, deltas, carry, layout, code: int) -> None:
    """One launch for all T steps: deltas[t] = f'(z_t) * (direct[t] + W^T delta_{t+1}) from t = T
    down to 1, carry = W^T delta_1 (the gradient of h0) and, with has_bias, bias_rows (B, H) = the
    sum of the deltas over time per batch row."""
    _launch_recurrence("backward", states, layout, code, direct, states, W, bias_rows, has_bias, deltas, carry)


def _states(a: _Args, returned: bool):
    """(T+1, B, H) on the device: h0, then h_1..h_T; scratch unless the caller gets it back."""
    shape = (a.T + 1, a.B, a.H)
    states = cuda.device_array(shape, a.dtype) if returned else scratch("states", shape, a.dtype)
    inputs = states[1:].reshape(a.T * a.B, a.H) if returned else \
        scratch_view("states", "rows 1..T", lambda s: s[1:].reshape(a.T * a.B, a.H))
    product_into(a.x_rows, a.U, inputs, trans_b=True, role="U x")
    forward_recurrence(states, a.h0, recurrent_matrix(a.W, a.layout), a.b_row, a.has_bias, a.layout, a.code)
    return states


def _backward(a: _Args, states, direct, extra: dict | None = None) -> FreshArrays:
    """The gradients of x (as (T*B, I) rows), h0, U, W and b (as (1, H) when B = 1) in one fresh
    allocation, with room for ``extra`` ones (name: shape) that the caller fills."""
    shapes = {"x": (a.T * a.B, a.I), "h0": (a.B, a.H), "U": (a.H, a.I), "W": (a.H, a.H)}
    if a.has_bias:  # with one batch row the backward kernel's per-row sums of the deltas are db itself
        shapes["b"] = (1, a.H) if a.B == 1 else (a.H,)
    grads = fresh_arrays({**shapes, **(extra or {})}, a.dtype)
    if not a.has_bias:
        bias_rows = scratch("absent bias rows", (1, 1), a.dtype)
    else:
        bias_rows = grads["b"] if a.B == 1 else scratch("bias rows", (a.B, a.H), a.dtype)
    deltas = scratch("deltas", (a.T, a.B, a.H), a.dtype)
    backward_recurrence(direct, states, a.W, bias_rows, a.has_bias, deltas, grads["h0"], a.layout, a.code)
    d2 = scratch_view("deltas", "rows", lambda d: d.reshape(a.T * a.B, a.H))
    previous = scratch_view("states", "rows 0..T-1", lambda s: s[:-1].reshape(a.T * a.B, a.H))
    dU, dW = grads["U"], grads["W"]
    splits = splits_for((dU.shape, dW.shape), a.T * a.B, host.multiprocessors())
    if splits == 1 and splits_for((grads["x"].shape,), a.H, host.multiprocessors()) == 1:
        deltas_products_into(d2, (a.U, grads["x"]), (a.x_rows, dU), (previous, dW))
    else:
        matmul_pair_into(d2, (a.x_rows, dU, parts_for("dU", splits, dU)), (previous, dW, parts_for("dW", splits, dW)),
                         True, False, splits)
        product_into(d2, a.U, grads["x"], role="dx")
    if a.has_bias and a.B > 1:
        column_sums_into(bias_rows, grads["b"])
    return grads


def _returned(a: _Args, grads: FreshArrays) -> dict:
    """The gradients as the caller gets them: x (T, B, I) and b (H,), on the host in one transfer
    when any argument came from there."""
    final = {"x": (a.T, a.B, a.I), "b": (a.H,)}
    if a.to_host:
        return copied_to_host(grads, final)
    return {k: v.reshape(final[k]) if k in final and v.shape != final[k] else v for k, v in grads.items()}


def _zeros(a: _Args, shape):
    """Zeros where the results go (T = 0 or B = 0: no kernel runs)."""
    zeros = np.zeros(shape, a.dtype)
    return zeros if a.to_host else cuda.to_device(zeros)


def _zero_gradients(a: _Args, extra=()) -> dict:
    shapes = {"x": (a.T, a.B, a.I), "h0": (a.B, a.H), "U": (a.H, a.I), "W": (a.H, a.H), **dict(extra)}
    if a.has_bias:
        shapes["b"] = (a.H,)
    return {k: _zeros(a, s) for k, s in shapes.items()}


@one_context_no_release_midway
def elman_forward(x, h0, U, W, b=None, *, activation: str = "tanh"):
    """h_t for t = 1..T, shape (T, B, H)."""
    a = _Args(x, h0, U, W, b, activation)
    if a.empty:
        return _zeros(a, (a.T, a.B, a.H))
    return a.out(_states(a, returned=True)[1:])


@one_context_no_release_midway
def elman_backward(x, h0, U, W, b, gh, *, activation: str = "tanh") -> dict:
    """The VJP for cotangents gh (T, B, H) on every h_t: gradients of x, h0, U, W and b (if given)."""
    a = _Args(x, h0, U, W, b, activation)
    gh = checks.array("gh", imported(gh), 3, device_ok=True)
    checks.same_dtype("x", a.dtype, gh=gh)
    checks.shape("gh", gh, (a.T, a.B, a.H), "(T, B, H)")
    a.to_host |= not on_device(gh)
    if a.empty:
        return _zero_gradients(a)
    return _returned(a, _backward(a, _states(a, returned=False), contiguous(gh)))


@one_context_no_release_midway
def elman_loss(x, h0, U, W, b, V, c, targets, *, activation: str = "tanh"):
    """Softmax cross-entropy of V h_t + c summed over time and batch, and every gradient."""
    a = _Args(x, h0, U, W, b, activation)
    V = checks.array("V", imported(V), 2, device_ok=True)
    c = checks.array("c", imported(c), 1, device_ok=True)
    checks.same_dtype("x", a.dtype, V=V, c=c)
    K = V.shape[0]
    checks.shape("V", V, (K, a.H), "(K, H)")
    checks.shape("c", c, (K,), "(K,)")
    y = checks.targets_arg(checks.host(imported(targets)), a.T, a.B, K)
    a.to_host |= not (on_device(V) and on_device(c))
    if a.empty:
        return a.dtype.type(0), _zero_gradients(a, {"V": (K, a.H), "c": (K,)})
    Vd, cd = contiguous(V), contiguous(c)
    states = _states(a, returned=False)
    rows = a.T * a.B
    hs = scratch_view("states", "rows 1..T", lambda s: s[1:].reshape(rows, a.H))
    residual = scratch("residual", (rows, K), a.dtype)
    product_into(hs, Vd, residual, trans_b=True, role="logits")
    losses = scratch("losses", (rows,), a.dtype)
    classes = scratch("targets", (rows,), np.int64)
    classes.copy_to_device(np.ascontiguousarray(y.reshape(rows)))
    launch(softmax_cross_entropy, math.ceil(rows / 128), 128, residual, cd, classes, losses)
    direct = scratch("direct", (rows, a.H), a.dtype)
    product_into(residual, Vd, direct, role="direct")
    grads = _backward(a, states, scratch_view("direct", "(T, B, H)", lambda d: d.reshape(a.T, a.B, a.H)),
                      extra={"V": (K, a.H), "c": (K,)})
    product_into(residual, hs, grads["V"], trans_a=True, role="dV")
    column_sums_into(residual, grads["c"])
    loss = a.dtype.type(np.sum(losses.copy_to_host(), dtype=a.dtype))
    return loss, _returned(a, grads)


#: the cells the CUDA kernels implement: the Elman cell and those of the gated recurrence
CELLS = ("elman", *gated.CELLS)


def forward(cell: str, x, state0, params=None, *, activation: str = "tanh", **named) -> dict:
    """The states at every step, for any cell: rnnspec.kernels.cpu.forward's API (one forward layer over
    full sequences); ``activation`` applies to the Elman cell only."""
    if checks.cell_name(cell, CELLS) == "elman":
        h0, p = checks.elman_dicts(state0, checks.one_params_form(params, named))
        return {"h": elman_forward(x, h0, p["U"], p["W"], p.get("b"), activation=activation)}
    return gated.forward(cell, x, state0, params, **named)


def backward(cell: str, x, state0, params=None, cotangents=None, *, activation: str = "tanh", **named) -> dict:
    """The VJP, for any cell: rnnspec.kernels.cpu.backward's API."""
    if checks.cell_name(cell, CELLS) == "elman":
        h0, p = checks.elman_dicts(state0, checks.one_params_form(params, named))
        gh = checks.named_arrays("cotangents", cotangents if cotangents is not None else {}, ("h",), (), "elman")["h"]
        return elman_backward(x, h0, p["U"], p["W"], p.get("b"), gh, activation=activation)
    return gated.backward(cell, x, state0, params, cotangents, **named)


def loss(cell: str, x, state0, params=None, targets=None, *, activation: str = "tanh", **named):
    """Softmax cross-entropy and every gradient, for any cell: rnnspec.kernels.cpu.loss's API."""
    if checks.cell_name(cell, CELLS) == "elman":
        h0, p = checks.elman_dicts(state0, checks.one_params_form(params, named), head=True)
        return elman_loss(x, h0, p["U"], p["W"], p.get("b"), p["V"], p["c"], targets, activation=activation)
    return gated.loss(cell, x, state0, params, targets, **named)
