"""Calls into the implementation under test, made in a child process that may fail in any way.

The child is forked with the implementation already loaded (spawned, and given the implementation
by pickle, where this process already holds a CUDA context, which a forked child cannot use), or is
given a :class:`TargetName` and loads it itself, so that a target that hangs, crashes or exits while
it is imported or built is a loading error reported under the timeout, not the end of this process.
Each call has a timeout; a call that raises, hangs, returns something that cannot be sent back or
read back, or kills its process becomes an :class:`Outcome` with a reason, and a fresh child takes
over for the next call. The child also reports whether the call modified its arguments.
"""

from __future__ import annotations

import copy
import faulthandler
import multiprocessing
import pickle
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from rnnspec.spec.contract import Keywords
from rnnspec.spec.targets import TargetError, describe_exception, load_target


@dataclass
class Outcome:
    status: str  # "ok", "raised", "timeout", "died", "missing", "skipped"
    value: object = None
    message: str = ""
    mutated: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _leaves(obj, path="args"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}[{k!r}]")
    elif isinstance(obj, (tuple, list)):
        for n, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{n}]")
    else:
        yield path, obj


def mutated(before, after) -> list[str]:
    """Paths of the arrays that differ (bitwise) between two copies of the arguments."""
    changed = []
    for (path, a), (_, b) in zip(_leaves(before), _leaves(after)):
        if isinstance(a, np.ndarray):
            same = isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype and \
                a.tobytes() == b.tobytes()
            if not same:
                changed.append(path)
    return changed


class TargetName(str):
    """A target given by name (as on the command line): the worker process loads it."""


def _load(source):
    from rnnspec.spec.declared import declarations

    impl = load_target(source) if isinstance(source, TargetName) else source
    return impl, declarations(impl)


