"""Forward, VJP and softmax cross-entropy loss of the gated cells (LSTM, both GRUs) on the CPU.

One design for every cell: the parameters of all gates are stacked (U of every gate in one (G H, I)
matrix, W in one (G H, H), b in one (G H,)), so everything parallel over time is one GEMM over all
T B rows: the input projection a = x U^T + b, the head, and after BPTT dU, dW, dx. Only the recurrent
product runs step by step, fused with the gate nonlinearities in the cell's module
(:mod:`lstm`, :mod:`gru_reset_after`, :mod:`gru_reset_before`), in loops that allocate nothing.
Every product goes through the BLAS that Numba calls (SciPy's OpenBLAS; see :mod:`blas`), a plain
loop below SMALL_STEP multiply-adds per step. Computation stays in the input dtype; float32 uses the
vectorizing exp and tanh of :mod:`elementwise`.

T = 0 or B = 0: states are empty (T, B, H) arrays, the loss is 0, every gradient zero of its shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
from numba import njit

from rnnspec.kernels import checks
from rnnspec.kernels.cpu import blas, gru_reset_after, gru_reset_before, lstm, rows, split
from rnnspec.kernels.cpu.loops import SMALL_STEP, head_kernel, project
from rnnspec.kernels.cpu.scratch import workspace
from rnnspec.kernels.cpu.work import flops

Arrays = dict[str, np.ndarray]
CELLS = tuple(checks.GATED_CELLS)
#: the names of the parameters _Run.stack stacks, by (kind, gates)
_KEYS = {(kind, gates): tuple(f"{kind}_{g}" for g in gates) for kind in "UWb" for gates in ("ifgo", "rzn", "rz")}


@njit(cache=True, nogil=True, error_model="numpy")
def _input_side(x2, U, deltas):
    """dL/dx (T B, I) and dL/dU (G H, I) from the input side's deltas (T B, G H)."""
    return np.dot(deltas, U), np.dot(deltas.T, x2)


@njit(cache=True, nogil=True, error_model="numpy")
def _recurrent_side(previous, deltas):
    """dL/dW (G H, H) = deltas^T h_{t-1}, summed over every step and row."""
    return np.dot(deltas.T, previous)


@njit(cache=True, nogil=True, error_model="numpy")
def _lstm_train(x2, h0, c0, U, b, W, WT, V, VT, c, targets, one, active):
    """The plain LSTM's loss and every gradient in one compiled call, for step products small enough to
    run as loops (loops.SMALL_STEP): the same steps as _Run's passes (project, lstm.forward, head_kernel,
    lstm.backward and the GEMMs after it), without the Python between them, which took about half of a
    G1 call (50 x 1 x 32: 127 us). Returns (loss, dx2, dh0, dc0, dU, dW, db, dV, dc) with U, W, b stacked."""
    steps, (batch, hidden) = active.shape[0], c0.shape
    a = np.empty((steps, batch, 4 * hidden), c0.dtype)
    project(x2, U, b, a.reshape(steps * batch, 4 * hidden))
    gates = np.empty_like(a)
    hs, cs = np.empty((steps + 1, batch, hidden), c0.dtype), np.empty((steps + 1, batch, hidden), c0.dtype)
    hs[0] = h0
    cs[0] = c0
    tcs = np.empty((steps, batch, hidden), c0.dtype)
    none, no_peep = np.empty((0, 0), c0.dtype), np.empty((0, hidden), c0.dtype)
    lstm.forward(a, gates, hs, cs, tcs, tcs[:0], WT, none, none, no_peep, 0, 0, active)
    loss, gV, gc, direct = head_kernel(hs, V, VT, c, targets, one)
    deltas = np.empty_like(a)  # a is read no more
    carry, carry_c = np.zeros((batch, hidden), c0.dtype), np.zeros((batch, hidden), c0.dtype)
    bias_grad = np.zeros(4 * hidden, c0.dtype)
    lstm.backward(direct, tcs, False, gates, cs, tcs, W, none, none, no_peep, 0, 0, deltas, direct[:0], carry, carry_c,
                  bias_grad, no_peep.copy(), one, active)
    flat = deltas.reshape(steps * batch, 4 * hidden)
    gx, gU = _input_side(x2, U, flat)
    gW = _recurrent_side(hs[:steps].reshape(steps * batch, hidden), flat)
    return loss, gx, carry, carry_c, gU, gW, bias_grad, gV, gc


