"""Forward, VJP and softmax cross-entropy loss of every cell on the CPU: the entry points, and the shared
driver of the gated cells.

``forward``, ``backward`` and ``loss`` find the cell's kernel by its name (:func:`cells.kernel`) and hand it
the call, or hand a variant to :mod:`variants`; nothing here branches on a cell's name.

The gated cells share one design: the parameters of all gates are stacked (U of every gate in one (G H, I)
matrix, W in one (G H, P), b in one (G H,)), so everything parallel over time is one GEMM over all
T B rows: the input projection a = x U^T + b, the head, and after BPTT dU, dW, dx (:meth:`_Run.gradients`,
one GEMM each per block of gates the cell's BPTT hands back). Only the recurrent products run step by step,
fused with the gate nonlinearities in the cell's module (its kernel's ``recur`` and ``recur_back``), in
loops that allocate nothing. Every product goes through the BLAS that Numba calls (SciPy's OpenBLAS; see
:mod:`blas`), a plain loop below SMALL_STEP multiply-adds per step. Computation stays in the input dtype;
float32 uses the vectorizing exp and tanh of :mod:`elementwise`.

T = 0 or B = 0: states are empty (T, B, H) arrays, the loss is 0, every gradient zero of its shape.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Mapping

import numpy as np

from rnnspec.kernels import checks
from rnnspec.kernels.cpu import blas, cells, panels, rows, split, tuning
from rnnspec.kernels.cpu.cells import Deltas
from rnnspec.kernels.cpu.loops import (
    SMALL_STEP,
    head_kernel,
    input_side,
    project,
    project_by_panels,
    recurrent_side,
    transposed,
)
from rnnspec.kernels.cpu.scratch import result_block, workspace
from rnnspec.kernels.cpu.work import flops

Arrays = dict[str, np.ndarray]


class _Call:
    """One call's checked arguments and sizes, and the choices that read nothing else: whether the call runs in
    one compiled call (:meth:`at_once`) or its rows in halves (:meth:`by_rows`). A small call that runs in one
    compiled call (its kernel's ``forward_at_once``) needs no more, and makes no :class:`_Run`: setting one up
    (its paths, scratch names, threads) took 2.3 of the LSTM's 33 us at G1 (T = 50, B = 1, H = 32; the checks
    3.3 more), beside the compiled call's 19.5."""

    def __init__(self, kernel: cells.Gated, checked: tuple, head: bool = False) -> None:
        self.kernel = kernel
        self.cell = kernel.name
        self.head = head
        self.x, self.T, self.B, self.I, self.H, self.state0, self.params = checked
        self.order = kernel.gates
        #: the size of h: the projection's P for lstm-proj, else H
        self.P = self.state0["h0"].shape[1]
        self.dtype = self.x.dtype
        self.one = checks.ONES[self.dtype]
        self.empty = self.T == 0 or self.B == 0

    @classmethod
    def checked(cls, cell: str, x, state0, params, head: bool = False) -> _Call:
        """The call of ``cell`` on these arguments, each checked (checks.gated_inputs)."""
        return cls(cells.kernel(cell), checks.gated_inputs(cell, x, state0, params, head), head)

    def weight_bytes(self) -> int:
        """The stacked W's bytes: G H P."""
        return len(self.order) * self.H * self.P * self.dtype.itemsize

    def splits(self) -> bool:
        """Whether the recurrence runs on two threads at these sizes (split.wanted)."""
        return split.wanted(self.cell, self.T, self.B, self.H, len(self.order), self.weight_bytes())

    def at_once(self) -> bool:
        """Whether this call may run in one compiled call (its kernel's forward_at_once or loss_at_once): its step
        products run as loops (B P G H <= SMALL_STEP: no BLAS rows, hence no panels, for the products or the input
        projection, unless panels.FORCE asks them of a cell that takes them), on one thread (no split, which its
        FORCE may ask at any size). Its rows' halves (by_rows) are the caller's to rule out."""
        return (self.B * self.P * len(self.order) * self.H <= SMALL_STEP
                and not (self.kernel.transposable and tuning.forced(panels.FORCE) is True)
                and not self.splits())

    def by_rows(self, phase: str) -> bool:
        """Whether this call (``phase``: "forward", or "train" with gradients) runs its rows in two halves on
        two threads (rows.wanted), never where the recurrence itself splits (split.wanted: at most two rows)."""
        if not rows.possible(self.T, self.B):  # asked first: the flop count took 0.4 us of a G1 call
            return False
        K = self.params["V"].shape[0] if self.head else 0
        work = flops(phase, self.T, self.B, self.I, self.H, K, len(self.order), None, self.P)
        return rows.wanted(self.T, self.B, self.weight_bytes(), work) and not self.splits()

    def per_gate(self, kind: str) -> tuple[np.ndarray, ...]:
        """The parameters ``kind``_k of every gate in stacking order, each C-contiguous: what a compiled call that
        stacks them itself takes (loops.stacked). Taken at once where they already are (1.75 -> 1.07 us for the
        LSTM's three kinds), else each made so (checks.contiguous)."""
        parts = self.kernel.per_gate_getters[kind](self.params)
        for part in parts:
            if not part.flags.carray:
                return tuple([checks.contiguous(p) for p in parts])
        return parts

    def param(self, key: str) -> np.ndarray:
        """The parameter ``key``, C-contiguous (a copy only where it is not)."""
        return checks.contiguous(self.params[key])


