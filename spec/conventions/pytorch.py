"""PyTorch: nn.RNN, nn.LSTM, nn.GRU (one layer, one direction; :func:`to_runs` for ``num_layers`` and
``bidirectional``, whose weights are those of layer l in direction d suffixed ``_l{l}`` or ``_l{l}_reverse``,
as rnnspec's own names are: ``U_i_l1_reverse`` is a block of ``weight_ih_l1_reverse``).

``lstm-proj`` is nn.LSTM with ``proj_size`` P: ``weight_hr_l0`` (P, H) is W_hr, and ``weight_hh_l0`` is (4·H, P).
``weight_ih_l0`` (G·H, I) and ``weight_hh_l0`` (G·H, H) stack the gates along rows, nn.LSTM in the
order i, f, g, o and nn.GRU in r, z, n; ``bias_ih_l0`` and ``bias_hh_l0`` (G·H,) add up to the
canonical bias, except in the GRU's n block, where ``bias_ih``'s is b_n and ``bias_hh``'s is b_hn,
inside the reset product.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions._layout import Combine, combine_stacked, split_stacked, stack, unstack
from rnnspec.spec.conventions._shapes import ConversionError, check

NAME = "PyTorch"
LAYERS = {"elman": "nn.RNN", "lstm": "nn.LSTM", "gru-reset-after": "nn.GRU", "lstm-proj": "nn.LSTM(proj_size=P)"}
ORDER = {"elman": "", "lstm": "ifgo", "gru-reset-after": "rzn", "lstm-proj": "ifgo"}
CANNOT = {"lstm-peephole": "nn.LSTM has no peepholes (ONNX's P)",
          "gru-reset-before": "nn.GRU applies the reset gate after the recurrent product (r * (W_n h + b_hn)); "
                              "no PyTorch layer computes W_n (r * h)"}
#: the GRU's n gate keeps its two biases apart: (canonical name of bias_ih's block, of bias_hh's)
_KEEP = {"gru-reset-after": {"n": ("b_n", "b_hn")}}


def to(cell: str, params: dict) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    bias_ih, bias_hh = split_stacked(params, order, _KEEP.get(cell))
    out = {"weight_ih_l0": stack(params, "U", order), "weight_hh_l0": stack(params, "W", order),
           "bias_ih_l0": bias_ih, "bias_hh_l0": bias_hh}
    if cell == "lstm-proj":
        out["weight_hr_l0"] = np.array(params["W_hr"])
    return out


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    order = ORDER[cell]
    out = {**unstack(weights["weight_ih_l0"], "U", order), **unstack(weights["weight_hh_l0"], "W", order),
           **combine_stacked(weights["bias_ih_l0"], weights["bias_hh_l0"], order, combine, _KEEP.get(cell))}
    if cell == "lstm-proj":
        out["W_hr"] = np.array(weights["weight_hr_l0"])
    return out


def _runs(variant) -> list[tuple[str, str]]:
    """(rnnspec's suffix, PyTorch's) of every layer and direction."""
    return [(variant.suffix(layer, d), f"_l{layer}" + ("_reverse" if d else "")) for layer, d in variant.runs()]


def to_runs(cell: str, params: dict, variant) -> dict[str, np.ndarray]:
    """The weights of a module with ``num_layers`` and ``bidirectional`` from the canonical per-run parameters."""
    from rnnspec.derivations.variants import run_params
    from rnnspec.spec.contract import contract

    out = {}
    for (layer, d), (ours, theirs) in zip(variant.runs(), _runs(variant)):
        run = run_params(params, contract(cell).step_params, variant, layer, d)
        check(cell, run, None, f"the {cell} parameters of layer {layer}, direction {d}",
              rename=lambda k, ours=ours: k + ours)
        out.update({name.replace("_l0", theirs): value for name, value in to(cell, run).items()})
    return out


def from_runs(cell: str, weights: dict, combine: Combine, variant) -> dict[str, np.ndarray]:
    """The inverse of :func:`to_runs` (gradients with ``combine`` = first_part); each layer and direction's
    weights are checked as :func:`rnnspec.spec.conventions.from_framework` checks one layer's."""
    out = {}
    runs = _runs(variant)
    unexpected = [name for name in weights if not any(name.endswith(theirs) for _, theirs in runs)]
    if unexpected:
        raise ConversionError(f"the {cell} weights of a {NAME} module of {variant.layers} layer(s)"
                              f"{', bidirectional' if variant.bidirectional else ''} have unexpected keys {unexpected}")
    for ours, theirs in runs:
        run = {name.replace(theirs, "_l0"): value for name, value in weights.items() if name.endswith(theirs)}
        check(cell, run, to, f"the {cell} weights of {NAME}'s {LAYERS[cell]}, {theirs[1:]}",
              rename=lambda k, theirs=theirs: k.replace("_l0", theirs))
        out.update({k + ours: v for k, v in from_(cell, run, combine).items()})
    return out
