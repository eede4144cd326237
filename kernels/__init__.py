"""rnnspec.kernels: Numba kernels for recurrent networks (CPU here; rnnspec.kernels.cuda for GPUs)."""

from rnnspec.kernels.cpu import elman_backward, elman_forward, elman_loss

__all__ = ["elman_forward", "elman_backward", "elman_loss"]
