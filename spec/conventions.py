"""Framework layouts of the canonical per-gate parameters, written once (PyTorch's, for now).

Canonical: per gate k, ``U_k`` (H, I), ``W_k`` (H, H), ``b_k`` (H,), and the GRU's ``b_hn``.
PyTorch stacks the gates along rows in its own order (nn.LSTM: i, f, g, o; nn.GRU: r, z, n) and has
two biases per gate, ``bias_ih`` and ``bias_hh``, whose sum is the canonical bias, except for the
GRU's n gate, where ``bias_hh``'s n block is b_hn, inside the reset product. A canonical bias is
split at random between the two (deterministically per value), so that an implementation that
drops one of them fails.
"""

from __future__ import annotations

import zlib

import numpy as np

#: the gate order of each cell's stacked PyTorch weights ("" for the one-gate Elman cell)
TORCH_GATES = {"elman": "", "lstm": "ifgo", "gru-reset-after": "rzn"}


def _names(cell: str, what: str) -> list[str]:
    gates = TORCH_GATES[cell]
    return [f"{what}_{g}" for g in gates] if gates else [what]


def split_bias(bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A random split ``bias = first + second``, the same for the same values (a call must be deterministic)."""
    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(bias).tobytes()))
    first = rng.standard_normal(bias.shape).astype(bias.dtype)
    return first, (bias - first).astype(bias.dtype)


def to_torch(cell: str, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` of nn.RNN / nn.LSTM / nn.GRU."""
    if cell not in TORCH_GATES:
        raise ValueError(f"PyTorch has no layer for cell {cell!r} (it has {sorted(TORCH_GATES)}; its nn.GRU is "
                         "gru-reset-after, and no PyTorch layer applies the reset gate before W_n)")
    ih, hh = [], []
    for gate, name in zip(TORCH_GATES[cell] or "-", _names(cell, "b")):
        if gate == "n":  # the GRU's n gate: b_n outside, b_hn inside the reset product
            ih.append(params["b_n"])
            hh.append(params["b_hn"])
        else:
            first, second = split_bias(np.asarray(params[name]))
            ih.append(first)
            hh.append(second)
    stack = lambda what: np.concatenate([np.asarray(params[n]) for n in _names(cell, what)])
    return {"weight_ih_l0": stack("U"), "weight_hh_l0": stack("W"), "bias_ih_l0": np.concatenate(ih),
            "bias_hh_l0": np.concatenate(hh)}


def from_torch_gradients(cell: str, grads: dict[str, np.ndarray], hidden: int) -> dict[str, np.ndarray]:
    """Canonical parameter gradients from the gradients of PyTorch's stacked parameters.

    A canonical bias b_k = bias_ih_k + bias_hh_k has the gradient of either; the GRU's b_n has
    bias_ih's n block, b_hn bias_hh's."""
    out = {}
    gates = TORCH_GATES[cell] or "-"
    for n, gate in enumerate(gates):
        rows = slice(n * hidden, (n + 1) * hidden)
        suffix = f"_{gate}" if gate != "-" else ""
        out["U" + suffix] = grads["weight_ih_l0"][rows]
        out["W" + suffix] = grads["weight_hh_l0"][rows]
        out["b" + suffix] = grads["bias_ih_l0"][rows]
        if gate == "n":
            out["b_hn"] = grads["bias_hh_l0"][rows]
    return out
