"""rnnspec.kernels.cpu: the Numba CPU kernels, one module per cell, the shared loops beside them.

``forward``, ``backward`` and ``loss`` take any cell by name (elman, lstm, gru-reset-after,
gru-reset-before) with the canonical parameters; ``elman_*`` keep the Elman cell's positional form.
Importing this package loads the BLAS the kernels call (:mod:`rnnspec.kernels.cpu.blas`).
"""

from rnnspec.kernels.cpu import blas
from rnnspec.kernels.cpu.elman import elman_backward, elman_forward, elman_loss
from rnnspec.kernels.cpu.gated import backward, forward, loss

# jitted code binds to SciPy's BLAS at its first call, not at import: loading it here, after the
# imports, still comes first (importing Numba does not load it)
blas.prepare()

__all__ = ["forward", "backward", "loss", "elman_forward", "elman_backward", "elman_loss"]
