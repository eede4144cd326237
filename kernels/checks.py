"""Argument checks at the Python boundary, before any jitted code runs.

Every failure names the argument, what was expected and what was given. Arrays are normalised once,
here: a masked array is refused (its mask would be ignored), as is a dtype the kernels do not compute
in; a subclass (``numpy.memmap``, a framework's array type) becomes a plain ``numpy.ndarray`` view of
its data, so that no result takes its class. Arrays of any memory layout, read-only ones included
(memory-mapped weights, broadcast views, another framework's buffers), are accepted; :func:`contiguous`
makes the one C-contiguous, writable copy the jitted code needs, and only when needed: Numba types a
read-only array apart and compiles every function that receives one again, and refuses it where a
kernel writes into an argument of the same type. Nothing the caller passed is ever written to.

Flags follow one rule for every entry point and path: :func:`flag` (``bool`` or ``numpy.bool_``),
:func:`count` (``int`` or a NumPy integer, never ``bool`` or a whole ``float``), :func:`choice` (a
``str``, ``numpy.str_`` included, from a fixed set). An array given for any of them is refused by name,
never compared elementwise.
"""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np

from rnnspec import catalogue

FLOAT_DTYPES = tuple(np.dtype(name) for name in catalogue.DTYPES)
#: 1 in each float dtype, as the kernels' loops take it (dtype.type(1) took 0.25 us, once or twice a small call)
ONES = {dtype: dtype.type(1) for dtype in FLOAT_DTYPES}
ACTIVATIONS = catalogue.ELMAN_ACTIVATIONS
#: what a variant with lengths reports at the steps past a row's length (kernels/cpu/variants.py)
PADDING = ("zero", "carry")


def given_as(value: object) -> str:
    """How a message shows a value the caller gave: its repr (cut short) and, where the repr hides it, its type."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    kind = type(value)
    return text if kind in (bool, int, float, str) else f"{text} ({kind.__module__}.{kind.__qualname__})"


def choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value`` as a plain ``str`` if it is one of ``allowed`` (a ``numpy.str_`` too), else a ValueError
    naming ``name``; an array is refused, never compared elementwise."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, got {given_as(value)}")
    return str(value)


def flag(name: str, value: object) -> bool:
    """``value`` as a ``bool`` if it is ``True`` or ``False`` (a ``numpy.bool_`` too), else a TypeError naming
    ``name``: 0 and 1, strings and arrays are refused (``bidirectional="no"`` would read as true)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name}: expected True or False (a bool or numpy.bool_), got {given_as(value)}")


def count(name: str, value: object, least: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (an ``int`` or a NumPy integer scalar) of at least ``least``.
    A TypeError naming ``name`` for anything else, ``bool`` and whole floats such as ``1.0`` included (a
    float count is a caller's slip, and ``True`` reads as 1); a ValueError below ``least``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        hint = "; a float is refused even when whole" if isinstance(value, float | np.floating) else ""
        raise TypeError(f"{name}: expected an integer >= {least} (an int or NumPy integer), got "
                        f"{given_as(value)}{hint}")
    if value < least:
        raise ValueError(f"{name}: expected an integer >= {least}, got {int(value)}")
    return int(value)


def activation_code(activation: object) -> int:
    return ACTIVATIONS.index(choice("activation", activation, ACTIVATIONS))


def host(value):
    """A device array's values on the host; anything else unchanged."""
    return value.copy_to_host() if hasattr(value, "copy_to_host") else value


def on_device(value) -> bool:
    """A CUDA device array: numba's, or anything with ``__cuda_array_interface__``."""
    return hasattr(value, "copy_to_host") or hasattr(value, "__cuda_array_interface__")  # numba's first: cheaper


def _not_masked(name: str, value: object) -> None:
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name}: masked arrays are not accepted (their mask would be ignored); pass "
                        f"{name}.filled(value) or a plain numpy.ndarray")


