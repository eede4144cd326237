"""What a target declares (cells, dtypes, activations, accuracy class, methods), read and checked once.

:func:`declarations` reads the attributes where the target lives (in the worker process when the
target was named on the command line) and never raises: an attribute that raises is recorded.
:func:`declared` turns that record into a :class:`Declared` or a :class:`UsageError` that says what
is wrong, before any case runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnspec import catalogue
from rnnspec.derivations.cells import ACTIVATIONS
from rnnspec.spec import tolerance as tol

METHODS = ("forward", "vjp", "loss")
KNOWN_DTYPES = catalogue.DTYPES
KNOWN_ACTIVATIONS = tuple(ACTIVATIONS)


class UsageError(Exception):
    """The target does not declare what the suite needs, or an option is wrong (exit code 2)."""


def is_count(value) -> bool:
    """A positive whole number (not a bool): what ``shapes`` and ``max_T`` must be."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


_DEFAULTS = {"cell": "elman", "cells": None, "dtypes": ("float64",), "activations": None, "activation": "tanh",
             "accuracy": tol.DEFAULT_ACCURACY, "device": "cpu", "variants": (), "shapes": None,
             "max_T": None, "first_call_timeout": None}

#: what a target may declare in ``variants``: each feature it implements; any combination of them is checked.
#: ``state0=default``: called with no initial states, it starts from its framework's own default (zeros)
VARIANT_FEATURES = ("layers", "bidirectional", "lengths=zero", "lengths=carry", "state0=default", "clip", "activations")


def declarations(impl) -> dict:
    """The target's declared attributes as plain values; ``errors`` names each attribute that raised."""
    out, errors = {}, {}
    for name, default in _DEFAULTS.items():
        try:
            value = getattr(impl, name, default)
        except Exception as exc:  # a property of the user's that raises: a usage error, reported
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        out[name] = tuple(value) if isinstance(value, (list, tuple)) else value
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            out[name] = dict(value)
        elif not isinstance(out[name], (str, int, float, tuple, type(None))):
            out[name] = repr(out[name])
    methods = []
    for method in METHODS:
        try:
            if callable(getattr(impl, method, None)):
                methods.append(method)
        except Exception as exc:
            errors[method] = f"{type(exc).__name__}: {exc}"
    out.update(methods=tuple(methods), errors=errors, target_class=f"{type(impl).__module__}.{type(impl).__qualname__}",
               callable=callable(impl) and not methods)
    return out


@dataclass(frozen=True)
class Declared:
    #: the cells it implements, the default first
    cells: tuple[str, ...]
    dtypes: tuple[str, ...]
    activations: tuple[str, ...]
    #: an accuracy class (a name or a number of ulps), or one per dtype ({"float32": 8})
    accuracy: str | float | dict
    methods: tuple[str, ...]
    device: str = "cpu"
    target_class: str = ""
    #: the variant features it implements (VARIANT_FEATURES); () for one forward layer over full sequences
    variants: tuple[str, ...] = ()
    #: a target that compiles a program per shape (jax.jit) asks for its generated cases on this many shapes
    #: (:func:`rnnspec.spec.cases.few_shapes`); None: every case its own shape
    shapes: int | None = None
    #: the longest sequence of those few shapes, for a target whose program grows with T (it unrolls the steps:
    #: torch.compile of nn.LSTM): each shape's T is min(T, max_T). None: T as drawn. ``--shapes all`` ignores it
    max_T: int | None = None
    #: seconds a call that may compile is allowed at the default per-call timeout (a target that compiles for
    #: longer than the warm-up gives it); the runner scales it as it scales every limit, by timeout / the default
    #: (:meth:`rnnspec.spec.runner.Session.limit`; docs/compilers.md). None: the warm-up alone
    first_call_timeout: float | None = None

    def admits_variant(self, variant) -> None:
        """A usage error unless the target declares every feature ``variant`` uses."""
        missing = [n for n in variant.features if n not in self.variants]
        if missing:
            raise UsageError(f"--variant {variant.name}: the target ({self.target_class}) does not declare "
                             f"{missing} in its variants {self.variants} (known features: {VARIANT_FEATURES})")

    def accuracy_of(self, dtype: str) -> str | float:
        if isinstance(self.accuracy, dict):
            return self.accuracy.get(dtype, tol.DEFAULT_ACCURACY)
        return self.accuracy

    def ulps(self, dtype: str) -> float:
        return tol.accuracy_ulps(self.accuracy_of(dtype))

    def accuracy_label(self, dtypes: tuple[str, ...]) -> str:
        """The accuracy class each of ``dtypes`` (those the run checked) is judged under."""
        return ", ".join(f"{d}: {tol.describe_accuracy(self.accuracy_of(d))}" for d in dtypes)

    def choose(self, cell: str | None) -> str:
        """The cell to check: ``cell`` if the target implements it (a usage error if not), else its first."""
        if cell is None:
            return self.cells[0]
        if cell not in self.cells:
            raise UsageError(f"the target ({self.target_class}) implements cells {self.cells}, not {cell!r}")
        return cell

    def activations_of(self, cell: str) -> tuple[str, ...]:
        """The activations to test for ``cell``: the declared ones for Elman; a gated cell's are fixed."""
        from rnnspec.derivations.registry import cell as registered

        return self.activations if cell == "elman" else registered(cell).activations

    def admits(self, case) -> None:
        """A usage error unless the target declares the case's cell, dtype, activation and variant."""
        from rnnspec.derivations.variants import parse_variant

        self.choose(case.cell)
        self.admits_variant(parse_variant(case.variant))
        if case.dtype not in self.dtypes:
            raise UsageError(f"--case: dtype {case.dtype!r} is not among the target's dtypes {self.dtypes}")
        if case.activation not in self.activations_of(case.cell):
            raise UsageError(f"--case: activation {case.activation!r} is not among the target's activations "
                             f"{self.activations_of(case.cell)} for cell {case.cell!r}")


