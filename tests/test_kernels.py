"""The CPU kernels against the oracle, on generated shapes, layouts and both code paths."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnspec.derivations.oracle import Oracle
from rnnspec.kernels import elman_backward, elman_forward, elman_loss
from rnnspec.kernels.cpu import elman as cpu
from rnnspec.kernels.cpu import panels, rows
from rnnspec.spec.tolerance import relative_error, tolerance

from strategies import ACTIVATIONS, rel_err, small_arrays

# float64: the kernels and the oracle evaluate the same sums in a different order; in contracting
# regimes rounding is not amplified, so they agree to a few ulp times the depth.
TOL64 = 1e-12
# float32: a fixed bound fails correct code where the recurrence amplifies rounding (a non-normal W
# with spectral radius 0.95 can grow a perturbation well beyond 1/(1 - 0.95) before it decays), so
# each output gets the suite's condition-aware tolerance (rnnspec.spec.tolerance) with the oracle's
# own equations in float32 as the sample of a correct computation's error.


@st.composite
def kernel_cases(draw, dtype="float64"):
    T = draw(st.integers(1, 80))
    B = draw(st.integers(1, 6))
    I = draw(st.integers(1, 12))
    H = draw(st.integers(1, 40).filter(lambda h: h != I))
    K = draw(st.integers(2, 8))
    activation = draw(st.sampled_from(ACTIVATIONS))
    radius = draw(st.sampled_from([0.3, 0.6, 0.95]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    W = rng.standard_normal((H, H))
    W *= radius / max(np.max(np.abs(np.linalg.eigvals(W))), 1e-9)
    f = lambda a: np.asarray(a, dtype=dtype)
    return {"activation": activation, "x": f(rng.standard_normal((T, B, I))),
            "h0": f(rng.standard_normal((B, H)) * 0.5), "U": f(rng.standard_normal((H, I)) * 0.4), "W": f(W),
            "b": f(rng.standard_normal(H) * 0.2), "V": f(rng.standard_normal((K, H))),
            "c": f(rng.standard_normal(K) * 0.2), "y": rng.integers(0, K, (T, B)),
            "gh": f(rng.standard_normal((T, B, H)))}


def _oracle(case, backend="float64"):
    o = Oracle(case["activation"], backend=backend)
    f = lambda a: np.asarray(a, dtype=backend)
    p = {k: f(case[k]) for k in ("U", "W", "b", "V", "c")}
    s = {"h0": f(case["h0"])}
    x = f(case["x"])
    return (o.forward(x, s, p)["h"], o.vjp(x, s, p, {"h": f(case["gh"])}), o.loss(x, s, p, case["y"]))


def _kernels(case):
    args = (case["x"], case["h0"], case["U"], case["W"], case["b"])
    act = case["activation"]
    return (elman_forward(*args, activation=act), elman_backward(*args, case["gh"], activation=act),
            elman_loss(*args, case["V"], case["c"], case["y"], activation=act))


def _tolerances(case, reference):
    """Per output: for float32 the condition-aware tolerance of the conformance suite (from the float32
    oracle's deviation); for float64 TOL64, or that tolerance scaled to float64's rounding where the case
    is so ill-conditioned that correct float64 computations land further apart (a sigmoid slope h (1 - h)
    near saturation: a random CI case once gave 1.4e-12 for dL/dx at T = B = 1)."""
    (h32, g32, (loss32, gl32)) = _oracle(case, backend="float32")
    (h, g, (loss, gl)) = reference
    if case["x"].dtype == np.float64:
        scale = np.finfo(np.float64).eps / np.finfo(np.float32).eps
        bound = lambda a32, a: max(TOL64, tolerance(relative_error(a32, a, "float32") * scale, "float64"))
    else:
        bound = lambda a32, a: tolerance(relative_error(a32, a, "float32"), "float32")
    found = {("h",): bound(h32, h), ("loss",): bound(loss32, loss)}
    found.update({("vjp", k): bound(g32[k], g[k]) for k in g})
    found.update({("grad", k): bound(gl32[k], gl[k]) for k in gl})
    return found.__getitem__


def _compare(case):
    got, reference = _kernels(case), _oracle(case)
    (h, g, (loss, gl)), (h_ref, g_ref, (loss_ref, gl_ref)) = got, reference
    tol = _tolerances(case, reference)
    dtype = case["x"].dtype
    assert h.dtype == dtype and all(v.dtype == dtype for v in g.values()) and np.asarray(loss).dtype == dtype
    assert rel_err(h, h_ref) <= tol(("h",)), f"forward: {rel_err(h, h_ref):.2e} > {tol(('h',)):.2e}"
    for key in g_ref:
        assert g[key].shape == g_ref[key].shape
        err = rel_err(g[key], g_ref[key])
        assert err <= tol(("vjp", key)), f"backward {key}: {err:.2e} > {tol(('vjp', key)):.2e}"
    assert abs(loss - loss_ref) <= tol(("loss",)) * max(1, abs(loss_ref))
    for key in gl_ref:
        err = rel_err(gl[key], gl_ref[key])
        assert err <= tol(("grad", key)), f"loss grad {key}: {err:.2e} > {tol(('grad', key)):.2e}"


@settings(max_examples=40)
@given(kernel_cases("float64"))
def test_float64_matches_oracle(case):
    _compare(case)


@settings(max_examples=40)
@given(kernel_cases("float32"))
def test_float32_matches_oracle_within_justified_tolerance(case):
    _compare(case)


#: (SMALL_STEP, LARGE_STEP, the batch in halves on two threads (rows.py), the products by panels (panels.py), the
#: forward in one compiled call where it may (loops.forward_at_once))
PATHS = {"loops": (10**9, 10**9, "never", "never", True), "loops-shared": (10**9, 10**9, "never", "never", False),
         "blas-in-numba": (0, 10**9, "never", "never", True), "numpy-blas": (0, 0, "never", "never", True),
         "panels": (0, 10**9, "never", "always", True), "rows": (0, 10**9, "always", "never", True),
         "rows-panels": (0, 10**9, "always", "always", True)}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_code_path(path, dtype):
    """The regimes (plain loops, BLAS inside Numba, NumPy's BLAS around jitted loops), the products by panels and
    the batch in halves on two threads, on any size; each forced path is seen taken where it exists."""
    small, large, by_rows, by_panels, one_call = PATHS[path]
    seen, one_calls = [], []

    @settings(max_examples=15)
    @given(kernel_cases(dtype))
    def check(case):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cpu, "SMALL_STEP", small)
            patch.setattr(cpu, "LARGE_STEP", large)
            patch.setenv(rows.FORCE, by_rows)
            patch.setenv(panels.FORCE, by_panels)
            init, at_once = cpu._Step.__init__, cpu.forward_at_once
            patch.setattr(cpu._Step, "__init__", lambda self, *a, **k: (init(self, *a, **k), seen.append(self))[0])
            patch.setattr(cpu, "forward_at_once", lambda *a: (one_calls.append(a), at_once(*a))[1])
            if not one_call:
                patch.setattr(cpu._Step, "at_once", lambda self: False)
            _compare(case)
            # the panels' choices are made at first use, which a step that was halved never made: made here, under
            # this case's forcing
            for step in seen:
                _ = step.by_panels, step.projection_by_panels

    check()
    # only where the products run as loops, and everywhere they do, unless turned off
    assert bool(one_calls) == (path == "loops"), path
    # a step with B >= 2 rows halves where rows are forced: the halves are steps of their own, marked half
    assert any(step.half for step in seen) == (by_rows == "always"), path
    if by_panels == "always":
        assert all(step.by_panels for step in seen if not step.large and step.blas_rows), path
        assert any(step.by_panels for step in seen), path
        # the generated cases' inputs are narrow (I <= panels.DEPTH): their projections run by panels too
        assert all(step.projection_by_panels == step.by_panels for step in seen), path


def _base(dtype=np.float64, **sizes):
    return small_arrays(dtype, **sizes)


def _all(a):
    args = (a["x"], a["h0"], a["U"], a["W"], a["b"])
    return elman_forward(*args), elman_backward(*args, a["gh"]), elman_loss(*args, a["V"], a["c"], a["y"])


@pytest.mark.parametrize("sizes", [(7, 3, 4, 5), (50, 1, 16, 32)], ids=["small", "S1"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_forward_in_one_compiled_call_gives_the_shared_paths_bits(activation, dtype, sizes, monkeypatch):
    """loops.forward_at_once runs the shared path's projection and sums, and its own loop (loops.recur_rows, the
    activation a constant in each copy) without the Python between them: the same bits, float32 too, at a size
    whose loops run scalar and at the bench's S1, whose run whole vectors; and a new array each call."""
    T, B, I, H = sizes
    a = _base(np.dtype(dtype).type, T=T, B=B, I=I, H=H)
    args = (a["x"], a["h0"], a["U"], a["W"], a["b"])
    assert cpu._Step(*args, activation).at_once()
    got = elman_forward(*args, activation=activation)
    with monkeypatch.context() as mp:
        mp.setattr(cpu._Step, "at_once", lambda self: False)
        want = elman_forward(*args, activation=activation)
    np.testing.assert_array_equal(got, want)
    assert not np.shares_memory(got, elman_forward(*args, activation=activation))


@settings(max_examples=60, deadline=None)
@given(T=st.integers(0, 60), B=st.integers(0, 40), I=st.integers(1, 30), H=st.integers(1, 300),
       dtype=st.sampled_from([np.float32, np.float64]), forced=st.sampled_from(["", "always", "never"]),
       half=st.booleans())
def test_the_forward_runs_in_one_compiled_call_exactly_where_no_blas_or_panels_would_run(T, B, I, H, dtype, forced,
                                                                                         half):
    """_Step.at_once decides from the sizes and panels.FORCE alone (the panels' choices are made at first use,
    which a one-call forward never makes): it agrees with the paths the step would choose (not large, no BLAS
    rows, no panels for the products or the projection)."""
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(shape).astype(dtype) for shape in ((T, B, I), (B, H), (H, I), (H, H), (H,))]
    with pytest.MonkeyPatch.context() as mp:
        if forced:
            mp.setenv(panels.FORCE, forced)
        else:
            mp.delenv(panels.FORCE, raising=False)
        step = cpu._Step(*args, "tanh", half=half)
        paths = not step.large and step.blas_rows == 0 and not step.by_panels and not step.projection_by_panels
        assert step.at_once() == paths, (step.large, step.blas_rows, step.by_panels, step.projection_by_panels)