def plain(value: np.ndarray) -> np.ndarray:
    """``value`` as a base-class ``numpy.ndarray``: a view of a subclass's data (no copy), itself otherwise."""
    return value if type(value) is np.ndarray else value.view(np.ndarray)


def _dtype_name(dtype: np.dtype) -> str:
    """A dtype as messages show it, its byte order said where it is not the machine's (``>f8`` reads as float64)."""
    if dtype.byteorder not in "=|" and dtype.newbyteorder("=") in FLOAT_DTYPES:
        return f"{dtype.newbyteorder('=')} in non-native byte order ({dtype.str}; astype({dtype.newbyteorder('=')}))"
    return str(dtype)


def array(name: str, value: object, ndim: int, device_ok: bool = False) -> np.ndarray:
    """``value`` checked: a numpy.ndarray (or, with ``device_ok``, a CUDA device array) of ``ndim`` dimensions,
    float32 or float64, not masked; a subclass comes back as a plain ndarray view of the same data."""
    if type(value) is np.ndarray and value.ndim == ndim and value.dtype in FLOAT_DTYPES:
        return value  # the common case, at once (a subclass such as a masked array takes the checks below)
    if not isinstance(value, np.ndarray) and not (device_ok and on_device(value)):
        expected = "a numpy.ndarray or a CUDA device array" if device_ok else "a numpy.ndarray"
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    _not_masked(name, value)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {_dtype_name(value.dtype)}")
    if value.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {value.shape}")
    return plain(value) if isinstance(value, np.ndarray) else value


