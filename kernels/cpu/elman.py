"""Elman forward and BPTT on the CPU (Numba), in float32 or float64.

Shapes are time-major with batch rows: x (T, B, I), h0 (B, H), U (H, I), W (H, H), b (H,) or None,
V (K, H), c (K,), targets int (T, B). The step is h_t = f(x_t U^T + h_{t-1} W^T + b).

Everything parallel over time is one matrix product over all T*B rows (the input projection, the
output head, dU, dW, dV, dx); only h_{t-1} W^T and its transpose in BPTT are sequential, fused with
the elementwise work, in loops that allocate nothing. Computation stays in the input dtype.

T = 0 or B = 0 is an empty sequence or batch: states are an empty (T, B, H) array, the loss is 0
and every gradient is zero of its shape (dL/dh0 included, since nothing depends on h0 when T = 0).
"""

from __future__ import annotations

import functools

import numpy as np

from rnnspec.kernels import checks
from rnnspec.kernels.cpu import blas, panels, rows, tuning
from rnnspec.kernels.cpu.blas import matmul, rows_per_call
from rnnspec.kernels.cpu.cells import Kernel
from rnnspec.kernels.cpu.loops import (
    SMALL_STEP,
    clear,
    forward_at_once,
    head_kernel,
    hold,
    parameter_gradients,
    pass_back,
    projected_states,
    recur_backward,
    recur_forward,
    softmax_finish,
    softmax_shift,
    step_backward,
    step_forward,
    train_kernel,
    transposed,
)
from rnnspec.kernels.cpu.scratch import result_block, workspace
from rnnspec.kernels.cpu.work import flops

Grads = dict[str, np.ndarray]

#: multiply-adds per step (B H^2) from which the recurrence loop runs in Python around blas.matmul:
#: NumPy's BLAS was ~15% faster than the one Numba reaches at these shapes (measured at B=64, H=1024:
#: 231 against 198 GFLOP/s; 124 against 110 on 2026-12-02), and a few microseconds per step no
#: longer matter. Where kernels/cpu/blas.py gave the kernels' BLAS the better kernels, blas.matmul
#: takes that one instead.
LARGE_STEP = 1 << 21


