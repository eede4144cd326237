"""Each cell's CPU kernel behind one interface, found by the cell's name in the catalogue.

The kernel of the catalogue's cell ``name`` is the object ``KERNEL`` of the module
``rnnspec.kernels.cpu.<name with '-' as '_'>`` (``lstm-peephole``: :mod:`lstm_peephole`). The shared code
(:mod:`gated` for the plain calls, :mod:`variants` for layers, directions and lengths) reaches a cell only
through that object, so a new cell is its catalogue entry, its equations and its kernel module; nothing
here or in the shared code changes, and no function branches on a cell's name.

Two kinds of kernel:

- :class:`Kernel`, the interface itself: the plain contract's ``forward``, ``backward`` and ``loss``, and
  ``run``, one layer's direction of a variant (what :mod:`variant_stack` stacks). The Elman kernel
  (:mod:`elman`) implements it directly.
- :class:`Gated`, the gated cells: the interface is implemented once, by :mod:`gated` (checks, the stacked
  input projection a = x U^T + b, the threads, the gradients' GEMMs), around the cell's layout (read from
  the catalogue: gates in stacking order, states, parameters) and its two step functions: ``recur`` (the
  forward recurrence) and ``recur_back`` (BPTT, returning the cell's :class:`Deltas`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rnnspec import catalogue
from rnnspec.kernels import checks
from rnnspec.kernels.numba_cache import keyed_by_source

Arrays = dict[str, np.ndarray]
#: the kernels by cell name, filled by load()
_KERNELS: dict[str, Kernel] = {}


class Kernel(ABC):
    """A cell's CPU kernel: what the shared code asks of it. ``entry`` is the cell's catalogue entry."""

    #: the parameters a caller may leave out (Elman's b); the catalogue's others are required
    optional: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name
        self.entry = catalogue.cell(name)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(k for k in self.entry.param_keys if k not in self.optional)

    @abstractmethod
    def forward(self, x, state0, params, activation: str) -> Arrays:
        """The plain contract's forward (arguments as rnnspec.kernels.forward takes them, unchecked)."""

    @abstractmethod
    def backward(self, x, state0, params, cotangents, activation: str) -> Arrays:
        """The plain contract's VJP."""

    @abstractmethod
    def loss(self, x, state0, params, targets, activation: str) -> tuple[np.generic, Arrays]:
        """The plain contract's softmax cross-entropy loss and its gradients."""

    @abstractmethod
    def run(self, x, state0, params, activation: str, tag: str):
        """One run (a layer's direction) of a variant, its arguments checked: an object with ``H``, ``P`` (the
        width of h), ``active`` (the rows running at each step, settable), ``set_input(x)``, ``run()``, then
        ``hs`` (and ``cs``, (T+1, B, .) each) and ``backward(direct, gc) -> gradients``. ``tag`` tells its
        scratch arrays apart from the other runs' of the same call."""


@dataclass
class Block:
    """The deltas of some consecutive gates of the stacked order, at every step (rows past their length zero).

    dL/dU of those gates = inputs^T x, their share of dL/dx = inputs U; dL/dW of those gates =
    recurrent^T previous, summed over steps and rows: ``previous`` is what their W multiplies in the step
    (h_{t-1}, or a gate times h_{t-1}). Each array is C-contiguous, (T, B, .)."""

    gates: str
    inputs: np.ndarray
    recurrent: np.ndarray
    previous: np.ndarray


@dataclass
class Deltas:
    """What a gated cell's BPTT hands back to the shared code: its blocks (covering every gate once, in order),
    dL/db of every gate stacked (G H,), dL/d of each initial state by its key (h0, c0), and the gradients of
    its parameters beyond U_k, W_k, b_k, by their keys."""

    blocks: list[Block]
    bias: np.ndarray
    states: Arrays
    extra: Arrays = field(default_factory=dict)


