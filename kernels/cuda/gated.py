"""Forward, VJP and softmax cross-entropy loss of the gated cells (LSTM, both GRUs) on NVIDIA GPUs.

    from rnnspec.kernels.cuda import forward, backward, loss
    forward("lstm", x, {"h0": h0, "c0": c0}, params)       # params: U_i, W_i, b_i, ..., as on the CPU

The API, semantics and checks of rnnspec.kernels.cpu.gated: the canonical per-gate parameters as a
dict or as named arguments, one float dtype, T = 0 or B = 0 defined, inputs never modified, bad
arguments named before anything is launched. Arguments may be NumPy arrays (results come back as
NumPy arrays) or CUDA device arrays (results stay on the device), as for the Elman kernels.

Everything parallel over time runs as GEMMs over the stacked gates (rnnspec.kernels.cuda.gemm): the
input projection a = x U^T + b over all T B rows before the recurrence; dx, dU, dW and the bias sums
after it. The recurrence is one launch per direction for all T steps
(rnnspec.kernels.cuda.gated_recurrence). No float atomics anywhere: results are bit-reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

import numpy as np

from rnnspec.kernels import checks
from rnnspec.kernels.checks import on_device
from rnnspec.kernels.cuda import host
from rnnspec.kernels.cuda.arrays import contiguous, copied_to_host, fresh_arrays, imported, scratch
from rnnspec.kernels.cuda.elman import softmax_cross_entropy, transpose
from rnnspec.kernels.cuda.gated_recurrence import (
    GATE_COUNT,
    GatedLayout,
    backward_recurrence,
    forward_recurrence,
    gated_plan,
)
from rnnspec.kernels.cuda.gemm import TILE, deltas_products_into, splits_for
from rnnspec.kernels.cuda.host import column_sums_into, product_into
from rnnspec.kernels.cuda.launches import launch
from rnnspec.kernels.numpy_compat import SIMULATED, cuda_module

cuda = cuda_module()

CELLS = tuple(GATE_COUNT)
#: forced layout choices (gated_plan's keywords) for tests and benchmarks
LAYOUT_OVERRIDE: dict = {}
_BLOCK = 8 if SIMULATED else 128  # threads per block of the elementwise kernels (each a Python thread simulated)


def gated_layout_for(cell: str, hidden: int, batch: int, dtype) -> GatedLayout:
    """The recurrence layout for these sizes: gated_plan's choice, or what LAYOUT_OVERRIDE forces."""
    return _planned(cell, hidden, batch, np.dtype(dtype).name, host.multiprocessors(),
                    tuple(sorted(LAYOUT_OVERRIDE.items())))


@cache
def _planned(cell: str, hidden: int, batch: int, dtype: str, multiprocessors: int, forced: tuple) -> GatedLayout:
    return gated_plan(cell, hidden, batch, dtype, multiprocessors, **dict(forced))


@cuda.jit
def _add_row(rows, row):
    """rows[n, j] += row[j], one thread per entry."""
    e = cuda.grid(1)
    if e < rows.size:
        n, j = e // rows.shape[1], e % rows.shape[1]
        rows[n, j] += row[j]


@cuda.jit
def _ones(out):
    """out[e] = 1 (the row that sums the deltas over T B rows by a GEMM)."""
    e = cuda.grid(1)
    if e < out.size:
        out[e] = 1


def _imported_dict(given):
    """The dict with each array viewed as a device array where it is one (a mapping check comes later)."""
    return {k: imported(v) for k, v in given.items()} if isinstance(given, Mapping) else given


