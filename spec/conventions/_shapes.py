"""Checking a weight set against the shapes its cell's parameters imply, before any packing reads it.

The expected shapes are not written here: the canonical ones are the cell's parameters' shapes (``Var.shape``,
size names such as ``("H", "I")``), and a framework's are what its packing (``to``) makes of canonical
parameters of those shapes. Every axis of either is linear in the sizes, ``c + sum_s a_s * s`` (``4·H``;
ONNX's leading 1), so the coefficients are read by packing zeros: once with every size 0, once per size
with that size 1. The sizes of a given weight set are read from the first axis that is one size alone
(coefficient 1, no constant: ``weight_hh_l0``'s second axis is H); every axis of every key is then
compared with what those sizes imply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache

import numpy as np

#: a packing: (cell, canonical parameters) -> the framework's weights (nested for Flax)
Packing = Callable[[str, dict], Mapping]
#: an axis as a linear form of the sizes: (constant, ((size name, coefficient), ...))
Form = tuple[int, tuple[tuple[str, int], ...]]


class ConversionError(ValueError):
    """A conversion that cannot be made; the message says why."""


def flat(weights: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"ii": {"kernel": k}}`` as ``{"ii/kernel": k}`` (Flax's nesting; other layouts are flat already)."""
    out: dict[str, object] = {}
    for name, value in weights.items():
        if isinstance(value, Mapping):
            out.update(flat(value, f"{prefix}{name}/"))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _shape(value: object) -> tuple[int, ...]:
    return tuple(int(n) for n in np.shape(value))


def _cell(cell: str):
    from rnnspec.derivations.registry import cell as registered_cell

    return registered_cell(cell, head=None)


def _size_names(cell: str) -> tuple[str, ...]:
    """The sizes the step parameters' shapes are written in (I, H; P for the LSTM with a projection)."""
    names = {n for v in _cell(cell).params for n in v.shape}
    return tuple(n for n, _ in _cell(cell).sizes if n in names)


def _canonical(cell: str, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    return {v.key: np.zeros(tuple(sizes[n] for n in v.shape)) for v in _cell(cell).params}


@cache
def forms(cell: str, packing: Packing | None) -> dict[str, tuple[Form, ...]]:
    """Every key's axes as linear forms of the sizes: the canonical layout's (``packing`` None) or the packing's."""
    names = _size_names(cell)

    def shapes(sizes: dict[str, int]) -> dict[str, tuple[int, ...]]:
        params = _canonical(cell, sizes)
        return {k: _shape(v) for k, v in flat(params if packing is None else packing(cell, params)).items()}

    zero = shapes(dict.fromkeys(names, 0))
    unit = {s: shapes({**dict.fromkeys(names, 0), s: 1}) for s in names}
    return {k: tuple((c, tuple((s, unit[s][k][axis] - c) for s in names if unit[s][k][axis] != c)) for axis, c in
                     enumerate(base)) for k, base in zero.items()}


def _value(form: Form, sizes: dict[str, int]) -> int:
    constant, terms = form
    return constant + sum(a * sizes[s] for s, a in terms)


def _text(form: Form) -> str:
    """``4·H``, ``I``, ``1``, ``H + 2`` (never needed so far, but any linear form reads)."""
    constant, terms = form
    parts = [s if a == 1 else f"{a}·{s}" for s, a in terms]
    if constant or not parts:
        parts.append(str(constant))
    return " + ".join(parts)


def _symbolic(axes: tuple[Form, ...]) -> str:
    return "(" + ", ".join(_text(f) for f in axes) + ("," if len(axes) == 1 else "") + ")"


def check(cell: str, weights: Mapping, packing: Packing | None, what: str, allowed: tuple[str, ...] = (),
          rename: Callable[[str], str] = str) -> None:
    """ConversionError unless ``weights`` has exactly the keys of ``cell``'s layout (``packing``'s, or the
    canonical parameters' when it is None; ``allowed`` keys are ignored) with the shapes of one set of sizes.

    ``what`` names the argument in the message ("the lstm weights of PyTorch's nn.LSTM"); ``rename`` gives a
    key as the caller wrote it (a layer's weights are checked as layer 0's)."""
    if not isinstance(weights, Mapping):
        raise ConversionError(f"{what} must be a dict of arrays, got {type(weights).__name__}")
    expected = forms(cell, packing)
    found = {k: v for k, v in flat(weights).items() if k not in allowed}
    missing = [rename(k) for k in expected if k not in found]
    unexpected = [rename(k) for k in found if k not in expected]
    problems = []
    if missing:
        problems.append(f"lack {missing}")
    if unexpected:
        problems.append(f"have unexpected keys {unexpected}")
    shapes = {k: _shape(found[k]) for k in expected if k in found}
    sizes, read_from = {}, []
    for size in _size_names(cell):
        for k, axes in expected.items():
            axis = next((n for n, f in enumerate(axes) if f == (0, ((size, 1),))), None)
            if axis is not None and k in shapes and len(shapes[k]) == len(axes):
                sizes[size] = shapes[k][axis]
                read_from.append(f"{size} = {sizes[size]} from {rename(k)}'s axis {axis}")
                break
    wrong = []
    for k, shape in shapes.items():
        axes = expected[k]
        known = all(s in sizes for f in axes for s, _ in f[1])
        want = tuple(_value(f, sizes) for f in axes) if known else None
        if len(shape) != len(axes) or (known and shape != want):
            expected_text = (f"{want} = " if known else "") + _symbolic(axes)
            wrong.append(f"{rename(k)} has shape {shape}, expected {expected_text}")
    if wrong:
        problems.append("; ".join(wrong) + (f" (sizes read as {', '.join(read_from)})" if read_from else ""))
    if problems:
        keys = f"; expected keys {[rename(k) for k in expected]}" if missing or unexpected else ""
        raise ConversionError(f"{what} do not fit: " + "; ".join(problems) + keys)