class _Step:
    """The checked, contiguous arguments of one Elman layer, and how to run its recurrence."""

    def __init__(self, x, h0, U, W, b, activation, h0_name: str = "h0", half: bool = False):
        (x, h0, U, W, b), (self.T, self.B, self.I, self.H) = checks.elman_arrays(x, h0, U, W, b, h0_name=h0_name)
        self.dtype = x.dtype
        self.activation, self.h0_name = activation, h0_name
        code = checks.activation_code(activation)
        self.code = 4 if code == 0 and self.dtype == np.float32 else code
        self.one = checks.ONES[self.dtype]
        self.has_bias = b is not None
        self.bias = checks.contiguous(b) if b is not None else np.zeros(self.H, self.dtype)  # none: zero
        self.empty = self.T == 0 or self.B == 0
        #: a half of a call whose rows run on two threads (rows.py): its products inside Numba, on one BLAS thread
        self.half = half
        work = self.B * self.H * self.H
        self.large = work >= LARGE_STEP and not half
        #: rows per BLAS call in a step's product (0: the loop, for small ones); see loops.matmul_into
        self.blas_rows = 0 if work <= SMALL_STEP else rows_per_call(self.B, self.H, self.H, half)
        self._x, self._h0, self._U, self._W, self._b = x, h0, U, W, b

    # the panels' choices are made at first use (prepare), with OpenBLAS's thread count as it is when the products
    # run: a forward in one compiled call (at_once) never reads them, and they took 0.6 of an S1 forward's 13 us
    @functools.cached_property
    def by_panels(self) -> bool:
        """Whether the step's products run by the kernels' tiles over panels of W (panels.py), as the gated cells'
        do."""
        return not self.large and panels.wanted(self.blas_rows, self._one_thread)

    @functools.cached_property
    def projection_by_panels(self) -> bool:
        """Whether the input projection U x_t runs by panels too (panels.projection_wanted)."""
        return panels.projection_wanted(self.by_panels, self._one_thread, self.I)

    @property
    def _one_thread(self) -> bool:
        """Whether this step's BLAS calls run on one thread: a half's, or all where OpenBLAS is held to one."""
        return self.half or blas.threads() == 1

    @functools.cached_property
    def active(self) -> np.ndarray:
        """The rows still running at each step (a prefix: rows sorted by length; see loops.hold): every row unless a
        variant sets it; made at first use (0.7 us, which a call run in one compiled call never spends)."""
        return np.full(self.T, self.B, np.int64)

    def by_rows(self, phase: str, K: int = 0) -> bool:
        """Whether this call (``phase``: "forward", or "train" with gradients and a head of K classes) runs its rows
        in two halves on two threads (rows.wanted), as the gated cells' do."""
        if not rows.possible(self.T, self.B):  # asked first: the flop count took 0.4 us of an S1 call
            return False
        weights = self.H * self.H * self.dtype.itemsize
        return rows.wanted(self.T, self.B, weights, flops(phase, self.T, self.B, self.I, self.H, K))

    def halves(self) -> list[tuple[_Step, slice]]:
        """The two steps over rows.halves(B), each with its rows."""
        return [(_Step(self._x[:, part], self._h0[part], self._U, self._W, self._b, self.activation, self.h0_name,
                       half=True), part) for part in rows.halves(self.B)]

    def at_once(self) -> bool:
        """Whether the forward runs in one compiled call (loops.forward_at_once): its step products and input
        projection run as loops (not large, no BLAS rows, hence no panels unless panels.FORCE asks them). Its rows'
        halves are the caller's to rule out."""
        return not self.large and self.blas_rows == 0 and tuning.forced(panels.FORCE) is not True

    def packed(self, backward: bool = False) -> np.ndarray:
        """The step's product operand packed in panels (W^T forward, W backward) where the products run by them,
        else an empty array (loops.step_product)."""
        return panels.pack(self._W if backward else self._W.T) if self.by_panels else panels.unused(self.dtype)

    def packed_input(self) -> np.ndarray:
        """U^T packed in panels where the input projection runs by them, else an empty array."""
        return panels.pack(self._U.T) if self.projection_by_panels else panels.unused(self.dtype)

    def prepare(self) -> None:
        """The contiguous copies, made once, only when the layout needs them; U^T and W^T by the tiled
        loops.transposed (NumPy's copy of W.T took 7.4 against 1.2 ms at S4's 1024 x 1024 in float32)."""
        self.x2 = checks.contiguous(self._x).reshape(self.T * self.B, self.I)
        self.h0 = checks.contiguous(self._h0)
        self.U = checks.contiguous(self._U)
        # U^T likewise, unless the projection runs by panels (packed from U's view, :meth:`packed_input`)
        self.UT = np.empty((0, 0), self.dtype) if self.projection_by_panels else transposed(self._U)
        # W^T is read by the products unless they run by panels (packed from W's view, :meth:`packed`)
        self.W = checks.contiguous(self._W)
        self.WT = np.empty((0, 0), self.dtype) if self.by_panels else transposed(self._W)

    # Two regimes. Up to LARGE_STEP everything runs inside Numba (whose np.dot calls SciPy's
    # OpenBLAS). From LARGE_STEP on, every matrix product goes through blas.matmul (one library for
    # the whole call) and only elementwise loops are jitted.
    def states_array(self, keep: bool) -> np.ndarray:
        """An array (T+1, B, H) for the states: new where ``keep``, else the reused workspace."""
        shape = (self.T + 1, self.B, self.H)
        if keep:
            return result_block(shape, self.dtype)
        return workspace("states", shape, self.dtype)

    def states(self, keep: bool = True) -> np.ndarray:
        """(T+1, B, H): h0 and h_1..h_T; ``keep=False`` lets them live in the reused workspace."""
        states = self.states_array(keep)
        if not self.large:
            projected_states(self.x2, self.h0, self.UT, states, self.packed_input())
            recur_forward(states, self.WT, self.bias, self.code, self.one, self.blas_rows, self.active, self.packed())
            return states
        states[0] = self.h0
        matmul(self.x2, self.UT, out=states.reshape(-1, self.H)[self.B:])
        product = workspace("product", (self.B, self.H), self.dtype)
        # float64 tanh by NumPy's vectorised ufunc, in place: chosen when Numba's step called libm per element
        # (2x slower at S3); step_forward's tanh is vectorised too since 3ba26e2, not compared at these sizes
        numpy_tanh = self.code == 0
        for t in range(1, self.T + 1):
            n = int(self.active[t - 1])
            if n:
                current = states[t][:n]
                matmul(states[t - 1][:n], self.WT, out=product[:n])
                if numpy_tanh:
                    current += product[:n]
                    if self.has_bias:
                        current += self.bias
                    np.tanh(current, out=current)
                else:
                    step_forward(current, product[:n], self.bias, self.code, self.one)
            hold(states[t - 1], states[t], n)
        return states

    def head(self, states, V, VT, c, y):
        """Loss, dL/dV, dL/dc and the head's cotangent on every h_t."""
        if not self.large:
            return head_kernel(states, V, VT, c, y, self.one)
        hs = states.reshape(-1, self.H)[self.B:]
        residual = matmul(hs, VT, out=workspace("residual", (hs.shape[0], VT.shape[1]), self.dtype))
        gc = np.zeros(c.shape[0], self.dtype)
        # NumPy's exp is vectorised (Numba's calls libm per element): ~4 ms of ~190 at S4
        loss = softmax_shift(residual, c, y, self.one)
        np.exp(residual, out=residual)
        loss += softmax_finish(residual, y, self.one, gc)
        direct = workspace("direct", (self.T, self.B, self.H), self.dtype)
        matmul(residual, V, out=direct.reshape(-1, self.H))
        return loss, matmul(residual.T, hs), gc, direct

    def backward(self, states: np.ndarray, direct: np.ndarray) -> Grads:
        carry = np.zeros((self.B, self.H), self.dtype)
        gb = np.zeros(self.H, self.dtype)
        if not self.large:
            deltas = np.empty_like(direct)
            recur_backward(direct, states, self.W, self.code, self.one, self.blas_rows, deltas, carry, gb, self.active,
                           self.packed(backward=True))
            return self.grads(carry, *parameter_gradients(self.x2, self.U, states, deltas), gb)
        deltas = workspace("deltas", direct.shape, self.dtype)
        for t in range(self.T - 1, -1, -1):
            n = int(self.active[t])
            pass_back(carry, direct[t], n)
            clear(deltas[t], n)
            if n:
                step_backward(deltas[t][:n], direct[t][:n], carry[:n], states[t + 1][:n], self.code, self.one, gb)
                matmul(deltas[t][:n], self.W, out=carry[:n])
        d2 = deltas.reshape(-1, self.H)
        previous = states.reshape(-1, self.H)[: self.T * self.B]
        return self.grads(carry, matmul(d2, self.U), matmul(d2.T, self.x2), matmul(d2.T, previous), gb)

    def grads(self, gh0, gx2, gU, gW, gb) -> Grads:
        grads = {"x": gx2.reshape(self.T, self.B, self.I), "h0": gh0, "U": gU, "W": gW}
        if self.has_bias:
            grads["b"] = gb
        return grads

    def zeros(self) -> Grads:
        z = lambda a: np.zeros(a.shape, self.dtype)
        return self.grads(z(self._h0), z(self._x).reshape(self.T * self.B, self.I), z(self._U), z(self._W),
                          np.zeros(self.H, self.dtype))


