"""The engine on a cell it was not written for, and its building blocks."""

import numpy as np
import sympy as sp

from rnnspec.derivations.cells import Cell
from rnnspec.derivations.derive import derive
from rnnspec.derivations.engine import jacobian, resolve_deltas, reverse
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


# -- the step Jacobian ------------------------------------------------------------------------------------------

#: sizes with every axis a different length, so that a transposed or misplaced index cannot go unseen
JACOBIAN_SIZES = {"I": 2, "H": 3, "K": 4, "P": 5}


def _step_values(cell: Cell, be, start: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The cell's forward quantities of one step (batch of one) from ``start`` (parameters, inputs, states)."""
    from rnnspec.derivations.evaluate import evaluate

    env = dict(start)
    for eq in cell.step:
        env[eq.target.name] = evaluate(eq, env, cell.quantities, JACOBIAN_SIZES, 1, be)
    return env


def _complex_step_jacobian(cell: Cell, of: str, wrt: str, start: dict[str, np.ndarray]) -> np.ndarray:
    """d of / d wrt of one step, a column per entry of ``wrt`` by complex step (exact to rounding)."""
    from rnnspec.derivations.evaluate import backend

    be = backend("complex128")
    columns = []
    for k in range(start[wrt].shape[-1]):
        moved = {name: np.asarray(value, dtype=complex) for name, value in start.items()}
        moved[wrt][0, k] += 1e-30j
        columns.append(_step_values(cell, be, moved)[of][0].imag / 1e-30)
    return np.stack(columns, axis=-1)


def _derived_jacobian(eq: Equation, env: dict[str, np.ndarray], quantities) -> np.ndarray:
    """The derived Jacobian equation evaluated, its Kronecker deltas as an identity matrix (read as ``I[i, j]``,
    so that this does not rest on the evaluator's own reading of a delta)."""
    from rnnspec.derivations.evaluate import backend, evaluate

    eye = Var("I_delta", ("H", "H"), PARAM)
    rhs = eq.rhs.replace(lambda e: isinstance(e, sp.KroneckerDelta), lambda e: eye[e.args])
    target = Var(eq.target.name, eq.target.shape, INTERMEDIATE)
    values = {**env, eye.name: np.eye(JACOBIAN_SIZES["H"])}
    table = {**quantities, eye.name: eye, target.name: target}
    return evaluate(Equation(target, eq.indices, rhs), values, table, JACOBIAN_SIZES, 1, backend("float64"))[0]


def _start(cell: Cell, rng) -> dict[str, np.ndarray]:
    return {v.name: rng.standard_normal(((1,) if v.per_example else ()) + tuple(JACOBIAN_SIZES[s] for s in v.shape))
            for v in cell.params + cell.inputs + cell.state_in}


def test_every_cells_step_jacobian_is_the_complex_step_jacobian_of_its_step():
    """The derived d state_t / d state_{t-1}, every pair of states of every cell, against complex step. The
    reset-before GRU's dh_t/dh_{t-1} once summed W_n r over k too: (a_ij + sum_k b_ikj) read as sum_k (a_ij + b_ikj)."""
    from rnnspec.derivations.evaluate import backend
    from rnnspec.derivations.registry import CELL_NAMES
    from rnnspec.derivations.registry import cell as registered

    rng = np.random.default_rng(3)
    checked = []
    for name in CELL_NAMES:
        cell = registered(name)
        for _, out in cell.states:
            for inp, _ in cell.states:
                eq = jacobian(cell.step, cell.quantities, out, inp)
                start = _start(cell, rng)
                env = _step_values(cell, backend("float64"), start)
                got = _derived_jacobian(eq, env, cell.quantities)
                want = _complex_step_jacobian(cell, out.name, inp.name, start)
                assert np.allclose(got, want, rtol=1e-12, atol=1e-12), \
                    f"{name}: d{out.name}/d{inp.name} derived {got} against complex step {want}"
                checked.append((name, out.name, inp.name))
    assert len(checked) == sum(len(registered(n).states) ** 2 for n in CELL_NAMES)


def test_a_summed_index_of_an_earlier_derivative_does_not_meet_a_later_equations():
    """m = (A x) * h_prev, h = C m: dm/dh_prev keeps the sum over A's column index j, and h's own equation sums
    over a j too; the two must stay apart (they once merged into A_kk x_k)."""
    from rnnspec.derivations.evaluate import backend

    i, j = indices("i j")
    A, C = Var("A", ("H", "I"), PARAM), Var("C", ("H", "H"), PARAM)
    x, h_prev = Var("x", ("I",), INPUT), Var("h_prev", ("H",), STATE_IN)
    m, h = Var("m", ("H",), INTERMEDIATE), Var("h", ("H",), STATE_OUT)
    cell = Cell(name="toy-sums", activation="-", sizes=(("I", "in"), ("H", "hidden")), params=(A, C), inputs=(x,),
                states=((h_prev, h),), step=(Equation(m, (i,), A[i, j] * x[j] * h_prev[i]),
                                             Equation(h, (i,), C[i, j] * m[j])))
    start = _start(cell, np.random.default_rng(4))
    eq = jacobian(cell.step, cell.quantities, h, h_prev)
    got = _derived_jacobian(eq, _step_values(cell, backend("float64"), start), cell.quantities)
    assert np.allclose(got, _complex_step_jacobian(cell, "h", "h_prev", start), rtol=1e-12, atol=1e-12)


def test_the_evaluator_reads_a_kronecker_delta_between_two_indices_as_the_identity():
    from rnnspec.derivations.evaluate import backend, evaluate

    i, j = indices("i j")
    z, out = Var("z", ("H",), INTERMEDIATE), Var("J", ("H", "H"), INTERMEDIATE)
    eq = Equation(out, (i, j), z[i] * sp.KroneckerDelta(i, j) + 2 * z[j])
    values = {"z": np.array([[1.0, 2.0, 3.0]])}
    got = evaluate(eq, values, {"z": z, "J": out}, {"H": 3}, 1, backend("float64"))[0]
    assert np.array_equal(got, np.diag([1.0, 2.0, 3.0]) + 2 * np.array([[1.0, 2.0, 3.0]] * 3))
