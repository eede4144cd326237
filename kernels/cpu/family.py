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


def copy_with(loop: Dispatcher, module: str, options: dict | None = None, suffix: str = "",
              **steps: Dispatcher) -> Dispatcher:
    """``loop`` (a cached ``@njit`` function) compiled again with each global name in ``steps`` bound to that jitted
    function instead: the copy of ``module`` (its ``__name__``, a module Numba's cache can import again), with the
    loop's options (or ``options``) and docstring, cached under ``<module's last part>.<loop's name><suffix>``
    (a name of its own: a copy sharing another's would load the other's code). A name the loop does not call is an
    error (a misspelt step would otherwise leave the family's own step in the copy, silently)."""
    code = loop.py_func.__code__
    unknown = sorted(set(steps) - set(code.co_names))
    if unknown:
        raise ValueError(f"steps: {loop.py_func.__qualname__} calls no global named {', '.join(unknown)}; "
                         f"it calls {', '.join(sorted(code.co_names))}")
    py = loop.py_func
    copy = types.FunctionType(code, {**py.__globals__, **steps}, py.__name__, py.__defaults__, py.__closure__)
    copy.__qualname__ = f"{module.rpartition('.')[2]}.{py.__qualname__}{suffix}"
    copy.__module__ = module
    copy.__doc__ = py.__doc__
    return njit(cache=True, **_given(options or loop.targetoptions))(copy)


def _given(options: dict) -> dict:
    """A jitted function's options as njit takes them again: without nopython (njit sets it, and warns) and cache
    (the caller's to say)."""
    return {k: v for k, v in options.items() if k not in ("nopython", "cache")}


def with_steps_inlined(loop: Dispatcher, module: str, **steps: Dispatcher) -> Dispatcher:
    """A copy of ``loop`` (:func:`copy_with`) into which Numba inlines each of ``steps`` (``inline="always"``),
    compiled with the steps' options (the gate loops' fastmath "contract"), under which the inlined steps compute
    what they compute as calls: the same bits (the one-call tests compare them with the shared path's).

    What it saves: called as a function of its own, a step runs LLVM's runtime checks that its dozen arrays do not
    overlap, and the set-up of its vector loop, at every step: about 100 ns, which a step of B = 1 and H = 16 to 64
    spends on 16 to 64 units (the LSTM's float32 step took 177 against 80 ns a step at H = 16 when LLVM knew the
    arrays apart). Inlined, the LSTM's G1 loop (T = 50, H = 32) took 14.5 against 20.7 us in float32 and 32.6
    against 39.6 in float64, and at B = 16 the same (172 against 174 us). The small calls' one compiled call takes
    these copies (the LSTM's and the reset-after cells'; Elman's step, of three arrays, ran as fast either way, 14.5
    against 14.7 us for its S1 forward); the shared path keeps the steps as calls, compiled once for all its loops."""
    shared = dict(next(iter(steps.values())).targetoptions)
    if any(step.targetoptions != shared for step in steps.values()):
        raise ValueError(f"steps: the steps inlined into one loop share their options, got "
                         f"{[step.targetoptions for step in steps.values()]}")
    return copy_with(loop, module, options=shared, suffix="_inlined",
                     **{name: njit(inline="always", **_given(shared))(step.py_func) for name, step in steps.items()})