def elman_forward(x: np.ndarray, h0: np.ndarray, U: np.ndarray, W: np.ndarray, b: np.ndarray | None = None,
                  *, activation: str = "tanh") -> np.ndarray:
    """h_t for t = 1..T, shape (T, B, H)."""
    return forward_named(x, h0, U, W, b, activation)


def forward_named(x, h0, U, W, b, activation: str, h0_name: str = "h0") -> np.ndarray:
    """elman_forward, its messages calling h0 ``h0_name`` (the any-cell API's ``state0['h0']``)."""
    step = _Step(x, h0, U, W, b, activation, h0_name)
    if step.empty:
        return np.zeros((step.T, step.B, step.H), step.dtype)
    if step.by_rows("forward"):  # each half writes its rows of out, in its own thread
        out = result_block((step.T, step.B, step.H), step.dtype)
        rows.run(_states_into, [(half, out[:, part]) for half, part in step.halves()])
        return out
    if step.at_once():
        return forward_at_once(checks.contiguous(step._x), checks.contiguous(step._h0), checks.contiguous(step._U),
                               checks.contiguous(step._W), step.bias, step.code, step.one)
    step.prepare()
    return step.states()[1:]


def _states_into(step: _Step, out: np.ndarray) -> None:
    step.prepare()
    out[...] = step.states(keep=False)[1:]