class _Run:
    """One call's checked arguments on the device, its stacked parameters, and its scratch."""

    def __init__(self, cell: str, x, state0, params, head: bool = False) -> None:
        self.cell = checks.cell_name(cell, CELLS)
        x = imported(x)
        self.T, self.B, self.I, self.H, state0, params = checks.gated_args(
            cell, x, _imported_dict(state0), _imported_dict(params), head, device_ok=True)
        self.order = checks.GATED_CELLS[cell][0]
        self.G = len(self.order)
        self.lstm = "c0" in state0
        self.dtype = np.dtype(x.dtype)
        self.empty = self.T == 0 or self.B == 0
        self.to_host = any(not on_device(v) for v in (x, *state0.values(), *params.values()))
        self.x, self.state0, self.params = x, state0, params
        self.layout = gated_layout_for(cell, self.H, self.B, self.dtype)
        #: direction -> (kernel, blocks, threads, *arguments) of the recurrence launches made so far
        self.launches: dict = {}

    def out(self, value):
        return value.copy_to_host() if self.to_host else value

    def stacked(self, kind: str) -> object:
        """The parameters ``kind``_k of every gate k stacked along the first axis, C-contiguous on the device."""
        parts = [self.params[f"{kind}_{g}"] for g in self.order]
        if not any(on_device(p) for p in parts):
            return cuda.to_device(np.concatenate([np.ascontiguousarray(p) for p in parts]))
        out = scratch(f"stacked {kind}", (self.G * parts[0].shape[0], *parts[0].shape[1:]), self.dtype)
        for k, part in enumerate(parts):
            n = part.shape[0]
            out[k * n:(k + 1) * n].copy_to_device(contiguous(part))
        return out

    def initial(self, key: str, states) -> None:
        """Row 0 of states (T+1, B, H) = the initial state ``key``."""
        states[0].copy_to_device(contiguous(self.state0[key]))

    def forward(self, returned: bool) -> None:
        """The forward pass into self.hs (and self.cs): fresh arrays when ``returned``, else scratch."""
        T, B, H, G = self.T, self.B, self.H, self.G
        self.x_rows = contiguous(self.x).reshape(T * B, self.I)
        self.U, self.W = self.stacked("U"), self.stacked("W")
        self.a = scratch("gated a", (T * B, G * H), self.dtype)
        product_into(self.x_rows, self.U, self.a, trans_b=True, role="x U")
        launch(_add_row, math.ceil(self.a.size / _BLOCK), _BLOCK, self.a, self.stacked("b"))
        states = (T + 1, B, H)
        self.hs = cuda.device_array(states, self.dtype) if returned else scratch("gated h", states, self.dtype)
        self.initial("h0", self.hs)
        if self.lstm:
            self.cs = cuda.device_array(states, self.dtype) if returned else scratch("gated c", states, self.dtype)
            self.initial("c0", self.cs)
        else:
            self.cs = scratch("absent c", (1, 1, 1), self.dtype)
        self.gates = scratch("gate values", (T, B, G * H), self.dtype)
        self.aux = scratch("gated aux", (T, B, H), self.dtype)
        b_hn = contiguous(self.params["b_hn"]) if "b_hn" in self.params else scratch("absent b_hn", (1,), self.dtype)
        self._recurrence("forward", forward_recurrence, self.a.reshape(T, B, G * H), self.W, self.hs, self.cs,
                         self.gates, self.aux, b_hn)

    def _recurrence(self, direction: str, build, *args) -> None:
        """Launch the recurrence kernel of ``direction``, and keep the launch in self.launches (the GPU
        bench replays it to time the kernel alone)."""
        kernel = build(self.cell, self.H, self.layout, self.dtype.name)
        self.launches[direction] = (kernel, *self.layout.launch, *args)
        launch(kernel, *self.layout.launch, *args)

    def outputs(self) -> dict:
        out = {"h": self.out(self.hs[1:])}
        if self.lstm:
            out["c"] = self.out(self.cs[1:])
        return out

    def backward(self, direct, gc=None, extra: dict | None = None):
        """Every gradient from dL/dh_t (direct (T, B, H) on the device) and, for the LSTM, dL/dc_t (gc or
        None), in one fresh allocation with room for ``extra`` (name: shape) that the caller fills."""
        T, B, H, G, I = self.T, self.B, self.H, self.G, self.I
        shapes = {"x": (T * B, I), "h0": (B, H), **({"c0": (B, H)} if self.lstm else {}),
                  "U": (G * H, I), "W": (G * H, H), "b": (1, G * H)}
        after = self.cell == "gru-reset-after"
        if after:
            shapes["b_hn"] = (1, H)
        grads = fresh_arrays({**shapes, **(extra or {})}, self.dtype)
        WT = scratch("gated W transposed", (H, G * H), self.dtype)
        launch(transpose, (math.ceil(G * H / TILE), math.ceil(H / TILE)), (TILE, TILE), self.W, WT)
        deltas = scratch("gated deltas", (T, B, G * H), self.dtype)
        recurrent = scratch("gated recurrent deltas", (T, B, G * H), self.dtype) if after else deltas
        kept = scratch("gated kept", (B, H), self.dtype)
        carry_c = grads["c0"] if self.lstm else kept
        has_gc = gc is not None
        self._recurrence("backward", backward_recurrence, direct, gc if has_gc else direct, has_gc, WT, self.hs,
                         self.cs, self.gates, self.aux, deltas, recurrent, grads["h0"], carry_c, kept)
        rows = T * B
        d2, r2 = deltas.reshape(rows, G * H), recurrent.reshape(rows, G * H)
        previous = self.hs[:T].reshape(rows, H)
        dU, dW, multiprocessors = grads["U"], grads["W"], host.multiprocessors()
        if self.lstm and splits_for((dU.shape, dW.shape), rows, multiprocessors) == 1 and \
                splits_for((grads["x"].shape,), G * H, multiprocessors) == 1:  # dx, dU, dW in one launch
            deltas_products_into(d2, (self.U, grads["x"]), (self.x_rows, dU), (previous, dW))
            return self._bias_sums(grads, d2, r2)
        product_into(d2, self.U, grads["x"], role="dx")
        product_into(d2, self.x_rows, grads["U"], trans_a=True, role="dU")
        if self.cell == "gru-reset-before":  # W_n met r * h_{t-1}, not h_{t-1}
            product_into(d2[:, :2 * H], previous, grads["W"][:2 * H], trans_a=True, role="dW_rz")
            product_into(d2[:, 2 * H:], self.aux.reshape(rows, H), grads["W"][2 * H:], trans_a=True, role="dW_n")
        else:
            product_into(r2, previous, grads["W"], trans_a=True, role="dW")
        return self._bias_sums(grads, d2, r2)

    def _bias_sums(self, grads, d2, r2):
        """db (and the reset-after GRU's db_hn): the deltas summed over all T B rows, as a GEMM by a row of
        ones (split over blocks where T B is long); returns grads."""
        rows, H = d2.shape[0], self.H
        ones = scratch("ones", (1, rows), self.dtype)
        launch(_ones, math.ceil(rows / _BLOCK), _BLOCK, ones.reshape(rows))
        product_into(ones, d2, grads["b"], role="db")
        if self.cell == "gru-reset-after":
            product_into(ones, r2[:, 2 * H:], grads["b_hn"], role="db_hn")
        return grads

    def returned(self, grads) -> dict:
        """The gradients as the caller names them (x (T, B, I), U_k, W_k, b_k per gate), on the host in one
        transfer when any argument came from there."""
        stacked = copied_to_host(grads) if self.to_host else dict(grads)
        H = self.H
        out = {"x": stacked.pop("x").reshape(self.T, self.B, self.I)}
        U, W, b = stacked.pop("U"), stacked.pop("W"), stacked.pop("b").reshape(self.G * H)
        for k, g in enumerate(self.order):
            rows = slice(k * H, (k + 1) * H)
            out[f"U_{g}"], out[f"W_{g}"], out[f"b_{g}"] = U[rows], W[rows], b[rows]
        if "b_hn" in stacked:
            out["b_hn"] = stacked.pop("b_hn").reshape(H)
        out.update(stacked)
        return out

    def zeros(self) -> dict:
        """Every gradient, zero (T = 0 or B = 0)."""
        shapes = {"x": self.x.shape, **{k: v.shape for k, v in {**self.state0, **self.params}.items()}}
        return {k: self._zeros(s) for k, s in shapes.items()}

    def _zeros(self, shape):
        zeros = np.zeros(shape, self.dtype)
        return zeros if self.to_host else cuda.to_device(zeros)


