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
