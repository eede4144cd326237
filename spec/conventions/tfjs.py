"""TensorFlow.js: tf.layers.simpleRNN, lstm, gru (reset-before only), weights as ``layer.setWeights`` takes them.

TF.js's layers are a port of Keras's, with Keras's weights: ``kernel`` (I, G·H) and ``recurrent_kernel``
(H, G·H), the transposed stacks with the gates along columns (LSTM i, f, c, o; GRU z, r, h), and one
``bias`` (G·H,) (TF.js 4.22.0's ``LSTMCell.call`` splits its pre-activations into i, f, c, o and
``GRUCell.call`` into z, r, h). The packing is therefore :mod:`rnnspec.spec.conventions.keras`'s, used
here, not restated; what differs is which cells have a layer. Inputs are batch-major.

TF.js has no reset-after GRU: ``GRUCell``'s constructor (so ``tf.layers.gru({resetAfter: true})``) throws
``ValueError('GRUCell does not support reset_after parameter set to true.')`` (tensorflow/tfjs#5728, still so
in 4.22.0), and its ``getConfig`` always says ``resetAfter: false``.
"""

from __future__ import annotations

import numpy as np

from rnnspec.spec.conventions import keras
from rnnspec.spec.conventions._layout import Combine

NAME = "TensorFlow.js"
LAYERS = {"elman": "tf.layers.simpleRNN", "lstm": "tf.layers.lstm",
          "gru-reset-before": "tf.layers.gru (resetAfter: false, its only form)"}
ORDER = {cell: keras.ORDER[cell] for cell in LAYERS}
CANNOT: dict[str, str] = {
    "gru-reset-after": "TensorFlow.js implements only the reset-before GRU: tf.layers.gru({resetAfter: true}) throws "
                       "ValueError('GRUCell does not support reset_after parameter set to true.') (TF.js 4.22.0; "
                       "tensorflow/tfjs#5728), and no weights make its reset-before GRU compute the reset-after cell",
    "lstm-peephole": "TensorFlow.js's LSTM has no peepholes (ONNX's P)",
    "lstm-proj": "TensorFlow.js's LSTM has no projection of its output (PyTorch's proj_size)",
}
#: ``layer.setWeights`` takes them in this order (the names of the layer's own weights)
WEIGHTS = keras.WEIGHTS


def to(cell: str, params: dict) -> dict[str, np.ndarray]:
    return keras.to(cell, params)


def from_(cell: str, weights: dict, combine: Combine) -> dict[str, np.ndarray]:
    return keras.from_(cell, weights, combine)
