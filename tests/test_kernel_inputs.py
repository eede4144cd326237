"""Valid input always accepted, bad input always named (issue 39): every CPU kernel entry point on inputs of
any memory layout, read-only, strided, of a subclass, and on NumPy scalar types for every flag.

The first tests pin each item the issue found, one by one. The property test then draws, for every
registered cell and every code path the kernels choose between (forced), an entry point, a variant, sizes
and, for every argument, one form of it; the result must be the same bits as the plain C-contiguous
arguments give, in plain ndarrays, with the caller's arrays untouched, or, where one argument is made
invalid on purpose, a TypeError or ValueError whose message names that argument.
"""

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnspec import catalogue, kernels
from rnnspec.derivations.variants import parse_variant
from rnnspec.kernels import checks
from rnnspec.kernels.cpu import blas, cells, elman, gated, panels, rows, split
from rnnspec.spec.contract import Keywords, contract

#: the cells the kernels take (test_the_kernels_take_every_cell_of_the_catalogue: all of the catalogue's)
CELL_NAMES = cells.names()
GATED = tuple(name for name in CELL_NAMES if isinstance(cells.kernel(name), cells.Gated))
#: kernel calls made by this module's tests, by entry point (printed at the end of the module with -s)
CALLS: Counter = Counter()


class Sub(np.ndarray):
    """A subclass as another library might hand one over: it must not be the class of any result."""


def _projected(cell) -> bool:
    return "P" in dict(contract(cell).cell.sizes)


def arrays_of(cell, variant, dtype, T, B, I, H, K, P, seed) -> dict:
    """Every array of a case, named as spec.cases.Case.arrays names them (shapes from spec.contract), with
    values of order 1 and contracting weights (entries of scale 0.5 / sqrt(fan-in)); lengths in [0, T] with T
    among them. Not Case.arrays itself: its spectral radii took over a second a matrix at H = 256 here."""
    con, rng = contract(cell, variant), np.random.default_rng(seed)
    draw = lambda shape, scale=0.5: (rng.standard_normal(shape) * scale).astype(dtype)
    out = {"x": draw((T, B, I)), **{k: draw(shape) for k, shape in con.state_shapes(B, H, P).items()}}
    out.update({k: draw(shape, 0.5 / np.sqrt(shape[-1])) for k, shape in con.param_shapes(I, H, K, P).items()})
    out.update({"cot_" + k: draw(shape) for k, shape in con.output_shapes(T, B, H, P).items()})
    out["targets"] = rng.integers(0, K, (T, B))
    if con.variant.lengths:
        out["lengths"] = rng.integers(0, T + 1, B)
        out["lengths"][rng.integers(B)] = T
    return out


def _case(cell, variant="", dtype="float64", T=3, B=2, I=2, H=4, K=3, seed=0):
    """A case's arrays and the keyword arguments of its variant (spec.contract says which)."""
    P = max(H - 1, 1) if _projected(cell) else 0
    arrays = arrays_of(cell, variant, dtype, T, B, I, H, K, P, seed)
    v = parse_variant(variant)
    options = {} if v.plain else {"layers": v.layers, "bidirectional": v.bidirectional,
                                  "lengths": arrays.get("lengths"), "padding": v.lengths or "zero"}
    return contract(cell, variant), arrays, options


def _args(con, method, arrays) -> list:
    """The positional arguments of ``method`` (spec.contract's, without its Keywords: see _case)."""
    return [a for a in con.call_args(method, arrays) if not isinstance(a, Keywords)]


def _call(method, cell, variant="", change=None, **options):
    """(method's result, the arguments it was given) for a case of ``cell``; ``change`` maps an argument's
    dict path (("params", "W_f"), ("x",)) to the value put in its place; ``options``: _case's, and the
    keyword arguments of the call."""
    keywords = {k: options.pop(k) for k in ("layers", "bidirectional", "padding") if k in options}
    con, arrays, kw = _case(cell, variant, **options)
    kw.update(keywords)
    args = _args(con, method, arrays)
    for path, value in (change or {}).items():
        if len(path) == 1:
            args[0] = value
        else:
            args[{"state0": 1, "params": 2, "cot": 3}[path[0]]][path[1]] = value
    CALLS[method] += 1
    function = {"forward": kernels.forward, "vjp": kernels.backward, "loss": kernels.loss}[method]
    return function(cell, *args, **kw), args


