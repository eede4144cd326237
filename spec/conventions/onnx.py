"""ONNX: the RNN, LSTM and GRU operators (one direction, ``layout`` 0: time-major).

``W`` (1, G·H, I) and ``R`` (1, G·H, H) stack the gates along rows, LSTM in the order i, o, f, c and
GRU in z, r, h; ``B`` (1, 2·G·H) is ``Wb`` then ``Rb``, which add up to the canonical bias, except for
the GRU with ``linear_before_reset=1`` (gru-reset-after), whose h blocks are b_n (Wbh) and b_hn (Rbh).
``linear_before_reset=0`` is gru-reset-before. The LSTM's peepholes ``P`` (1, 3·H), in the order i, o, f,
are the cell ``lstm-peephole``'s P_i, P_o, P_f; the plain LSTM has none (absent, zero).
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions._layout import Combine, combine_stacked, split_stacked, stack, unstack

NAME = "ONNX"
LAYERS = {"elman": "RNN", "lstm": "LSTM", "gru-reset-after": "GRU(linear_before_reset=1)",
          "gru-reset-before": "GRU(linear_before_reset=0)", "lstm-peephole": "LSTM with P"}
ORDER = {"elman": "", "lstm": "iofg", "gru-reset-after": "zrn", "gru-reset-before": "zrn", "lstm-peephole": "iofg"}
#: the peepholes' order in P
PEEPHOLES = "iof"
CANNOT: dict[str, str] = {"lstm-proj": "ONNX's LSTM operator has no projection of its output (PyTorch's proj_size)"}
#: the operator and its attributes for each cell
OPERATORS = {"elman": ("RNN", {}), "lstm": ("LSTM", {}), "lstm-peephole": ("LSTM", {}),
             "gru-reset-after": ("GRU", {"linear_before_reset": 1}),
             "gru-reset-before": ("GRU", {"linear_before_reset": 0})}
_KEEP = {"gru-reset-after": {"n": ("b_n", "b_hn")}}


def to(cell: str, params: dict) -> dict[str, np.ndarray]:
    order = ORDER[cell]
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
    return out