class _Run:
    """The checked arguments of one call, stacked once, and the cell's recurrence around them."""

    def __init__(self, cell: str, x, state0, params, head: bool = False, tag: str = "", half: bool = False) -> None:
        self.cell = checks.cell_name(cell, CELLS)
        self.head = head
        x, self.T, self.B, self.I, self.H, self.state0, self.params = checks.gated_inputs(self.cell, x, state0, params,
                                                                                          head)
        self.order = checks.GATED_CELLS[cell][0]
        self.lstm = "c0" in self.state0
        #: the size of h: the projection's P for lstm-proj, else H
        self.P = self.params["W_hr"].shape[0] if "W_hr" in self.params else self.H
        self.dtype = x.dtype
        self.one = self.dtype.type(1)
        self.empty = self.T == 0 or self.B == 0
        #: a half of a call whose rows run on two threads (rows.py): on its own thread, BLAS on one
        self.half = half
        #: rows per BLAS call in a step's products (0: the loop, for small ones); see loops.matmul_into
        self.blas_rows = self._blas_rows(self.P, len(self.order) * self.H)
        self.projection_rows = self._blas_rows(self.H, self.P)
        #: the step's products as (W a^T)^T (loops.step_product): the LSTMs and the reset-after GRU only
        self.transposed = self.cell != "gru-reset-before" and self.blas_rows >= self.B and blas.transposed_wins(
            self.dtype, self.B, len(self.order) * self.H * self.P * self.dtype.itemsize)
        self.x = x
        #: rows still running at each step (a prefix: rows sorted by length; see loops.hold)
        self.active = np.full(self.T, self.B, np.int64)
        #: tells apart the scratch of the runs one call keeps alive together (layers, directions)
        self.tag = tag
        #: the recurrence on two threads (split.py): set by the forward layer of a whole call only
        self.split = False

    def _blas_rows(self, inner: int, cols: int) -> int:
        if self.B * inner * cols <= SMALL_STEP:
            return 0
        return blas.rows_per_call(self.B, inner, cols, self.half)

    def threads(self) -> contextlib.AbstractContextManager:
        """Decides whether this call runs on two threads (split.wanted), and returns the context to run it
        in: OpenBLAS held on one thread when it does."""
        self.split = not self.half and split.wanted(self.cell, self.T, self.B, self.H, len(self.order))
        return blas.one_thread() if self.split else contextlib.nullcontext()

    def by_rows(self, phase: str) -> bool:
        """Whether this call (``phase``: "forward", or "train" with gradients) runs its rows in two halves on
        two threads (rows.wanted), never where the recurrence itself splits (split.wanted: at most two rows)."""
        weights = len(self.order) * self.H * self.P * self.dtype.itemsize
        K = self.params["V"].shape[0] if self.head else 0
        work = flops(phase, self.T, self.B, self.I, self.H, K, len(self.order), None, self.P)
        return (rows.wanted(self.T, self.B, weights, work)
                and not split.wanted(self.cell, self.T, self.B, self.H, len(self.order)))

    def halves(self) -> list[tuple[_Run, slice]]:
        """The two runs over rows.halves(B), checked as this one was, each with its rows."""
        runs = []
        for part in rows.halves(self.B):
            runs.append((_Run(self.cell, self.x[:, part], {k: v[part] for k, v in self.state0.items()}, self.params,
                              self.head, self.tag, half=True), part))
        return runs

    def scratch(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        return workspace(name + self.tag, shape, self.dtype)

    def stack(self, kind: str, gates: str | None = None) -> np.ndarray:
        """The parameters of ``gates`` stacked in one C-contiguous array, whatever the layout of each
        (a Fortran-order result would send the GEMMs down another BLAS path, with other roundings)."""
        parts = [self.params[key] for key in _KEYS[kind, gates or self.order]]
        first = parts[0]  # every gate's parameter has its shape (checks.gated_args)
        return np.concatenate(parts, out=np.empty((len(parts) * first.shape[0],) + first.shape[1:], self.dtype))

    def prepare(self) -> None:
        T, B, H = self.T, self.B, self.H
        self.x2 = checks.contiguous(self.x).reshape(T * B, self.I)
        self.U = self.stack("U")
        self.hs = np.empty((T + 1, B, self.P), self.dtype)
        self.hs[0] = self.state0["h0"]
        if self.split:
            self.parts = split.Parts(self)
            return
        self.a = self.scratch("a", (T, B, len(self.order) * H))
        self.gates = self.scratch("gates", self.a.shape)  # the gate values, apart from a: see lstm.py
        project(self.x2, self.U, self.stack("b"), self.a.reshape(T * B, -1))

    def forward(self) -> None:
        T, B, H = self.T, self.B, self.H
        if self.split:
            self.parts.forward()
            return
        if self.cell == "gru-reset-before":
            self.W_rz, self.W_n = self.stack("W", "rz"), checks.contiguous(self.params["W_n"])
            self.WT_rz, self.WT_n = checks.contiguous(self.W_rz.T), checks.contiguous(self.W_n.T)
            self.rhs = self.scratch("rh", (T, B, H))
            gru_reset_before.forward(self.a, self.gates, self.hs, self.rhs, self.WT_rz, self.WT_n, self.blas_rows,
                                     self.one, self.active)
            return
        self.W = self.stack("W")
        self.WT = checks.contiguous(self.W.T)
        if self.lstm:
            self.cs = np.empty((T + 1, B, H), self.dtype)
            self.cs[0] = self.state0["c0"]
            self.tcs = self.scratch("tanh_c", (T, B, H))
            # the relatives' extras, empty when the cell has none (lstm.py)
            projected = self.cell == "lstm-proj"
            self.rs = self.scratch("r", (T, B, H)) if projected else self.tcs[:0]
            self.W_hr = checks.contiguous(self.params["W_hr"]) if projected else np.empty((0, 0), self.dtype)
            self.peep = (np.stack([self.params[f"P_{g}"] for g in "ifo"]) if self.cell == "lstm-peephole"
                         else np.empty((0, H), self.dtype))
            lstm.forward(self.a, self.gates, self.hs, self.cs, self.tcs, self.rs, self.WT, self._if_transposed(self.W),
                         checks.contiguous(self.W_hr.T), self.peep, self.blas_rows, self.projection_rows, self.active)
        else:
            self.ms = self.scratch("m", (T, B, H))
            gru_reset_after.forward(self.a, self.gates, self.hs, self.ms, self.WT, self._if_transposed(self.W),
                                    checks.contiguous(self.params["b_hn"]), self.blas_rows, self.one, self.active)

    def _if_transposed(self, matrix: np.ndarray) -> np.ndarray:
        """``matrix`` where the step's products run transposed (self.transposed), else an empty one."""
        return matrix if self.transposed else np.empty((0, 0), self.dtype)

    def outputs(self) -> Arrays:
        out = {"h": self.hs[1:]}
        if self.lstm:
            out["c"] = self.cs[1:]
        return out

    def backward(self, direct: np.ndarray, gc: np.ndarray | None = None) -> Arrays:
        """Every gradient from dL/dh_t (direct, (T, B, P)) and, for the LSTMs, dL/dc_t (gc (T, B, H) or none)."""
        if self.split:
            return self.parts.backward(direct, gc)
        T, B, H, G = self.T, self.B, self.H, len(self.order)
        previous = self.hs[:T].reshape(T * B, self.P)
        carry = np.zeros((B, self.P), self.dtype)
        bias_grad = np.zeros(G * H, self.dtype)
        grads: Arrays = {}
        if self.cell == "gru-reset-before":
            deltas_rz = workspace("deltas_rz", (T, B, 2 * H), self.dtype)  # consumed here: shared by every run
            deltas_n = workspace("deltas_n", (T, B, H), self.dtype)
            gru_reset_before.backward(direct, self.gates, self.hs, self.W_rz, self.W_n, self.blas_rows, deltas_rz,
                                      deltas_n, carry, bias_grad, self.one, self.active)
            rz, n = deltas_rz.reshape(T * B, 2 * H), deltas_n.reshape(T * B, H)
            gx_rz, gU_rz = _input_side(self.x2, self.stack("U", "rz"), rz)
            gx_n, gU_n = _input_side(self.x2, checks.contiguous(self.params["U_n"]), n)
            gx = gx_rz + gx_n
            gU = np.concatenate([gU_rz, gU_n])
            gW = np.concatenate([_recurrent_side(previous, rz),
                                 _recurrent_side(self.rhs.reshape(T * B, H), n)])
        else:
            deltas = workspace("deltas", (T, B, G * H), self.dtype)
            if self.lstm:
                carry_c = np.zeros((B, H), self.dtype)
                has_gc = gc is not None
                gc = gc if has_gc else self.tcs  # any (T, B, H) array: not read
                peep_grad = np.zeros(self.peep.shape, self.dtype)
                douts = workspace("douts", (T, B, self.P), self.dtype) if self.W_hr.size else direct[:0]
                lstm.backward(direct, gc, has_gc, self.gates, self.cs, self.tcs, self.W, self._if_transposed(self.WT),
                              self.W_hr, self.peep, self.blas_rows, self.projection_rows, deltas, douts, carry, carry_c,
                              bias_grad, peep_grad, self.one, self.active)
                if self.cell == "lstm-peephole":
                    grads.update(P_i=peep_grad[0], P_f=peep_grad[1], P_o=peep_grad[2])
                if self.cell == "lstm-proj":
                    grads["W_hr"] = _recurrent_side(self.rs.reshape(T * B, H), douts.reshape(T * B, self.P))
                grads["c0"] = carry_c
                recurrent = deltas
            else:
                recurrent = workspace("deltas_recurrent", (T, B, G * H), self.dtype)
                grads["b_hn"] = np.zeros(H, self.dtype)
                gru_reset_after.backward(direct, self.gates, self.hs, self.ms, self.W, self._if_transposed(self.WT),
                                         self.blas_rows, deltas, recurrent, carry, bias_grad, grads["b_hn"], self.one,
                                         self.active)
            gx, gU = _input_side(self.x2, self.U, deltas.reshape(T * B, G * H))
            gW = _recurrent_side(previous, recurrent.reshape(T * B, G * H))
        grads.update(x=gx.reshape(T, B, self.I), h0=carry)
        for k, g in enumerate(self.order):
            rows = slice(k * H, (k + 1) * H)
            grads[f"U_{g}"], grads[f"W_{g}"], grads[f"b_{g}"] = gU[rows], gW[rows], bias_grad[rows]
        return grads

    def zeros(self) -> Arrays:
        """Every gradient, zero (T = 0 or B = 0)."""
        grads = {"x": np.zeros(self.x.shape, self.dtype)}
        grads.update({k: np.zeros(v.shape, self.dtype) for k, v in {**self.state0, **self.params}.items()})
        return grads


def _dispatch_elman(kind: str, x, state0, params, extra, activation):
    from rnnspec.kernels.cpu import elman

    h0, p = checks.elman_dicts(state0, params, head=kind == "loss")
    args = (x, h0, p["U"], p["W"], p.get("b"))
    h0_name = "state0['h0']"  # what the any-cell API calls it
    if kind == "forward":
        return {"h": elman.forward_named(*args, activation, h0_name)}
    if kind == "backward":
        cotangents = checks.named_arrays("cotangents", extra if extra is not None else {}, ("h",), (), "elman")
        return elman.backward_named(*args, cotangents["h"], activation, h0_name, "cotangents['h']")
    return elman.loss_named(*args, p["V"], p["c"], extra, activation, h0_name)


def _choose(cell, activation, layers, bidirectional, lengths, padding) -> tuple[str, str, dict | None]:
    """(cell, activation, the variant keywords), each keyword checked by the one rule of every path
    (checks.choice, checks.count, checks.flag); the keywords are None for one forward layer over full
    sequences (the plain contract). ``activation`` is checked for every cell, though only Elman's reads it."""
    cell = checks.cell_name(cell, ("elman", *CELLS))
    activation = checks.choice("activation", activation, checks.ACTIVATIONS)
    layers = checks.count("layers", layers)
    bidirectional = checks.flag("bidirectional", bidirectional)
    padding = checks.choice("padding", padding, checks.PADDING)
    if layers == 1 and not bidirectional and lengths is None:
        if padding != "zero":
            raise ValueError(f"padding={padding!r} applies to runs with lengths; none were given")
        return cell, activation, None
    return cell, activation, {"layers": layers, "bidirectional": bidirectional, "lengths": lengths, "padding": padding}


def forward(cell: str, x: np.ndarray, state0: Mapping, params: Mapping | None = None, *,
            activation: str = "tanh", layers: int = 1, bidirectional: bool = False, lengths: np.ndarray | None = None,
            padding: str = "zero", **named: np.ndarray) -> Arrays:
    """The states at every step: {"h": (T, B, H)} and, for the LSTM, {"c": (T, B, H)}.

    ``params`` are the canonical per-gate parameters (U_k, W_k, b_k for each gate k, and b_hn for
    gru-reset-after), as a dict or as named arguments; ``activation`` applies to the Elman cell only.

    A variant (``layers`` > 1, ``bidirectional``, or ``lengths`` int (B,) with ``padding`` "zero" or
    "carry") follows the suite's variant contract instead (:mod:`rnnspec.kernels.cpu.variants`): it returns
    {"h": (T, B, D * H), "h_n" (, "c_n")}, the last layer's outputs and the final states.
    """
    params = checks.one_params_form(params, named)
    cell, activation, variant = _choose(cell, activation, layers, bidirectional, lengths, padding)
    if variant is not None:
        from rnnspec.kernels.cpu import variants

        return variants.forward(cell, x, state0, params, activation=activation, **variant)
    if cell == "elman":
        return _dispatch_elman("forward", x, state0, params, None, activation)
    run = _Run(cell, x, state0, params)
    if run.empty:
        sizes = (("h", run.P), ("c", run.H))[: len(run.state0)]
        return {k: np.zeros((run.T, run.B, size), run.dtype) for k, size in sizes}
    if run.by_rows("forward"):
        return rows.join(rows.run(_states, [(half,) for half, _ in run.halves()]), rows.OUTPUTS)
    return _states(run)


def _states(run: _Run) -> Arrays:
    with run.threads():
        run.prepare()
        run.forward()
    return run.outputs()


def backward(cell: str, x: np.ndarray, state0: Mapping, params: Mapping | None = None,
             cotangents: Mapping | None = None, *, activation: str = "tanh", layers: int = 1,
             bidirectional: bool = False, lengths: np.ndarray | None = None, padding: str = "zero",
             **named: np.ndarray) -> Arrays:
    """The VJP for cotangents {"h": (T, B, H)} (and, for the LSTM, optionally "c"): gradients of x, every
    initial state and every parameter, named as the inputs are. A variant (see :func:`forward`) takes
    cotangents on any of "h", "h_n", "c_n"."""
    params = checks.one_params_form(params, named)
    cell, activation, variant = _choose(cell, activation, layers, bidirectional, lengths, padding)
    if variant is not None:
        from rnnspec.kernels.cpu import variants

        return variants.backward(cell, x, state0, params, cotangents, activation=activation, **variant)
    if cell == "elman":
        return _dispatch_elman("backward", x, state0, params, cotangents, activation)
    run = _Run(cell, x, state0, params)
    given = checks.gated_cotangents(cell, cotangents, run.dtype, run.T, run.B, run.H, run.P)
    if run.empty:
        return run.zeros()
    if run.by_rows("train"):
        halves = [(half, {k: v[:, part] for k, v in given.items()}) for half, part in run.halves()]
        return rows.join(rows.run(_vjp, halves), rows.GRADIENTS)
    return _vjp(run, given)


def _vjp(run: _Run, given: Arrays) -> Arrays:
    with run.threads():
        run.prepare()
        run.forward()
        gc = checks.contiguous(given["c"]) if "c" in given else None
        return run.backward(checks.contiguous(given["h"]), gc)


def loss(cell: str, x: np.ndarray, state0: Mapping, params: Mapping | None = None, targets: np.ndarray | None = None,
         *, activation: str = "tanh", layers: int = 1, bidirectional: bool = False, lengths: np.ndarray | None = None,
         padding: str = "zero", **named: np.ndarray) -> tuple[np.generic, Arrays]:
    """sum over t and batch of -log softmax(V h_t + c)[y_t], and the gradient of every input
    (x, the initial states, the cell's parameters, V and c). Returns (loss, grads). A variant (see
    :func:`forward`) sums over the valid steps t < len_b of its last layer's outputs."""
    params = checks.one_params_form(params, named)
    cell, activation, variant = _choose(cell, activation, layers, bidirectional, lengths, padding)
    if variant is not None:
        from rnnspec.kernels.cpu import variants

        return variants.loss(cell, x, state0, params, targets, activation=activation, **variant)
    if cell == "elman":
        return _dispatch_elman("loss", x, state0, params, targets, activation)
    run = _Run(cell, x, state0, params, head=True)
    y = checks.targets_arg(targets, run.T, run.B, run.params["V"].shape[0])
    if run.empty:
        return run.dtype.type(0), run.zeros()
    if run.by_rows("train"):
        halves = rows.run(_loss, [(half, y[:, part]) for half, part in run.halves()])
        return halves[0][0] + halves[1][0], rows.join([grads for _, grads in halves], rows.GRADIENTS)
    return _loss(run, y)


def _loss(run: _Run, y: np.ndarray) -> tuple[np.generic, Arrays]:
    V, c = run.params["V"], run.params["c"]
    if run.cell == "lstm" and run.blas_rows == 0:
        return _lstm_loss_at_once(run, y)
    with run.threads():
        run.prepare()
        run.forward()
        value, gV, gc, direct = head_kernel(run.hs, checks.contiguous(V), checks.contiguous(V.T),
                                            checks.contiguous(c), checks.contiguous(y).reshape(-1), run.one)
        grads = run.backward(direct)
    grads.update(V=gV, c=gc)
    return run.dtype.type(value), grads


def _lstm_loss_at_once(run: _Run, y: np.ndarray) -> tuple[np.generic, Arrays]:
    """_loss of the plain LSTM at sizes whose step products are loops, as one compiled call (_lstm_train)."""
    V, c, W = run.params["V"], run.params["c"], run.stack("W")
    value, gx, gh0, gc0, gU, gW, bias_grad, gV, gc = _lstm_train(
        checks.contiguous(run.x).reshape(run.T * run.B, run.I), checks.contiguous(run.state0["h0"]),
        checks.contiguous(run.state0["c0"]), run.stack("U"), run.stack("b"), W, checks.contiguous(W.T),
        checks.contiguous(V), checks.contiguous(V.T), checks.contiguous(c), checks.contiguous(y).reshape(-1), run.one,
        run.active)
    grads = {"x": gx.reshape(run.T, run.B, run.I), "h0": gh0, "c0": gc0, "V": gV, "c": gc}
    for k, g in enumerate(run.order):
        rows_k = slice(k * run.H, (k + 1) * run.H)
        grads[f"U_{g}"], grads[f"W_{g}"], grads[f"b_{g}"] = gU[rows_k], gW[rows_k], bias_grad[rows_k]
    return run.dtype.type(value), grads
