"""MLX (mlx.nn): RNN, LSTM, GRU, one layer, one direction; weights as ``dict(tree_flatten(layer.parameters()))``.

``nn.RNN``: ``Wxh`` (H, I) = U, ``Whh`` (H, H) = W, ``bias`` (H,) = b. ``nn.LSTM``: ``Wx`` (4·H, I) and ``Wh``
(4·H, H), the gates stacked along rows in the order i, f, g, o, and one ``bias`` (4·H,). ``nn.GRU`` is the
reset-after GRU (mlx 0.32.4's source: n = tanh(Wx_n x + b_n + r * (Wh_n h + bhn))): ``Wx`` (3·H, I) and ``Wh``
(3·H, H) stacked r, z, n, ``b`` (3·H,) = [b_r | b_z | b_n] on the input side, and ``bhn`` (H,) = b_hn inside the
reset product. One bias per gate, so nothing is split. Inputs are batch-major (N, L, D).

What MLX's layers cannot express: no reset-before GRU, no projection, no peepholes, no MGU (see CANNOT), and
neither ``num_layers``, ``bidirectional`` nor sequence lengths (no variant).
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions._layout import Combine, stack, unstack

NAME = "MLX"
LAYERS = {"elman": "nn.RNN", "lstm": "nn.LSTM", "gru-reset-after": "nn.GRU"}
ORDER = {"elman": "", "lstm": "ifgo", "gru-reset-after": "rzn"}
CANNOT = {"gru-reset-before": "mlx.nn.GRU multiplies r into Wh_n h + bhn (the reset gate after the recurrent "
                              "product); no MLX layer computes W_n (r * h)",
          "lstm-proj": "mlx.nn.LSTM has no projection of its output (PyTorch's proj_size)",
          "lstm-peephole": "mlx.nn.LSTM has no peepholes (ONNX's P)",
          "lstm-coupled": "mlx.nn.LSTM has no coupled input and forget gates (ONNX's input_forget)",
          "mgu": "MLX has no minimal gated unit layer",
          "mgu-flax": "MLX has no minimal gated unit layer"}
#: each cell's layer attributes, as (input matrix, recurrent matrix, bias)
WEIGHTS = {"elman": ("Wxh", "Whh", "bias"), "lstm": ("Wx", "Wh", "bias"), "gru-reset-after": ("Wx", "Wh", "b")}


def to(cell: str, params: dict) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    wx, wh, bias = WEIGHTS[cell]
    out = {wx: stack(params, "U", order), wh: stack(params, "W", order), bias: stack(params, "b", order)}
    if cell == "gru-reset-after":
        out["bhn"] = np.array(params["b_hn"])
    return out


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    # no bias is split in two here, so ``combine`` (sum for weights, first part for gradients) has nothing to do
    order = ORDER[cell]
    wx, wh, bias = WEIGHTS[cell]
    out = {**unstack(weights[wx], "U", order), **unstack(weights[wh], "W", order),
           **unstack(weights[bias], "b", order)}
    if cell == "gru-reset-after":
        out["b_hn"] = np.array(weights["bhn"])
    return out