@host.one_context_no_release_midway
def forward(cell: str, x, state0: Mapping, params: Mapping | None = None, **named) -> dict:
    """The states at every step: {"h": (T, B, H)} and, for the LSTM, {"c": (T, B, H)}."""
    run = _Run(cell, x, state0, checks.one_params_form(params, named))
    if run.empty:
        return {k: run._zeros((run.T, run.B, run.H)) for k in ("h", "c")[: 2 if run.lstm else 1]}
    run.forward(returned=True)
    return run.outputs()


@host.one_context_no_release_midway
def backward(cell: str, x, state0: Mapping, params: Mapping | None = None, cotangents: Mapping | None = None,
             **named) -> dict:
    """The VJP for cotangents {"h": (T, B, H)} (and, for the LSTM, optionally "c"): the gradients of x,
    every initial state and every parameter, named as the inputs are."""
    run = _Run(cell, x, state0, checks.one_params_form(params, named))
    given = checks.gated_cotangents(run.cell, _imported_dict(cotangents if cotangents is not None else {}), run.dtype,
                                    run.T, run.B, run.H, run.H, device_ok=True)
    run.to_host |= not all(on_device(v) for v in given.values())
    if run.empty:
        return run.zeros()
    run.forward(returned=False)
    gc = contiguous(given["c"]) if "c" in given else None
    return run.returned(run.backward(contiguous(given["h"]), gc))


@host.one_context_no_release_midway
def loss(cell: str, x, state0: Mapping, params: Mapping | None = None, targets=None, **named):
    """sum over t and batch of -log softmax(V h_t + c)[y_t], and the gradient of every input (x, the
    initial states, the cell's parameters, V and c). Returns (loss, grads)."""
    run = _Run(cell, x, state0, checks.one_params_form(params, named), head=True)
    V, c = run.params["V"], run.params["c"]
    K = V.shape[0]
    y = checks.targets_arg(checks.host(imported(targets)), run.T, run.B, K)
    if run.empty:
        return run.dtype.type(0), run.zeros()
    run.forward(returned=False)
    rows, H = run.T * run.B, run.H
    Vd, cd = contiguous(V), contiguous(c)
    hs = run.hs[1:].reshape(rows, H)
    residual = scratch("gated residual", (rows, K), run.dtype)
    product_into(hs, Vd, residual, trans_b=True, role="logits")
    losses = scratch("gated losses", (rows,), run.dtype)
    classes = scratch("gated targets", (rows,), np.int64)
    classes.copy_to_device(np.ascontiguousarray(y.reshape(rows)))
    launch(softmax_cross_entropy, math.ceil(rows / _BLOCK), _BLOCK, residual, cd, classes, losses)
    direct = scratch("gated direct", (rows, H), run.dtype)
    product_into(residual, Vd, direct, role="direct")
    grads = run.backward(direct.reshape(run.T, run.B, H), extra={"V": (K, H), "c": (K,)})
    product_into(residual, hs, grads["V"], trans_a=True, role="dV")
    column_sums_into(residual, grads["c"])
    value = run.dtype.type(np.sum(losses.copy_to_host(), dtype=run.dtype))
    return value, run.returned(grads)
