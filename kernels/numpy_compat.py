"""numba-cuda 0.30.4 against NumPy 2.5: the one incompatibility, mended where it bites.

numba-cuda registers an overload for ``numpy.row_stack``, which NumPy 2.5 removed, and fails at the
first kernel launch with ``AttributeError: module 'numpy' has no attribute 'row_stack'``.
``row_stack`` was an alias of ``vstack``; restoring the alias before numba-cuda loads is enough.
Import numba's CUDA module from here (``cuda_module()``) so that the mend always comes first;
``SIMULATED`` tells the kernels whether that module is numba-cuda's simulator.
"""

from __future__ import annotations

import numba
import numpy as np

#: numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1): every GPU thread a Python thread, one block at a time
SIMULATED = bool(numba.config.ENABLE_CUDASIM)


def ensure_numba_cuda_compatible() -> None:
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


def cuda_module():
    """``numba.cuda``, imported after the mend."""
    ensure_numba_cuda_compatible()
    from numba import cuda

    return cuda