class Gated(Kernel):
    """A gated cell's kernel: its layout, read from the catalogue, and its steps (subclasses give them).

    ``run`` in the step functions is the call's :class:`gated._Run`: its checked ``params``, ``T``, ``B``,
    ``H``, ``P``, ``dtype``, ``one``, ``active``, the stacked input projection ``a`` (T, B, G H) = x U^T + b,
    ``gates`` (scratch of that shape), ``hs`` (T+1, B, P) holding h0, ``blas_rows`` and ``projection_rows``
    (loops.matmul_into), ``transposed`` (loops.step_product), ``panels`` (a weight packed for the step's products,
    or an empty array where they run by BLAS), and ``stack``/``param``/``scratch``."""

    #: whether the step has one sequential product, h_{t-1} by the stacked W of every gate, which may then run
    #: as (W h_{t-1}^T)^T (loops.step_product, where blas.transposed_wins)
    transposable = False

    @property
    def gates(self) -> str:
        """The gates in stacking order (the catalogue's canonical order)."""
        return self.entry.gates

    @functools.cached_property
    def per_gate_keys(self) -> dict[str, tuple[str, ...]]:
        """{"U": ("U_i", "U_f", ...), "W": ..., "b": ...}: each kind's keys of every gate in stacking order."""
        return {kind: tuple(f"{kind}_{g}" for g in self.gates) for kind in "UWb"}

    @functools.cached_property
    def per_gate_getters(self) -> dict[str, Callable[[dict], tuple]]:
        """For each kind, what takes its per_gate_keys' values out of a dict as a tuple, in one call (itemgetter of
        one key gives the value bare: a cell of one gate gets its 1-tuple made)."""
        return {kind: operator.itemgetter(*keys) if len(keys) > 1 else (lambda d, key=keys[0]: (d[key],))
                for kind, keys in self.per_gate_keys.items()}

    @property
    def extra(self) -> tuple[str, ...]:
        """The cell's parameters beyond U_k, W_k, b_k, in the catalogue's order."""
        return tuple(checks.GATED_CELLS[self.name][2])

    @abstractmethod
    def recur(self, run) -> None:
        """The forward recurrence over run.a: fills run.gates and run.hs[1:] (and run.cs for a cell state),
        and keeps on ``run`` what recur_back reads."""

    @abstractmethod
    def recur_back(self, run, direct: np.ndarray, gc: np.ndarray) -> Deltas:
        """BPTT from dL/dh_t (``direct``, (T, B, P)) and, for a cell with a cell state, dL/dc_t (``gc``
        (T, B, H), zeros where none was given); after recur on the same run."""

    def forward_at_once(self, call) -> Arrays | None:
        """None, or the plain forward's states computed in one compiled call where the call may (call.at_once()): a
        cell may give one where the Python between the passes costs a measured share. ``call`` is a gated._Call:
        the checked arguments (``x``, ``state0``, ``per_gate``, ``param``, ``one``), no scratch or stacked arrays."""
        return None

    def loss_at_once(self, run, targets: np.ndarray):
        """None, or (loss, gradients) computed in one compiled call where the run may (run.at_once()): a cell may
        give one where the Python between the passes costs a measured share."""
        return None

    def forward(self, x, state0, params, activation: str) -> Arrays:
        from rnnspec.kernels.cpu import gated

        return gated.plain_forward(self, x, state0, params)

    def backward(self, x, state0, params, cotangents, activation: str) -> Arrays:
        from rnnspec.kernels.cpu import gated

        return gated.plain_backward(self, x, state0, params, cotangents)

    def loss(self, x, state0, params, targets, activation: str) -> tuple[np.generic, Arrays]:
        from rnnspec.kernels.cpu import gated

        return gated.plain_loss(self, x, state0, params, targets)

    def run(self, x, state0, params, activation: str, tag: str):
        from rnnspec.kernels.cpu import gated

        return gated._Run(self.name, x, state0, params, tag=tag)


def module_name(cell: str) -> str:
    """The module that holds the kernel of ``cell``."""
    return f"{__package__}.{cell.replace('-', '_')}"


def load() -> dict[str, Kernel]:
    """Every kernel of the catalogue's cells that has a module, by name (imported once, each module's jitted
    functions keyed by the kernels' sources: rnnspec.kernels.numba_cache)."""
    if not _KERNELS:
        found = {}
        with keyed_by_source():
            for name in catalogue.NAMES:
                if importlib.util.find_spec(module_name(name)) is None:
                    continue
                kernel = importlib.import_module(module_name(name)).KERNEL
                assert kernel.name == name, f"{module_name(name)}.KERNEL is the kernel of {kernel.name!r}, not {name!r}"
                found[name] = kernel
        _KERNELS.update(found)
    return _KERNELS


@functools.cache
def names() -> tuple[str, ...]:
    """The cells that have a CPU kernel, in the catalogue's order."""
    return tuple(load())


def kernel(cell: object) -> Kernel:
    """The kernel of ``cell``; a ValueError naming the argument for a cell without one (or not a cell)."""
    found = _KERNELS.get(cell) if type(cell) is str else None  # the common case, at once
    return found if found is not None else load()[checks.cell_name(cell, names())]