class _Run(_Call):
    """The checked arguments of one call, stacked once, and the cell's recurrence (its kernel's steps) around
    them. Also one run of a variant (cells.Kernel.run): set_input, run, backward."""

    def __init__(self, cell: str, x, state0, params, head: bool = False, tag: str = "", half: bool = False,
                 private: bool = False, call: _Call | None = None) -> None:
        """``call``: the same arguments already checked (the caller's :class:`_Call`), else they are checked here."""
        if call is None:
            call = _Call.checked(cell, x, state0, params, head)
        self.__dict__.update(call.__dict__)
        #: whether the states (hs, cs) never leave the call, so that they may live in this thread's scratch: a
        #: plain call's, whose forward copies them out (a variant returns views of them, so its runs' are new)
        self.private = private
        #: whether the cell has a cell state c beside h (split.py reads it)
        self.lstm = "c" in self.kernel.entry.states
        #: a half of a call whose rows run on two threads (rows.py): on its own thread, BLAS on one
        self.half = half
        #: rows per BLAS call in a step's products (0: the loop, for small ones); see loops.matmul_into
        self.blas_rows = self._blas_rows(self.P, len(self.order) * self.H)
        #: rows per BLAS call in a projection's product h_t = r_t W_hr^T (H by P; lstm-proj)
        self.projection_rows = self._blas_rows(self.H, self.P)
        #: the step's products as (W a^T)^T (loops.step_product): cells with one product a step only
        self.transposed = self.kernel.transposable and self.blas_rows >= self.B and blas.transposed_wins(
            self.dtype, self.B, len(self.order) * self.H * self.P * self.dtype.itemsize)
        #: the step's products by the kernels' own tiles over panels of W (panels.py), before either BLAS path
        one_thread = half or blas.threads() == 1
        self.by_panels = self.kernel.transposable and panels.wanted(self.blas_rows, one_thread, self.B)
        #: the input projection x U^T + b by panels too (panels.projection_wanted)
        self.projection_by_panels = panels.projection_wanted(self.by_panels, one_thread, self.I)
        #: tells apart the scratch of the runs one call keeps alive together (layers, directions)
        self.tag = tag
        #: the recurrence on two threads (split.py): set by the forward layer of a whole call only
        self.split = False
        #: the states' new arrays, by name, once :meth:`states` made them
        self.fresh: Arrays | None = None

    @functools.cached_property
    def active(self) -> np.ndarray:
        """The rows still running at each step (a prefix: rows sorted by length; see loops.hold): every row unless a
        variant sets it; made at first use (0.7 us, which a call run in one compiled call never spends)."""
        return np.full(self.T, self.B, np.int64)

    def _blas_rows(self, inner: int, cols: int) -> int:
        if self.B * inner * cols <= SMALL_STEP:
            return 0
        return blas.rows_per_call(self.B, inner, cols, self.half)

    def threads(self) -> contextlib.AbstractContextManager:
        """Decides whether this call runs on two threads (split.wanted), and returns the context to run it
        in: OpenBLAS held on one thread when it does."""
        self.split = not self.half and self.splits()
        return blas.one_thread() if self.split else contextlib.nullcontext()

    def halves(self) -> list[tuple[_Run, slice]]:
        """The two runs over rows.halves(B), checked as this one was, each with its rows."""
        runs = []
        for part in rows.halves(self.B):
            runs.append((_Run(self.cell, self.x[:, part], {k: v[part] for k, v in self.state0.items()}, self.params,
                              self.head, self.tag, half=True, private=self.private), part))
        return runs

    def weights(self, W: np.ndarray, backward: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(W^T, panels): what a direction's loop reads beyond W for its step products a @ b, b = W^T forward and
        W backward (loops.step_product). The panels hold b packed (panels.pack) where the products run by panels,
        else they are empty; W^T (C-contiguous) is made only where BLAS runs them on it (forward untransposed,
        backward transposed), else it is empty too: transposing G4's stacked W (4096 x 1024, float32) took 16 ms of
        the LSTM forward's 216 (benchmarks/cpu_issue37/README.md). Handing BLAS the view W.T instead cost more than
        the copy (G4's BPTT 179 against 144 ms)."""
        empty = np.empty((0, 0), W.dtype)
        if self.by_panels:
            return empty, panels.pack(W if backward else W.T)
        return (transposed(W) if self.transposed == backward else empty), panels.unused(self.dtype)

    def scratch(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        return workspace(name + self.tag, shape, self.dtype)

    def states(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """An array for the states ``name`` ("hs", "cs") at every step, (T+1, B, width): scratch where the run is
        private, else new, every state's array a view of one new block (:func:`one_block`)."""
        if self.private:
            return self.scratch(name, shape)
        if self.fresh is None:
            self.fresh = one_block({k + "s": (self.T + 1, self.B, self.width(k)) for k in self.kernel.entry.states},
                                   self.dtype)
        assert self.fresh[name].shape == shape, (name, shape)
        return self.fresh[name]

    def width(self, state: str) -> int:
        """The width of the state ``state`` ("h" or "c"): P for h (the projection's, else H), H for c."""
        return self.P if state == "h" else self.H

    def stack(self, kind: str, gates: str | None = None) -> np.ndarray:
        """The parameters ``kind``_k of ``gates`` (all of them by default) stacked in one C-contiguous array,
        whatever the layout of each (a Fortran-order result would send the GEMMs down another BLAS path, with
        other roundings). In this run's scratch: a new array's page faults cost G4's LSTM 7 ms a call for its
        stacked U, W and b (24 MB in float32)."""
        gates = gates or self.order
        parts = [self.params[f"{kind}_{g}"] for g in gates]
        first = parts[0]  # every gate's parameter has its shape (checks.gated_inputs)
        out = self.scratch(f"stacked {kind} {''.join(gates)}", (len(parts) * first.shape[0],) + first.shape[1:])
        return np.concatenate(parts, out=out)

    def prepare(self) -> None:
        T, B, H = self.T, self.B, self.H
        self.x2 = checks.contiguous(self.x).reshape(T * B, self.I)
        self.U = self.stack("U")
        self.hs = self.states("hs", (T + 1, B, self.P))
        self.hs[0] = self.state0["h0"]
        if self.split:
            self.parts = split.Parts(self)
            return
        self.a = self.scratch("a", (T, B, len(self.order) * H))
        self.gates = self.scratch("gates", self.a.shape)  # the gate values, apart from a: see lstm.py
        if self.projection_by_panels:  # packed from U's view: U^T is not made
            project_by_panels(self.x2, panels.pack(self.U.T), self.stack("b"), self.a.reshape(T * B, -1))
        else:
            project(self.x2, self.U, self.stack("b"), self.a.reshape(T * B, -1))

    def forward(self) -> None:
        if self.split:
            self.parts.forward()
        else:
            self.kernel.recur(self)

    def outputs(self) -> Arrays:
        """Every state at every step: h from hs, c from cs (the states' arrays are named after them)."""
        return {key: getattr(self, key + "s")[1:] for key in self.kernel.entry.states}

    def backward(self, direct: np.ndarray, gc: np.ndarray | None = None) -> Arrays:
        """Every gradient from dL/dh_t (direct, (T, B, P)) and, for the LSTMs, dL/dc_t (gc (T, B, H) or none)."""
        if self.split:
            return self.parts.backward(direct, gc)
        if self.lstm and gc is None:
            gc = np.zeros((self.T, self.B, self.H), self.dtype)  # the cell state's cotangent: none given, zero
        return self.gradients(self.kernel.recur_back(self, direct, gc))

    def gradients(self, deltas: Deltas) -> Arrays:
        """Every gradient from the cell's deltas: for each block of gates, one GEMM each for dU, dW and its
        share of dx (input_side, recurrent_side)."""
        T, B, H = self.T, self.B, self.H
        grads: Arrays = {**deltas.extra, **deltas.states}
        gx = None
        for block in deltas.blocks:
            first, width = self.order.index(block.gates[0]) * H, len(block.gates) * H
            U = self.U[first:first + width]  # the block's rows of the stacked U (C-contiguous, no copy)
            part, gU = input_side(self.x2, U, block.inputs.reshape(T * B, width))
            gW = recurrent_side(block.previous.reshape(T * B, block.previous.shape[2]),
                                block.recurrent.reshape(T * B, width))
            gx = part if gx is None else gx + part
            for k, g in enumerate(block.gates):
                grads[f"U_{g}"], grads[f"W_{g}"] = gU[k * H:(k + 1) * H], gW[k * H:(k + 1) * H]
        for k, g in enumerate(self.order):
            grads[f"b_{g}"] = deltas.bias[k * H:(k + 1) * H]
        grads["x"] = gx.reshape(T, B, self.I)
        return grads

    def zeros(self) -> Arrays:
        """Every gradient, zero (T = 0 or B = 0)."""
        grads = {"x": np.zeros(self.x.shape, self.dtype)}
        grads.update({k: np.zeros(v.shape, self.dtype) for k, v in {**self.state0, **self.params}.items()})
        return grads

    # -- one run of a variant (variant_stack.Stack) ------------------------------------------------------
    def set_input(self, x: np.ndarray) -> None:
        self.x = x

    def run(self) -> None:
        self.prepare()
        self.forward()


def _choose(cell, activation, layers, bidirectional, lengths, padding) -> tuple[cells.Kernel, str, dict | None]:
    """(the cell's kernel, activation, the variant keywords), each keyword checked by the one rule of every path
    (checks.choice, checks.count, checks.flag); the keywords are None for one forward layer over full
    sequences (the plain contract). ``activation`` is checked for every cell, though only Elman's reads it."""
    kernel = cells.kernel(cell)
    if (lengths is None and bidirectional is False and type(layers) is int and layers == 1 and type(padding) is str
            and padding == "zero" and type(activation) is str and activation in checks.ACTIVATIONS):
        return kernel, activation, None  # the plain contract's defaults, as the checks below would pass them
    activation = checks.choice("activation", activation, checks.ACTIVATIONS)
    layers = checks.count("layers", layers)
    bidirectional = checks.flag("bidirectional", bidirectional)
    padding = checks.choice("padding", padding, checks.PADDING)
    if layers == 1 and not bidirectional and lengths is None:
        if padding != "zero":
            raise ValueError(f"padding={padding!r} applies to runs with lengths; none were given")
        return kernel, activation, None
    return kernel, activation, {"layers": layers, "bidirectional": bidirectional, "lengths": lengths,
                                "padding": padding}


def forward(cell: str, x: np.ndarray, state0: Mapping, params: Mapping | None = None, *,
            activation: str = "tanh", layers: int = 1, bidirectional: bool = False, lengths: np.ndarray | None = None,
            padding: str = "zero", **named: np.ndarray) -> Arrays:
    """The states at every step: {"h": (T, B, H)} and, for the LSTMs, {"c": (T, B, H)}.

    ``params`` are the canonical per-gate parameters (U_k, W_k, b_k for each gate k, and the cell's own, such
    as b_hn), as a dict or as named arguments; ``activation`` applies to the Elman cell only.

    A variant (``layers`` > 1, ``bidirectional``, or ``lengths`` int (B,) with ``padding`` "zero" or
    "carry") follows the suite's variant contract instead (:mod:`rnnspec.kernels.cpu.variants`): it returns
    {"h": (T, B, D * H), "h_n" (, "c_n")}, the last layer's outputs and the final states.
    """
    params = checks.one_params_form(params, named)
    kernel, activation, variant = _choose(cell, activation, layers, bidirectional, lengths, padding)
    if variant is not None:
        from rnnspec.kernels.cpu import variants

        return variants.forward(kernel.name, x, state0, params, activation=activation, **variant)
    return kernel.forward(x, state0, params, activation)


def plain_forward(kernel: cells.Gated, x, state0, params) -> Arrays:
    """forward of a gated cell over full sequences, one layer (the plain contract)."""
    call = _Call(kernel, checks.gated_inputs(kernel.name, x, state0, params))
    if not call.empty and not call.by_rows("forward"):
        at_once = kernel.forward_at_once(call) if call.at_once() else None
        if at_once is not None:
            return at_once
        # one run: its states' arrays are the results (run.outputs), new ones, not scratch (copying G4's LSTM
        # states out of scratch cost 5 ms a call)
        run = _Run(kernel.name, x, state0, params, call=call)
        with run.threads():
            run.prepare()
            run.forward()
        return run.outputs()
    run = _Run(kernel.name, x, state0, params, private=True, call=call)
    out = one_block({k: (run.T, run.B, run.width(k)) for k in kernel.entry.states}, run.dtype, run.empty)
    if not run.empty:  # each half writes its rows of out, in its own thread
        rows.run(_states, [(half, {k: v[:, part] for k, v in out.items()}) for half, part in run.halves()])
    return out


def one_block(shapes: Mapping[str, tuple[int, ...]], dtype: np.dtype, zero: bool = False) -> Arrays:
    """New arrays of these shapes, by their names, each a view of one new allocation (zeros where ``zero``). A
    call's results leave it this way: filling two new (100, 32, 128) float32 arrays (the LSTM's G2 h and c) took
    0.83 ms, one block holding both 0.15 ms, and (100, 64, 256) 1.79 against 0.52 ms, on the 2-core VM (the
    allocator hands back the memory of one freed block, its pages already mapped; benchmarks/cpu_issue37/README.md).
    The block lives while any of its views does; once none does, the next call's results may take it
    (scratch.result_block)."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    block = result_block((sum(sizes.values()),), dtype, zero)
    arrays, start = {}, 0
    for name, shape in shapes.items():
        arrays[name] = block[start:start + sizes[name]].reshape(shape)
        start += sizes[name]
    return arrays


def _states(run: _Run, out: Arrays) -> None:
    """Runs ``run`` forward and writes its states at every step into ``out``'s arrays, by their names."""
    with run.threads():
        run.prepare()
        run.forward()
    for key, states in run.outputs().items():
        out[key][...] = states


def backward(cell: str, x: np.ndarray, state0: Mapping, params: Mapping | None = None,
             cotangents: Mapping | None = None, *, activation: str = "tanh", layers: int = 1,
             bidirectional: bool = False, lengths: np.ndarray | None = None, padding: str = "zero",
             **named: np.ndarray) -> Arrays:
    """The VJP for cotangents {"h": (T, B, H)} (and, for the LSTMs, optionally "c"): gradients of x, every
    initial state and every parameter, named as the inputs are. A variant (see :func:`forward`) takes
    cotangents on any of "h", "h_n", "c_n"."""
    params = checks.one_params_form(params, named)
    kernel, activation, variant = _choose(cell, activation, layers, bidirectional, lengths, padding)
    if variant is not None:
        from rnnspec.kernels.cpu import variants

        return variants.backward(kernel.name, x, state0, params, cotangents, activation=activation, **variant)
    return kernel.backward(x, state0, params, cotangents, activation)


def plain_backward(kernel: cells.Gated, x, state0, params, cotangents) -> Arrays:
    """backward of a gated cell (the plain contract)."""
    run = _Run(kernel.name, x, state0, params, private=True)
    given = checks.gated_cotangents(run.cell, cotangents, run.dtype, run.T, run.B, run.H, run.P)
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
    kernel, activation, variant = _choose(cell, activation, layers, bidirectional, lengths, padding)
    if variant is not None:
        from rnnspec.kernels.cpu import variants

        return variants.loss(kernel.name, x, state0, params, targets, activation=activation, **variant)
    return kernel.loss(x, state0, params, targets, activation)


def plain_loss(kernel: cells.Gated, x, state0, params, targets) -> tuple[np.generic, Arrays]:
    """loss of a gated cell (the plain contract)."""
    run = _Run(kernel.name, x, state0, params, head=True, private=True)
    y = checks.targets_arg(targets, run.T, run.B, run.params["V"].shape[0])
    if run.empty:
        return run.dtype.type(0), run.zeros()
    if run.by_rows("train"):
        halves = rows.run(_loss, [(half, y[:, part]) for half, part in run.halves()])
        return halves[0][0] + halves[1][0], rows.join([grads for _, grads in halves], rows.GRADIENTS)
    return _loss(run, y)


def _loss(run: _Run, y: np.ndarray) -> tuple[np.generic, Arrays]:
    if run.at_once():
        at_once = run.kernel.loss_at_once(run, y)
        if at_once is not None:
            return at_once
    V, c = run.params["V"], run.params["c"]
    with run.threads():
        run.prepare()
        run.forward()
        value, gV, gc, direct = head_kernel(run.hs, checks.contiguous(V), transposed(V),
                                            checks.contiguous(c), checks.contiguous(y).reshape(-1), run.one)
        grads = run.backward(direct)
    grads.update(V=gV, c=gc)
    return run.dtype.type(value), grads


# every cell's kernel module imported now, while rnnspec.kernels is imported (each one imports this one's
# neighbours, cells.py and loops.py, never this module at its import: see cells.py)
CELLS = cells.names()
