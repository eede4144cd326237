"""Keras 3: SimpleRNN, LSTM, GRU (``reset_after=True`` and ``False``), weights as ``layer.get_weights()``.

``kernel`` (I, G·H) and ``recurrent_kernel`` (H, G·H) are the transposed stacks, gates along columns:
LSTM i, f, c, o (c is the candidate, rnnspec's g), GRU z, r, h (h is rnnspec's n). One ``bias``
(G·H,), except the reset-after GRU's, which is (2, 3·H): an input row and a recurrent row that add up
to the canonical bias, except in the h block, where they are b_n and b_hn. Inputs are batch-major.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions._layout import Combine, combine_stacked, split_stacked, stack, unstack

NAME = "Keras"
LAYERS = {"elman": "SimpleRNN", "lstm": "LSTM", "gru-reset-after": "GRU(reset_after=True)",
          "gru-reset-before": "GRU(reset_after=False)"}
ORDER = {"elman": "", "lstm": "ifgo", "gru-reset-after": "zrn", "gru-reset-before": "zrn"}
CANNOT: dict[str, str] = {"lstm-peephole": "Keras's LSTM has no peepholes (ONNX's P)",
                          "lstm-proj": "Keras's LSTM has no projection of its output (PyTorch's proj_size)"}
#: ``layer.set_weights`` takes them in this order
WEIGHTS = ("kernel", "recurrent_kernel", "bias")
_KEEP = {"n": ("b_n", "b_hn")}


def to(cell: str, params: dict) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    if cell == "gru-reset-after":
        bias = np.stack(split_stacked(params, order, _KEEP))
    else:
        bias = stack(params, "b", order)
    return {"kernel": stack(params, "U", order).T.copy(), "recurrent_kernel": stack(params, "W", order).T.copy(),
            "bias": bias}


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    out = {**unstack(np.asarray(weights["kernel"]).T, "U", order),
           **unstack(np.asarray(weights["recurrent_kernel"]).T, "W", order)}
    if cell == "gru-reset-after":
        out.update(combine_stacked(weights["bias"][0], weights["bias"][1], order, combine, _KEEP))
    else:
        out.update(unstack(weights["bias"], "b", order))
    return out