def _names(field: str, value, known: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, tuple) or not value or not all(isinstance(v, str) for v in value):
        raise UsageError(f"the target declares {field} = {value!r}; expected a non-empty tuple of names from {known}")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise UsageError(f"the target declares {field} {value}: unknown {unknown}; known: {known}")
    return value


def declared(raw: dict) -> Declared:
    """The checked declarations of a target, or a UsageError naming what is wrong."""
    for name, problem in raw["errors"].items():
        raise UsageError(f"reading the target's {name!r} raised {problem}")
    if not raw["methods"]:
        hint = (" (it is a function: wrap functions with rnnspec.spec.wrap.from_functions)" if raw["callable"]
                else "")
        raise UsageError(f"the target ({raw['target_class']}) has none of the contract's methods "
                         f"{', '.join(METHODS)}{hint}")
    if "forward" not in raw["methods"]:
        raise UsageError(f"the target ({raw['target_class']}) has no forward(), the contract's one required method")
    field, cells = ("cells", raw["cells"]) if raw["cells"] is not None else ("cell", raw["cell"])
    for name in (cells,) if isinstance(cells, str) else cells if isinstance(cells, tuple) else ():
        if isinstance(name, str) and name in catalogue.REFUSED:
            raise UsageError(f"the target declares {field} = {cells!r}: {catalogue.REFUSED[name]}")
    cells = _names(field, cells, catalogue.NAMES)
    dtypes = _names("dtypes", raw["dtypes"], KNOWN_DTYPES)
    activations = _names("activations", raw["activations"] or raw["activation"], KNOWN_ACTIVATIONS)
    classes = raw["accuracy"].values() if isinstance(raw["accuracy"], dict) else (raw["accuracy"],)
    try:
        for accuracy in classes:
            tol.accuracy_ulps(accuracy)
    except ValueError as exc:
        raise UsageError(f"the target's {exc}") from None
    variants = _names("variants", raw["variants"], VARIANT_FEATURES) if raw["variants"] else ()
    shapes = raw.get("shapes")
    if shapes is not None and not is_count(shapes):
        raise UsageError(f"the target declares shapes = {shapes!r}; expected a positive whole number of shapes "
                         "per run (or None: every case its own shape)")
    first = raw.get("first_call_timeout")
    if first is not None and (isinstance(first, bool) or not isinstance(first, (int, float))
                              or not 0 < first < float("inf")):
        raise UsageError(f"the target declares first_call_timeout = {first!r}; expected a positive, finite number "
                         "of seconds (or None: a first call gets the warm-up limit alone)")
    max_T = raw.get("max_T")
    if max_T is not None and not is_count(max_T):
        raise UsageError(f"the target declares max_T = {max_T!r}; expected a positive whole number of steps (the "
                         "longest T of its few shapes) or None")
    if max_T is not None and shapes is None:
        raise UsageError(f"the target declares max_T = {max_T} but no shapes: max_T bounds the T of the few shapes "
                         "its cases take (declare shapes = N too)")
    return Declared(cells, dtypes, activations, raw["accuracy"], raw["methods"], str(raw["device"]),
                    raw["target_class"], variants, shapes, max_T, first)