def test_fortran_order_and_strided_views_give_identical_results():
    a = _base()
    want = _all(a)
    fortran = {k: np.asfortranarray(v) for k, v in a.items()}
    wide = {k: np.repeat(v, 2, axis=-1)[..., ::2] if v.dtype.kind == "f" else v for k, v in a.items()}
    assert not wide["W"].flags.c_contiguous
    for variant in (fortran, wide):
        got = _all(variant)
        np.testing.assert_array_equal(got[0], want[0])
        for key in want[1]:
            np.testing.assert_array_equal(got[1][key], want[1][key])
        assert got[2][0] == want[2][0]


def test_inputs_are_never_modified():
    a = _base()
    copies = {k: v.copy() for k, v in a.items()}
    _all(a)
    for key in a:
        np.testing.assert_array_equal(a[key], copies[key], err_msg=key)


def test_no_bias():
    a = _base()
    h = elman_forward(a["x"], a["h0"], a["U"], a["W"], None)
    np.testing.assert_allclose(h, elman_forward(a["x"], a["h0"], a["U"], a["W"], np.zeros_like(a["b"])), 0, 0)
    loss, grads = elman_loss(a["x"], a["h0"], a["U"], a["W"], None, a["V"], a["c"], a["y"])
    assert "b" not in grads and np.isfinite(loss)


