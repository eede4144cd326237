"""rnnspec.kernels: Numba kernels for recurrent networks (CPU here; rnnspec.kernels.cuda for GPUs)."""

from rnnspec.kernels.numba_cache import keyed_by_source

# every jitted function binds its cache location when decorated: the kernels' are keyed by their sources
with keyed_by_source():
    from rnnspec.kernels.cpu import backward, elman_backward, elman_forward, elman_loss, forward, loss

__all__ = ["forward", "backward", "loss", "elman_forward", "elman_backward", "elman_loss"]
