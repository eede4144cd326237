"""The CPU kernels of the gated cells against the oracle, on generated shapes, layouts and every code path."""

import copy
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numba import njit

from rnnspec.derivations.oracle import Oracle
from rnnspec.kernels import backward, forward, loss
from rnnspec.kernels.checks import GATED_CELLS
from rnnspec.kernels.cpu import blas, cells, gated, panels, rows, split
from rnnspec.kernels.cpu.elementwise import GATE_LOOPS, exp32, sigmoid
from rnnspec.spec.adapters import RnnspecCPU
from rnnspec.spec.cases import Case
from rnnspec.spec.expected import compute_expected
from rnnspec.spec.tolerance import accuracy_ulps, relative_error

#: every gated cell the kernels take (the catalogue's: test_kernel_inputs checks that they are all of them)
CELLS = sorted(name for name, kernel in cells.load().items() if isinstance(kernel, cells.Gated))
#: the cells the issue's kernels began with; the other cells run fewer generated cases in CI
FIRST = ("gru-reset-after", "gru-reset-before", "lstm")


def _projected(cell) -> bool:
    return cells.kernel(cell).entry.width == "P"


def _sizes(cell, H, P):
    """Shapes of the cell's parameters beyond U, W, b, and of h: P for the projected LSTM, else H."""
    width = P if _projected(cell) else H
    return width, {k: tuple({"H": H, "P": width}[d] for d in dims) for k, dims in GATED_CELLS[cell][2].items()}
# float64: 1e-12 relative, or the suite's condition-aware tolerance where correct float64 computations
# themselves land further than that (a gradient that sums cancelling terms, as dL/dU_r does when the
# reset gate is shut); float32: that tolerance.
TOL64 = 1e-12


@st.composite
def gated_cases(draw, cell, dtype):
    """A case of ``cell``: sizes, a recurrent matrix of chosen spectral radius, and gate biases that
    may drive one gate open or shut (where the float32 logistic function must stay accurate)."""
    gates, states, extra = GATED_CELLS[cell]
    T, B, I, K = draw(st.integers(1, 30)), draw(st.integers(1, 5)), draw(st.integers(1, 9)), draw(st.integers(2, 6))
    H = draw(st.integers(2 if _projected(cell) else 1, 24))
    width, extra = _sizes(cell, H, draw(st.integers(1, H - 1)) if _projected(cell) else H)
    radius = draw(st.sampled_from([0.3, 0.8, 1.2]))
    shift = {g: draw(st.sampled_from([0.0, 0.0, -5.0, 5.0])) for g in gates}
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    p = {}
    for g in gates:
        W = rng.standard_normal((H, width))
        scale = np.max(np.abs(np.linalg.eigvals(W))) if width == H else np.linalg.norm(W, 2)
        p[f"W_{g}"] = W * radius / max(scale, 1e-9)
        p[f"U_{g}"] = rng.standard_normal((H, I)) * 0.5
        p[f"b_{g}"] = rng.standard_normal(H) * 0.3 + shift[g]
    for key, shape in extra.items():  # b_hn and the peepholes small; W_hr scaled to keep h of order 1
        p[key] = rng.standard_normal(shape) * (0.3 if len(shape) == 1 else 1 / np.sqrt(H))
    p.update(V=rng.standard_normal((K, width)), c=rng.standard_normal(K) * 0.2)
    f = lambda a: np.asarray(a, dtype=dtype)
    size = {"h0": width, "c0": H}
    return {"cell": cell, "x": f(rng.standard_normal((T, B, I))), "y": rng.integers(0, K, (T, B)),
            "state0": {k: f(rng.standard_normal((B, size[k])) * 0.5) for k in states},
            "params": {k: f(v) for k, v in p.items()},
            "cot": {k[0]: f(rng.standard_normal((T, B, size[k]))) for k in states}}


def _split(params):
    return {k: v for k, v in params.items() if k not in ("V", "c")}


def _run(case, kernels=True, backend="float64"):
    """(forward, vjp, (loss, grads)) of the kernels, or of the oracle in ``backend``."""
    cell, x, s, p, cot, y = (case[k] for k in ("cell", "x", "state0", "params", "cot", "y"))
    if kernels:
        return forward(cell, x, s, _split(p)), backward(cell, x, s, _split(p), cot), loss(cell, x, s, p, y)
    f = lambda d: {k: np.asarray(v, dtype=backend) for k, v in d.items()}
    o = Oracle(cell=cell, backend=backend)
    xb = np.asarray(x, dtype=backend)
    return (o.forward(xb, f(s), f(_split(p))), o.vjp(xb, f(s), f(_split(p)), f(cot)), o.loss(xb, f(s), f(p), y))