@pytest.mark.parametrize("T,B", [(0, 3), (4, 0), (0, 0)])
def test_empty_sequence_or_batch(T, B):
    a = _base(T=max(T, 1), B=max(B, 1))
    x = np.zeros((T, B, 4))
    h0, gh, y = np.zeros((B, 6)), np.zeros((T, B, 6)), np.zeros((T, B), dtype=np.int64)
    assert elman_forward(x, h0, a["U"], a["W"], a["b"]).shape == (T, B, 6)
    grads = elman_backward(x, h0, a["U"], a["W"], a["b"], gh)
    assert all(not np.any(g) for g in grads.values()) and grads["U"].shape == (6, 4)
    loss, grads = elman_loss(x, h0, a["U"], a["W"], a["b"], a["V"], a["c"], y)
    assert loss == 0 and grads["V"].shape == a["V"].shape


BAD = [
    ("x", lambda a: a["x"].astype(np.int64), TypeError, "x: expected dtype float32 or float64, got int64"),
    ("W", lambda a: a["W"].astype(np.float32), TypeError, "W: dtype float32 differs from x's float64"),
    ("U", lambda a: a["U"][:, :2], ValueError, r"U: expected shape \(H, I\)=\(6, 4\), got \(6, 2\)"),
    ("h0", lambda a: a["h0"][:2], ValueError, r"h0: expected shape \(B, H\)"),
    ("x", lambda a: a["x"][0], ValueError, "x: expected 3 dimensions"),
    ("b", lambda a: list(a["b"]), TypeError, "b: expected a numpy.ndarray, got list"),
    ("y", lambda a: a["y"] + 3, ValueError, r"targets: class indices must lie in \[0, K=3\)"),
    ("y", lambda a: a["y"].astype(float), TypeError, r"targets: expected a numpy.ndarray of class indices \(an "
                                                      r"integer dtype\), got dtype float64"),
    ("V", lambda a: a["V"][:, :3], ValueError, r"V: expected shape \(K, H\)"),
]


@pytest.mark.parametrize("name,corrupt,error,message", BAD)
def test_bad_input_is_rejected_with_the_argument_named(name, corrupt, error, message):
    a = _base()
    a[name] = corrupt(a)
    with pytest.raises(error, match=message):
        elman_loss(a["x"], a["h0"], a["U"], a["W"], a["b"], a["V"], a["c"], a["y"])


def test_bad_activation_and_cotangent():
    a = _base()
    with pytest.raises(ValueError, match="activation: expected one of"):
        elman_forward(a["x"], a["h0"], a["U"], a["W"], a["b"], activation="gelu")
    with pytest.raises(ValueError, match=r"gh: expected shape \(T, B, H\)"):
        elman_backward(a["x"], a["h0"], a["U"], a["W"], a["b"], a["gh"][:2])


def test_builtin_target_rnnspec_cpu():
    from rnnspec.spec import load_target

    impl = load_target("rnnspec-cpu")
    a = _base()
    value, grads = impl.loss(a["x"], {"h0": a["h0"]}, {k: a[k] for k in "UWbVc"}, a["y"])
    want, want_grads = Oracle().loss(a["x"], {"h0": a["h0"]}, {k: a[k] for k in "UWbVc"}, a["y"])
    assert abs(value - want) < 1e-12 * abs(want) and rel_err(grads["W"], want_grads["W"]) < 1e-12
