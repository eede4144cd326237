"""Flax (flax.linen): SimpleCell, LSTMCell (and OptimizedLSTMCell), GRUCell; the cell's ``params``.

One Dense per gate and side, named ``i<gate>`` (input) and ``h<gate>`` (recurrent), each ``kernel``
(in, H), the transposed canonical matrix; SimpleCell's are ``i`` and ``h``. One bias per gate, so no
split: SimpleCell's on ``i``, LSTMCell's on the ``h`` side, GRUCell's on the ``i`` side, with the
n gate's second bias on ``hn`` (b_hn, inside the reset product). Inputs are batch-major.

What Flax's cells can express: SimpleCell is the Elman cell (any activation_fn; ``residual=False``);
LSTMCell and OptimizedLSTMCell (the same parameters, stacked when applied) are the LSTM; GRUCell is
gru-reset-after. gru-reset-before has no Flax cell: GRUCell multiplies r into W_n h + b_hn. MGUCell
(a minimal gated unit: one forget gate serving as both r and z) and ConvLSTMCell (convolutions, not
products) are not canonical cells.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions._layout import GATES, Combine, gates, key

NAME = "Flax"
LAYERS = {"elman": "SimpleCell", "lstm": "LSTMCell", "gru-reset-after": "GRUCell"}
CANNOT = {"lstm-peephole": "flax.linen.LSTMCell has no peepholes (ONNX's P)",
          "lstm-proj": "flax.linen.LSTMCell has no projection of its output (PyTorch's proj_size)",
          "gru-reset-before": "flax.linen.GRUCell multiplies r into hn(h) = W_n h + b_hn (the reset gate after "
                              "the recurrent product); no Flax cell computes W_n (r * h)"}
#: the side of each cell's bias: "i" (input Dense) or "h" (recurrent Dense)
_BIAS_SIDE = {"elman": "i", "lstm": "h", "gru-reset-after": "i"}


def to(cell: str, params: dict) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for gate in gates(GATES[cell]):
        out["i" + gate] = {"kernel": np.asarray(params[key("U", gate)]).T.copy()}
        out["h" + gate] = {"kernel": np.asarray(params[key("W", gate)]).T.copy()}
        out[_BIAS_SIDE[cell] + gate]["bias"] = np.asarray(params[key("b", gate)])
    if cell == "gru-reset-after":
        out["hn"]["bias"] = np.asarray(params["b_hn"])
    return out


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    out = {}
    for gate in gates(GATES[cell]):
        out[key("U", gate)] = np.array(weights["i" + gate]["kernel"]).T.copy()
        out[key("W", gate)] = np.array(weights["h" + gate]["kernel"]).T.copy()
        out[key("b", gate)] = np.array(weights[_BIAS_SIDE[cell] + gate]["bias"])
    if cell == "gru-reset-after":
        out["b_hn"] = np.array(weights["hn"]["bias"])
    return out