def _flat(result):
    (fwd, vjp, (value, grads)) = result
    out = {("forward", k): v for k, v in fwd.items()}
    out.update({("vjp", k): v for k, v in vjp.items()})
    out.update({("loss", k): v for k, v in grads.items()})
    out[("loss", "value")] = np.asarray(value)
    return out


def expected(case):
    """The suite's expected values of every output of ``case`` and their condition-aware tolerances (the accuracy
    rnnspec-cpu declares: 8 ulps in float32, libm's in float64)."""
    dtype = str(case["x"].dtype)
    T, B, I = case["x"].shape
    K = case["params"]["V"].shape[0]
    H = case["params"]["U_" + GATED_CELLS[case["cell"]][0][0]].shape[0]
    P = case["state0"]["h0"].shape[1] if _projected(case["cell"]) else 0
    arrays = {"x": case["x"], **case["state0"], **case["params"], "targets": case["y"],
              **{f"cot_{k}": v for k, v in case["cot"].items()}}
    spec_case = Case(T, B, I, H, K, "tanh", dtype, "contracting", 0, case["cell"], P=P)
    return compute_expected(spec_case, arrays, accuracy_ulps(RnnspecCPU.accuracy[dtype]))


def within(case, want, got, path=""):
    """Every output within its tolerance of ``want``, never above 1e-12 in float64 unless that tolerance says the
    case itself is worse conditioned."""
    dtype = str(case["x"].dtype)
    assert set(got) == set(want.values), set(got) ^ set(want.values)
    for key, ref in want.values.items():
        assert got[key].dtype == dtype and got[key].shape == np.shape(ref), (key, got[key].dtype, got[key].shape)
        err = relative_error(got[key], ref, dtype)
        tol = max(want.tolerances[key], TOL64) if dtype == "float64" else want.tolerances[key]
        assert err <= tol, f"{case['cell']} {path} {key}: error {err:.3e} > tolerance {tol:.3e}"


