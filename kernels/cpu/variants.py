"""Stacked, bidirectional and variable-length runs of every cell on the CPU kernels.

The contract is the suite's (README, "Variants"): ``x`` (T, B, I); ``lengths`` int (B,) or None;
``state0["h0"]`` (and the LSTM's ``"c0"``) (B, H) for one forward layer, else (L * D, B, H) indexed
layer * D + direction; parameters named per layer and direction with PyTorch's suffixes
(``U_i_l1_reverse``; a run of one forward layer keeps the plain names), layer l > 0 reading D * H
features. ``forward`` returns ``h`` (T, B, D * H), the last layer's outputs laid out [forward | reverse],
and the final states ``h_n`` (and ``c_n``) shaped as ``h0``.

The arguments are checked, and every run built, by :class:`variant_stack.Stack`. How each piece is computed:

- Rows are sorted by length, longest first, so that the rows still running at step t are a prefix
  (``active[t]``) in either direction; a row past its end holds its state, s_t = s_{t-1}, inside the
  cell's own loop (:func:`rnnspec.kernels.cpu.loops.hold`). The results are put back in the caller's order.
- The reverse direction is the same kernel over time reversed: its held steps come first and keep h0, so
  it starts at len_b - 1. Its outputs are reversed back.
- The final state of a direction is its state after its last step in its own order; holding makes that
  the last row of its states, whatever the length.
- Outputs y_t = v_t h_t: ``padding="zero"`` v_t = [t < len_b] (PyTorch's packed sequences, ONNX
  Runtime); ``padding="carry"`` (Keras masking) the forward direction repeats h at len_b - 1 (zeros
  when len_b = 0), and the reverse direction reports zeros at its held steps.
- The loss sums the head over the valid steps only. BPTT runs the layers top down, each layer's dL/dx
  (both directions summed) the cotangent of the outputs of the layer below.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rnnspec.kernels import checks
from rnnspec.kernels.cpu import rows
from rnnspec.kernels.cpu.loops import head_rows
from rnnspec.kernels.cpu.variant_stack import Stack
from rnnspec.kernels.cpu.work import flops

Arrays = dict[str, np.ndarray]


def _active(stack: Stack) -> np.ndarray:
    """active[t]: how many of the sorted rows are still running at step t (forward order)."""
    if stack.lengths is None:
        return np.full(stack.T, stack.B, np.int64)
    return np.count_nonzero(stack.lengths[None, :] > np.arange(stack.T)[:, None], axis=1).astype(np.int64)


def _flip(value: np.ndarray, direction: int) -> np.ndarray:
    return value[::-1] if direction else value


def run_forward(stack: Stack, x: np.ndarray) -> Arrays:
    """Every run, layer by layer, over the sorted rows: {"h", "h_n" (, "c_n")} in sorted order."""
    active, layer_in = _active(stack), stack.sort(x)
    for layer in range(stack.layers):
        ys = []
        for d in range(stack.D):
            run = stack.runs[layer * stack.D + d]
            run.set_input(_flip(layer_in, d))
            run.active = np.ascontiguousarray(_flip(active, d))
            run.run()
            y, shown = _flip(run.hs[1:], d), stack.shown(d)
            ys.append(y if shown is None else y * shown[:, :, None])
        layer_in = ys[0] if stack.D == 1 else np.concatenate(ys, axis=-1)
    out = {"h": layer_in}
    for key, name in (("h", "hs"), ("c", "cs"))[: len(stack.state_keys)]:
        finals = [getattr(run, name)[stack.T] for run in stack.runs]
        out[key + "_n"] = np.stack(finals) if stack.stacked else finals[0]
    return out


def run_backward(stack: Stack, g_h: np.ndarray | None, g_finals: Mapping[str, np.ndarray]) -> Arrays:
    """BPTT through the stack, top layer first, from cotangents on h and the final states (sorted rows)."""
    T, B, H, P = stack.T, stack.B, stack.H, stack.P
    grads: Arrays = {}
    starts = {key: [None] * len(stack.runs) for key in stack.state_keys}
    g_out = g_h
    for layer in reversed(range(stack.layers)):
        g_in = None
        for d in range(stack.D):
            index = layer * stack.D + d
            run = stack.runs[index]
            shown = stack.shown(d)
            if g_out is None:
                direct = np.zeros((T, B, P), stack.dtype)
            else:
                part = g_out[..., d * P:(d + 1) * P]
                # a fresh array in the run's time order: the final state's cotangent is added into it
                direct = np.array(_flip(part if shown is None else part * shown[:, :, None], d), order="C")
            finals = {k: v[index] if stack.stacked else v for k, v in g_finals.items()}
            if "h_n" in finals:
                direct[T - 1] += finals["h_n"]
            gc = None
            if "c_n" in finals:
                gc = np.zeros((T, B, H), stack.dtype)
                gc[T - 1] = finals["c_n"]
            got = run.backward(direct, gc)
            suffix = stack.suffix(layer, d)
            grads.update({k + suffix: v for k, v in got.items() if k not in ("x", *stack.state_keys)})
            for key in stack.state_keys:
                starts[key][index] = got[key]
            g_x = _flip(got["x"], d)
            g_in = g_x if g_in is None else g_in + g_x
        g_out = g_in
    grads["x"] = g_out
    for key, values in starts.items():
        grads[key] = np.stack(values) if stack.stacked else values[0]
    return grads


def run_loss(stack: Stack, x: np.ndarray, targets: np.ndarray) -> tuple[np.generic, Arrays]:
    """sum over the valid steps of -log softmax(V y_t + c)[targets_t], and every gradient (sorted rows)."""
    V, c = stack.params["V"], stack.params["c"]
    V = checks.array("V", V, 2)
    c = checks.array("c", c, 1)
    checks.same_dtype("x", stack.dtype, V=V, c=c)
    checks.shape("V", V, (V.shape[0], stack.D * stack.P), f"(K, D * {stack.kernel.entry.width})")
    checks.shape("c", c, (V.shape[0],), "(K,)", f" (K={V.shape[0]} from V)")
    y_true = stack.sort(checks.targets_arg(targets, stack.T, stack.B, V.shape[0]))
    outputs = run_forward(stack, x)
    h, mask = outputs["h"], stack.mask()
    rows = h.reshape(-1, h.shape[2]) if mask is None else h[mask]
    truth = y_true.reshape(-1) if mask is None else y_true[mask]
    one = stack.dtype.type(1)
    if rows.shape[0]:
        value, gV, gc, g_rows = head_rows(checks.contiguous(rows), checks.contiguous(V),
                                          checks.contiguous(V.T), checks.contiguous(c),
                                          checks.contiguous(truth), one)
    else:
        value, gV, gc, g_rows = one * 0, np.zeros(V.shape, stack.dtype), np.zeros(c.shape, stack.dtype), rows
    g_h = np.zeros(h.shape, stack.dtype)
    if mask is None:
        g_h.reshape(-1, h.shape[2])[:] = g_rows
    else:
        g_h[mask] = g_rows
    grads = run_backward(stack, g_h, {})
    grads.update(V=gV, c=gc)
    return stack.dtype.type(value), grads


def _batch_axis(stack: Stack, key: str) -> int | None:
    """The batch axis of a result (None for the parameters)."""
    if key in ("x", "h"):
        return 1
    if key[0] in "hc" and key[1:] in ("0", "_n"):
        return 1 if stack.stacked else 0
    return None


def _caller_order(stack: Stack, arrays: Arrays) -> Arrays:
    out = {}
    for key, value in arrays.items():
        axis = _batch_axis(stack, key)
        out[key] = value if axis is None else stack.unsort(value, axis)
    return out


def _cotangents(stack: Stack, cotangents) -> Arrays:
    """The checked cotangents {"h" (T, B, D * H), "h_n" (, "c_n") shaped as h0}, any subset, in sorted order."""
    finals = tuple(k[0] + "_n" for k in stack.state_keys)
    given = checks.named_arrays("cotangents", cotangents if cotangents is not None else {}, (), ("h", *finals),
                                stack.cell)
    expected = {"h": ((stack.T, stack.B, stack.D * stack.P), f"(T, B, D * {stack.kernel.entry.width})")}
    for key in finals:
        expected[key] = (stack.state0[key[0] + "0"].shape, "the shape of " + key[0] + "0")
    for key, value in given.items():
        value = checks.array(f"cotangents[{key!r}]", value, len(expected[key][0]))
        checks.same_dtype("x", stack.dtype, **{f"cotangents[{key!r}]": value})
        checks.shape(f"cotangents[{key!r}]", value, *expected[key])
        given[key] = stack.sort(value, _batch_axis(stack, key))
    return given


def _empty(stack: Stack) -> bool:
    return stack.T == 0 or stack.B == 0


def _zero_grads(stack: Stack, x: np.ndarray) -> Arrays:
    grads = {k: np.zeros(v.shape, stack.dtype) for k, v in stack.params.items() if k not in checks.HEAD_PARAMS}
    grads.update({k: np.zeros(v.shape, stack.dtype) for k, v in stack.state0.items()}, x=np.zeros(x.shape, stack.dtype))
    return grads


def _halves(stack: Stack, call, x, per_row: dict | None = None, phase: str = "train") -> list | None:
    """The call over each half of the caller's rows on two threads (rows.py), or None where rows.wanted
    says one thread: ``call(x, state0, lengths, per_row)`` with each argument's rows of that half. ``phase``:
    "forward", or "train" for a call with gradients (work.flops)."""
    first = stack.runs[0]
    gates = max(len(stack.kernel.entry.gates), 1)  # Elman: one
    K = checks.array("V", stack.params["V"], 2).shape[0] if stack.head else 0
    work = flops(phase, stack.T, stack.B, stack.I, stack.H, K, gates,
                 {"layers": stack.layers, "bidirectional": stack.D == 2}, stack.P)
    if not rows.wanted(stack.T, stack.B, gates * first.H * first.P * stack.dtype.itemsize, work):
        return None

    def cut(key: str, value: np.ndarray, part: slice) -> np.ndarray:
        axis = _batch_axis(stack, key)
        return value[(slice(None),) * (1 if axis is None else axis) + (part,)]  # targets: (T, B)

    return rows.run(call, [(x[:, part], {k: cut(k, v, part) for k, v in stack.state0.items()},
                            None if stack.lengths is None else stack.lengths[part],
                            {k: cut(k, v, part) for k, v in (per_row or {}).items()})
                           for part in rows.halves(stack.B)])


def forward(cell: str, x, state0, params, *, layers: int = 1, bidirectional: bool = False, lengths=None,
            padding: str = "zero", activation: str = "tanh") -> Arrays:
    """{"h": (T, B, D * H), "h_n" (, "c_n")}: the last layer's outputs and every run's final states."""
    options = {"layers": layers, "bidirectional": bidirectional, "padding": padding, "activation": activation}
    stack = Stack(cell, x, state0, params, lengths=lengths, head=False, **options)
    x = stack.x  # a plain ndarray (checks.array)
    if _empty(stack):
        out = {"h": np.zeros((stack.T, stack.B, stack.D * stack.P), stack.dtype)}
        return out | {k[0] + "_n": v.copy() for k, v in stack.state0.items()}
    halves = _halves(stack, lambda xs, s0, ln, _: forward(cell, xs, s0, params, lengths=ln, **options), x,
                     phase="forward")
    if halves:
        return rows.join(halves, {k: _batch_axis(stack, k) for k in halves[0]})
    return _caller_order(stack, run_forward(stack, x))


def backward(cell: str, x, state0, params, cotangents, *, layers: int = 1, bidirectional: bool = False,
             lengths=None, padding: str = "zero", activation: str = "tanh") -> Arrays:
    """The VJP for cotangents on any of "h", "h_n", "c_n": gradients of x, the initial states and every
    run's parameters, named as the inputs are."""
    options = {"layers": layers, "bidirectional": bidirectional, "padding": padding, "activation": activation}
    stack = Stack(cell, x, state0, params, lengths=lengths, head=False, **options)
    x = stack.x  # a plain ndarray (checks.array)
    given = _cotangents(stack, cotangents)
    halves = None if _empty(stack) else _halves(
        stack, lambda xs, s0, ln, cot: backward(cell, xs, s0, params, cot, lengths=ln, **options), x,
        dict(cotangents or {}))
    if halves:
        return rows.join(halves, {k: _batch_axis(stack, k) for k in halves[0] if _batch_axis(stack, k) is not None})
    if _empty(stack):
        grads = _zero_grads(stack, x)
        grads.update({k[0] + "0": v.copy() for k, v in given.items() if k != "h"})  # the final states are the initial
        return _caller_order(stack, grads)
    run_forward(stack, x)
    finals = {k: v for k, v in given.items() if k != "h"}
    return _caller_order(stack, run_backward(stack, given.get("h"), finals))