def _same(got, want):
    """The same keys, each a plain ndarray (or NumPy scalar) of the same dtype, shape and bits."""
    got, want = _flat(got), _flat(want)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert type(got[key]) is type(value), (key, type(got[key]), type(value))
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert got[key].tobytes() == value.tobytes(), key


def _flat(result) -> dict:
    if isinstance(result, tuple):  # loss: (value, grads)
        return {"value": result[0], **result[1]}
    return dict(result) if isinstance(result, dict) else {"h": result}


# ---- the items, one test each ----------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELL_NAMES)
def test_1_numpy_bools_are_bools(cell):
    """bidirectional=np.False_ is False: the plain contract ({h, c}), and the LSTM's backward takes its plain
    cotangent c; np.True_ is True. Bits as with Python's bools."""
    for method in ("forward", "vjp", "loss"):
        plain, _ = _call(method, cell)
        numpy_false, _ = _call(method, cell, bidirectional=np.False_, layers=np.int64(1))
        _same(numpy_false, plain)
    both, _ = _call("forward", cell, "bidirectional")
    con, arrays, kw = _case(cell, "bidirectional")
    numpy_true = kernels.forward(cell, *_args(con, "forward", arrays), **{**kw, "bidirectional": np.True_})
    _same(numpy_true, both)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_2_masked_lengths_are_refused_and_a_subclass_gives_plain_arrays(cell):
    con, arrays, kw = _case(cell, "lengths=zero", B=3)
    lengths = arrays["lengths"]
    with pytest.raises(TypeError, match=r"lengths: masked arrays are not accepted"):
        kernels.forward(cell, *_args(con, "forward", arrays), **{**kw, "lengths": np.ma.array(lengths, mask=[1, 0, 0])})
    for method in ("forward", "vjp", "loss"):
        want, _ = _call(method, cell, "lengths=zero", B=3)
        function = {"forward": kernels.forward, "vjp": kernels.backward, "loss": kernels.loss}[method]
        _same(function(cell, *_args(con, method, arrays), **{**kw, "lengths": lengths.view(Sub)}), want)


@pytest.mark.parametrize("cell", catalogue.with_cell_state())
def test_3_read_only_cotangents(cell):
    """A read-only cotangent (setflags, or a broadcast view) reaches the LSTMs' BPTT and gives the same bits."""
    plain, args = _call("vjp", cell)
    h = args[3]["h"].copy()
    h.setflags(write=False)
    _same(_call("vjp", cell, change={("cot", "h"): h})[0], plain)
    row = args[3]["h"][:1].copy()
    spread, _ = _call("vjp", cell, change={("cot", "h"): np.broadcast_to(row, args[3]["h"].shape)})
    again, _ = _call("vjp", cell, change={("cot", "h"): np.repeat(row, args[3]["h"].shape[0], axis=0)})
    _same(spread, again)


@pytest.mark.parametrize("cell", split.CELLS)
def test_4_read_only_weights_on_the_two_thread_recurrence(cell, monkeypatch):
    """The issue's size (T=128, B=1, I=8, H=256: two threads by default on two cores; forced here, so that a
    one-core runner takes the same path), one read-only W_k, float32: the same bits as writable weights."""
    monkeypatch.setenv(split.FORCE, "always")
    took = []
    forward = split.Parts.forward
    monkeypatch.setattr(split.Parts, "forward", lambda self: (took.append(1), forward(self))[1])
    sizes = {"dtype": "float32", "T": 128, "B": 1, "I": 8, "H": 256}
    gate = checks.GATED_CELLS[cell][0][1]  # the second gate's W: the forget gate's, the update gate's
    for method in ("forward", "vjp"):
        plain, args = _call(method, cell, **sizes)
        weights = args[2][f"W_{gate}"].copy()
        weights.setflags(write=False)
        _same(_call(method, cell, change={("params", f"W_{gate}"): weights}, **sizes)[0], plain)
    assert len(took) == 4


def test_5_the_elman_loss_names_its_missing_head():
    con, arrays, _ = _case("elman")
    x, state0, params, targets = _args(con, "loss", arrays)
    for missing in ("V", "c"):
        with pytest.raises(ValueError, match=rf"params: missing \['{missing}'\]; the elman cell takes"):
            kernels.loss("elman", x, state0, {k: v for k, v in params.items() if k != missing}, targets)


