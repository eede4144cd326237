"""rnnspec.kernels.cpu: the Numba CPU kernels, one module per cell, the shared loops beside them."""

from rnnspec.kernels.cpu.elman import elman_backward, elman_forward, elman_loss

__all__ = ["elman_forward", "elman_backward", "elman_loss"]