def integers(name: str, value: object, what: str) -> np.ndarray:
    """``value`` checked as an array of integers (``what`` says which, for the message), not masked, as a
    plain ndarray (lengths, targets; their shapes and ranges are the caller's to check)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of {what}, got {given_as(value)}")
    _not_masked(name, value)
    if value.dtype.kind not in "iu":  # timedelta64 counts as an integer to np.issubdtype
        raise TypeError(f"{name}: expected a numpy.ndarray of {what} (an integer dtype), got dtype "
                        f"{_dtype_name(value.dtype)}")
    return plain(value)


def same_dtype(reference: str, dtype: np.dtype, **arrays: np.ndarray | None) -> None:
    for name, value in arrays.items():
        if value is not None and value.dtype != dtype:
            raise TypeError(f"{name}: dtype {value.dtype} differs from {reference}'s {dtype}; "
                            "all arrays must share one float dtype")


def shape(name: str, value: np.ndarray, expected: tuple[int, ...], meaning: str, why: str = "") -> None:
    if value.shape != expected:
        hint = " (transposed?)" if len(expected) == 2 and value.shape == expected[::-1] else ""
        raise ValueError(f"{name}: expected shape {meaning}={expected}, got {value.shape}{hint}{why}")


def decide(size: str, votes: list[tuple[str, int]]) -> tuple[int, str]:
    """The size most arguments agree on (the first listed wins a tie), and which arguments set it."""
    counts = Counter(n for _, n in votes)
    best = max(counts.values())
    value = next(n for _, n in votes if counts[n] == best)
    return value, f"{size}={value} from {', '.join(dict.fromkeys(a for a, n in votes if n == value))}"


def contiguous(value: np.ndarray) -> np.ndarray:
    """What jitted code may take: a C-contiguous, aligned, writable array with the same values (the argument
    itself when it already is one; else one copy). Writable because Numba compiles a read-only array as a
    type of its own, which a kernel that writes into another argument of that type cannot take; the
    kernels never write into what they are given here."""
    # the common case at once: numpy's one flag for C-contiguous, aligned and writeable (np.require took 0.9 us to
    # say so, a dozen times a small call; three flags 0.10 us, this one 0.07)
    if value.flags.carray:
        return value
    return np.require(value, requirements="CAW")


def elman_step_args(x, h0, U, W, b, device_ok: bool = False) -> tuple[int, int, int, int]:
    """Check x (T, B, I), h0 (B, H), U (H, I), W (H, H), b (H,) or None; return T, B, I, H."""
    return elman_arrays(x, h0, U, W, b, device_ok)[1]


def elman_arrays(x, h0, U, W, b, device_ok: bool = False, h0_name: str = "h0") -> tuple[tuple, tuple[int, ...]]:
    """((x, h0, U, W, b), (T, B, I, H)): the arguments of elman_step_args, each checked and a plain array
    (b stays None when absent). ``h0_name`` is what messages call h0 (``state0['h0']`` in the any-cell API)."""
    accepted = _elman_consistent(x, h0, U, W, b)
    if accepted is not None:
        return accepted
    x = array("x", x, 3, device_ok)
    h0 = array(h0_name, h0, 2, device_ok)
    U = array("U", U, 2, device_ok)
    W = array("W", W, 2, device_ok)
    if b is not None:
        b = array("b", b, 1, device_ok)
    same_dtype("x", x.dtype, **{h0_name: h0}, U=U, W=W, b=b)
    T, B, I = x.shape
    H = W.shape[0]
    if W.shape == (H, H) and h0.shape == (B, H) and U.shape == (H, I) and (b is None or b.shape == (H,)):
        return (x, h0, U, W, b), (T, B, I, H)  # consistent: at once, without the messages below (3 us)
    # H is what most arguments say, so that the message blames the one odd argument out
    H, why_h = decide("H", [("W", W.shape[0]), ("W", W.shape[1]), (h0_name, h0.shape[1]), ("U", U.shape[0])]
                      + ([("b", b.shape[0])] if b is not None else []))
    why = f" ({why_h}; I={I} from x)"
    shape("W", W, (H, H), "(H, H)", why)
    shape(h0_name, h0, (B, H), "(B, H)", f" ({why_h}; B={B} from x)")
    shape("U", U, (H, I), "(H, I)", why)
    if b is not None:
        shape("b", b, (H,), "(H,)", why)
    return (x, h0, U, W, b), (T, B, I, H)


def _elman_consistent(x, h0, U, W, b) -> tuple | None:
    """elman_arrays' result at once where it has nothing to say: plain numpy.ndarrays of one float dtype, of the
    shapes x gives and W's H (b None or (H,)); else None, and the checks one by one run, naming what is wrong
    (2.0 -> 0.9 us at S1, as checks._consistent does for the gated cells)."""
    if not (type(x) is np.ndarray and type(h0) is np.ndarray and type(U) is np.ndarray and type(W) is np.ndarray
            and (b is None or type(b) is np.ndarray) and x.ndim == 3 and x.dtype in FLOAT_DTYPES and W.ndim == 2):
        return None
    dtype = x.dtype
    T, B, I = x.shape
    H = W.shape[0]
    if (h0.dtype == dtype and U.dtype == dtype and W.dtype == dtype and (b is None or b.dtype == dtype)
            and W.shape == (H, H) and h0.shape == (B, H) and U.shape == (H, I) and (b is None or b.shape == (H,))):
        return (x, h0, U, W, b), (T, B, I, H)
    return None


def targets_arg(targets, T: int, B: int, K: int) -> np.ndarray:
    """The class indices (T, B), checked, as a C-contiguous int64 array jitted code may take."""
    targets = integers("targets", targets, "class indices")
    shape("targets", targets, (T, B), "(T, B)")
    if targets.size:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= K:
            raise ValueError(f"targets: class indices must lie in [0, K={K}), got values in [{low}, {high}]")
    return contiguous(targets.astype(np.int64, copy=False))


def _per_gate(entry: catalogue.Cell) -> tuple[str, ...]:
    """The names of a gated cell's per-gate parameters: U_k, W_k, b_k for every gate k (catalogue order)."""
    return tuple(f"{kind}_{g}" for kind in "UWb" for g in entry.gates)