def loss(cell: str, x, state0, params, targets, *, layers: int = 1, bidirectional: bool = False, lengths=None,
         padding: str = "zero", activation: str = "tanh") -> tuple[np.generic, Arrays]:
    """sum over the valid steps t < len_b of -log softmax(V y_t + c)[targets_t], with y_t the last layer's
    outputs, and the gradient of every input (x, the initial states, every run's parameters, V and c)."""
    options = {"layers": layers, "bidirectional": bidirectional, "padding": padding, "activation": activation}
    stack = Stack(cell, x, state0, params, lengths=lengths, head=True, **options)
    x = stack.x  # a plain ndarray (checks.array)
    if not _empty(stack):
        y = checks.targets_arg(targets, stack.T, stack.B, checks.array("V", stack.params["V"], 2).shape[0])
        halves = _halves(stack, lambda xs, s0, ln, y: loss(cell, xs, s0, params, y["targets"], lengths=ln, **options),
                         x, {"targets": y})
        if halves:
            return halves[0][0] + halves[1][0], rows.join([grads for _, grads in halves],
                                                          {k: _batch_axis(stack, k) for k in halves[0][1]
                                                           if _batch_axis(stack, k) is not None})
    if _empty(stack):
        V = checks.array("V", stack.params["V"], 2)
        checks.targets_arg(targets, stack.T, stack.B, V.shape[0])
        grads = _zero_grads(stack, x)
        grads.update(V=np.zeros(V.shape, stack.dtype), c=np.zeros(stack.params["c"].shape, stack.dtype))
        return stack.dtype.type(0), grads
    value, grads = run_loss(stack, x, targets)
    return value, _caller_order(stack, grads)