def test_12_elman_names_the_cotangent_as_the_any_cell_api_calls_it():
    con, arrays, _ = _case("elman")
    x, state0, params, cot = _args(con, "vjp", arrays)
    with pytest.raises(ValueError, match=r"^cotangents\['h'\]: expected shape \(T, B, H\)=\(3, 2, 4\)"):
        kernels.backward("elman", x, state0, params, {"h": cot["h"][..., :3]})
    with pytest.raises(ValueError, match=r"^state0\['h0'\]: expected shape \(B, H\)"):
        kernels.forward("elman", x, {"h0": state0["h0"][:1]}, params)
    with pytest.raises(ValueError, match=r"^gh: expected shape"):  # the positional API keeps its own names
        kernels.elman_backward(x, state0["h0"], params["U"], params["W"], params["b"], cot["h"][..., :3])


@pytest.mark.parametrize("keyword,value,error", [
    ("cell", np.array(["lstm", "gru"]), ValueError), ("cell", np.array("lstm"), ValueError),
    ("layers", np.array([1, 2]), TypeError), ("bidirectional", np.array([False]), TypeError),
    ("padding", np.array(["zero"]), ValueError), ("activation", np.array(["tanh"]), ValueError),
])
def test_13_an_array_for_a_name_or_flag_is_named(keyword, value, error):
    con, arrays, _ = _case("lstm")
    args = _args(con, "forward", arrays)
    call = (lambda: kernels.forward(value, *args)) if keyword == "cell" else \
        (lambda: kernels.forward("lstm", *args, **{keyword: value}))
    with pytest.raises(error, match=rf"^{keyword}: expected"):
        call()


@pytest.mark.parametrize("variant", ["", "bidirectional"])
def test_14_layers_follow_one_rule_on_every_path(variant):
    """True and 1.0 are refused alike on the plain and the variant path; NumPy integers are integers."""
    con, arrays, kw = _case("gru-reset-before", variant)
    args = _args(con, "forward", arrays)
    for value, error, message in [(True, TypeError, r"got True$"),
                                  (np.True_, TypeError, r"got np\.True_ \(numpy\.bool"),
                                  (1.0, TypeError, r"got 1\.0; a float is refused even when whole"),
                                  (np.float64(1), TypeError, r"a float is refused"), (0, ValueError, r"got 0$")]:
        with pytest.raises(error, match=rf"^layers: expected an integer >= 1.*{message}"):
            kernels.forward("gru-reset-before", *args, **{**kw, "layers": value})
    want = kernels.forward("gru-reset-before", *args, **kw)
    for kind in (np.int64, np.int32, np.uint8):
        _same(kernels.forward("gru-reset-before", *args, **{**kw, "layers": kind(1)}), want)


@pytest.mark.parametrize("cell", GATED)
def test_a_state_of_another_dtype_is_named_as_state0(cell):
    """Found by the property test below: a gated cell's initial state of another dtype was named bare ('c0')."""
    con, arrays, _ = _case(cell)
    x, state0, params = _args(con, "forward", arrays)
    for key in state0:
        with pytest.raises(TypeError, match=rf"^state0\['{key}'\]: dtype float32 differs from x's float64"):
            kernels.forward(cell, x, {**state0, key: state0[key].astype(np.float32)}, params)


@pytest.mark.parametrize("head", [False, True])
@pytest.mark.parametrize("cell", GATED)
def test_the_checks_at_once_accept_what_the_checks_one_by_one_accept_and_nothing_else(cell, head, monkeypatch):
    """checks._consistent, the small call's fast acceptance: on plain consistent arguments, gated_inputs' result
    one by one (the same arrays, new dicts); on each odd argument (another dtype or shape, a subclass, a
    non-native byte order, a missing or extra key, a Mapping that is not a dict), None, so that the checks one by
    one run and name it."""
    con, arrays, _ = _case(cell)
    x, state0, params = _args(con, "forward", arrays)
    if head:
        params = {**params, "V": arrays["V"], "c": arrays["c"]}
    at_once = checks._consistent(cell, x, state0, params, head)
    with monkeypatch.context() as patched:
        patched.setattr(checks, "_consistent", lambda *args: None)
        one_by_one = checks.gated_inputs(cell, x, state0, params, head)
    assert at_once is not None and at_once[1:5] == one_by_one[1:5] and at_once[0] is x
    for got, want, passed in zip(at_once[5:], one_by_one[5:], (state0, params)):
        assert got == want and got is not passed and all(got[k] is passed[k] for k in passed)
    first = next(iter(params))
    odd = {"state of another dtype": (x, {k: v.astype(np.float32) for k, v in state0.items()}, params),
           "state of another shape": (x, {k: v[:1] for k, v in state0.items()}, params),
           "subclass": (x.view(Sub), state0, params),
           "byte order": (x.astype(x.dtype.newbyteorder()), state0, params),
           "parameter of another shape": (x, state0, {**params, first: params[first][..., :1]}),
           "missing key": (x, state0, {k: v for k, v in params.items() if k != first}),
           "extra key": (x, {**state0, "z0": x[0]}, params),
           "a Mapping": (x, state0, MappingProxyType(params))}
    for what, (x_, state0_, params_) in odd.items():
        assert checks._consistent(cell, x_, state0_, params_, head) is None, what