#: the gated cells (the catalogue's cells with gates): their gates in stacking order, the initial states, and the
#: parameters beyond U_k, W_k, b_k with their shapes in the sizes H and P (the LSTM's projection size; P = H
#: without one). Read from rnnspec.catalogue, never written here.
GATED_CELLS = {entry.name: (entry.gates, tuple(f"{s}0" for s in entry.states),
                            {p.key: p.shape for p in entry.params if p.key not in _per_gate(entry)})
               for entry in catalogue.CELLS.values() if entry.gates}
HEAD_PARAMS = ("V", "c")


def cell_name(cell: object, allowed: tuple[str, ...]) -> str:
    """``cell`` if it is one of ``allowed``; a name the catalogue refuses gets its reason, any other a ValueError
    naming the choices."""
    if isinstance(cell, str) and cell in catalogue.REFUSED:
        raise ValueError(f"cell: {catalogue.REFUSED[cell]}")
    return choice("cell", cell, allowed)


def named_arrays(what: str, given: object, required: tuple[str, ...], optional: tuple[str, ...], cell: str) -> dict:
    """A copy of the dict ``given`` (state0, params, cotangents), after checking that it holds every
    ``required`` key and nothing but those and the ``optional`` ones (a misspelt name is named)."""
    if not hasattr(given, "keys"):
        raise TypeError(f"{what}: expected a dict of arrays, got {type(given).__name__}")
    if len(given) == len(required) and all(k in given for k in required):
        return dict(given)  # the common case, at once
    allowed = set(required + optional)
    missing = [k for k in required if k not in given]
    unknown = [k for k in given if k not in allowed]
    if missing or unknown:
        problems = ([f"missing {missing}"] if missing else []) + ([f"unexpected {unknown}"] if unknown else [])
        raise ValueError(f"{what}: {' and '.join(problems)}; the {cell} cell takes {list(required)}"
                         + (f" (and {list(optional)})" if optional else ""))
    return dict(given)


def gated_args(cell: str, x, state0, params, head: bool = False, device_ok: bool = False):
    """gated_inputs without x: (T, B, I, H, state0, params)."""
    return gated_inputs(cell, x, state0, params, head, device_ok)[1:]


def gated_inputs(cell: str, x, state0, params, head: bool = False, device_ok: bool = False):
    """Check x (T, B, I), state0 {h0 (B, P) (and c0 (B, H))}, params {U_k (H, I), W_k (H, P), b_k (H,) for
    every gate k, and the cell's extras; V (K, P), c (K,) when ``head``}, where P = H but for the projected
    LSTM (W_hr (P, H)). Returns (x, T, B, I, H, state0, params) with every array checked and a plain
    ndarray (:func:`array`), the dicts copied (never the arrays).

    The common case (everything consistent) costs a few microseconds: the shapes and dtypes are
    compared at once, and only a mismatch builds the messages that name the odd argument out.
    """
    accepted = _consistent(cell, x, state0, params, head)
    if accepted is not None:
        return accepted
    gates, state_keys, extra = GATED_CELLS[cell]
    x = array("x", x, 3, device_ok)
    T, B, I = x.shape
    state0 = named_arrays("state0", state0, state_keys, (), cell)
    names = _PARAM_NAMES[cell]
    params = named_arrays("params", params, names + (HEAD_PARAMS if head else ()), () if head else HEAD_PARAMS, cell)
    for key in state_keys:
        state0[key] = array(f"state0[{key!r}]", state0[key], 2, device_ok)
    for key, value in params.items():
        params[key] = array(key, value, _NDIM.get(key, 2), device_ok)
    if len({x.dtype, *(v.dtype for v in state0.values()), *(v.dtype for v in params.values())}) > 1:
        same_dtype("x", x.dtype, **{f"state0[{k!r}]": v for k, v in state0.items()}, **params)
    H = params[_H_FROM[cell]].shape[0]
    P = _size(cell, "P", params, H)
    K = params["V"].shape[0] if head else 0
    given = {**state0, **params}
    if any(given[key].shape != wanted for key, wanted in _expected_shapes(cell, B, I, H, P, K, head)):
        _name_the_odd_shape(cell, B, I, state0, params, head)
    return x, T, B, I, H, state0, params


