"""One jitted loop over time for a family of cells: each cell's copy of it calls that cell's own step functions.

The LSTMs (:mod:`lstm` and its relatives) and the reset-after cells (:mod:`gru_reset_after`, :mod:`mgu_flax`) run
the same loops over time (the step's recurrent product, the held rows of variable-length runs, the carries of
BPTT) around different steps (each cell's gate math: its forward rule and, beside it, its gradient rule). The loop
is written once, in the family's first module, calling its steps by global names; :func:`copy_with` compiles a
cell's loop from it with those names bound to the cell's own steps. Numba then sees a direct call of a known
function, as in a loop written out for the cell (benchmarks/dedupe_ab.md compares the two).

Why copies with other globals, not the usual ways to pass a function (measured with Numba 0.68): a jitted
closure over the steps, and a step passed as an argument, both compile, but Numba's cache never finds their code
again in a new process (a closure's cache key pickles the captured dispatchers, which carry a uuid drawn afresh in
each process; an argument's type is the dispatcher itself), so every process would compile every loop again: the
seconds each user's first check pays. A copy has its own qualified name, so its own cache file, found again.
"""

from __future__ import annotations

import types

from numba import njit
from numba.core.dispatcher import Dispatcher


def copy_with(loop: Dispatcher, module: str, **steps: Dispatcher) -> Dispatcher:
    """``loop`` (a cached ``@njit`` function) compiled again with each global name in ``steps`` bound to that jitted
    function instead: the copy of ``module`` (its ``__name__``), with the loop's options and docstring, cached under
    ``<module's last part>.<loop's name>``. A name the loop does not call is an error (a misspelt step would
    otherwise leave the family's own step in the copy, silently)."""
    code = loop.py_func.__code__
    unknown = sorted(set(steps) - set(code.co_names))
    if unknown:
        raise ValueError(f"steps: {loop.py_func.__qualname__} calls no global named {', '.join(unknown)}; "
                         f"it calls {', '.join(sorted(code.co_names))}")
    py = loop.py_func
    copy = types.FunctionType(code, {**py.__globals__, **steps}, py.__name__, py.__defaults__, py.__closure__)
    copy.__qualname__ = f"{module.rpartition('.')[2]}.{py.__qualname__}"
    copy.__module__ = module
    copy.__doc__ = py.__doc__
    options = {k: v for k, v in loop.targetoptions.items() if k != "nopython"}  # njit sets it again, and warns
    return njit(cache=True, **options)(copy)
