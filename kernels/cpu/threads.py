"""Two threads stepping through one recurrence together: a spin barrier built on atomic counters.

The jitted loops of :mod:`split` run in two Python threads at once (they release the GIL). At the end
of every step each thread adds 1 to a shared counter and waits until the counter reaches
``parties * steps``: one atomic add (sequentially consistent, so the step's writes are visible first) and
acquire loads while waiting. A waiting thread spins with the CPU's pause hint for SPINS loads, then
yields its core at every further load, so that a machine with fewer free cores than threads slows down
instead of stalling. ``counter[1]`` is the abort flag: a thread that failed before its loop sets it, and
a waiting thread then returns False instead of waiting for a partner that will never arrive.

:func:`together` runs the parts after the first on helper threads that live as long as the process and
wait for work between calls: a fresh thread a call cost its start and, worse, fresh scratch arrays
(:mod:`scratch` keeps them per thread), page faults and all, at every call. A forked child starts
with none (the parent's threads do not survive a fork), and a call that finds the helpers busy (two
caller threads at once) runs its parts on fresh threads instead of waiting.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: pause-hinted loads before a waiting thread starts yielding its core (about 0.1-0.5 ms)
SPINS = 20000
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
_COUNTER = types.Array(types.int64, 1, "C")


def _element(context, builder, signature, args):
    array = context.make_array(signature.args[0])(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, signature.args[0], array, [args[1]])


@intrinsic
def atomic_add(typingctx, counter, index, value):
    """counter[index] += value atomically (sequentially consistent); returns the value before."""
    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", _element(context, builder, signature, args), args[2], "seq_cst")

    return types.int64(_COUNTER, types.intp, types.int64), codegen


@intrinsic
def atomic_load(typingctx, counter, index):
    """counter[index], read with acquire ordering: what was written before the matching add is visible."""
    def codegen(context, builder, signature, args):
        return builder.load_atomic(_element(context, builder, signature, args), "acquire", 8)

    return types.int64(_COUNTER, types.intp), codegen


@intrinsic
def _pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``); nothing elsewhere."""
    def codegen(context, builder, signature, args):
        if _X86:
            hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                  "llvm.x86.sse2.pause")
            builder.call(hint, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _yield_core(typingctx):
    """libc's sched_yield(): give the core to another runnable thread."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(function, [])
        return context.get_dummy_value()

    return types.void(), codegen


@njit(cache=True, nogil=True)
def arrive_and_wait(counter, target):
    """Add this thread's arrival to counter[0], then wait until counter[0] >= target (every party arrived).
    Returns False, at once, if counter[1] says a partner failed."""
    atomic_add(counter, 0, 1)
    spins = 0
    while atomic_load(counter, 0) < target:
        if atomic_load(counter, 1) != 0:
            return False
        spins += 1
        if spins < SPINS:
            _pause()
        else:
            _yield_core()
    return True


def counter() -> np.ndarray:
    """A fresh barrier counter: arrivals, abort flag."""
    return np.zeros(2, np.int64)


class _Helper:
    """A daemon thread running the jobs put in its queue, one after another."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="rnnspec-helper", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            job, done = self.jobs.get()
            job()
            # the job's arguments (a call's arrays) dropped now, not when the next job comes: held here, a call's
            # results could not be reused by the next call once dropped (scratch.result_block)
            job = None
            done.set()

    def start(self, job: Callable[[], None]) -> threading.Event:
        done = threading.Event()
        self.jobs.put((job, done))
        return done


_helpers: list[_Helper] = []
_helpers_free = threading.Lock()


def _forget_helpers() -> None:
    """In a forked child: the parent's helper threads are gone, and the lock may have been held."""
    global _helpers_free
    _helpers.clear()
    _helpers_free = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def _current_cpu() -> int | None:
    """The CPU this thread runs on now (glibc's sched_getcpu), None where that cannot be read."""
    getcpu = _sched_getcpu()
    cpu = getcpu() if getcpu is not None else -1
    return cpu if cpu >= 0 else None


@functools.cache
def _sched_getcpu():
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    function.restype, function.argtypes = ctypes.c_int, []
    return function


@contextlib.contextmanager
def _apart(helpers: int) -> Iterator[list[set[int] | None]]:
    """The CPUs for the caller and ``helpers`` helpers, one each, while inside: the caller held on the CPU it runs
    on now, each helper given another of the caller's CPUs (a helper sets its own with :func:`_keep_to`); the
    caller's own CPUs put back after. Nothing where there are too few CPUs or no way to read them.

    Woken after a pause, a helper was placed on the caller's CPU as often as not, and the two threads shared it
    until the scheduler's balancing moved one, some tens of milliseconds later: the LSTM's G2 forward, batch in
    halves, took 9-12 ms in the first calls after 0.3 s of quiet against 4.6-5.5 back to back, each half's wall
    twice its CPU time. Keeping the helper alone off the caller's CPU was not enough: the scheduler then moved
    the caller onto the helper's (benchmarks/cpu_issue37/README.md)."""
    cpu = _current_cpu()
    allowed = sorted(os.sched_getaffinity(0)) if cpu is not None else []
    others = [c for c in allowed if c != cpu]
    if len(others) < helpers:
        yield [None] * helpers
        return
    mask = set(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield [{others[k]} for k in range(helpers)]
    finally:
        os.sched_setaffinity(0, mask)


def _keep_to(cpus: set[int] | None) -> None:
    """This thread on ``cpus`` (None: on every CPU the process may use)."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    elif hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, os.sched_getaffinity(os.getpid()))


def _on_fresh_threads(jobs: list[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    return threads


def together(function: Callable, arguments: Sequence[tuple], barrier: np.ndarray) -> list:
    """[function(*arguments[k]) for every k], run at once: the first in this thread, the others on the
    helper threads (or fresh ones when those are busy), all finished before returning. An exception in
    any sets the barrier's abort flag and is raised here."""
    errors: list[BaseException] = []
    results: list = [None] * len(arguments)

    def run(k: int) -> None:
        try:
            results[k] = function(*arguments[k])
        except BaseException as error:  # any, KeyboardInterrupt too: the partner must not wait forever
            barrier[1] = 1
            errors.append(error)

    if _helpers_free.acquire(blocking=False):
        try:
            while len(_helpers) < len(arguments) - 1:
                _helpers.append(_Helper())
            with _apart(len(arguments) - 1) as cpus:
                jobs = [lambda k=k: (_keep_to(cpus[k - 1]), run(k)) for k in range(1, len(arguments))]
                finished = [helper.start(job) for helper, job in zip(_helpers, jobs)]
                run(0)
                for done in finished:
                    done.wait()
        finally:
            _helpers_free.release()
    else:
        threads = _on_fresh_threads([lambda k=k: run(k) for k in range(1, len(arguments))])
        run(0)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return results