# ---- the property test -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Path:
    """A code path, forced: where it exists (cells, variants, sizes), how to force it, how to see it was taken."""

    cells: tuple[str, ...]
    force: Callable[[pytest.MonkeyPatch], None]
    taken: Callable[[dict], bool]
    variants: tuple[str, ...] = ("", "layers=2", "bidirectional", "lengths=zero", "lengths=carry",
                                 "layers=2,bidirectional,lengths=carry")
    even_H: bool = False
    min_B: int = 1


def _sizes(mp, small, large=10**12, split_=False, rows_=False):
    mp.setattr(gated, "SMALL_STEP", small)
    mp.setattr(elman, "SMALL_STEP", small)
    mp.setattr(elman, "LARGE_STEP", large)
    mp.setenv(split.FORCE, "always" if split_ else "never")
    mp.setenv(rows.FORCE, "always" if rows_ else "never")
    mp.setenv(panels.FORCE, "never")


def _panels(mp):
    _sizes(mp, -1)
    mp.setenv(panels.FORCE, "always")


def _transposed(mp):
    _sizes(mp, -1)
    mp.setattr(blas, "threads", lambda: 2)  # one BLAS call a step, as rows_per_call gives with two threads
    mp.setattr(blas, "transposed_wins", lambda *_: True)


def _products(seen):
    return [o.blas_rows for o in seen["runs"] + seen["steps"]]


PATHS = {
    "loops": Path(CELL_NAMES, lambda mp: _sizes(mp, 10**12), lambda s: not any(_products(s))),
    "blas": Path(CELL_NAMES, lambda mp: _sizes(mp, -1), lambda s: all(_products(s))),
    "numpy-blas": Path(("elman",), lambda mp: _sizes(mp, -1, 0), lambda s: all(o.large for o in s["steps"])),
    "transposed": Path(tuple(c for c in GATED if cells.kernel(c).transposable), _transposed,
                       lambda s: all(o.transposed for o in s["runs"])),
    "panels": Path(("elman",) + tuple(c for c in GATED if cells.kernel(c).transposable), _panels,
                   lambda s: all(o.by_panels for o in s["runs"] + s["steps"])),
    # BLAS-sized step products, as where two threads are chosen (the LSTM's loss at loop sizes runs in one call)
    "two-thread-recurrence": Path(split.CELLS, lambda mp: _sizes(mp, -1, split_=True), lambda s: s["split"] > 0,
                                  variants=("",), even_H=True),  # a variant's runs never split
    "rows-on-two-threads": Path(CELL_NAMES, lambda mp: _sizes(mp, 10**12, rows_=True), lambda s: s["rows"] > 0,
                                min_B=2),
}
CASES = [(cell, name) for name, path in PATHS.items() for cell in path.cells]


def _watch(mp, seen):
    """Records every gated call checked (a small one runs in one compiled call without a run), every gated run and
    Elman step built, and each two-thread pass, into ``seen``."""
    for cls, key in ((gated._Call, "calls"), (gated._Run, "runs"), (elman._Step, "steps")):
        def init(self, *args, _init=cls.__init__, _key=key, **kwargs):
            _init(self, *args, **kwargs)
            seen[_key].append(self)
        mp.setattr(cls, "__init__", init)
    forward, run = split.Parts.forward, rows.run
    mp.setattr(split.Parts, "forward", lambda self: (seen.update(split=seen["split"] + 1), forward(self))[1])
    mp.setattr(rows, "run", lambda *a: (seen.update(rows=seen["rows"] + 1), run(*a))[1])


