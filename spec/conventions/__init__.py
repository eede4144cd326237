"""Each framework's layout of the canonical parameters, written once, both ways, and porting between them.

Canonical (rnnspec's): per gate k of the cell, ``U_k`` (H, I), ``W_k`` (H, H), ``b_k`` (H,), and the
reset-after GRU's ``b_hn``; the Elman cell's are ``U``, ``W``, ``b``. Gates: lstm i, f, g, o;
GRUs r, z, n. A framework's layout, per cell:

=============  ===============  =============  ======================  =========================
framework      elman            lstm           gru-reset-after         gru-reset-before
=============  ===============  =============  ======================  =========================
``torch``      nn.RNN           nn.LSTM ifgo   nn.GRU rzn              (none)
``keras``      SimpleRNN        LSTM ifgo      GRU(reset_after) zrn    GRU(reset_after=False) zrn
``flax``       SimpleCell       LSTMCell       GRUCell                 (none)
``onnx``       RNN              LSTM iofg      GRU(lbr=1) zrn          GRU(lbr=0) zrn
``tfjs``       simpleRNN        lstm ifgo      (none)                  gru zrn (its only GRU)
=============  ===============  =============  ======================  =========================

Each framework module's docstring gives its shapes and where its biases live. Two-bias layouts
receive an exact random split of each canonical bias (:func:`split_bias`), so a round trip is
bit-exact and an implementation that drops one bias fails the suite.

Every conversion first checks what it is given: exactly the layout's keys, with the shapes that one set
of sizes (I, H; P) gives them, else a ConversionError names the cell, each key, the shape found and the
shape expected (:mod:`rnnspec.spec.conventions._shapes`).

>>> torch_weights = to_framework("torch", "lstm", params)          # doctest: +SKIP
>>> keras_weights = port(torch_weights, "lstm", source="torch", target="keras")  # doctest: +SKIP
>>> layer.set_weights([keras_weights[k] for k in KERAS_WEIGHTS])   # doctest: +SKIP
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from rnnspec.spec.conventions import flax, keras, mlx, onnx, paddle, pytorch, tfjs
from rnnspec.spec.conventions._layout import GATES, add, first_part, split_bias
from rnnspec.spec.conventions._shapes import ConversionError, check

FRAMEWORKS: dict[str, ModuleType] = {"torch": pytorch, "keras": keras, "flax": flax, "onnx": onnx, "tfjs": tfjs,
                                     "mlx": mlx, "paddle": paddle}
KERAS_WEIGHTS = keras.WEIGHTS

#: how each framework's layers lay out a sequence: time-major (T, B, I) or batch-major (B, T, I), by default
SEQUENCES = {"torch": "TBI", "keras": "BTI", "flax": "BTI", "onnx": "TBI", "tfjs": "BTI", "mlx": "BTI", "paddle": "BTI"}

__all__ = ["FRAMEWORKS", "KERAS_WEIGHTS", "SEQUENCES", "ConversionError", "cells_of", "from_framework",
           "gradients_from_framework", "layer_of", "port", "sequence_from", "sequence_to", "split_bias", "to_framework"]

#: why a weight set of one cell computes nothing that the other cell can (asked to port across cells)
_ACROSS = ("the cells compute different functions: no weights of one make the other "
           "(the reset-after GRU's n gate is tanh(U_n x + b_n + r * (W_n h + b_hn)), the reset-before GRU's "
           "tanh(U_n x + W_n (r * h) + b_n); they agree only where r is 0 or 1, or W_n and b_hn are 0)")


def _framework(framework: str, cell: str) -> ModuleType:
    if framework not in FRAMEWORKS:
        raise ConversionError(f"unknown framework {framework!r}: known {sorted(FRAMEWORKS)}")
    module = FRAMEWORKS[framework]
    if cell in module.CANNOT:
        raise ConversionError(f"{module.NAME} has no {cell} layer: {module.CANNOT[cell]}")
    if cell not in module.LAYERS:
        known = ", ".join(GATES)
        raise ConversionError(f"unknown cell {cell!r} for {module.NAME}: known cells {known} (a bare 'gru' is "
                              "ambiguous: say gru-reset-after or gru-reset-before)")
    return module


def cells_of(framework: str) -> tuple[str, ...]:
    """The canonical cells the framework has a layer for."""
    return tuple(FRAMEWORKS[framework].LAYERS)


def layer_of(framework: str, cell: str) -> str:
    """The framework's layer (or operator, or cell class) that computes ``cell``."""
    return _framework(framework, cell).LAYERS[cell]


def to_framework(framework: str, cell: str, params: dict) -> dict:
    """The framework's weights for the canonical step parameters ``params`` (head parameters are ignored).

    ConversionError, naming the key, the shape found and the shape expected, unless ``params`` are exactly the
    cell's step parameters with the shapes of one set of sizes (``U_k`` (H, I), ``W_k`` (H, H), ``b_k`` (H,))."""
    from rnnspec.spec.contract import contract

    module = _framework(framework, cell)
    check(cell, params, None, f"the {cell} parameters given to {module.NAME}", allowed=contract(cell).head_params)
    return module.to(cell, {k: np.asarray(v) for k, v in params.items()})


def from_framework(framework: str, cell: str, weights: dict) -> dict[str, np.ndarray]:
    """The canonical step parameters of the framework's weights (a split bias is summed).

    ConversionError, naming the key, the shape found and the shape expected, unless ``weights`` have exactly
    the keys of the framework's layer for ``cell`` and the shapes its packing makes of one set of sizes."""
    module = _framework(framework, cell)
    check(cell, weights, module.to, f"the {cell} weights of {module.NAME}'s {module.LAYERS[cell]}")
    return module.from_(cell, weights, add)


def gradients_from_framework(framework: str, cell: str, grads: dict) -> dict[str, np.ndarray]:
    """The gradients of the canonical parameters from those of the framework's weights (a bias split in two
    has the gradient of either part); checked as :func:`from_framework` checks weights."""
    module = _framework(framework, cell)
    check(cell, grads, module.to, f"the {cell} gradients of {module.NAME}'s {module.LAYERS[cell]}")
    return module.from_(cell, grads, first_part)


def sequence_to(framework: str, x: np.ndarray) -> np.ndarray:
    """rnnspec's time-major (T, B, ...) sequence in the framework's default layout."""
    return np.swapaxes(x, 0, 1) if SEQUENCES[framework] == "BTI" else x


def sequence_from(framework: str, x: np.ndarray) -> np.ndarray:
    """A sequence in the framework's default layout as rnnspec's time-major (T, B, ...)."""
    return sequence_to(framework, x)  # a swap of the first two axes is its own inverse


def port(weights: dict, cell: str, source: str, target: str, target_cell: str | None = None) -> dict:
    """``weights`` of ``source``'s ``cell`` layer as ``target``'s weights of the same cell.

    Asking for another cell (``target_cell``) raises: no weights of one cell compute another."""
    if target_cell is not None and target_cell != cell:
        raise ConversionError(f"cannot port a {cell} into a {target_cell}: {_ACROSS}")
    _framework(target, cell)
    return to_framework(target, cell, from_framework(source, cell, weights))
