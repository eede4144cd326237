"""What every framework layout is built from: the canonical gates, stacking them, and splitting a bias.

A canonical bias ``b`` given to a two-bias framework is split as ``b = first + second`` with
``first = b * u``, ``u`` uniform in [-1.5, 2.5) per entry, drawn from a seed taken from the values
(a call must be deterministic). The split is exact: an entry whose two parts do not add back to
``b`` in floating point is drawn again (18% of draws), and after six draws (3e-5 of entries) is
split in halves. So a round trip canonical → framework → canonical is bit-exact, and a framework
that drops either bias, or uses one twice, computes something else.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from rnnspec import catalogue

#: each cell's gates, in rnnspec's canonical order ("" for the one-gate Elman cell), as the catalogue has them
GATES = {name: cell.gates for name, cell in catalogue.CELLS.items()}

#: how the parts of a split bias combine: the sum for weights, the first part for gradients
#: (d/db of f(first + second) is the gradient of either part)
Combine = Callable[[np.ndarray, np.ndarray], np.ndarray]


def add(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return first + second


def first_part(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return first


def gates(order: str) -> list[str]:
    """The gates of a stacking order; the Elman cell's one gate has no letter."""
    return list(order) or [""]


def key(what: str, gate: str) -> str:
    """The canonical name: ``U_i`` for LSTM's input gate, ``U`` for the Elman cell."""
    return f"{what}_{gate}" if gate else what


def stack(params: dict, what: str, order: str) -> np.ndarray:
    """The gates' ``what`` (U, W or b) stacked along the first axis in ``order``."""
    return np.concatenate([np.asarray(params[key(what, g)]) for g in gates(order)])


def unstack(stacked: np.ndarray, what: str, order: str, axis: int = 0) -> dict[str, np.ndarray]:
    """The inverse of :func:`stack` (along ``axis``): {canonical name: block}."""
    blocks = np.split(np.asarray(stacked), len(gates(order)), axis=axis)
    return {key(what, g): np.array(block) for g, block in zip(gates(order), blocks)}


def split_bias(bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``bias = first + second`` exactly, the parts random but the same for the same values."""
    bias = np.asarray(bias)
    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(bias).tobytes()))
    first = np.zeros_like(bias)
    todo = np.ones(bias.shape, dtype=bool)
    for _ in range(6):
        draw = bias * rng.uniform(-1.5, 2.5, bias.shape).astype(bias.dtype)
        first = np.where(todo, draw, first)
        todo &= (first + (bias - first)) != bias
        if not todo.any():
            break
    first = np.where(todo, bias / 2, first)
    todo &= (first + (bias - first)) != bias  # a subnormal odd entry: no split
    first = np.where(todo, np.zeros_like(bias), first)
    return first, bias - first


def split_stacked(params: dict, order: str, keep: dict[str, tuple[str, str]] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Two stacked biases whose per-gate sum is the canonical one; ``keep`` names gates whose two parts
    are canonical parameters of their own (the reset-after GRU's n gate: b_n and b_hn)."""
    keep = keep or {}
    firsts, seconds = [], []
    for gate in gates(order):
        if gate in keep:
            firsts.append(np.asarray(params[keep[gate][0]]))
            seconds.append(np.asarray(params[keep[gate][1]]))
        else:
            first, second = split_bias(params[key("b", gate)])
            firsts.append(first)
            seconds.append(second)
    return np.concatenate(firsts), np.concatenate(seconds)


def combine_stacked(first: np.ndarray, second: np.ndarray, order: str, combine: Combine,
                    keep: dict[str, tuple[str, str]] | None = None) -> dict[str, np.ndarray]:
    """The inverse of :func:`split_stacked`."""
    keep = keep or {}
    firsts = unstack(first, "b", order)
    seconds = unstack(second, "b", order)
    out = {}
    for gate in gates(order):
        name = key("b", gate)
        if gate in keep:
            out[keep[gate][0]], out[keep[gate][1]] = firsts[name], seconds[name]
        else:
            out[name] = np.array(combine(firsts[name], seconds[name]))
    return out