# Every form an array argument may take with the same values as some plain array (the reference is the plain,
# C-contiguous copy of the form itself: a broadcast view repeats one slice).
def _strided(a):
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


def _unaligned(a):
    raw = np.frombuffer(bytearray(a.nbytes + 1), np.uint8)[1:]
    out = raw.view(a.dtype).reshape(a.shape) if a.size else a.copy()
    out[...] = a
    return out


def _read_only(a):
    out = a.copy()
    out.setflags(write=False)
    return out


VALID = {
    "plain": lambda a: a.copy(),
    "read-only": _read_only,
    "fortran": np.asfortranarray,
    "strided": _strided,
    "negative-strides": lambda a: a[::-1].copy()[::-1],
    "broadcast": lambda a: np.broadcast_to(a[:1], a.shape),  # read-only, a zero stride
    "subclass": lambda a: a.view(Sub),
    "read-only-subclass": lambda a: _read_only(a).view(Sub),
    "unaligned": _unaligned,
}
VALID_INT = {"int32": lambda a: a.astype(np.int32), "uint8": lambda a: a.astype(np.uint8)}
#: forms refused by name: (form, which arrays it applies to)
INVALID = {
    "masked": (lambda a: np.ma.array(a, mask=np.zeros(a.shape, bool)), "any"),
    "list": (lambda a: a.tolist(), "any"),
    "float16": (lambda a: a.astype(np.float16), "float"),
    "byte-swapped": (lambda a: a.astype(a.dtype.newbyteorder(">" if np.little_endian else "<")), "float"),
    "int64": (lambda a: a.astype(np.int64), "float"),
    "other-float": (lambda a: a.astype(np.float32 if a.dtype == np.float64 else np.float64), "float-not-x"),
    "float": (lambda a: a.astype(np.float64), "int"),
}
#: each flag: its valid forms of a value, and forms refused by name (with the error)
FLAG_FORMS = {
    "cell": ([str, np.str_], [(lambda v: np.array([v]), ValueError)]),
    "activation": ([str, np.str_], [(lambda v: np.array([v]), ValueError), (lambda v: v.upper(), ValueError)]),
    "padding": ([str, np.str_], [(lambda v: np.array([v]), ValueError)]),
    "layers": ([int, np.int64, np.int32, np.uint8],
               [(float, TypeError), (lambda v: np.array([v]), TypeError), (lambda v: v == 1 or None, TypeError)]),
    "bidirectional": ([bool, np.bool_], [(int, TypeError), (lambda v: np.array([v]), TypeError)]),
}
POSITIONAL = {"forward": kernels.elman_forward, "vjp": kernels.elman_backward, "loss": kernels.elman_loss}


def _leaves(con, method, arrays):
    """{(kind, key): array} of every array argument of ``method`` (kind: x, state0, params, cot, targets,
    lengths), and how each is named in messages."""
    leaves = {("x", ""): arrays["x"]}
    leaves.update({("state0", k): arrays[k] for k in con.state0})
    names = con.step_params + (con.head_params if method == "loss" else ())
    leaves.update({("params", k): arrays[k] for k in names})
    if method == "vjp":
        leaves.update({("cot", k): arrays["cot_" + k] for k in con.states})
    if method == "loss":
        leaves[("targets", "")] = arrays["targets"]
    if "lengths" in arrays:
        leaves[("lengths", "")] = arrays["lengths"]
    return leaves


def _named(con, slot, positional):
    """The patterns a message naming the argument at ``slot`` matches."""
    kind, key = slot
    if positional:
        shown = {"state0": "h0", "cot": "gh", "targets": "targets", "x": "x"}.get(kind, key)
        return [r"(^|: )" + re.escape(shown) + ":"]
    if kind == "params":
        for layer, d in con.variant.runs():
            suffix = con.variant.suffix(layer, d)
            for v in con.cell.params:
                if v.key + suffix == key:
                    return [r"(^|: )" + re.escape(v.key) + ":"] + ([re.escape(f"(parameters ending {suffix!r})")]
                                                                    if suffix else [])
        return [r"^" + re.escape(key) + ":"]  # the head's V and c
    shown = {"x": "x", "targets": "targets", "lengths": "lengths", "state0": f"state0[{key!r}]",
             "cot": f"cotangents[{key!r}]"}[kind]
    return [r"(^|: )" + re.escape(shown) + ":"]


