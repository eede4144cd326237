"""The engine on a cell it was not written for, and its building blocks."""

import numpy as np
import sympy as sp

from rnnspec.derivations.cells import Cell
from rnnspec.derivations.derive import derive
from rnnspec.derivations.engine import resolve_deltas, reverse
from rnnspec.derivations.gradcheck import complex_step
from rnnspec.derivations.oracle import Oracle
from rnnspec.derivations.tensors import (
    INPUT,
    INTERMEDIATE,
    PARAM,
    STATE_IN,
    STATE_OUT,
    Equation,
    Var,
    indices,
)


def toy_cell() -> Cell:
    """A gated, multiplicative cell with a scalar parameter: nothing like Elman.

    g = sigmoid(A x), m = tanh(B h_prev) * alpha, h = g * h_prev + (1 - g) * m
    """
    i, j, k = indices("i j k")
    A = Var("A", ("H", "I"), PARAM)
    Bm = Var("B", ("H", "H"), PARAM)
    alpha = Var("alpha", (), PARAM)
    x = Var("x", ("I",), INPUT)
    h_prev = Var("h_prev", ("H",), STATE_IN)
    g = Var("g", ("H",), INTERMEDIATE)
    m = Var("m", ("H",), INTERMEDIATE)
    h = Var("h", ("H",), STATE_OUT)
    return Cell(
        name="toy", activation="-", sizes=(("I", "in"), ("H", "hidden")),
        params=(A, Bm, alpha), inputs=(x,), states=((h_prev, h),),
        step=(
            Equation(g, (i,), 1 / (1 + sp.exp(-A[i, j] * x[j]))),
            Equation(m, (i,), sp.tanh(Bm[i, k] * h_prev[k]) * alpha.scalar),
            Equation(h, (i,), g[i] * h_prev[i] + (1 - g[i]) * m[i]),
        ),
    )


def test_toy_cell_bptt_matches_complex_step():
    cell = toy_cell()
    rng = np.random.default_rng(0)
    T, B, I, H = 5, 3, 2, 4
    params = {"A": rng.standard_normal((H, I)), "B": rng.standard_normal((H, H)), "alpha": np.array(0.7)}
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    cot = rng.standard_normal((T, B, H))
    grads = Oracle(cell=cell).vjp(x, {"h0": h0}, params, {"h": cot})
    complex_oracle = Oracle(cell=cell, backend="complex128")
    point = {"x": x, "h0": h0, **params}

    def weighted(q):
        out = complex_oracle.forward(q["x"], {"h0": q["h0"]}, {k: q[k] for k in params})["h"]
        return np.sum(out * cot)

    for name in point:
        direction = {name: rng.standard_normal(np.shape(point[name]))}
        want = complex_step(weighted, point, direction)
        got = np.sum(grads[name] * direction[name])
        assert abs(got - want) <= 1e-12 * max(1, abs(want)), f"toy cell {name}: {got} vs {want}"


def test_toy_cell_derivation_reads_as_expected():
    d = derive(toy_cell())
    backward = {eq.target.name: eq for eq in d.step_backward}
    i = sp.Symbol("i", integer=True)
    # h = g*h_prev + (1-g)*m: the cotangent of g is g_h * (h_prev - m), derived, not typed
    assert sp.simplify(backward["g_g"].rhs - sp.IndexedBase("g_h")[i] * (
        sp.IndexedBase("h_prev")[i] - sp.IndexedBase("m")[i])) == 0
    assert "g_alpha" in backward and backward["g_alpha"].indices == ()


def test_resolve_deltas_contracts_summed_indices_only():
    i, j, p = indices("i j p")
    x = sp.IndexedBase("x")
    assert resolve_deltas(sp.KroneckerDelta(i, p) * x[i], free=[p]) == x[p]
    kept = sp.KroneckerDelta(i, p) * x[i]
    assert resolve_deltas(kept, free=[i, p]) == kept


def test_a_seed_that_is_also_consumed_adds_its_outside_cotangent():
    """The LSTM's c_t: seeded from step t+1 and consumed by h_t in its own step."""
    i, = indices("i")
    a = Var("a", ("H",), INTERMEDIATE)
    b = Var("b", ("H",), STATE_OUT)
    x = Var("x", ("H",), INPUT)
    eqs = [Equation(a, (i,), 2 * x[i]), Equation(b, (i,), a[i] ** 2)]
    backward = {eq.target.name: eq.rhs for eq in reverse(eqs, {v.name: v for v in (a, b, x)}, seeds=[a, b], wrt=[x])}
    g_a, g_b, g_a_in = (sp.IndexedBase(n)[i] for n in ("g_a", "g_b", "g_a_in"))
    assert sp.expand(backward["g_a"] - (g_a_in + 2 * sp.IndexedBase("a")[i] * g_b)) == 0
    assert sp.expand(backward["g_x"] - 2 * g_a) == 0