def elman_backward(x: np.ndarray, h0: np.ndarray, U: np.ndarray, W: np.ndarray, b: np.ndarray | None,
                   gh: np.ndarray, *, activation: str = "tanh") -> Grads:
    """The VJP for cotangents gh (T, B, H) on every h_t: gradients of x, h0, U, W and b (if given)."""
    return backward_named(x, h0, U, W, b, gh, activation)


def backward_named(x, h0, U, W, b, gh, activation: str, h0_name: str = "h0", gh_name: str = "gh") -> Grads:
    """elman_backward, its messages calling h0 ``h0_name`` and gh ``gh_name`` (the any-cell API's
    ``state0['h0']`` and ``cotangents['h']``)."""
    step = _Step(x, h0, U, W, b, activation, h0_name)
    gh = checks.array(gh_name, gh, 3)
    checks.same_dtype("x", step.dtype, **{gh_name: gh})
    checks.shape(gh_name, gh, (step.T, step.B, step.H), "(T, B, H)")
    if step.empty:
        return step.zeros()
    if step.by_rows("train"):
        return rows.join(rows.run(_vjp, [(half, gh[:, part]) for half, part in step.halves()]), rows.GRADIENTS)
    return _vjp(step, gh)


def _vjp(step: _Step, gh: np.ndarray) -> Grads:
    step.prepare()
    return step.backward(step.states(keep=False), checks.contiguous(gh))


def elman_loss(x: np.ndarray, h0: np.ndarray, U: np.ndarray, W: np.ndarray, b: np.ndarray | None,
               V: np.ndarray, c: np.ndarray, targets: np.ndarray, *, activation: str = "tanh"):
    """The source notes' model: sum over t and batch of -log softmax(V h_t + c)[y_t], and its gradients.

    Returns (loss, grads): loss a scalar of the input dtype, grads for x, h0, U, W, b (if given), V, c.
    """
    return loss_named(x, h0, U, W, b, V, c, targets, activation)