def compare(case):
    """Every output of the kernels on their own choice of path against the suite's expected values (within)."""
    within(case, expected(case), _flat(_run(case)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS)
def test_kernels_match_the_oracle(cell, dtype):
    settings(max_examples=25 if cell in FIRST else 10, deadline=None)(given(gated_cases(cell, dtype))(compare))()


def _no_threads(mp):
    mp.setenv(split.FORCE, "never")
    mp.setenv(rows.FORCE, "never")
    mp.setenv(panels.FORCE, "never")
    mp.setattr(blas, "transposed_wins", lambda *_: False)


def _loops(mp):
    _no_threads(mp)
    mp.setattr(gated, "SMALL_STEP", 10**12)


def _blas(mp):
    _no_threads(mp)
    mp.setattr(gated, "SMALL_STEP", -1)


def _transposed(mp):
    _blas(mp)
    mp.setattr(blas, "threads", lambda: 2)  # one BLAS call a step, as rows_per_call gives with two threads
    mp.setattr(blas, "transposed_wins", lambda *_: True)


def _panels(mp):
    _no_threads(mp)
    mp.setenv(panels.FORCE, "always")


def _two(variable):
    def force(mp):
        _blas(mp)
        mp.setenv(variable, "always")
    return force


#: the kernels' calls in one compiled call, where a cell gives its own (cells.Gated returns None)
AT_ONCE = ("forward_at_once", "loss_at_once")


def _own_at_once(kernel) -> list[str]:
    return [m for m in AT_ONCE if getattr(type(kernel), m) is not getattr(cells.Gated, m)]


def _at_once(kernel) -> bool:
    return bool(_own_at_once(kernel))


@dataclass(frozen=True)
class Path:
    """A path the kernels choose between: how to force it, where it exists (kernel, case), how to see it taken
    (from the runs built and the passes seen)."""

    force: Callable[[pytest.MonkeyPatch], None]
    exists: Callable[[cells.Gated, dict], bool]
    taken: Callable[[dict], bool]


def _sizes_of(case):
    T, B, _ = case["x"].shape
    return T, B, case["state0"]["h0"].shape[1]


PATHS = {
    # the forward and loss of some cells at these sizes run in one compiled call (their own path below): here they
    # are turned off
    "loops": Path(_loops, lambda k, c: True, lambda s: not any(r.blas_rows for r in s["runs"])),
    "blas": Path(_blas, lambda k, c: True,
                 lambda s: all(r.blas_rows and not r.transposed and not r.by_panels for r in s["runs"])),
    "transposed": Path(_transposed, lambda k, c: k.transposable, lambda s: all(r.transposed for r in s["runs"])),
    "panels": Path(_panels, lambda k, c: k.transposable,
                   lambda s: all(r.by_panels and r.projection_by_panels for r in s["runs"])),
    "at-once": Path(_loops, lambda k, c: _at_once(k), lambda s: s["at_once"] > 0),
    "rows": Path(_two(rows.FORCE), lambda k, c: c["x"].shape[1] >= 2, lambda s: s["rows"] > 0),
    # where split.py takes the cell (it says so itself, when forced)
    "split": Path(_two(split.FORCE), lambda k, c: _forced_split(k, c), lambda s: s["split"] > 0),
}


def _forced_split(kernel, case):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(split.FORCE, "always")
        T, B, H = _sizes_of(case)
        return split.wanted(kernel.name, T, B, H, len(kernel.gates))


def _on_path(case, name, want):
    """The kernels forced onto path ``name``, every output against ``want``; the runs seen, for Path.taken."""
    kernel = cells.kernel(case["cell"])
    seen = {"runs": [], "rows": 0, "split": 0, "at_once": 0}
    with pytest.MonkeyPatch.context() as mp:
        PATHS[name].force(mp)
        init, run, parts = gated._Run.__init__, rows.run, split.Parts.forward
        mp.setattr(gated._Run, "__init__", lambda self, *a, **k: (init(self, *a, **k), seen["runs"].append(self))[0])
        mp.setattr(rows, "run", lambda *a: (seen.update(rows=seen["rows"] + 1), run(*a))[1])
        mp.setattr(split.Parts, "forward", lambda self: (seen.update(split=seen["split"] + 1), parts(self))[1])
        for method in _own_at_once(kernel):
            own = getattr(type(kernel), method)
            counted = lambda self, *a, own=own: (seen.update(at_once=seen["at_once"] + 1), own(self, *a))[1]
            mp.setattr(type(kernel), method, counted if name == "at-once" else lambda *_: None)
        got = _flat(_run(case))
    within(case, want, got, name)
    assert PATHS[name].taken(seen), (case["cell"], name, seen)


@pytest.mark.parametrize("cell", CELLS)
def test_every_path_matches_the_oracle(cell):
    """Every path the kernels choose between (PATHS), forced, on the same generated cases (float64, within 1e-12
    of the oracle): step products by loops, by BLAS, by BLAS through W^T, by panels, the loss in one compiled call,
    a batch in halves on two threads, the recurrence on two threads. Each path that exists for the cell is taken at
    least once (the fixed case: B = 4, H = 6)."""
    kernel, taken = cells.kernel(cell), set()

    def check(case):
        want = expected(case)
        for name, path in PATHS.items():
            if path.exists(kernel, case):
                _on_path(case, name, want)
                taken.add(name)

    fixed = _fixed(cell, "float64", 7, 4, 3, 6, seed=4)
    settings(max_examples=5 if cell in FIRST else 3, deadline=None)(
        example(fixed)(given(gated_cases(cell, "float64"))(check)))()
    assert taken == {name for name, path in PATHS.items() if path.exists(kernel, fixed)}, taken


ONE_CALL_FORWARD = [c for c in CELLS if "forward_at_once" in _own_at_once(cells.kernel(c))]


@pytest.mark.parametrize("sizes", [(9, 3, 4, 6), (50, 1, 16, 32)], ids=["small", "G1"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", ONE_CALL_FORWARD)
def test_a_forward_in_one_compiled_call_gives_the_shared_paths_bits(cell, dtype, sizes, monkeypatch):
    """A cell's forward_at_once runs the shared path's products and loop without the Python between them (and its
    step inlined into the loop: family.with_steps_inlined): its states equal the shared path's bit for bit (float32
    too, where any other order of sums or a multiply-add fused otherwise would show), on contiguous, Fortran-order
    and strided inputs, at a size whose gate loops run scalar and at the bench's G1, whose run whole vectors; and its
    results are new arrays, not the scratch of the next call."""
    case = _fixed(cell, dtype, *sizes, seed=3)
    run = gated._Run(cell, case["x"], case["state0"], _split(case["params"]))
    assert run.at_once(), "the case is small enough to run in one compiled call"
    relaid = {"C": lambda v: v, "F": np.asfortranarray, "strided": lambda v: np.repeat(v, 2, axis=-1)[..., ::2]}
    for layout, fn in relaid.items():
        x, s, p = fn(case["x"]), {k: fn(v) for k, v in case["state0"].items()}, _split(case["params"])
        p = {k: fn(v) for k, v in p.items()}
        got = forward(cell, x, s, p)
        with monkeypatch.context() as mp:
            mp.setattr(type(cells.kernel(cell)), "forward_at_once", lambda *_: None)
            want = forward(cell, x, s, p)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{layout} {key}")
        again = forward(cell, x * 2, s, p)
        assert not np.shares_memory(got["h"], again["h"]), layout


@settings(max_examples=60, deadline=None)
@given(cell=st.sampled_from(CELLS), T=st.integers(0, 200), B=st.integers(0, 9), I=st.integers(1, 40),
       H=st.sampled_from([3, 6, 16, 32, 64, 128]), dtype=st.sampled_from(["float32", "float64"]),  # P = H - 2 (_fixed)
       panels_forced=st.sampled_from(["", "always", "never"]), split_forced=st.sampled_from(["", "always", "never"]))
def test_a_call_runs_in_one_compiled_call_exactly_where_its_run_would_choose_no_blas_panels_or_split(
        cell, T, B, I, H, dtype, panels_forced, split_forced):
    """gated._Call.at_once decides from the sizes alone (a small call makes no _Run): it agrees with the paths a
    _Run of the same arguments chooses (no BLAS rows, no panels for the products or the projection, no split),
    whatever the environment forces."""
    case = _fixed(cell, dtype, T, B, I, H)
    with pytest.MonkeyPatch.context() as mp:
        for variable, value in ((panels.FORCE, panels_forced), (split.FORCE, split_forced)):
            if value:
                mp.setenv(variable, value)
            else:
                mp.delenv(variable, raising=False)
        run = gated._Run(cell, case["x"], case["state0"], _split(case["params"]))
        paths = (run.blas_rows == 0 and not run.by_panels and not run.projection_by_panels
                 and not split.wanted(cell, T, B, H, len(run.order), run.weight_bytes()))
        assert run.at_once() == paths, (run.blas_rows, run.by_panels, run.projection_by_panels)


def test_a_loop_with_its_steps_inlined_takes_their_options_and_a_cache_name_of_its_own():
    """family.with_steps_inlined compiles the copy with the steps' options (fastmath "contract": the inlined steps
    fuse what they fuse as calls) under a name no other copy of the loop has (a shared name would load another
    copy's cached code); steps of different options are refused, naming them."""
    from rnnspec.kernels.cpu import family, gru_reset_after, mgu_flax
    from rnnspec.kernels.cpu.elementwise import GATE_LOOPS

    copy = family.with_steps_inlined(gru_reset_after.forward, mgu_flax.__name__, step=mgu_flax.step)
    assert copy.targetoptions["fastmath"] == GATE_LOOPS["fastmath"]
    names = {copy.py_func.__qualname__, mgu_flax.forward.py_func.__qualname__,
             gru_reset_after.forward.py_func.__qualname__, gru_reset_after.forward_inlined.py_func.__qualname__}
    assert len(names) == 4, names
    with pytest.raises(ValueError, match="share their options"):
        family.with_steps_inlined(gru_reset_after.forward, mgu_flax.__name__, step=mgu_flax.step,
                                  hold=gru_reset_after.hold)


def test_the_per_gate_getters_give_each_kinds_parameters_as_a_tuple_in_stacking_order():
    """cells.Gated.per_gate_getters (what gated._Call.per_gate takes the one call's tuples with): a tuple in the keys'
    order for every cell, and a 1-tuple where a kind has one key (itemgetter of one key gives the value bare)."""
    for cell in CELLS:
        kernel = cells.kernel(cell)
        params = {k: object() for keys in kernel.per_gate_keys.values() for k in keys}
        for kind, keys in kernel.per_gate_keys.items():
            assert kernel.per_gate_getters[kind](params) == tuple(params[k] for k in keys), (cell, kind)
    one = copy.copy(cells.kernel("lstm"))
    one.__dict__.pop("per_gate_getters", None)
    one.__dict__["per_gate_keys"] = {"U": ("U_i",), "W": ("W_i", "W_f")}
    assert one.per_gate_getters["U"]({"U_i": 1}) == (1,)
    assert one.per_gate_getters["W"]({"W_i": 1, "W_f": 2}) == (1, 2)


@pytest.mark.parametrize("variable", [panels.FORCE, split.FORCE])
def test_a_forced_path_is_never_left_for_the_one_compiled_call(variable, monkeypatch):
    """The one compiled call runs the products as loops on one thread: where panels or the split are forced (or
    chosen), run.at_once() says no, and the forced path runs."""
    case = _fixed("lstm", "float64", 9, 1, 4, 6)
    make = lambda: gated._Run("lstm", case["x"], case["state0"], _split(case["params"]))
    assert make().at_once()
    monkeypatch.setenv(variable, "always")
    assert not make().at_once()


@pytest.mark.parametrize("path", ["whole", "rows", "rows-panels", "split"])
def test_every_result_survives_the_next_call(path, monkeypatch):
    """A plain call keeps its states in per-thread scratch (gated._Run.states): what it returns are arrays of their
    own. After a second call on other inputs, every output and gradient of the first is as it was, on one thread,
    with the batch in halves (each half writing its rows of the outputs), BLAS or panels, and on two threads (the
    split: its results' block may be a dropped result's, scratch.result_block)."""
    monkeypatch.setenv(rows.FORCE, "always" if path.startswith("rows") else "never")
    monkeypatch.setenv(panels.FORCE, "always" if path == "rows-panels" else "never")
    monkeypatch.setenv(split.FORCE, "always" if path == "split" else "never")
    first = _flat(_run(_fixed("lstm", "float64", 9, 4, 3, 6, seed=1)))
    kept = {key: np.array(value, copy=True) for key, value in first.items()}
    second = _flat(_run(_fixed("lstm", "float64", 9, 4, 3, 6, seed=2)))
    for key, value in first.items():
        np.testing.assert_array_equal(value, kept[key], err_msg=str(key))
        assert not np.array_equal(value, second[key]), key  # the second call's values differ: aliasing would show


@pytest.mark.parametrize("path", ["whole", "split"])
def test_a_dropped_result_s_memory_is_the_next_call_s_and_a_kept_one_s_never(path, monkeypatch):
    """scratch.result_block: once the caller dropped a call's results, the next call of the same sizes writes its
    results into their memory (its pages mapped already: fresh memory cost the LSTM's G5 forward 500 page faults a
    call), which needs every reference to it gone at once (split.Parts holds its run weakly: a cycle kept the run's
    views alive until the garbage collector ran); while any view of them is kept, never."""
    monkeypatch.setenv(panels.FORCE, "always")  # not in one compiled call, whose arrays are Numba's
    monkeypatch.setenv(rows.FORCE, "never")
    monkeypatch.setenv(split.FORCE, "always" if path == "split" else "never")
    case = _fixed("lstm", "float32", 9, 2, 3, 6)
    x, s, p = case["x"], case["state0"], _split(case["params"])
    address = lambda a: a.__array_interface__["data"][0]
    first = forward("lstm", x, s, p)
    where = address(first["h"])
    del first
    second = forward("lstm", x, s, p)
    assert address(second["h"]) == where
    kept = second["c"]  # one view of the block, the dict and the other view dropped
    values = kept.copy()
    del second
    third = forward("lstm", x * 2, s, p)
    assert not np.shares_memory(kept, third["h"]) and not np.shares_memory(kept, third["c"])
    np.testing.assert_array_equal(kept, values)


def _fixed(cell, dtype, T, B, I, H, K=3, seed=0):
    gates, states, _ = GATED_CELLS[cell]
    width, extra = _sizes(cell, H, H - 2)
    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.standard_normal(shape).astype(dtype) * 0.5
    p = {f"{kind}_{g}": f(*shape) for g in gates for kind, shape in (("U", (H, I)), ("W", (H, width)), ("b", (H,)))}
    p.update({k: f(*shape) for k, shape in extra.items()})
    p.update(V=f(K, width), c=f(K))
    size = {"h0": width, "c0": H}
    return {"cell": cell, "x": f(T, B, I), "state0": {k: f(B, size[k]) for k in states}, "params": p,
            "cot": {k[0]: f(T, B, size[k]) for k in states}, "y": rng.integers(0, K, (T, B))}


@pytest.mark.parametrize("cell", CELLS)
def test_fortran_order_and_strided_inputs_give_bit_identical_results(cell):
    case = _fixed(cell, "float64", 6, 3, 4, 5)
    want = _flat(_run(case))
    relaid = lambda fn: {**case, "x": fn(case["x"]), "state0": {k: fn(v) for k, v in case["state0"].items()},
                         "params": {k: fn(v) for k, v in case["params"].items()},
                         "cot": {k: fn(v) for k, v in case["cot"].items()}}
    strided = relaid(lambda v: np.repeat(v, 2, axis=-1)[..., ::2])
    assert not strided["params"]["W_" + GATED_CELLS[cell][0][0]].flags.c_contiguous
    for variant in (relaid(np.asfortranarray), strided):
        got = _flat(_run(variant))
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=str(key))


def snapshot(case):
    """Copies of every array of a case, for assert_untouched."""
    return {k: {kk: vv.copy() for kk, vv in v.items()} if isinstance(v, dict) else v.copy()
            for k, v in case.items() if k != "cell"}


def assert_untouched(case, copies):
    for key, value in copies.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        given_ = case[key] if isinstance(value, dict) else {key: case[key]}
        for name, before in items:
            np.testing.assert_array_equal(given_[name], before, err_msg=f"{key} {name}")


def assert_agree(got, want, bound):
    """Every output of ``got`` within ``bound`` of ``want``'s, relative to the largest of that output."""
    for key, value in want.items():
        scale = max(np.max(np.abs(value)), 1e-300)
        worst = np.max(np.abs(got[key] - value)) / scale
        assert worst <= bound, f"{key}: {worst:.3e} > {bound:.1e} (relative to its largest entry)"


@pytest.mark.parametrize("cell", CELLS)
def test_inputs_are_never_modified(cell):
    case = _fixed(cell, "float32", 4, 2, 3, 5)
    copies = snapshot(case)
    _run(case)
    assert_untouched(case, copies)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B", [(0, 3), (4, 0), (0, 0)])
def test_empty_sequence_or_batch(cell, T, B):
    full = _fixed(cell, "float64", 2, 3, 4, 5)
    case = {**_fixed(cell, "float64", max(T, 1), max(B, 1), 4, 5), "x": np.zeros((T, B, 4))}
    case["state0"] = {k: np.zeros((B, v.shape[1])) for k, v in full["state0"].items()}
    case["cot"] = {k: np.zeros((T, B, v.shape[2])) for k, v in full["cot"].items()}
    case["y"] = np.zeros((T, B), dtype=np.int64)
    fwd, vjp, (value, grads) = _run(case)
    assert all(v.shape == (T, B, full["cot"][k].shape[2]) for k, v in fwd.items())
    assert value == 0 and all(not np.any(g) for g in grads.values()) and all(not np.any(g) for g in vjp.values())
    assert grads["V"].shape == full["params"]["V"].shape and grads["x"].shape == (T, B, 4)


def test_the_lstm_cell_state_cotangent_is_optional_and_used():
    case = _fixed("lstm", "float64", 5, 2, 3, 4)
    x, s, p = case["x"], case["state0"], _split(case["params"])
    without = backward("lstm", x, s, p, {"h": case["cot"]["h"]})
    zero_c = backward("lstm", x, s, p, {"h": case["cot"]["h"], "c": np.zeros_like(case["cot"]["c"])})
    with_c = backward("lstm", x, s, p, case["cot"])
    for key in without:
        np.testing.assert_array_equal(without[key], zero_c[key])
    assert not np.allclose(with_c["c0"], without["c0"])


def test_named_parameters_equal_the_dict():
    case = _fixed("gru-reset-after", "float64", 3, 2, 3, 4)
    p = _split(case["params"])
    np.testing.assert_array_equal(forward("gru-reset-after", case["x"], case["state0"], **p)["h"],
                                  forward("gru-reset-after", case["x"], case["state0"], p)["h"])


BAD = [
    ("cell 'gru'", lambda c: {**c, "cell": "gru"}, ValueError, "cell: 'gru' is ambiguous"),
    ("unknown cell", lambda c: {**c, "cell": "lstmp"}, ValueError, r"cell: expected one of"),
    ("missing", lambda c: {**c, "params": {k: v for k, v in c["params"].items() if k != "W_f"}}, ValueError,
     r"params: missing \['W_f'\]"),
    ("typo", lambda c: {**c, "params": {**c["params"], "b_x": c["params"]["b_f"]}}, ValueError,
     r"params: unexpected \['b_x'\]"),
    ("c0 missing", lambda c: {**c, "state0": {"h0": c["state0"]["h0"]}}, ValueError, r"state0: missing \['c0'\]"),
    ("dtype", lambda c: {**c, "params": {**c["params"], "U_g": c["params"]["U_g"].astype(np.float32)}}, TypeError,
     "U_g: dtype float32 differs from x's float64"),
    ("shape", lambda c: {**c, "params": {**c["params"], "W_o": c["params"]["W_o"][:, :3]}}, ValueError,
     r"W_o: expected shape \(H, H\)=\(5, 5\), got \(5, 3\)"),
    ("transposed", lambda c: {**c, "params": {**c["params"], "U_i": c["params"]["U_i"].T.copy()}}, ValueError,
     r"U_i: expected shape \(H, I\)=\(5, 4\), got \(4, 5\) \(transposed\?\)"),
    ("c0 shape", lambda c: {**c, "state0": {**c["state0"], "c0": c["state0"]["c0"][:1]}}, ValueError,
     r"state0\['c0'\]: expected shape \(B, H\)"),
    ("list", lambda c: {**c, "x": c["x"].tolist()}, TypeError, "x: expected a numpy.ndarray, got list"),
    ("targets", lambda c: {**c, "y": c["y"] + 5}, ValueError, r"targets: class indices must lie in \[0, K=3\)"),
    ("cotangent", lambda c: {**c, "cot": {**c["cot"], "c": c["cot"]["c"][:2]}}, ValueError,
     r"cotangents\['c'\]: expected shape \(T, B, H\)"),
]


@pytest.mark.parametrize("what,corrupt,error,message", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_are_named_before_compiled_code_runs(what, corrupt, error, message):
    with pytest.raises(error, match=message):
        _run(corrupt(_fixed("lstm", "float64", 4, 2, 4, 5)))


#: compiled as the kernels' steps compile them (elementwise.GATE_LOOPS: FMAs contracted)
_as_in_steps = njit(error_model="numpy", fastmath=GATE_LOOPS["fastmath"])


@_as_in_steps
def _apply(f, a, out):
    for i in range(a.shape[0]):
        out[i] = f(a[i])


def _ulps(got, exact):
    return float(np.max(np.abs(got - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)))


def test_float32_exp_and_logistic_function_within_their_documented_ulps():
    a = np.linspace(-87, 88, 1_000_001, dtype=np.float32)
    out = np.empty_like(a)
    _apply(_as_in_steps(lambda v: exp32(v)), a, out)
    # measured 1.0022 (1.0 before the steps' FMAs were contracted); the module documents 2
    assert _ulps(out, np.exp(a.astype(np.float64))) <= 1.01
    b = np.linspace(-40, 40, 1_000_001, dtype=np.float32)
    _apply(_as_in_steps(lambda v: sigmoid(v)), b, out)
    # shut gates included: at -40 the value is 4e-18, where 0.5 + 0.5 tanh(v / 2) would give 0
    assert _ulps(out, 1 / (1 + np.exp(-b.astype(np.float64)))) <= 2.5


def test_the_float32_forward_steps_run_on_the_widest_vectors():
    """exp32 and tanh32 ask LLVM for 512-bit vectors in the function they are inlined into (elementwise._wide_vectors):
    the LSTM's float32 step carries the attribute and compiles to zmm FMAs where the CPU has AVX-512 (none
    otherwise); its BPTT step, which evaluates neither, carries no such attribute (LLVM's own choice). Compiled here
    as the kernels compile them, without the cache (cached code cannot be inspected)."""
    from rnnspec.kernels.cpu import lstm
    from rnnspec.kernels.cpu.simd import AVX512

    options = {k: v for k, v in GATE_LOOPS.items() if k != "cache"}
    f32 = np.float32
    step = njit(**options)(lstm.step.py_func)
    rows = lambda n: np.ones((3, n), f32)
    step(rows(64), rows(64), rows(64), rows(16), rows(16), rows(16), rows(16), 0)
    back = njit(**options)(lstm.back_step.py_func)
    back(rows(64), rows(16), rows(16), True, rows(64), rows(16), rows(16), rows(16), rows(16), np.zeros(64, f32),
         f32(1), 0)
    wide = '"prefer-vector-width"="512"'
    forward_ir, back_ir = (next(iter(f.inspect_llvm().values())) for f in (step, back))
    forward_asm = next(iter(step.inspect_asm().values()))
    assert wide in forward_ir and wide not in back_ir
    assert ("vfmadd213ps\t%zmm" in forward_asm or "vfmadd231ps\t%zmm" in forward_asm) == AVX512


def _ulps64(got, exact):
    """The largest error in float64 spacings of ``exact`` (libm's, within 1 ulp of the exact values)."""
    return float(np.max(np.abs(got - exact) / np.spacing(np.abs(exact))))


def test_float64_exp_tanh_and_logistic_function_within_their_documented_ulps():
    from rnnspec.kernels.cpu.elementwise import exp64, tanh

    a = np.linspace(-708, 709, 1_000_001)
    out = np.empty_like(a)
    _apply(_as_in_steps(lambda v: exp64(v)), a, out)
    assert _ulps64(out, np.exp(a)) <= 2.0
    # both of tanh64's forms, the boundary 0.625 between them, tiny and saturated values
    for b in (np.linspace(-1, 1, 400_001), np.linspace(-25, 25, 400_001), np.linspace(-1e-6, 1e-6, 10_001),
              np.array([0.625, -0.625, np.nextafter(0.625, 0), 1e-300, -1e-300, 19.0, 400.0, -400.0])):
        out = np.empty_like(b)
        _apply(_as_in_steps(lambda v: tanh(v)), b, out)
        assert _ulps64(out, np.tanh(b)) <= 2.0, b
    b = np.linspace(-40, 40, 1_000_001)
    out = np.empty_like(b)
    _apply(_as_in_steps(lambda v: sigmoid(v)), b, out)
    assert _ulps64(out, 1 / (1 + np.exp(-b))) <= 4.0


BASELINES_AGREE = """
import importlib.util, sys
import numpy as np
from rnnspec import catalogue
from rnnspec.kernels.cpu import bench
from rnnspec.kernels.cpu.baselines_gated import RUNNERS

cell = sys.argv[1]
case = bench.make_case(7, 3, 5, 6, 4, "float64", cell=cell)
ours_forward, ours_train = RUNNERS["rnnspec-cpu"](case, cell)
value, grads = ours_train()
impls = ["numpy"] + (["torch"] if cell != "gru-reset-before" and importlib.util.find_spec("torch") else [])
for impl in impls:
    forward_, train = RUNNERS[impl](case, cell)
    np.testing.assert_allclose(np.asarray(forward_()), ours_forward()["h"], rtol=1e-12, atol=1e-14)
    their_value, their_grads = train()
    assert abs(their_value - value) <= 1e-12 * abs(value), (impl, their_value, value)
    if impl == "numpy":  # stacked as the kernels stack them
        gates = catalogue.cell(cell).gates
        for kind in "UWb":
            np.testing.assert_allclose(their_grads[kind], np.concatenate([grads[f"{kind}_{g}"] for g in gates]),
                                       rtol=1e-10, atol=1e-12, err_msg=f"{impl} {kind}")
        for key in set(their_grads) - set("UWb"):
            np.testing.assert_allclose(their_grads[key], grads[key], rtol=1e-10, atol=1e-12, err_msg=key)
    else:  # x and the initial states
        for key, got in zip(["x", "h0", "c0"], their_grads):
            np.testing.assert_allclose(got.numpy().reshape(grads[key].shape), grads[key], rtol=1e-10, atol=1e-12,
                                       err_msg=key)
print("compared:", impls)
"""


@pytest.mark.parametrize("cell", FIRST)
def test_the_benchmark_baselines_compute_what_the_kernels_compute(cell):
    """`rnnspec bench --cell` compares like with like: NumPy's textbook loop and PyTorch's layers give the
    kernels' states, loss and gradients on the benchmark's own kind of case. In a process of its own:
    PyTorch run here would start its OpenMP threads in the test process, and a target's worker forked
    from it later would hang in its first parallel region (libgomp is not fork-safe)."""
    run = subprocess.run([sys.executable, "-c", BASELINES_AGREE, cell], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "compared: ['numpy'" in run.stdout, run.stdout + run.stderr


def test_bench_of_a_gated_cell_reports_blas_peak_and_ratios(capsys):
    from rnnspec.spec import cli

    assert cli.main(["bench", "--cell", "gru-reset-after", "--sizes", "G1", "--dtypes", "float64",
                     "--impls", "rnnspec-cpu,numpy", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "cell: gru-reset-after" in out and "the kernels' GEMM (SciPy's OpenBLAS) runs" in out, out
    assert "peak float64:" in out and "fma_microkernel" in out, out
    rows = [line for line in out.splitlines() if line.startswith("G1")]
    assert len(rows) == 4 and all("rnnspec-cpu" in r or "numpy" in r for r in rows), rows
    assert cli.main(["bench", "--cell", "gru"]) == 2


def test_the_results_cache_keeps_one_block_a_dtype_and_counts_references_as_measured():
    """scratch.result_block keeps this thread's last block of each dtype only (a run of sizes, as a caller's
    sequence lengths vary, keeps no more), reuses it only at the count of references measured for "nobody else"
    (not assumed: CPython 3.14 counts one fewer than 3.10-3.13), and never while anything holds it. In a thread
    of its own: an empty cache to start from."""
    import threading

    from rnnspec.kernels.cpu import scratch

    def sizes():
        for size in (10, 20, 30, 40):
            scratch.result_block((size,), np.float32)
        held = scratch.result_block((7,), np.float64)
        again = scratch.result_block((7,), np.float64)
        assert not np.shares_memory(again, held)  # held here: a new block
        cache = scratch._local.results
        assert sorted(cache, key=str) == [np.dtype(np.float32), np.dtype(np.float64)], cache
        assert cache[np.dtype(np.float32)].size == 40
        del again  # nothing holds the cached block now
        where = cache[np.dtype(np.float64)].__array_interface__["data"][0]  # its address: no reference kept
        reused = scratch.result_block((7,), np.float64)
        assert reused.__array_interface__["data"][0] == where and reused.shape == (7,)
        del reused
        scratch.result_block((2, 4), np.float64)  # another size: a new block replaces it
        assert cache[np.dtype(np.float64)].shape == (8,)

    errors = []
    thread = threading.Thread(target=lambda: _record(sizes, errors))
    thread.start()
    thread.join()
    assert not errors, errors
    assert scratch._HELD_BY_NOBODY_ELSE == scratch._count_held_by_the_cache_only()


def _record(call, errors):
    try:
        call()
    except AssertionError as error:
        errors.append(error)
