"""The oracle against an independent implementation, finite differences and complex step."""

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings

from rnnspec.derivations.gradcheck import bilinear, complex_step, full_jacobian, richardson
from rnnspec.derivations.oracle import Oracle

import reference
from strategies import elman_cases, rel_err

TIGHT = 1e-12


def _step(case):
    p = case["params"]
    return p["U"], p["W"], p["b"]


@settings(max_examples=60)
@given(elman_cases())
def test_forward_matches_independent_implementation(case):
    oracle = Oracle(case["activation"])
    got = oracle.forward(case["x"], {"h0": case["h0"]}, case["params"])["h"]
    want, _ = reference.forward(case["x"], case["h0"], *_step(case), case["activation"])
    assert got.shape == want.shape and got.dtype == np.float64
    assert rel_err(got, want) <= TIGHT, f"forward: rel err {rel_err(got, want):.2e} > {TIGHT}, seed {case['seed']}"


@settings(max_examples=60)
@given(elman_cases())
def test_vjp_matches_independent_implementation(case):
    oracle = Oracle(case["activation"])
    got = oracle.vjp(case["x"], {"h0": case["h0"]}, case["params"], {"h": case["cot"]})
    want = reference.vjp(case["x"], case["h0"], *_step(case), case["cot"], case["activation"])
    assert set(got) == set(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        err = rel_err(got[key], want[key])
        assert err <= TIGHT, f"vjp {key}: rel err {err:.2e} > {TIGHT}, seed {case['seed']}"


@settings(max_examples=60)
@given(elman_cases())
def test_loss_matches_independent_implementation(case):
    oracle = Oracle(case["activation"])
    value, got = oracle.loss(case["x"], {"h0": case["h0"]}, case["params"], case["targets"])
    p = case["params"]
    want_value, want = reference.loss(case["x"], case["h0"], p["U"], p["W"], p["b"], p["V"], p["c"],
                                      case["targets"], case["activation"])
    assert abs(value - want_value) <= TIGHT * max(1.0, abs(want_value))
    for key in want:
        err = rel_err(got[key], want[key])
        assert err <= TIGHT, f"loss grad {key}: rel err {err:.2e} > {TIGHT}, seed {case['seed']}"


@pytest.mark.parametrize("T,B,I,H,K", [(1, 1, 1, 1, 1), (1, 1, 3, 1, 2), (7, 1, 2, 5, 3), (4, 3, 6, 2, 4)])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
def test_edge_shapes_and_expanding_recurrence(T, B, I, H, K, activation):
    rng = np.random.default_rng(T * 100 + H)
    W = rng.standard_normal((H, H))
    W *= 1.4 / np.max(np.abs(np.linalg.eigvals(W)))  # spectral radius above 1
    p = {"U": rng.standard_normal((H, I)), "W": W, "b": rng.standard_normal(H),
         "V": rng.standard_normal((K, H)), "c": rng.standard_normal(K)}
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    targets = rng.integers(0, K, (T, B))
    value, got = Oracle(activation).loss(x, {"h0": h0}, p, targets)
    want_value, want = reference.loss(x, h0, p["U"], W, p["b"], p["V"], p["c"], targets, activation)
    assert abs(value - want_value) <= TIGHT * max(1, abs(want_value))
    for key in want:
        assert rel_err(got[key], want[key]) <= TIGHT, key


def _case(seed=3, T=6, B=2, I=3, H=4, K=3):
    rng = np.random.default_rng(seed)
    p = {"U": rng.standard_normal((H, I)), "W": rng.standard_normal((H, H)) * 0.6, "b": rng.standard_normal(H),
         "V": rng.standard_normal((K, H)), "c": rng.standard_normal(K)}
    return rng, rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), p, rng.integers(0, K, (T, B))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity", "relu"])
def test_loss_gradients_against_complex_step(activation):
    rng, x, h0, p, y = _case()
    oracle, complex_oracle = Oracle(activation), Oracle(activation, backend="complex128")
    _, grads = oracle.loss(x, {"h0": h0}, p, y)
    point = {"x": x, "h0": h0, **p}

    def loss(q):
        return complex_oracle.loss(q["x"], {"h0": q["h0"]}, {k: q[k] for k in p}, y)[0]

    for name in point:
        direction = {name: rng.standard_normal(point[name].shape)}
        want = complex_step(loss, point, direction)
        got = float(np.sum(grads[name] * direction[name]))
        assert abs(got - want) <= 1e-12 * max(1, abs(want)), f"{activation} {name}: {got} vs {want}"


def test_vjp_full_jacobian_by_richardson_and_complex_step():
    rng, x, h0, p, _ = _case(T=3, B=1, I=2, H=3)
    oracle, complex_oracle = Oracle("tanh"), Oracle("tanh", backend="complex128")

    def states(q, model=complex_oracle):
        return model.forward(q["x"], {"h0": q["h0"]}, {k: q.get(k, p[k]) for k in ("U", "W", "b")})["h"]

    point = {"x": x, "h0": h0, "W": p["W"]}
    jac_cs = full_jacobian(states, point, "W", "complex")
    jac_fd = full_jacobian(lambda q: states(q, oracle), point, "W", "richardson")
    assert np.max(np.abs(jac_cs - jac_fd)) < 1e-9
    u = rng.standard_normal(jac_cs.shape[:3])
    got = oracle.vjp(x, {"h0": h0}, p, {"h": u})["W"]
    assert np.max(np.abs(got - np.tensordot(u, jac_cs, axes=3))) < 1e-12
    v = {"W": rng.standard_normal(p["W"].shape)}
    assert abs(bilinear(states, point, u, v) - np.sum(got * v["W"])) < 1e-12


def test_richardson_error_estimate_is_small_for_smooth_functions():
    value, error = richardson(lambda q: np.sin(q["a"]).sum(), {"a": np.array([0.3, 1.1])},
                              {"a": np.array([1.0, -2.0])})
    assert abs(value - (np.cos(0.3) - 2 * np.cos(1.1))) < 1e-11 and error < 1e-8


def test_high_precision_backend_agrees_and_is_more_precise():
    _, x, h0, p, y = _case()
    value, grads = Oracle("sigmoid").loss(x, {"h0": h0}, p, y)
    with mpmath.workdps(40):
        mp_value, mp_grads = Oracle("sigmoid", backend="mpmath").loss(x, {"h0": h0}, p, y)
        assert isinstance(mp_value, mpmath.mpf)
    assert abs(float(mp_value) - value) < 1e-12 * abs(value)
    for key in grads:
        assert rel_err(grads[key], mp_grads[key].astype(float)) < 1e-12, key


def test_large_logits_stay_finite():
    _, x, h0, p, y = _case()
    p = dict(p, V=p["V"] * 500)
    value, grads = Oracle().loss(x, {"h0": h0}, p, y)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads.values())


def test_inputs_are_not_modified_and_bad_input_is_named():
    _, x, h0, p, y = _case()
    copies = {k: v.copy() for k, v in p.items()}
    Oracle().loss(x, {"h0": h0}, p, y)
    assert all(np.array_equal(copies[k], p[k]) for k in p)
    with pytest.raises(ValueError, match="W"):
        Oracle().forward(x, {"h0": h0}, dict(p, W=p["W"][:, :2]))
    with pytest.raises(ValueError, match="targets"):
        Oracle().loss(x, {"h0": h0}, p, y + 10)