def _one_torch_thread_if_forked() -> None:
    """torch already imported here means this child was forked from a process that imported it; if that process ran
    a parallel region, the child hangs at its own first one (GNU OpenMP is not fork-safe: seen in CI, an LSTM's
    loss() hung on its first case large enough to run in parallel). On one thread torch never enters one."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(1)


def _serve(connection, source) -> None:
    # a fatal signal is reported as the call's outcome; a handler inherited from the parent (pytest's)
    # would also dump this process's stack into the parent's output
    faulthandler.disable()
    _one_torch_thread_if_forked()
    try:
        impl, declared = _load(source)
        connection.send(("loaded", declared))
    except TargetError as exc:  # already says which target and why
        connection.send(("target-error", str(exc)))
        return
    except BaseException as exc:  # noqa: B036 - SystemExit at import too: a loading error, reported
        connection.send(("load-failed", describe_exception(exc)))
        return
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        method, settings, args = request
        try:
            # the case's activation, and its cell where the target implements several
            if settings.get("activation") is not None and hasattr(impl, "activation"):
                impl.activation = settings["activation"]
            if settings.get("cell") is not None and getattr(impl, "cells", None):
                impl.cell = settings["cell"]
            if settings.get("variant") is not None and getattr(impl, "variants", None):
                _set_variant(impl, settings["variant"])
            before = copy.deepcopy(args)
            if args and isinstance(args[-1], Keywords):
                value = getattr(impl, method)(*args[:-1], **args[-1])
            else:
                value = getattr(impl, method)(*args)
            reply = ("ok", value, "", mutated(before, args))
        except BaseException as exc:  # noqa: B036 - anything the implementation raises is a result
            reply = ("raised", None, describe_exception(exc), [])
        try:
            connection.send(reply)
        except Exception as exc:  # the value does not pickle
            connection.send(("raised", None, f"the result could not be sent back ({exc!r}); return numpy arrays", []))


def _set_variant(impl, name: str) -> None:
    """The target's ``layers``, ``bidirectional``, ``lengths`` ("zero", "carry" or None) and ``default_state``
    (True: state0 is {}, start from the framework's own default) for the case."""
    from rnnspec.derivations.variants import parse_variant

    variant = parse_variant(name)
    impl.layers, impl.bidirectional, impl.lengths = variant.layers, variant.bidirectional, variant.lengths
    impl.default_state = variant.default_state
    # ONNX's clip and activations attributes (docs/onnx-attributes.md): set only on a target that declares them,
    # so that a target's own attributes of those names are left alone
    declared = getattr(impl, "variants", ())
    if "clip" in declared:
        impl.clip = variant.clip
    if "activations" in declared:
        impl.gate_activations = variant.gate_activations


def _cuda_initialized() -> bool:
    """Whether this process has initialised a CUDA driver (numba-cuda's or torch's): the CUDA calls of
    a child forked from it fail ("CUDA initialized before forking")."""
    numba_driver = sys.modules.get("numba.cuda.cudadrv.driver")
    if getattr(getattr(numba_driver, "driver", None), "pid", None) is not None:
        return True
    torch = sys.modules.get("torch")
    return bool(torch is not None and hasattr(torch, "cuda") and torch.cuda.is_initialized())


def _fork_unsafe() -> bool:
    """Whether a child forked from this process would hang or fail: it holds a CUDA context; it has used MLX (a
    forked child hangs at its first MLX operation); or it has run torch.compile's inductor, whose compile workers
    (threads) a forked child lacks, so its next compile waits on them forever."""
    return _cuda_initialized() or "mlx.core" in sys.modules or "torch._inductor.async_compile" in sys.modules


def start_method(impl) -> str:
    """"fork" (the child inherits the loaded implementation, picklable or not), or "spawn" where a forked child
    would hang or fail (:func:`_fork_unsafe`) and the implementation pickles (a TargetName always does)."""
    if not _fork_unsafe():
        return "fork"
    try:
        pickle.dumps(impl)
    except Exception:  # a child forked anyway reports the CUDA error as the call's outcome
        return "fork"
    return "spawn"


def program(case) -> tuple:
    """What a target that compiles per shape compiles a program for: everything of the case but its values (seed,
    regime), i.e. cell, activation, variant, dtype and sizes."""
    return (case.cell, case.activation, case.variant, case.dtype, case.T, case.B, case.I, case.H, case.K, case.P)


class LoadError(TargetError):
    """The worker could not load the target: it raised, exited, crashed or hung (a usage error)."""


class Refused(LoadError):
    """The target itself refused to be built, saying why (it raised :class:`TargetError`: a missing package, a
    runtime that does not run what it stands for): the same wherever it runs, so a matrix shows the reason."""


class Worker:
    """A child process serving calls on ``impl`` (an object, or a :class:`TargetName` it loads);
    restarted after a timeout or a crash."""

    def __init__(self, impl, timeout: float) -> None:
        self.impl = impl
        self.timeout = timeout
        self.process = None
        self.connection = None
        self.declared: dict | None = None
        #: the methods that have returned in this process: their first call (imports, thread pools, tracing,
        #: compiling) is behind them; and (method, program) for each program (:func:`program`) they returned on
        self.warm: set = set()

    def _start(self) -> None:
        context = multiprocessing.get_context(start_method(self.impl))
        parent, child = context.Pipe()
        self.warm = set()
        self.process = context.Process(target=_serve, args=(child, self.impl), daemon=True)
        self.process.start()
        child.close()
        self.connection = parent
        what = f"loading target {str(self.impl)!r}" if isinstance(self.impl, TargetName) else "reading the target"
        if not self.connection.poll(self.timeout):
            self._kill()
            raise LoadError(f"{what} did not finish within {self.timeout:.3g} s")
        try:
            status, value = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(timeout=1)
            code = self.process.exitcode
            self.process = None
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise LoadError(f"{what} ended its process ({how})") from None
        if status != "loaded":
            self.stop()
            if status == "target-error":
                raise Refused(value)
            raise LoadError(f"{what} failed: {value}")
        self.declared = value

    def is_warm(self, method: str, program: tuple | None = None) -> bool:
        """Whether ``method`` has returned in this process, and, for a target that declares ``shapes`` (it compiles
        a program per shape: jax.jit, torch.compile, an exporter), on ``program`` too: a call that is not warm
        may compile, and gets the warm-up limit."""
        if method not in self.warm:
            return False
        compiles_per_shape = (self.declared or {}).get("shapes") is not None
        return program is None or not compiles_per_shape or (method, program) in self.warm

    def declarations(self) -> dict:
        """The target's declarations (:func:`rnnspec.spec.declared.declarations`), loading it first."""
        if self.process is None:
            self._start()
        return self.declared

    def stop(self) -> None:
        if self.process is not None:
            try:
                self.connection.send(None)
            except (OSError, ValueError):
                pass
            self.process.join(timeout=1)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            self.process = None

    def _kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.process = None

    def call(self, method: str, settings: dict | None, args: tuple, timeout: float | None = None,
             program: tuple | None = None) -> Outcome:
        """``method(*args)`` in the child, after setting the target's ``activation`` and ``cell`` from
        ``settings`` (``cell`` only on a target that declares ``cells``); ``program``: the case's
        (:func:`program`), recorded as warm when the call returns."""
        if self.process is None or not self.process.is_alive():
            try:
                self._start()
            except LoadError as exc:  # it loaded before: now it failed to, once more
                return Outcome("died", message=str(exc))
        if method not in self.declared["methods"]:
            return Outcome("missing", message=f"the target has no {method}()")
        limit = self.timeout if timeout is None else timeout
        start = time.perf_counter()
        self.connection.send((method, settings or {}, args))
        if not self.connection.poll(limit):
            self._kill()
            first = ("" if self.is_warm(method, program) else " (its first call in this process)"
                     if method not in self.warm else " (its first call on this shape in this process)")
            return Outcome("timeout", message=f"{method}() did not return within {limit:.3g} s{first}", seconds=limit)
        try:
            status, value, message, changed = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(timeout=1)
            code = self.process.exitcode
            self.process = None
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            # no pid in the message: a report must read the same wherever its unit ran
            return Outcome("died", message=f"{method}() ended its process ({how})")
        except Exception as exc:  # the result was sent but cannot be rebuilt here (its unpickling raised)
            return Outcome("raised", message=f"{method}()'s result could not be read back: {describe_exception(exc)}; "
                           "return numpy arrays")
        self.warm.add(method)
        if program is not None:
            self.warm.add((method, program))
        return Outcome(status, value, message, changed, time.perf_counter() - start)
