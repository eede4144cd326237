"""ONNX: the RNN, LSTM and GRU operators (one direction, ``layout`` 0: time-major).

``W`` (1, G·H, I) and ``R`` (1, G·H, H) stack the gates along rows, LSTM in the order i, o, f, c and
GRU in z, r, h; ``B`` (1, 2·G·H) is ``Wb`` then ``Rb``, which add up to the canonical bias, except for
the GRU with ``linear_before_reset=1`` (gru-reset-after), whose h blocks are b_n (Wbh) and b_hn (Rbh).
``linear_before_reset=0`` is gru-reset-before. The LSTM's peepholes ``P`` (1, 3·H), in the order i, o, f,
are the cell ``lstm-peephole``'s P_i, P_o, P_f; the plain LSTM has none (absent, zero).

``input_forget=1`` (the cell ``lstm-coupled``, f = 1 - i) makes the operator ignore the f blocks of W, R and B,
which it still requires in the i, o, f, c layout: this packing fills them with values drawn from a seed taken from
the parameters (a call is deterministic) rather than zeros, so a runtime that does not ignore them computes
sigmoid(a random pre-activation) for f, far from 1 - i, whatever the case; reading back drops them.
"""

from __future__ import annotations

import zlib

import numpy as np

from rnnspec.spec.conventions._layout import Combine, combine_stacked, split_stacked, stack, unstack

NAME = "ONNX"
LAYERS = {"elman": "RNN", "lstm": "LSTM", "gru-reset-after": "GRU(linear_before_reset=1)",
          "gru-reset-before": "GRU(linear_before_reset=0)", "lstm-peephole": "LSTM with P",
          "lstm-coupled": "LSTM(input_forget=1)"}
ORDER = {"elman": "", "lstm": "iofg", "gru-reset-after": "zrn", "gru-reset-before": "zrn", "lstm-peephole": "iofg",
         "lstm-coupled": "iofg"}
#: the gate blocks the operator ignores for a cell, filled with random values by ``to`` (see the docstring)
IGNORED = {"lstm-coupled": "f"}
#: the peepholes' order in P
PEEPHOLES = "iof"
CANNOT: dict[str, str] = {"lstm-proj": "ONNX's LSTM operator has no projection of its output (PyTorch's proj_size)"}
#: the operator and its attributes for each cell
OPERATORS = {"elman": ("RNN", {}), "lstm": ("LSTM", {}), "lstm-peephole": ("LSTM", {}),
             "lstm-coupled": ("LSTM", {"input_forget": 1}),
             "gru-reset-after": ("GRU", {"linear_before_reset": 1}),
             "gru-reset-before": ("GRU", {"linear_before_reset": 0})}
_KEEP = {"gru-reset-after": {"n": ("b_n", "b_hn")}}


def _ignored(cell: str, params: dict) -> dict[str, np.ndarray]:
    """Values for the ignored gates' U, W and b blocks: normal draws, shaped as the cell's i blocks, from a seed
    taken from the parameters' bytes."""
    seed = zlib.crc32(b"".join(np.ascontiguousarray(params[k]).tobytes() for k in sorted(params)))
    rng = np.random.default_rng(seed)
    return {f"{what}_{g}": rng.standard_normal(np.shape(params[f"{what}_i"])).astype(np.asarray(params["U_i"]).dtype)
            for g in IGNORED.get(cell, "") for what in "UWb"}


def to(cell: str, params: dict) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    params = {**params, **_ignored(cell, params)}
    wb, rb = split_stacked(params, order, _KEEP.get(cell))
    out = {"W": stack(params, "U", order)[None], "R": stack(params, "W", order)[None],
           "B": np.concatenate([wb, rb])[None]}
    if cell == "lstm-peephole":
        out["P"] = stack(params, "P", PEEPHOLES)[None]
    return out


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    wb, rb = np.split(np.asarray(weights["B"])[0], 2)
    out = {**unstack(weights["W"][0], "U", order), **unstack(weights["R"][0], "W", order),
           **combine_stacked(wb, rb, order, combine, _KEEP.get(cell))}
    if cell == "lstm-peephole":
        out.update(unstack(weights["P"][0], "P", PEEPHOLES))
    return {k: v for k, v in out.items() if k.rpartition("_")[2] not in IGNORED.get(cell, "")}
