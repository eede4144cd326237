"""PaddlePaddle (paddle.nn): SimpleRNN, LSTM (with and without ``proj_size``), GRU; weights as
``dict(layer.named_parameters())``, which for these cells are PyTorch's names and shapes.

``weight_ih_l0`` (G·H, I) and ``weight_hh_l0`` (G·H, H) stack the gates along rows, nn.LSTM in the order i, f, g,
o (LSTMCell's chunks 0, 1, 2, 3 are i, f, the candidate, o) and nn.GRU in r, z, n (GRUCell: r, z, c, with
c = tanh(x_c + r * h_c), h_c = W_hc h + b_hc: the reset-after GRU); ``bias_ih_l0`` and ``bias_hh_l0`` (G·H,)
add up to the canonical bias, except in the GRU's n block, where they are b_n and b_hn. The packing is
therefore PyTorch's (:mod:`rnnspec.spec.conventions.pytorch`), written once there and read here; what differs
is the projected LSTM: Paddle's LSTMCell computes ``h = matmul(h, weight_ho)`` with ``weight_ho`` (H, P), the
transposed W_hr, held by the cell (``named_parameters()`` calls it ``0.cell.weight_ho``) and not exposed as
``weight_hr_l0``. This layout is one layer and direction; each run of a stacked or bidirectional module is
the cell ``module[l].cell`` (``cell_fw`` / ``cell_bw`` when bidirectional), whose ``weight_ih``, ``weight_hh``,
``bias_ih``, ``bias_hh`` (and ``weight_ho``) are the fused kernel's weights: the module's own ``weight_*_l{l}``
attributes are misnamed once the projection is there (see docs/mlx-paddle.md). Inputs are batch-major by
default (``time_major=False``).
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions import pytorch
from rnnspec.spec.conventions._layout import Combine

NAME = "PaddlePaddle"
LAYERS = {"elman": "nn.SimpleRNN", "lstm": "nn.LSTM", "gru-reset-after": "nn.GRU",
          "lstm-proj": "nn.LSTM(proj_size=P)"}
CANNOT = {"lstm-peephole": "paddle.nn.LSTM has no peepholes (ONNX's P)",
          "lstm-coupled": "paddle.nn.LSTM has no coupled input and forget gates (ONNX's input_forget)",
          "gru-reset-before": "paddle.nn.GRU applies the reset gate after the recurrent product "
                              "(r * (W_hc h + b_hc)); no Paddle RNN layer computes W_n (r * h)",
          "mgu": "PaddlePaddle has no minimal gated unit layer",
          "mgu-flax": "PaddlePaddle has no minimal gated unit layer"}
#: the projection's name for layer 0, one direction (PyTorch's name for it, and Paddle's)
PROJECTION = {"weight_hr_l0": "0.cell.weight_ho"}


def to(cell: str, params: dict) -> dict[str, np.ndarray]:
    out = pytorch.to(cell, params)
    if cell == "lstm-proj":
        out[PROJECTION["weight_hr_l0"]] = out.pop("weight_hr_l0").T.copy()
    return out


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    weights = dict(weights)
    if cell == "lstm-proj":
        weights["weight_hr_l0"] = np.asarray(weights.pop(PROJECTION["weight_hr_l0"])).T.copy()
    return pytorch.from_(cell, weights, combine)
