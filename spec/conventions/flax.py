"""Flax (flax.linen): SimpleCell, LSTMCell (and OptimizedLSTMCell), GRUCell, MGUCell; the cell's ``params``.

One Dense per gate and side, named ``i<gate>`` (input) and ``h<gate>`` (recurrent), each ``kernel``
(in, H), the transposed canonical matrix; SimpleCell's are ``i`` and ``h``. One bias per gate, so no
split: SimpleCell's on ``i``, LSTMCell's on the ``h`` side, GRUCell's and MGUCell's on the ``i`` side,
with the n gate's second bias on ``hn`` (b_hn, inside the gate's product). Inputs are batch-major.

What Flax's cells can express: SimpleCell is the Elman cell (any activation_fn; ``residual=False``);
LSTMCell and OptimizedLSTMCell (the same parameters, stacked when applied) are the LSTM; GRUCell is
gru-reset-after. gru-reset-before has no Flax cell: GRUCell multiplies r into W_n h + b_hn. MGUCell
(flax 0.12.8; ``reset_gate=True``, its default) is the cell mgu-flax, gates f, n:

    f  = sigmoid(x @ if.kernel + if.bias + h @ hf.kernel)          = sigmoid(U_f x + b_f + W_f h)
    n  = tanh(x @ in.kernel + in.bias + f * (h @ hn.kernel + hn.bias)) = tanh(U_n x + b_n + f * (W_n h + b_hn))
    h' = (1 - f) * n + f * h

so ``if`` = (U_f, b_f), ``hf`` = W_f (no bias), ``in`` = (U_n, b_n), ``hn`` = (W_n, b_hn). The MGU paper's
cell (mgu) has no Flax cell (see CANNOT). ConvLSTMCell (convolutions, not products) is no canonical cell.
"""

from __future__ import annotations

import numpy as np

from rnnspec import catalogue
from rnnspec.spec.conventions._layout import Combine, gates, key

NAME = "Flax"
LAYERS = {"elman": "SimpleCell", "lstm": "LSTMCell", "gru-reset-after": "GRUCell", "mgu-flax": "MGUCell"}
CANNOT = {"lstm-peephole": "flax.linen.LSTMCell has no peepholes (ONNX's P)",
          "lstm-proj": "flax.linen.LSTMCell has no projection of its output (PyTorch's proj_size)",
          "gru-reset-before": "flax.linen.GRUCell multiplies r into hn(h) = W_n h + b_hn (the reset gate after "
                              "the recurrent product); no Flax cell computes W_n (r * h)",
          "mgu": "flax.linen.MGUCell multiplies f into hn(h) = W_n h + b_hn (after the recurrent product, with a "
                 "bias of its own) and mixes h' = (1 - f) * n + f * h; the paper's MGU computes W_n (f * h) and "
                 "h' = (1 - f) * h + f * n. What MGUCell computes is the cell mgu-flax; with reset_gate=False it "
                 "computes tanh(U_n x + b_n + W_n h), no reset at all; no Flax cell computes mgu"}
#: the side of each cell's bias: "i" (input Dense) or "h" (recurrent Dense)
_BIAS_SIDE = {"elman": "i", "lstm": "h", "gru-reset-after": "i", "mgu-flax": "i"}


def _gates(cell: str) -> list[str]:
    """The cell's gates in the catalogue's order (Flax names each Dense by its gate, so order is not layout)."""
    return gates(catalogue.cell(cell).gates)


def _has_b_hn(cell: str) -> bool:
    """Whether the n gate has a second bias inside its product (Flax's ``hn`` Dense then has a bias)."""
    return "b_hn" in catalogue.cell(cell).param_keys


def to(cell: str, params: dict) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for gate in _gates(cell):
        out["i" + gate] = {"kernel": np.asarray(params[key("U", gate)]).T.copy()}
        out["h" + gate] = {"kernel": np.asarray(params[key("W", gate)]).T.copy()}
        out[_BIAS_SIDE[cell] + gate]["bias"] = np.asarray(params[key("b", gate)])
    if _has_b_hn(cell):
        out["hn"]["bias"] = np.asarray(params["b_hn"])
    return out


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    out = {}
    for gate in _gates(cell):
        out[key("U", gate)] = np.array(weights["i" + gate]["kernel"]).T.copy()
        out[key("W", gate)] = np.array(weights["h" + gate]["kernel"]).T.copy()
        out[key("b", gate)] = np.array(weights[_BIAS_SIDE[cell] + gate]["bias"])
    if _has_b_hn(cell):
        out["b_hn"] = np.array(weights["hn"]["bias"])
    return out