_PARAM_NAMES = {cell: catalogue.cell(cell).param_keys for cell in GATED_CELLS}
#: the parameter whose rows give each gated cell's H: its first gate's W
_H_FROM = {cell: f"W_{gates[0]}" for cell, (gates, _, _) in GATED_CELLS.items()}
#: each gated cell's state0 keys and its params keys without and with the head, as _consistent compares them
_KEYS = {cell: (frozenset(state_keys), frozenset(_PARAM_NAMES[cell]), frozenset(_PARAM_NAMES[cell] + HEAD_PARAMS))
         for cell, (_, state_keys, _) in GATED_CELLS.items()}


def _consistent(cell: str, x, state0, params, head: bool):
    """gated_inputs' result at once where it has nothing to say: x and every array a plain numpy.ndarray of one float
    dtype and of the shape the others give it, dicts with exactly the cell's keys; else None, and gated_inputs
    checks each argument in turn, naming what is wrong. A small call's checks took 13 of its 130 us one by one."""
    if (type(x) is not np.ndarray or x.ndim != 3 or x.dtype not in FLOAT_DTYPES or type(state0) is not dict
            or type(params) is not dict):
        return None
    state_keys, names, with_head = _KEYS[cell]
    if state0.keys() != state_keys or params.keys() != (with_head if head else names):
        return None
    given = {**state0, **params}
    dtype = x.dtype
    try:  # the sizes from the arguments that give them, whatever those are (the loop below checks them too)
        H = params[_H_FROM[cell]].shape[0]
        P = _size(cell, "P", params, H)
        K = params["V"].shape[0] if head else 0
    except Exception:  # anything odd is for gated_inputs to name, argument by argument
        return None
    T, B, I = x.shape
    # one plain loop over every argument (its keys are the dicts' keys, compared above), not any() of a generator:
    # 4.4 -> 3.4 us for the LSTM's 14 arrays in two loops, 3.6 -> 3.4 in one
    for key, wanted in _expected_shapes(cell, B, I, H, P, K, head):
        value = given[key]
        if type(value) is not np.ndarray or value.dtype != dtype or value.shape != wanted:
            return None
    return x, T, B, I, H, dict(state0), dict(params)
#: for each cell and size name, the first parameter whose shape names that size, and the axis
_SIZE_AT = {cell: {size: (p.key, axis) for p in reversed(catalogue.cell(cell).params)
                   for axis, size in reversed(list(enumerate(p.shape)))} for cell in GATED_CELLS}
_NDIM = {"c": 1, **{p.key: len(p.shape) for entry in catalogue.CELLS.values() for p in entry.params}}


def _size(cell: str, size: str, params: dict, default: int) -> int:
    """The size named ``size`` as the first of the cell's parameters whose shape names it gives it (``default``
    where none does: P = H but for the projected LSTM)."""
    where = _SIZE_AT[cell].get(size)
    return default if where is None else params[where[0]].shape[where[1]]


def _state_width(entry: catalogue.Cell, state: str) -> str:
    """The size name of a state's width: h is the cell's output (P wide for the projected LSTM), any other
    state (the LSTM's c) is H wide."""
    return entry.width if state == "h" else "H"


#: each gated cell's states and the size name of each one's width
_STATE_WIDTHS = {cell: {s: _state_width(catalogue.cell(cell), s) for s in catalogue.cell(cell).states}
                 for cell in GATED_CELLS}


@functools.lru_cache(maxsize=256)
def _expected_shapes(cell: str, B: int, I: int, H: int, P: int, K: int, head: bool) -> tuple:
    """(argument, shape) for every argument: _shapes without the messages, kept for the sizes seen last."""
    return tuple((key, wanted) for key, (wanted, _) in _shapes(cell, B, I, H, P, K, head).items())


