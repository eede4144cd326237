"""The checked arguments of one variant call (:mod:`variants`): every run, layer by layer and direction by
direction, built before any compiled code runs, and the batch's order by length."""

from __future__ import annotations

import numpy as np

from rnnspec.kernels import checks
from rnnspec.kernels.cpu import cells

Arrays = dict[str, np.ndarray]


class Stack:
    """The checked arguments of one variant call: every run (layer, direction) built and checked before
    any compiled code runs, and the batch's order by length."""

    def __init__(self, cell: str, x, state0, params, *, layers: int, bidirectional: bool, lengths, padding: str,
                 activation: str, head: bool) -> None:
        # the rules of the plain path's keywords (gated._choose), applied again for a direct caller
        self.kernel = cells.kernel(cell)
        self.cell = self.kernel.name
        self.layers = checks.count("layers", layers)
        self.D = 2 if checks.flag("bidirectional", bidirectional) else 1
        self.padding = checks.choice("padding", padding, checks.PADDING)
        checks.activation_code(activation)
        #: x as a plain ndarray (checks.array): what the runs read, and the caller's rows of each half
        self.x = x = checks.array("x", x, 3)
        self.T, self.B, self.I = x.shape
        self.dtype = x.dtype
        self.stacked = self.layers > 1 or self.D > 1
        self.lengths = _lengths(lengths, self.T, self.B)
        self.state_keys = tuple(f"{s}0" for s in self.kernel.entry.states)
        self.state0 = self._state0(state0)
        if not hasattr(params, "keys"):
            raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
        self.params = dict(params)
        self.head = head
        self._known_params()
        self.order = None if self.lengths is None else np.argsort(-self.lengths, kind="stable")
        if self.order is not None and np.array_equal(self.order, np.arange(self.B)):
            self.order = None
        self.sorted_state0 = {k: self.sort(v, 1 if self.stacked else 0) for k, v in self.state0.items()}
        self.runs = [self._build(layer, d, activation) for layer in range(self.layers) for d in range(self.D)]
        self.H = self.runs[0].H
        #: the width of each direction's outputs: the projection's P for lstm-proj, else H
        self.P = self.runs[0].P

    # -- checks -------------------------------------------------------------------------------------
    def suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "") if self.stacked else ""

    def where(self, layer: int, direction: int) -> str:
        return f"layer {layer}, {'reverse' if direction else 'forward'} direction" + \
            (f" (parameters ending {self.suffix(layer, direction)!r})" if self.stacked else "")

    def _state0(self, state0) -> dict:
        given = checks.named_arrays("state0", state0, self.state_keys, (), self.cell)
        runs = self.layers * self.D
        for key in self.state_keys:
            value = checks.array(f"state0[{key!r}]", given[key], 3 if self.stacked else 2)
            checks.same_dtype("x", self.dtype, **{f"state0[{key!r}]": value})
            if self.stacked and value.shape[:2] != (runs, self.B):
                raise ValueError(f"state0[{key!r}]: expected shape (L * D, B, H) with L * D = {runs} and "
                                 f"B = {self.B} (from x), got {value.shape}")
            given[key] = value
        return given

    def _base_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) parameter names of one run, before the suffix."""
        return self.kernel.required, self.kernel.optional

    def _known_params(self) -> None:
        required, optional = self._base_names()
        names = [n + self.suffix(layer, d) for layer in range(self.layers) for d in range(self.D)
                 for n in required + optional]
        unknown = [k for k in self.params if k not in names and k not in checks.HEAD_PARAMS]
        missing = [k for k in checks.HEAD_PARAMS if self.head and k not in self.params]
        if unknown or missing:
            problems = ([f"unexpected {unknown}"] if unknown else []) + ([f"missing {missing}"] if missing else [])
            raise ValueError(f"params: {' and '.join(problems)}; a run of {self.layers} layer(s) and {self.D} "
                             f"direction(s) of the {self.cell} cell takes {names}" + (" and V, c" if self.head else ""))

    def _build(self, layer: int, direction: int, activation: str):
        """One run's kernel object, its arguments checked (a placeholder input for layers above the first)."""
        required, optional = self._base_names()
        suffix = self.suffix(layer, direction)
        missing = [n + suffix for n in required if n + suffix not in self.params]
        if missing:
            raise ValueError(f"params: missing {missing} ({self.where(layer, direction)})")
        params = {n: self.params[n + suffix] for n in required + optional if n + suffix in self.params}
        index = layer * self.D + direction
        state0 = {k: v[index] if self.stacked else v for k, v in self.sorted_state0.items()}
        features = self.I if layer == 0 else self.D * self.runs_P
        # the run reads only x's shape and dtype until set_input gives it the (sorted) data: no memory
        x = np.broadcast_to(np.zeros((), self.dtype), (self.T, self.B, features))
        try:
            run = self.kernel.run(x, state0, params, activation, f"#{layer}.{direction}")
        except (TypeError, ValueError) as exc:
            reads = f"; layer {layer} reads the D * {self.kernel.entry.width} = {features} " \
                "features of the layer below" if layer else ""
            raise type(exc)(f"{self.where(layer, direction)}: {exc}{reads}") from None
        if layer == 0 and direction == 0:
            self.runs_H, self.runs_P = run.H, run.P
        elif (run.H, run.P) != (self.runs_H, self.runs_P):
            raise ValueError(f"{self.where(layer, direction)}: sizes (H, P) = {(run.H, run.P)} differ from layer "
                             f"0's {(self.runs_H, self.runs_P)}; every layer and direction shares them")
        return run

    # -- the batch's order ----------------------------------------------------------------------------
    def sort(self, value: np.ndarray, axis: int = 1) -> np.ndarray:
        return value if self.order is None else np.take(value, self.order, axis=axis)

    def unsort(self, value: np.ndarray, axis: int = 1) -> np.ndarray:
        if self.order is None:
            return value
        out = np.empty_like(value)
        index = [slice(None)] * value.ndim
        index[axis] = self.order
        out[tuple(index)] = value
        return out

    def mask(self) -> np.ndarray | None:
        """m[t, b] = [t < len_b] over the sorted rows; None without lengths."""
        if self.lengths is None:
            return None
        return np.arange(self.T)[:, None] < self.sort(self.lengths, 0)[None, :]

    def shown(self, direction: int) -> np.ndarray | None:
        """v[t, b] of y_t = v_t h_t in time order, in the dtype (None: every output is h_t)."""
        mask = self.mask()
        if mask is None:
            return None
        if self.padding == "carry" and not direction:
            mask = np.broadcast_to(self.sort(self.lengths, 0)[None, :] > 0, mask.shape)
        return mask.astype(self.dtype)


def _lengths(lengths, steps: int, batch: int) -> np.ndarray | None:
    """The lengths checked (not masked: a masked length would be read as its hidden value), as int64."""
    if lengths is None:
        return None
    lengths = checks.integers("lengths", lengths, f"integers, shape (B,)=({batch},)")
    checks.shape("lengths", lengths, (batch,), "(B,)")
    if lengths.size and (lengths.min() < 0 or lengths.max() > steps):
        raise ValueError(f"lengths: each must lie in [0, T={steps}], got values in [{lengths.min()}, {lengths.max()}]")
    return lengths.astype(np.int64)
