"""PyTorch: nn.RNN, nn.LSTM, nn.GRU (one layer, one direction).

``weight_ih_l0`` (G·H, I) and ``weight_hh_l0`` (G·H, H) stack the gates along rows, nn.LSTM in the
order i, f, g, o and nn.GRU in r, z, n; ``bias_ih_l0`` and ``bias_hh_l0`` (G·H,) add up to the
canonical bias, except in the GRU's n block, where ``bias_ih``'s is b_n and ``bias_hh``'s is b_hn,
inside the reset product.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions._layout import Combine, combine_stacked, split_stacked, stack, unstack

NAME = "PyTorch"
LAYERS = {"elman": "nn.RNN", "lstm": "nn.LSTM", "gru-reset-after": "nn.GRU"}
ORDER = {"elman": "", "lstm": "ifgo", "gru-reset-after": "rzn"}
CANNOT = {"gru-reset-before": "nn.GRU applies the reset gate after the recurrent product (r * (W_n h + b_hn)); "
                              "no PyTorch layer computes W_n (r * h)"}
#: the GRU's n gate keeps its two biases apart: (canonical name of bias_ih's block, of bias_hh's)
_KEEP = {"gru-reset-after": {"n": ("b_n", "b_hn")}}


def to(cell: str, params: dict) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    bias_ih, bias_hh = split_stacked(params, order, _KEEP.get(cell))
    return {"weight_ih_l0": stack(params, "U", order), "weight_hh_l0": stack(params, "W", order),
            "bias_ih_l0": bias_ih, "bias_hh_l0": bias_hh}


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    return {**unstack(weights["weight_ih_l0"], "U", order), **unstack(weights["weight_hh_l0"], "W", order),
            **combine_stacked(weights["bias_ih_l0"], weights["bias_hh_l0"], order, combine, _KEEP.get(cell))}
