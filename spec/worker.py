"""Calls into the implementation under test, made in a child process that may fail in any way.

The child is forked with the implementation already loaded (spawned, and given the implementation
by pickle, where this process already holds a CUDA context, which a forked child cannot use). Each
call has a timeout; a call that
raises, hangs, returns something that cannot be sent back, or kills its process becomes an
:class:`Outcome` with a reason, and a fresh child takes over for the next call. The child also
reports whether the call modified its arguments.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import sys
import time
import traceback
from dataclasses import dataclass, field

import numpy as np


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


def _serve(connection, impl) -> None:
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        method, activation, args = request
        try:
            if activation is not None and hasattr(impl, "activation"):
                impl.activation = activation
            before = copy.deepcopy(args)
            value = getattr(impl, method)(*args)
            reply = ("ok", value, "", mutated(before, args))
        except BaseException as exc:  # noqa: B036 - anything the implementation raises is a result
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)
            reply = ("raised", None, f"{type(exc).__name__}: {exc}\n{''.join(lines[-3:])}".strip(), [])
        try:
            connection.send(reply)
        except Exception as exc:  # the value does not pickle
            connection.send(("raised", None, f"the result could not be sent back ({exc!r}); return numpy arrays", []))


def _cuda_initialized() -> bool:
    """Whether this process has initialised a CUDA driver (numba-cuda's or torch's): the CUDA calls of
    a child forked from it fail ("CUDA initialized before forking")."""
    numba_driver = sys.modules.get("numba.cuda.cudadrv.driver")
    if getattr(getattr(numba_driver, "driver", None), "pid", None) is not None:
        return True
    torch = sys.modules.get("torch")
    return bool(torch is not None and hasattr(torch, "cuda") and torch.cuda.is_initialized())


def start_method(impl) -> str:
    """"fork" (the child inherits the loaded implementation, picklable or not), or "spawn" where this
    process holds a CUDA context and the implementation pickles."""
    if not _cuda_initialized():
        return "fork"
    try:
        pickle.dumps(impl)
    except Exception:  # a child forked anyway reports the CUDA error as the call's outcome
        return "fork"
    return "spawn"


class Worker:
    """A child process serving calls on ``impl``; restarted after a timeout or a crash."""

    def __init__(self, impl, timeout: float) -> None:
        self.impl = impl
        self.timeout = timeout
        self.process = None
        self.connection = None

    def _start(self) -> None:
        context = multiprocessing.get_context(start_method(self.impl))
        parent, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.impl), daemon=True)
        self.process.start()
        child.close()
        self.connection = parent

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

    def call(self, method: str, activation: str | None, args: tuple, timeout: float | None = None) -> Outcome:
        if not callable(getattr(self.impl, method, None)):
            return Outcome("missing", message=f"the target has no {method}()")
        if self.process is None or not self.process.is_alive():
            self._start()
        limit = self.timeout if timeout is None else timeout
        start = time.perf_counter()
        self.connection.send((method, activation, args))
        if not self.connection.poll(limit):
            self._kill()
            return Outcome("timeout", message=f"{method}() did not return within {limit:.3g} s", seconds=limit)
        try:
            status, value, message, changed = self.connection.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            self.process.join(timeout=1)
            code = self.process.exitcode
            self.process = None
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return Outcome("died", message=f"{method}() ended its process ({how}) in pid {os.getpid()}'s child")
        return Outcome(status, value, message, changed, time.perf_counter() - start)
