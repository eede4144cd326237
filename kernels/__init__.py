"""rnnspec.kernels: Numba kernels for recurrent networks (CPU here; rnnspec.kernels.cuda for GPUs)."""

from rnnspec.kernels.cpu import backward, elman_backward, elman_forward, elman_loss, forward, loss

__all__ = ["forward", "backward", "loss", "elman_forward", "elman_backward", "elman_loss"]