def _invoke(method, cell, leaves, flags, positional):
    """The entry point called with these arguments: kernels.forward/backward/loss, or Elman's positional ones."""
    get = lambda kind: {k: v for (t, k), v in leaves.items() if t == kind}
    x, state0, params = leaves[("x", "")], get("state0"), get("params")
    CALLS["elman_" + method if positional else method] += 1
    if positional:
        args = [x, state0["h0"], params["U"], params["W"], params["b"]]
        if method == "vjp":
            args.append(get("cot")["h"])
        if method == "loss":
            args += [params["V"], params["c"], leaves[("targets", "")]]
        return POSITIONAL[method](*args, activation=flags["activation"])
    kw = {k: v for k, v in flags.items() if k != "cell"}
    if ("lengths", "") in leaves:
        kw["lengths"] = leaves[("lengths", "")]
    if method == "forward":
        return kernels.forward(flags["cell"], x, state0, params, **kw)
    if method == "vjp":
        return kernels.backward(flags["cell"], x, state0, params, get("cot"), **kw)
    return kernels.loss(flags["cell"], x, state0, params, leaves[("targets", "")], **kw)


@st.composite
def examples(draw, cell, path):
    """(method, positional, con, plain leaves, transformed leaves, plain flags, given flags, fault): one call."""
    variant = draw(st.sampled_from(path.variants if cell != "elman" or path.min_B == 1 else path.variants[1:]))
    v = parse_variant(variant)
    method = draw(st.sampled_from(("forward", "vjp", "loss")))
    positional = cell == "elman" and v.plain and draw(st.booleans())
    dtype = draw(st.sampled_from(catalogue.DTYPES))
    H = draw(st.sampled_from((2, 4)) if path.even_H else st.integers(2 if _projected(cell) else 1, 4))
    T, B, I, K = (draw(st.integers(1, 4)), draw(st.integers(path.min_B, 4)), draw(st.integers(1, 3)),
                  draw(st.integers(2, 3)))
    activation = draw(st.sampled_from(contract(cell).cell.activations))
    P = draw(st.integers(1, H - 1)) if _projected(cell) else 0
    arrays = arrays_of(cell, variant, dtype, T, B, I, H, K, P, draw(st.integers(0, 2**16)))
    con = contract(cell, variant)
    plain = _leaves(con, method, arrays)
    canonical = {"cell": cell, "activation": activation}
    if not positional and (not v.plain or draw(st.booleans())):
        canonical.update(layers=v.layers, bidirectional=v.bidirectional, padding=v.lengths or "zero")
    if positional:
        canonical = {"activation": activation}
    forms = {slot: draw(st.sampled_from(sorted(VALID) + (sorted(VALID_INT) if a.dtype.kind in "iu" else [])))
             for slot, a in plain.items()}
    given_leaves = {slot: (VALID | VALID_INT)[form](plain[slot]) for slot, form in forms.items()}
    given_flags = {k: draw(st.sampled_from(FLAG_FORMS[k][0]))(value) for k, value in canonical.items()}
    fault = None
    kind = draw(st.sampled_from(("none", "none", "array", "flag")))
    if kind == "array":
        slot = draw(st.sampled_from(sorted(plain)))
        a = plain[slot]
        applies = {"any": True, "float": a.dtype.kind == "f", "int": a.dtype.kind in "iu",
                   "float-not-x": a.dtype.kind == "f" and slot != ("x", "")}
        form = draw(st.sampled_from(sorted(f for f, (_, where) in INVALID.items() if applies[where])))
        given_leaves[slot] = INVALID[form][0](a)
        fault = (form, _named(con, slot, positional), (TypeError, ValueError))
    elif kind == "flag":
        name = draw(st.sampled_from(sorted(canonical)))
        make, error = draw(st.sampled_from(FLAG_FORMS[name][1]))
        bad = make(canonical[name])
        if bad is not None:  # None: no such form of this value (True for layers=2)
            given_flags[name] = bad
            fault = (f"{name}={bad!r}", [rf"^{name}: expected"], error)
    return method, positional, con, plain, given_leaves, canonical, given_flags, fault


def _copies(leaves):
    return {slot: np.array(a, copy=True) for slot, a in leaves.items() if isinstance(a, np.ndarray)}


