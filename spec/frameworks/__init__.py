"""Built-in targets over the frameworks' own layers, each importing its framework only when built.

Every target here takes the canonical parameters through :mod:`rnnspec.spec.conventions` and names
its framework's extra when the framework is missing (:func:`require`).
"""

from __future__ import annotations

import importlib

from rnnspec.spec.targets import TargetError


def require(target: str, module: str, extra: str):
    """``import module``, or a TargetError naming what installs it: rnnspec's extra, or a package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = extra if " " in extra else f"pip install 'rnnspec[{extra}]'"
        raise TargetError(f"target {target!r}: {module} is not installed ({exc}); {install}") from exc


def jax_vjp(fn, args: list, cotangents: list) -> tuple[list, list]:
    """``fn(*args)`` (a list of arrays) and the gradients of ``args`` for ``cotangents``, compiled as one
    program: JAX compiles each new shape once, where op by op it would compile every primitive of a
    scan's body and of the head."""
    import jax

    def outputs_and_grads(a, c):
        out, pullback = jax.vjp(fn, *a)
        # a float32 model's loss may come back float64 (int64 labels promote under x64): the cotangent follows it
        return out, pullback([jax.numpy.asarray(ci, oi.dtype) for oi, ci in zip(out, c)])

    return jax.jit(outputs_and_grads)(list(args), list(cotangents))
