"""Known defects of frameworks, each with a minimal reproducer: read by ``rnnspec matrix`` (its notes) and by
``rnnspec check`` (a failure block that a known defect explains says so)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Defect:
    #: the built-in targets it affects
    targets: tuple[str, ...]
    dtype: str
    #: one line for a failure block
    summary: str
    #: the whole account, with the reproducer in the framework's own code and the version it was seen in
    text: str


DEFECTS = (
    Defect(
        ("keras-torch", "keras-jax"), "float64",
        "Keras 3 computes float64 in float32 on its jax and torch backends (its type promotion maps float64 to "
        "float32 there): float64 results land 1e-8 to 1e-6 from the float64 values",
        "Keras 3 computes some float64 operations in float32 on its jax and torch backends: its type promotion "
        "maps float64 to float32 there (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE). Reproducer, "
        "with x = np.full(2, 0.5) and jax_enable_x64 on: `keras.ops.tanh(x).dtype` is float32 on jax (float64 on "
        "torch and tensorflow); `keras.ops.matmul(np.ones((2, 2)), np.ones((2, 2))).dtype` is float32 on torch "
        "(float64 on jax and tensorflow). Float64 layers built on them (SimpleRNNCell, LSTMCell, GRUCell, the "
        "keras.ops head) land 1e-8 to 1e-6 from float64 values. On jax a float64 SimpleRNN fails outright: its "
        "tanh comes back float32 and the scan's carry types differ (`TypeError: scan body function carry input "
        "and carry output must have equal types`). On the CPU the torch backend's LSTM and reset-after GRU layers "
        "run their own torch.matmul loop, so there only the loss (its head is keras.ops.matmul) fails; its "
        "SimpleRNN and reset-before GRU run the cell's loop and fail throughout. The tensorflow backend is exact."),
    Defect(
        ("tfjs",), "float32",
        "TensorFlow.js 4.22.0 cannot differentiate a recurrent layer by its input over a sequence of ONE step (the "
        "gradient of a one-piece tf.unstack throws): every VJP and LOSS clause breaks on T = 1",
        "TensorFlow.js 4.22.0 (tfjs-core's engine) hands the gradient function of a kernel with one output a tensor "
        "instead of a list, and Unpack's gradient calls tf.stack on it. Every recurrent layer unstacks its input over "
        "time, so the gradient by the input of a layer over a one-step sequence throws. Reproducer: `const layer = "
        "tf.layers.simpleRNN({units: 2}); tf.grad((x) => tf.sum(layer.apply(x)))(tf.ones([1, 1, 1]))` throws "
        "'Argument tensors passed to stack must be a `Tensor[]` or `TensorLike[]`' (with tf.ones([1, 2, 1]) it "
        "returns the gradient); the cause alone: `tf.grad((x) => tf.sum(tf.unstack(x)[0]))(tf.ones([1, 3]))` throws "
        "the same. The weights' gradients alone are computed (the unstack is then off the path), so it bites "
        "stacked layers and input gradients: tensorflow/tfjs#1529 and #3550, closed without a fix."),
    Defect(
        ("tfjs",), "float32",
        "TensorFlow.js 4.22.0's tf.losses.softmaxCrossEntropy loses |logits| * 2^-24 (log-probabilities taken as "
        "logits - logSumExp(logits)): LOSS clauses can fail on cases with large logits",
        "tf.losses.softmaxCrossEntropy computes log-probabilities as logits - logSumExp(logits), and logSumExp adds "
        "the largest logit back, so the loss and its gradient softmax - labels lose |logits| * 2^-24 absolute. "
        "Reproducer: labels [[1, 0]], logits [[720, 719]]: `tf.grad((l) => tf.losses.softmaxCrossEntropy(labels, l, "
        "undefined, 0, tf.Reduction.SUM))(logits)` is 2.9e-5 off relative (2.1e-4 at [7200, 7199]) from the exact "
        "[-1, 1] / (1 + e), where tf.softmax(logits) - labels and the gradient of tf.logSoftmax are exact to float32 "
        "(4e-8). The target's loss is TF.js's loss function; TfjsLogSoftmaxHead (the same layers, the cross-entropy "
        "through tf.logSoftmax) passes the cases it fails."),
)


def resolve(target: str) -> str:
    """The built-in target that ``target`` runs as: the plain ``keras`` is ``keras-<KERAS_BACKEND>``."""
    if target == "keras":
        from rnnspec.spec.frameworks.keras_layers import DEFAULT_BACKEND

        return f"keras-{os.environ.get('KERAS_BACKEND', DEFAULT_BACKEND)}"
    return target


def known(target: str, dtype: str) -> list[Defect]:
    """The known defects of ``target`` (a built-in name) in ``dtype``."""
    name = resolve(target)
    return [d for d in DEFECTS if name in d.targets and d.dtype == dtype]