@pytest.fixture(scope="module", autouse=True)
def _count_calls():
    yield
    print(f"\nkernel calls made by {__name__}: {sum(CALLS.values())} {dict(CALLS)}")


def check(cell, path_name, example):
    method, positional, con, plain, given_leaves, canonical, given_flags, fault = example
    path = PATHS[path_name]
    with pytest.MonkeyPatch.context() as mp:
        path.force(mp)
        if fault:
            form, patterns, error = fault
            with pytest.raises(error) as caught:
                _invoke(method, cell, given_leaves, given_flags, positional)
            message = str(caught.value)
            assert all(re.search(p, message) for p in patterns), (form, patterns, message)
            return
        seen = {"runs": [], "steps": [], "calls": [], "split": 0, "rows": 0}
        # the reference: each form's values as a plain C-contiguous array of the case's dtype
        reference = {slot: np.array(a, dtype=plain[slot].dtype, order="C") for slot, a in given_leaves.items()}
        want = _invoke(method, cell, reference, canonical, positional)
        before = _copies(given_leaves)
        _watch(mp, seen)
        got = _invoke(method, cell, given_leaves, given_flags, positional)
    _same(got, want)
    assert seen["calls"] or seen["steps"]  # a gated call's arguments are checked into a _Call, a run or not
    for slot, a in before.items():  # the caller's arrays untouched (a read-only one could not be written anyway)
        assert np.asarray(given_leaves[slot]).tobytes() == a.tobytes(), slot
    assert path.taken(seen), (path_name, seen)


@pytest.mark.parametrize("examples_", [pytest.param(15, id="ci"), pytest.param(150, id="long", marks=pytest.mark.slow)])
@pytest.mark.parametrize("cell,path", CASES)
def test_every_entry_point_takes_every_form_or_names_it(cell, path, examples_):
    """Hypothesis: the forms above on every argument of forward, backward and loss (and Elman's positional
    functions), plain and variant runs, float32 and float64, on the forced path. CI runs 15 examples per cell
    and path, sharing the compiled code of the other tests (every form reaches the jitted code as a plain
    C-contiguous array of the same types); ``-m slow`` 150."""
    settings(max_examples=examples_, deadline=None, suppress_health_check=[HealthCheck.too_slow],
             )(given(examples(cell, PATHS[path]))(lambda e: check(cell, path, e)))()


def test_the_kernels_take_every_cell_of_the_catalogue():
    """The tests above run the kernels' cells: they must be the catalogue's, every one, each by its own kernel."""
    assert CELL_NAMES == catalogue.NAMES
    assert all(cells.kernel(name).name == name for name in CELL_NAMES)


@pytest.mark.parametrize("bias", [True, False])
def test_the_elman_checks_at_once_accept_what_the_checks_one_by_one_accept_and_nothing_else(bias, monkeypatch):
    """checks._elman_consistent, the small Elman call's fast acceptance: on plain consistent arguments, elman_arrays'
    result one by one (the same arrays); on each odd argument (another dtype or shape of each, a subclass, a
    non-native byte order, a 1-d W), None, so that the checks one by one run and name it."""
    rng = np.random.default_rng(2)
    x, h0 = rng.standard_normal((5, 3, 4)), rng.standard_normal((3, 6))
    U, W, b = rng.standard_normal((6, 4)), rng.standard_normal((6, 6)), rng.standard_normal(6) if bias else None
    at_once = checks._elman_consistent(x, h0, U, W, b)
    with monkeypatch.context() as patched:
        patched.setattr(checks, "_elman_consistent", lambda *args: None)
        one_by_one = checks.elman_arrays(x, h0, U, W, b)
    assert at_once is not None and at_once[1] == one_by_one[1] == (5, 3, 4, 6)
    assert all(got is want for got, want in zip(at_once[0], one_by_one[0]))
    args = {"x": x, "h0": h0, "U": U, "W": W, "b": b}
    odd = {"W 1-d": {"W": W[0]}, "x subclass": {"x": x.view(Sub)}, "x byte order": {"x": x.astype(">f8")}}
    for key, value in args.items():
        if value is not None:
            odd[f"{key} float32"] = {key: value.astype(np.float32)}
            odd[f"{key} shape"] = {key: value[..., :-1]}
    for what, changed in odd.items():
        assert checks._elman_consistent(**{**args, **changed}) is None, what