def _shapes(cell: str, B: int, I: int, H: int, P: int, K: int, head: bool) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every argument's expected shape, and how to say it: the catalogue's shapes, in the sizes given."""
    entry = catalogue.cell(cell)
    sizes = {"B": B, "I": I, "H": H, "P": P, "K": K}
    said = lambda dims: "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    named = {f"{s}0": ("B", _state_width(entry, s)) for s in entry.states}
    named.update({p.key: p.shape for p in entry.params})
    if head:
        named.update(V=("K", entry.width), c=("K",))
    return {key: (tuple(sizes[d] for d in dims), said(dims)) for key, dims in named.items()}


def _name_the_odd_shape(cell: str, B: int, I: int, state0: dict, params: dict, head: bool) -> None:
    """Raise the ValueError that names the argument whose shape disagrees with the others."""
    entry = catalogue.cell(cell)
    given = {**state0, **params}
    named = {f"{s}0": ("B", _state_width(entry, s)) for s in entry.states}
    named.update({p.key: p.shape for p in entry.params})
    # every argument votes for each size its shape names (the first listed wins a tie: the parameters' first)
    votes: dict[str, list[tuple[str, int]]] = {"H": [], "P": []}
    for key in [*(p.key for p in entry.params), *named]:
        for axis, size in enumerate(named[key]):
            if size in votes and axis < given[key].ndim:
                votes[size].append((key, given[key].shape[axis]))
    H, why_h = decide("H", votes["H"])
    why = f" ({why_h}; I={I} from x)"
    P = H
    if votes["P"]:
        P, why_p = decide("P", votes["P"])
        why = f" ({why_h}; {why_p}; I={I} from x)"
    K = params["V"].shape[0] if head else 0
    shapes = _shapes(cell, B, I, H, P, K, head)
    for key in state0:
        shape(f"state0[{key!r}]", state0[key], *shapes[key], f" ({why_h}; B={B} from x)")
    for key in [*entry.param_keys, *(HEAD_PARAMS if head else ())]:
        shape(key, params[key], *shapes[key], f" (K={K} from V)" if key == "c" else why)


def one_params_form(params, named: dict):
    """The parameters given as one dict (``params``) or as named arguments (``named``), never both."""
    if params is not None and named:
        raise TypeError(f"give the parameters as one dict or as named arguments, not both (named: {sorted(named)})")
    return named if params is None else params


def elman_dicts(state0, params, head: bool = False) -> tuple:
    """(h0, params) of the Elman cell from the any-cell API's dicts, each key checked by name; with ``head``
    (the loss), V and c are required."""
    required = ("U", "W", *HEAD_PARAMS) if head else ("U", "W")
    params = named_arrays("params", params, required, ("b",) if head else ("b", *HEAD_PARAMS), "elman")
    return named_arrays("state0", state0, ("h0",), (), "elman")["h0"], params


def gated_cotangents(cell: str, cotangents, dtype, T: int, B: int, H: int, P: int, device_ok: bool = False) -> dict:
    """The cotangents {"h": (T, B, P)} (and, for the LSTMs, optionally {"c": (T, B, H)}) of a gated cell's
    VJP, each checked; P = H but for the projected LSTM."""
    widths = _STATE_WIDTHS[cell]
    given = named_arrays("cotangents", cotangents if cotangents is not None else {}, ("h",),
                         tuple(s for s in widths if s != "h"), cell)
    for key, value in given.items():
        value = array(f"cotangents[{key!r}]", value, 3, device_ok)
        same_dtype("x", dtype, **{f"cotangents[{key!r}]": value})
        shape(f"cotangents[{key!r}]", value, (T, B, {"H": H, "P": P}[widths[key]]), f"(T, B, {widths[key]})")
        given[key] = value
    return given