def loss_named(x, h0, U, W, b, V, c, targets, activation: str, h0_name: str = "h0"):
    """elman_loss, its messages calling h0 ``h0_name`` (the any-cell API's ``state0['h0']``)."""
    step = _Step(x, h0, U, W, b, activation, h0_name)
    V = checks.array("V", V, 2)
    c = checks.array("c", c, 1)
    checks.same_dtype("x", step.dtype, V=V, c=c)
    K = V.shape[0]
    checks.shape("V", V, (K, step.H), "(K, H)")
    checks.shape("c", c, (K,), "(K,)")
    y = checks.targets_arg(targets, step.T, step.B, K)
    if step.empty:
        grads = step.zeros()
        grads.update(V=np.zeros(V.shape, step.dtype), c=np.zeros(c.shape, step.dtype))
        return step.dtype.type(0), grads
    Vc, VT, cc = checks.contiguous(V), transposed(V), checks.contiguous(c)
    if step.by_rows("train", K):
        halves = rows.run(_loss, [(half, Vc, VT, cc, y[:, part]) for half, part in step.halves()])
        return halves[0][0] + halves[1][0], rows.join([grads for _, grads in halves], rows.GRADIENTS)
    return _loss(step, Vc, VT, cc, y)


def _loss(step: _Step, Vc: np.ndarray, VT: np.ndarray, cc: np.ndarray, y: np.ndarray) -> tuple[np.generic, Grads]:
    step.prepare()
    y = checks.contiguous(y).reshape(step.T * step.B)
    if not step.large:
        states = step.states_array(keep=False)
        loss, gx2, gh0, gU, gW, gb, gV, gc = train_kernel(
            step.x2, step.h0, step.U, step.UT, step.W, step.WT, step.bias, Vc, VT, cc, y,
            step.code, step.one, step.blas_rows, step.active, states, step.packed_input(), step.packed(),
            step.packed(backward=True))
        grads = step.grads(gh0, gx2, gU, gW, gb)
    else:
        states = step.states(keep=False)
        loss, gV, gc, direct = step.head(states, Vc, VT, cc, y)
        grads = step.backward(states, direct)
    grads.update(V=gV, c=gc)
    return step.dtype.type(loss), grads


#: what the any-cell API calls h0 in messages
_H0 = "state0['h0']"


class _Run:
    """One run of a variant (cells.Kernel.run): the Elman steps behind the runs' interface."""

    def __init__(self, x, state0, params, activation: str) -> None:
        checks.named_arrays("state0", state0, ("h0",), (), "elman")
        self.step = _Step(x, state0["h0"], params["U"], params["W"], params.get("b"), activation, _H0)
        self.H = self.P = self.step.H

    @property
    def active(self) -> np.ndarray:
        return self.step.active

    @active.setter
    def active(self, value: np.ndarray) -> None:
        self.step.active = value

    def set_input(self, x: np.ndarray) -> None:
        self.step._x = x

    def run(self) -> None:
        self.step.prepare()
        self.hs = self.step.states(keep=True)

    def backward(self, direct: np.ndarray, gc: np.ndarray | None) -> Grads:
        return self.step.backward(self.hs, direct)


class Elman(Kernel):
    """The Elman cell behind the kernels' interface: the any-cell API's dicts onto the positional functions."""

    optional = ("b",)

    def forward(self, x, state0, params, activation: str) -> Grads:
        h0, p = checks.elman_dicts(state0, params)
        return {"h": forward_named(x, h0, p["U"], p["W"], p.get("b"), activation, _H0)}

    def backward(self, x, state0, params, cotangents, activation: str) -> Grads:
        h0, p = checks.elman_dicts(state0, params)
        cotangents = checks.named_arrays("cotangents", cotangents if cotangents is not None else {}, ("h",), (),
                                         "elman")
        return backward_named(x, h0, p["U"], p["W"], p.get("b"), cotangents["h"], activation, _H0, "cotangents['h']")

    def loss(self, x, state0, params, targets, activation: str):
        h0, p = checks.elman_dicts(state0, params, head=True)
        return loss_named(x, h0, p["U"], p["W"], p.get("b"), p["V"], p["c"], targets, activation, _H0)

    def run(self, x, state0, params, activation: str, tag: str) -> _Run:
        return _Run(x, state0, params, activation)


KERNEL = Elman("elman")
