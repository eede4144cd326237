"""Built-in targets over the frameworks' own layers, each importing its framework only when built.

Every target here takes the canonical parameters through :mod:`rnnspec.spec.conventions` and names
its framework's extra when the framework is missing (:func:`require`).
"""

from __future__ import annotations

import importlib
import weakref

from rnnspec.spec.targets import TargetError

#: what to install for a target that needs PyTorch: the version the README's quick start installs
TORCH_REQUIREMENT = "torch==2.13.0"


def require(target: str, module: str, extra: str):
    """``import module``, or a TargetError naming what installs it: rnnspec's extra, or a package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = extra if " " in extra else f"pip install 'rnnspec[{extra}]'"
        raise TargetError(f"target {target!r}: {module} is not installed ({exc}); {install}") from exc


def jax_vjp(fn, args: list, cotangents: list, constants: tuple = ()) -> tuple[list, list]:
    """``fn(*args, *constants)`` (a list of arrays) and the gradients of ``args`` for ``cotangents``, compiled
    as one program: JAX compiles each new shape once, where op by op it would compile every primitive of a
    scan's body and of the head. The program is kept per ``fn``: the suite calls every method twice on a
    case (the determinism clause), and a function made anew would be compiled anew."""
    program = _VJP_PROGRAMS.get(fn)
    if program is None:
        import jax

        def outputs_and_grads(a, c, k):
            out, pullback = jax.vjp(lambda *p: fn(*p, *k), *a)
            # a float32 model's loss may come back float64 (int64 labels promote under x64): the cotangent follows
            return out, pullback([jax.numpy.asarray(ci, oi.dtype) for oi, ci in zip(out, c)])

        program = _VJP_PROGRAMS[fn] = jax.jit(outputs_and_grads)
    return program(list(args), list(cotangents), tuple(constants))


#: fn -> its compiled forward-and-VJP program, while fn lives
_VJP_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def jax_jit(fn):
    """``jax.jit(fn)``, kept per ``fn`` as :func:`jax_vjp` keeps its programs (one compilation per shape)."""
    program = _PROGRAMS.get(fn)
    if program is None:
        import jax

        program = _PROGRAMS[fn] = jax.jit(fn)
    return program
